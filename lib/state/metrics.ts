/**
 * The Prometheus textfile (config `metrics.textfile`) for node_exporter's textfile collector:
 * what the record, the snapshots and the health note say, rewritten atomically at the end of
 * every run that evaluated. Totals come from the record's counters (lib/decide/state-shape.ts), so every process
 * adds to the same series. Times are exported as Unix timestamps only, never as ages (Prometheus'
 * textfile convention: the file is written when a run happens and scraped for as long as none
 * does, so an age in it would be as stale as the file; `time() - metric` is the age at any
 * moment). No sample when there is nothing to time. No host names in labels: a 10,000-host
 * cloud must not make 10,000 series.
 */
import { writeFileAtomic } from './atomic-file.js'
import { NETWORKS, NODE_STATES, type NetworkState } from '../base/networks.js'
import type { Snapshots } from '../decide/snapshot-shape.js'
import type { Health } from './status-files.js'
import { hostEntry } from '../base/host-record.js'
import { EVENTS, GUARD_KINDS, OUTCOMES, type StoreState } from '../decide/state-shape.js'

export interface MetricsInput {
  state: StoreState
  snapshots: Snapshots
  health: Health
  now: Date
  /** The package's version, for build_info (lib/run/version.ts). */
  version: string
}

const STATES: NetworkState[] = [...NODE_STATES, 'unknown']
const HEALTH: Health['status'][] = ['passing', 'warning', 'critical']

type Labels = Record<string, string>
type Sample = [Labels, number]

interface Family {
  name: string
  type: 'gauge' | 'counter'
  help: string
  samples: Sample[]
}

const seconds = (t: string | Date) => (typeof t === 'string' ? Date.parse(t) : t.getTime()) / 1000

/** The textfile's contents (pure): HELP and TYPE lines for every family, then its samples. */
export function renderMetrics(input: MetricsInput): string {
  return [buildInfo(input.version), ...viewFamilies(input), ...counterFamilies(input.state), ...outboxFamilies(input.state)]
    .map(formatFamily)
    .join('')
}

/** Which version wrote the file: join it on to label the other series (`* on() group_left(version)`). */
function buildInfo(version: string): Family {
  return {
    name: 'build_info',
    type: 'gauge',
    help: 'Always 1; its version label is the version of masakari-consul that wrote this file.',
    samples: [[{ version }, 1]],
  }
}

/** What Consul's clusters say, and the monitor's own health. */
function viewFamilies({ state, snapshots, health, now }: MetricsInput): Family[] {
  const withSnapshot = NETWORKS.filter((n) => snapshots[n] !== undefined)
  const received = (n: (typeof NETWORKS)[number]) => seconds(snapshots[n]!.receivedAt)
  return [
    {
      name: 'hosts',
      type: 'gauge',
      help: "Hosts per network and state in the network's last snapshot (unknown: known elsewhere, absent from it).",
      samples: hostSamples(state, snapshots),
    },
    {
      name: 'snapshot_timestamp_seconds',
      type: 'gauge',
      help: "Unix time, in seconds, when the network's last snapshot was received (its age: time() - metric; no sample before the first).",
      samples: withSnapshot.map((n) => [{ network: n }, received(n)]),
    },
    {
      name: 'self_isolation',
      type: 'gauge',
      help: "1 while the self-isolation guard holds the network's recoveries back.",
      samples: NETWORKS.map((n) => [{ network: n }, state.isolation[n] ? 1 : 0]),
    },
    {
      name: 'held_hosts',
      type: 'gauge',
      help: 'Hosts whose decision a guard held back at the last run, by guard (unconfirmed: an own agent did not confirm; asked again on a back-off).',
      samples: GUARD_KINDS.map((g) => [{ guard: g }, heldBy(state, g)]),
    },
    {
      name: 'health',
      type: 'gauge',
      help: "The monitor's own health, as the pulse check reports it: 1 for the current status.",
      samples: HEALTH.map((s) => [{ status: s }, s === health.status ? 1 : 0]),
    },
    {
      name: 'last_run_timestamp_seconds',
      type: 'gauge',
      help: 'Unix time, in seconds, when a run last evaluated and wrote this file (time since: time() - metric).',
      samples: [[{}, seconds(now)]],
    },
  ]
}

function heldBy(state: StoreState, guard: (typeof GUARD_KINDS)[number]): number {
  return Object.keys(state.ledger).filter((h) => hostEntry(state.ledger, h)?.guard === guard).length
}

/** Totals kept in the record (its counters, lib/decide/state-shape.ts). */
function counterFamilies(state: StoreState): Family[] {
  const c = state.counters
  return [
    {
      name: 'decisions_total',
      type: 'counter',
      help: 'Notifications decided (queued for Masakari), by event.',
      samples: EVENTS.map((e) => [{ action: e }, c?.decisions[e] ?? 0]),
    },
    {
      name: 'notifications_total',
      type: 'counter',
      help: "Notifications finished, by Masakari's final answer (duplicate: 409 duplicate; on-maintenance: 409 on maintenance; host-not-found: 400; expired: never delivered).",
      samples: OUTCOMES.map((o) => [{ outcome: o }, c?.notifications[o] ?? 0]),
    },
    {
      name: 'notification_retries_total',
      type: 'counter',
      help: 'Delivery attempts that failed and were scheduled again.',
      samples: [[{}, c?.retries ?? 0]],
    },
    {
      name: 'fence_failures_total',
      type: 'counter',
      help: 'Fences that failed (the agent refused the power-off, or the power was never seen off): the STOPPED waits, and goes UNKNOWN at its last try.',
      samples: [[{}, c?.fenceFailures ?? 0]],
    },
  ]
}

function outboxFamilies(state: StoreState): Family[] {
  const oldest = state.outbox.reduce<string | undefined>((o, e) => (o === undefined || e.decidedAt < o ? e.decidedAt : o), undefined)
  return [
    { name: 'outbox_entries', type: 'gauge', help: 'Notifications waiting in the outbox.', samples: [[{}, state.outbox.length]] },
    {
      name: 'outbox_oldest_timestamp_seconds',
      type: 'gauge',
      help: 'Unix time, in seconds, when the oldest notification waiting in the outbox was decided (its wait: time() - metric; no sample when the outbox is empty).',
      samples: oldest === undefined ? [] : [[{}, seconds(oldest)]],
    },
  ]
}

/** Per network with a snapshot, hosts counted by state; every state listed, zeros too. */
function hostSamples(state: StoreState, snapshots: Snapshots): Sample[] {
  const hosts = new Set(Object.keys(state.ledger))
  for (const n of NETWORKS) for (const h of Object.keys(snapshots[n]?.nodes ?? {})) hosts.add(h)
  const samples: Sample[] = []
  for (const n of NETWORKS) {
    const nodes = snapshots[n]?.nodes
    if (!nodes) continue
    const counts: Record<NetworkState, number> = { up: 0, down: 0, maintenance: 0, unknown: 0 }
    for (const h of hosts) counts[Object.hasOwn(nodes, h) ? nodes[h]! : 'unknown']++
    for (const s of STATES) samples.push([{ network: n, state: s }, counts[s]])
  }
  return samples
}

function formatFamily({ name, type, help, samples }: Family): string {
  const full = `masakari_consul_${name}`
  const lines = [`# HELP ${full} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${full} ${type}`]
  for (const [labels, value] of samples) lines.push(`${full}${formatLabels(labels)} ${formatValue(value)}`)
  return `${lines.join('\n')}\n`
}

function formatLabels(labels: Labels): string {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`)
  return pairs.length === 0 ? '' : `{${pairs.join(',')}}`
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN'
  if (!Number.isFinite(v)) return v > 0 ? '+Inf' : '-Inf'
  return String(v)
}

/** node_exporter runs as its own user: the file is world-readable (it holds no host names, no secrets). */
export const METRICS_MODE = 0o644

export async function writeMetrics(path: string, input: MetricsInput): Promise<void> {
  await writeFileAtomic(path, renderMetrics(input), METRICS_MODE)
}
