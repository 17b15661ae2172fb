#!/bin/sh
# masakari-consul's watch run: what each network's checks watch runs (consul-config/watches/).
# Consul only logs a failed handler and runs it again only on the next change, which
# a dead host never makes. So a run that fails (any exit but 0, a crash, node missing) is
# written down where the pulse check (pulse.sh) sees it: failed-NETWORK in the state directory
# (status and reason, as the health note) turns the monitor's check critical with this reason, and the resync note, due now, makes the
# pulse re-read the clusters and evaluate (lib/resync.ts). A later successful run of the
# network, or that resync, removes it.
#
# usage: watch.sh NETWORK CONFIG STATE_DIR HANDLER_BUNDLE [NODE]   (the payload on stdin)
network=$1
config=$2
state=$3
bundle=$4
node=${5:-node}
[ -n "$network" ] && [ -n "$config" ] && [ -n "$state" ] && [ -n "$bundle" ] || {
  echo "usage: watch.sh NETWORK CONFIG STATE_DIR HANDLER_BUNDLE [NODE]" >&2
  exit 64
}

# The resident (lib/run/resident.ts) asks the same agent the same question and acts on the
# same change without starting node. While it is alive, it gets up to 3 s to have handled this
# run's change (its index note reaching CONSUL_INDEX), so that the run below finds it recorded
# (a quiet run) instead of competing with it for the cores. The run below always follows: a
# resident that did nothing leaves it a full run, as without one.
# Without resident.sh beside this script (a partial copy, an upgrade half-way): no resident,
# and everything else as ever.
resident_alive() { return 1; }
[ -r "${0%/*}/resident.sh" ] && . "${0%/*}/resident.sh"
case $CONSUL_INDEX in
'' | *[!0-9]*) index= ;;
*) index=$CONSUL_INDEX ;;
esac
if [ -n "$index" ] && resident_alive "$state"; then
  tries=0
  while [ "$tries" -lt 60 ]; do
    handled=
    [ -f "$state/resident-$network" ] && read -r handled 2>/dev/null <"$state/resident-$network"
    case $handled in
    '' | *[!0-9]*) handled=0 ;;
    esac
    [ "$handled" -ge "$index" ] && break
    sleep 0.05
    tries=$((tries + 1))
  done
fi

# The handler's stderr is kept to name the failure, and passed on to Consul as it was.
exec 3>&2
err=$("$node" "$bundle" --network "$network" --config "$config" 2>&1 1>&3)
rc=$?
[ -n "$err" ] && printf '%s\n' "$err" >&2
[ "$rc" -eq 0 ] && exit 0

last=$(printf '%s\n' "$err" | sed -n 's/^[[:space:]]*//; /./h; ${x;p;}' | cut -c 1-400)
now=$(date +%s)
tmp="$state/failed-$network.$$"
if printf 'critical\nthe %s watch run failed (exit %s) at %s: %s\n' "$network" "$rc" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${last:-no output}" >"$tmp" &&
  mv -f "$tmp" "$state/failed-$network"; then
  printf '%s\n' "$now" >"$state/resync.$$" && mv -f "$state/resync.$$" "$state/resync"
else
  rm -f "$tmp"
  echo "watch.sh: cannot write $state/failed-$network: the pulse check will not see this failure" >&2
fi
exit "$rc"
