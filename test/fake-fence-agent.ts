/**
 * A fake fence agent for the tests: a shell script in the test's directory that speaks
 * fence-agents' stdin protocol (`key=value` lines), records what it got, and answers from files
 * beside it, as fencing.py would: status prints "Status: ON" (exit 0) or "Status: OFF" (exit 2),
 * a failure logs "… ERROR: message" on stderr and exits 1.
 *
 * Files, per host (by its `ip` option): power-IP (on/off, on when absent), lag-IP (status runs
 * that still answer on after an off), fail-IP (fail every run with this message), hang-IP (never
 * answer: sleep in a child, whose pid is in child-IP). `password` holds the expected password.
 * Records: actions.log ("IP ACTION" per run), stdin.log, cmdline.log (its own /proc argv),
 * environ-IP (its own /proc environment).
 */
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'

const SCRIPT = `#!/bin/sh
dir=$(dirname "$0")
action= ip= password=
while IFS= read -r line; do
  printf '%s\\n' "$line" >>"$dir/stdin.log"
  case $line in
    action=*) action=\${line#action=} ;;
    ip=*) ip=\${line#ip=} ;;
    password=*) password=\${line#password=} ;;
  esac
done
tr '\\0' ' ' </proc/$$/cmdline >>"$dir/cmdline.log"; echo >>"$dir/cmdline.log"
tr '\\0' '\\n' </proc/$$/environ >"$dir/environ-$ip"
echo "$ip $action" >>"$dir/actions.log"
if [ -f "$dir/hang-$ip" ]; then sleep 30 & echo $! >"$dir/child-$ip"; wait; fi
# What bookworm's Python prints before every fence_ipmilan answer: not the agent's message.
echo "/usr/share/fence/fencing.py:12: DeprecationWarning: 'telnetlib' is deprecated" >&2
echo "  import telnetlib" >&2
if [ -f "$dir/fail-$ip" ]; then echo "2024-05-01 10:00:00,123 ERROR: $(cat "$dir/fail-$ip")" >&2; exit 1; fi
if [ "$password" != "$(cat "$dir/password" 2>/dev/null)" ]; then
  echo "2024-05-01 10:00:00,123 ERROR: Failed: Unable to obtain correct plug status or plug is not available" >&2; exit 1
fi
power="$dir/power-$ip"
case $action in
  off) if [ -f "$dir/lag-$ip" ]; then cp "$dir/lag-$ip" "$dir/pending-$ip"; else echo off >"$power"; fi; echo "Success: Powered OFF" ;;
  on) echo on >"$power"; echo "Success: Powered ON" ;;
  monitor) ;;
  status)
    if [ -f "$dir/pending-$ip" ]; then
      n=$(cat "$dir/pending-$ip")
      if [ "$n" -le 0 ]; then echo off >"$power"; rm "$dir/pending-$ip"; else echo $((n - 1)) >"$dir/pending-$ip"; fi
    fi
    if [ "$(cat "$power" 2>/dev/null || echo on)" = off ]; then echo "Status: OFF"; exit 2; fi
    echo "Status: ON" ;;
  *) echo "2024-05-01 10:00:00,123 ERROR: Failed: unknown action $action" >&2; exit 1 ;;
esac
`

/** Writes the agent into dir (as fence_fake) with its expected password; returns its path and readers of its records. */
export async function fakeFenceAgent(dir: string, password: string) {
  const path = join(dir, 'fence_fake')
  await writeFile(path, SCRIPT, { mode: 0o755 })
  await writeFile(join(dir, 'password'), `${password}\n`)
  const read = (name: string) => readFile(join(dir, name), 'utf8').catch(() => '')
  return {
    path,
    set: (name: string, text: string) => writeFile(join(dir, name), `${text}\n`),
    actions: async () => (await read('actions.log')).split('\n').filter(Boolean),
    stdin: () => read('stdin.log'),
    cmdlines: () => read('cmdline.log'),
    environ: (ip: string) => read(`environ-${ip}`),
    read,
  }
}
