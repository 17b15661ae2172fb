# The monitor's ACL policy (README, "Consul's conventions and ACLs"): its config's token
# (consul.token / consul.tokenFile) and its watches' token, in each of the three clusters.
#   consul acl policy create -name masakari-consul -rules @masakari-consul.hcl
# Not an agent config: keep it out of the agents' config directories.
node_prefix "" { policy = "read" }
service_prefix "" { policy = "read" }
agent_prefix "" { policy = "read" }
key_prefix "masakari-consul/" { policy = "write" }
session_prefix "" { policy = "write" }
operator = "read"
