# Sourced by watch.sh and pulse.sh: whether the resident (lib/run/resident.ts) is alive, from
# its heartbeat note in the state directory (its pid, then the system's uptime in whole seconds
# when written; rewritten every 10 s). Alive: its process is there and the note is under 30 s
# old, against /proc/uptime; all read by the shell itself (this runs on every pulse and every
# watch run: no process). Anything that cannot be read is no resident.
resident_alive() {
  [ -f "$1/resident" ] || return 1
  { read -r pid && read -r beat; } 2>/dev/null <"$1/resident" || return 1
  read -r up _ 2>/dev/null </proc/uptime || return 1
  up=${up%%.*}
  case $pid:$beat in
  :* | *: | *[!0-9:]*) return 1 ;;
  esac
  [ -d "/proc/$pid" ] && [ "$up" -ge "$beat" ] && [ "$up" -lt $((beat + 30)) ]
}
