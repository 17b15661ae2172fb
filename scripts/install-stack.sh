#!/usr/bin/env bash
# Installs what the real stack needs and is missing: Consul 1.8.7 (Debian bullseye),
# Keystone and masakari-api (Debian bookworm), uwsgi for Keystone, and for fencing (issue #21)
# fence-agents with ipmitool (fence_ipmilan runs it) and openipmi (ipmi_sim, a real
# IPMI-over-LAN BMC per compute). Idempotent: skips what is already there. Needs root (apt).
# Prints what it does.
set -euo pipefail
log() { printf '[install-stack] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_consul=1; need_openstack=1; need_fence=1
command -v consul >/dev/null 2>&1 && need_consul=0
if command -v keystone-manage >/dev/null 2>&1 && [ -x /usr/bin/masakari-api ] \
   && command -v uwsgi_python3 >/dev/null 2>&1 && command -v masakari-manage >/dev/null 2>&1; then
  need_openstack=0
fi
if [ -x /usr/sbin/fence_ipmilan ] && [ -x /usr/bin/ipmitool ] && command -v ipmi_sim >/dev/null 2>&1; then
  need_fence=0
fi
if [ $need_consul = 0 ] && [ $need_openstack = 0 ] && [ $need_fence = 0 ]; then
  log "consul, keystone, masakari-api, fence-agents and ipmi_sim already installed: nothing to do"
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if [ $need_consul = 1 ]; then
  # Bookworm has no consul package; bullseye has 1.8.7 and it runs on bookworm.
  src=/etc/apt/sources.list.d/masakari-consul-bullseye.sources
  if ! grep -rqs 'bullseye' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null; then
    log "adding Debian bullseye as an extra apt source (for consul 1.8.7)"
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    [ -n "$uri" ] || uri=http://deb.debian.org/debian
    $SUDO tee "$src" >/dev/null <<SRC
Types: deb
URIs: $uri
Suites: bullseye
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    # Never let bullseye win over bookworm for anything but what we ask for by name.
    $SUDO tee /etc/apt/preferences.d/masakari-consul-bullseye >/dev/null <<PREF
Package: *
Pin: release n=bullseye
Pin-Priority: 100
PREF
  fi
fi
log "apt-get update"
$SUDO apt-get update -qq
pkgs=()
[ $need_consul = 1 ] && pkgs+=(consul)
[ $need_openstack = 1 ] && pkgs+=(keystone masakari-api uwsgi-plugin-python3 uwsgi-core python3-masakari)
# fence-agents does not depend on ipmitool, which fence_ipmilan runs (/usr/bin/ipmitool).
[ $need_fence = 1 ] && pkgs+=(fence-agents ipmitool openipmi)
log "apt-get install ${pkgs[*]} (a couple of minutes the first time)"
if ! $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; then
  log "apt-get install failed for: ${pkgs[*]}"
  exit 1
fi
command -v consul >/dev/null && log "$(consul version | head -1)"
log "done"
