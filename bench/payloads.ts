/**
 * Generated Consul `checks` watch payloads: what /v1/health/state/any returns for a cluster of
 * `hosts` compute nodes (plus the controller), each with a serfHealth check and
 * `servicesPerHost` service checks, in the field shape Consul 1.8.7 writes.
 */

export const hostName = (i: number) => `cmp${String(i + 1).padStart(5, '0')}`

export interface PayloadOptions {
  hosts: number
  servicesPerHost: number
  /** Nodes whose serfHealth is critical. */
  down?: ReadonlySet<string>
  /** Host names; default cmp00001… */
  names?: string[]
}

const SERVICES = [
  'nova-compute',
  'neutron-ovs-agent',
  'libvirtd',
  'ceph-osd',
  'node-exporter',
  'chronyd',
  'sshd',
  'ovsdb-server',
  'iscsid',
  'collectd',
]

export function checksPayload(opts: PayloadOptions): string {
  const names = opts.names ?? Array.from({ length: opts.hosts }, (_, i) => hostName(i))
  const parts: string[] = []
  let index = 100
  const node = (name: string, serf: 'passing' | 'critical', i: number) => {
    parts.push(
      JSON.stringify({
        Node: name,
        CheckID: 'serfHealth',
        Name: 'Serf Health Status',
        Status: serf,
        Notes: '',
        Output: serf === 'passing' ? 'Agent alive and reachable' : 'Agent not live or unreachable',
        ServiceID: '',
        ServiceName: '',
        ServiceTags: [],
        Type: '',
        Definition: {},
        CreateIndex: index,
        ModifyIndex: index++,
      }),
    )
    for (let s = 0; s < opts.servicesPerHost; s++) {
      const svc = SERVICES[s % SERVICES.length]!
      const id = `${svc}-${s}`
      parts.push(
        JSON.stringify({
          Node: name,
          CheckID: `service:${id}`,
          Name: `Service '${svc}' check`,
          Status: 'passing',
          Notes: '',
          Output: `HTTP GET http://10.${(i >> 8) & 255}.${i & 255}.${s}:9${String(s).padStart(3, '0')}/health: 200 OK Output: ok`,
          ServiceID: id,
          ServiceName: svc,
          ServiceTags: ['openstack', 'compute'],
          Type: 'http',
          Definition: {},
          CreateIndex: index,
          ModifyIndex: index++,
        }),
      )
    }
  }
  node('controller', 'passing', 0)
  for (const [i, n] of names.entries()) node(n, opts.down?.has(n) ? 'critical' : 'passing', i + 1)
  return `[${parts.join(',')}]`
}
