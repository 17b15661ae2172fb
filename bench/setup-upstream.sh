#!/usr/bin/env bash
# The bench's own set-up step: the upstream Python host monitor (Debian bookworm's
# masakari-host-monitor 14.0.0, with its consul driver) for the side-by-side latency trials.
# Idempotent; needs root (apt). Not part of scripts/install-stack.sh: only the bench uses it.
set -euo pipefail
log() { printf '[setup-upstream] %s\n' "$*" >&2; }
if [ -x /usr/bin/masakari-hostmonitor ] && /usr/bin/python3 -c 'import masakarimonitors.hostmonitor.consul_check.manager' 2>/dev/null; then
  log "masakari-host-monitor $(dpkg-query -W -f='${Version}' masakari-host-monitor 2>/dev/null || echo '?') already installed"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
log "apt-get install masakari-host-monitor (Debian bookworm, 14.0.0)"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends masakari-host-monitor >/dev/null
# The package enables a systemd unit; nothing here runs systemd, and the bench starts its own.
log "installed $(dpkg-query -W -f='${Version}' masakari-host-monitor)"
