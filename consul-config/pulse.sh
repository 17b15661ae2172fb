#!/bin/sh
# masakari-consul's pulse: a script check the controller's management agent runs every 15 s
# (consul-config/watches/pulse.json). Consul runs the watch handlers only on changes, and a
# dead host makes none: this restarts a worker that died with work pending, and reports the
# monitor's own health as the check's status. Cheap when nothing is pending: no node process,
# only the small notes the monitor keeps in its state directory (lib/status-files.ts).
#
# usage: pulse.sh CONFIG STATE_DIR HANDLER_BUNDLE [NODE]
config=$1
state=$2
bundle=$3
node=${4:-node}
[ -n "$config" ] && [ -n "$state" ] && [ -n "$bundle" ] || {
  echo "usage: pulse.sh CONFIG STATE_DIR HANDLER_BUNDLE [NODE]"
  exit 2
}

# A deep look (node, ~0.4 s) when the health note is missing, critical, 30 minutes old, or
# older than the config, or when no deep look ever ran (no `warmed` note: just installed, the
# watches' first runs wrote a fresh health note): it validates the config and strategy, rewrites
# the notes and renews the Keystone token and Masakari's host list ahead of a failure. While
# critical, every run looks again, so the check recovers as soon as the cause is gone.
# The note's age: its third line is the system's uptime when it was written, against
# /proc/uptime, both read by the shell itself. This runs every 15 s: an idle pulse starts no
# process (find alone cost more than the rest). An uptime below the note's is a reboot. Where
# either cannot be read (an older note, no /proc), find tells the age.
last= written=
[ -f "$state/health" ] && { read -r last && read -r _ && read -r written; } <"$state/health"
old_note() {
  case $written in
  '' | *[!0-9]*) ;;
  *)
    if read -r up _ 2>/dev/null </proc/uptime; then
      up=${up%%.*}
      [ "$up" -lt "$written" ] || [ "$up" -ge $((written + 1800)) ]
      return
    fi
    ;;
  esac
  [ -n "$(find "$state/health" -mmin +30 2>/dev/null)" ]
}
if [ "$last" != passing ] && [ "$last" != warning ] || [ "$config" -nt "$state/health" ] || [ ! -e "$state/warmed" ] || old_note; then
  if ! out=$("$node" "$bundle" --pulse --config "$config" 2>&1); then
    echo "critical: $(printf '%s\n' "$out" | tail -n 1)"
    exit 2
  fi
fi

# Work is due and no worker is alive (a live worker refreshes its lock every 5 s): start one.
if [ -f "$state/wake" ]; then
  read -r due <"$state/wake"
  now=$(date +%s)
  if [ "${due:-0}" -le "$now" ] && [ -z "$(find "$state/worker.lock" -maxdepth 0 -newermt "@$((now - 12))" 2>/dev/null)" ]; then
    # As the handler starts it: a worker that fails is written down (failed-worker, critical).
    (
      "$node" "$bundle" --worker --config "$config"
      rc=$?
      if [ "$rc" -eq 0 ]; then
        rm -f "$state/failed-worker"
      else
        printf 'critical\nthe worker failed (exit %s) at %s: its stack trace, if any, is in %s/worker.stderr\n' "$rc" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$state" >"$state/failed-worker.$$" &&
          mv -f "$state/failed-worker.$$" "$state/failed-worker"
      fi
    ) </dev/null >/dev/null 2>>"$state/worker.stderr" &
  fi
fi

# No resident alive (lib/run/resident.ts: the head start on every change): start one in the
# background; it outlives this check. One that failed wrote failed-resident (warning: the watches
# decide without it, ~0.3 s slower), with the uptime on its third line: it is started again 5
# minutes after that.
# Without resident.sh beside this script (a partial copy, an upgrade half-way): none is started
# (each would end at once on the lock of the one alive), and everything else as ever.
resident_alive() { return 0; }
[ -r "${0%/*}/resident.sh" ] && . "${0%/*}/resident.sh"
if ! resident_alive "$state"; then
  since=
  [ -f "$state/failed-resident" ] && { read -r _ && read -r _ && read -r since; } <"$state/failed-resident"
  read -r up _ 2>/dev/null </proc/uptime
  up=${up%%.*}
  case $since:$up in
  *[!0-9:]* | *: | :*) start=yes ;;
  *) [ "$up" -lt "$since" ] || [ "$up" -ge $((since + 300)) ] && start=yes || start= ;;
  esac
  if [ -n "$start" ]; then
    "$node" "$bundle" --resident --config "$config" </dev/null >/dev/null 2>"$state/resident.stderr" &
  fi
fi

# Unsettled (a host down, a decision held, unconfirmed or pending) or a watch run failed
# (watch.sh): re-read the clusters and evaluate (lib/resync.ts), whatever edges were lost. A
# resync that fails is written down like a failed watch run, at warning: it is retried every
# resync, and an own agent away for a while must not cost the sender lock (tied to this check).
if [ -f "$state/resync" ]; then
  read -r due <"$state/resync"
  now=$(date +%s)
  if [ "${due:-0}" -le "$now" ] && [ -z "$(find "$state/resync.lock" -maxdepth 0 -newermt "@$((now - 12))" 2>/dev/null)" ]; then
    (
      if ! err=$("$node" "$bundle" --resync --config "$config" 2>&1 >/dev/null); then
        printf '%s\n' "$err" >&2
        last=$(printf '%s\n' "$err" | sed -n 's/^[[:space:]]*//; /./h; ${x;p;}' | cut -c 1-400)
        printf 'warning\nthe resync failed at %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "${last:-no output}" >"$state/failed-resync.$$" &&
          mv -f "$state/failed-resync.$$" "$state/failed-resync"
      fi
    ) </dev/null >/dev/null 2>>"$state/worker.stderr" &
  fi
fi

status=critical
reason="no health note in $state"
[ -f "$state/health" ] && { read -r status && read -r reason; } <"$state/health"
# A failed run (failed-NETWORK, failed-resync: status and reason) outweighs the last
# successful run's note when it is worse.
for f in "$state"/failed-*; do
  [ -f "$f" ] || continue
  { read -r s && read -r r; } <"$f" || continue
  case $status:$s in
  critical:*) ;;
  warning:critical | passing:critical | passing:warning) status=$s reason=$r ;;
  esac
done
echo "$status: $reason"
case $status in
passing) exit 0 ;;
warning) exit 1 ;;
*) exit 2 ;;
esac
