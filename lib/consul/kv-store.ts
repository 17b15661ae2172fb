/**
 * The shared record of several controllers: the same document as state.json (ledger, outbox,
 * recoveries, isolation, wake-up), kept in Consul KV at `<prefix>state`, gzip-compressed, so
 * that whichever controller holds the sender lock next reads what the last one decided and
 * what Masakari accepted.
 *
 * Only the sender-lock holder writes it, in one Consul transaction that checks that its session
 * still holds the lock and that nobody wrote since it read (check-and-set): a holder that lost
 * its session cannot write, not even late. On one controller, the handler and the worker take
 * turns under the local state.lock as with state.json.
 */
import { join } from 'node:path'
import { gunzipSync, gzipSync } from 'node:zlib'
import { z } from 'zod'
import type { ConsulAgent } from './consul-api.js'
import { bodyStart } from '../base/http.js'
import { stage } from '../base/stages.js'
import { ConsulError } from './consul-api.js'
import { withLock } from '../state/lock.js'
import type { LockConfig, SenderLock } from './sender.js'
import { StateFileError } from '../state/state-errors.js'
import { parseState, type Store } from '../state/store.js'
import { emptyState, type StoreState } from '../decide/state-shape.js'

/**
 * Consul 1.8 refuses a transaction over 512 KB (txn_max_req_len) and a value over 512 KB: the
 * compressed document, base64-encoded inside the transaction's JSON, must stay under this.
 * 10,000 hosts compress to about a tenth of it.
 */
export const MAX_STATE_BYTES = 360 * 1024

/** A write refused because this controller no longer holds the sender lock. */
export class NotSenderError extends Error {
  override name = 'NotSenderError'
}

const KvEntrySchema = z.array(z.object({ Value: z.string().nullable(), ModifyIndex: z.number().int() }))
const TxnErrorsSchema = z.object({ Errors: z.array(z.object({ OpIndex: z.number().int(), What: z.string() })).nullable() })

export function kvStore(agent: ConsulAgent, config: LockConfig, lock: SenderLock, stateDir: string): Store {
  const key = `${config.prefix}state`
  const where = `Consul KV ${key} (${agent.url})`
  const readWithIndex = async (): Promise<{ state: StoreState; index: number }> => {
    const answer = await agent.request('GET', `/v1/kv/${key}?consistent`)
    if (answer.status === 404) return { state: emptyState(), index: 0 }
    if (answer.status !== 200) throw new ConsulError(`GET ${where} answered ${answer.status} ${bodyStart(answer.text)}`, answer.status)
    const entry = KvEntrySchema.parse(JSON.parse(answer.text))[0]
    if (!entry?.Value) return { state: emptyState(), index: entry?.ModifyIndex ?? 0 }
    return { state: decode(entry.Value, where), index: entry.ModifyIndex }
  }
  const write = async (next: StoreState, index: number): Promise<void> => {
    const session = lock.session()
    if (!session) throw new NotSenderError('no sender session: only the lock holder writes the shared record')
    const value = encode(next, where)
    const txn = [
      { KV: { Verb: 'check-session', Key: `${config.prefix}sender`, Session: session } },
      { KV: { Verb: 'cas', Key: key, Value: value, Index: index } },
    ]
    const answer = await agent.request('PUT', '/v1/txn', JSON.stringify(txn))
    if (answer.status === 200) return
    const errors = answer.status === 409 ? (TxnErrorsSchema.parse(JSON.parse(answer.text)).Errors ?? []) : []
    if (errors.some((e) => e.OpIndex === 0))
      throw new NotSenderError(`this controller no longer holds the sender lock (${where} not written)`)
    if (errors.some((e) => e.OpIndex === 1))
      throw new NotSenderError(`${where} changed since it was read: another sender wrote it; not written`)
    throw new ConsulError(`PUT ${agent.url}/v1/txn answered ${answer.status} ${bodyStart(answer.text)}`, answer.status)
  }
  return {
    read: async () => (await readWithIndex()).state,
    transact: (fn) =>
      withLock(join(stateDir, 'state.lock'), async (local) => {
        const { state, index } = await readWithIndex()
        stage('shared record read')
        const { next, result } = await fn(state, local.assertHeld)
        if (next) {
          await local.assertHeld()
          await write(next, index)
          stage('shared record written (CAS)')
        }
        return result
      }),
  }
}

function encode(state: StoreState, where: string): string {
  const value = gzipSync(JSON.stringify(state)).toString('base64')
  if (value.length > MAX_STATE_BYTES) {
    throw new StateFileError(
      `${where}: the record is ${Math.round(value.length / 1024)} KB compressed, over the ${MAX_STATE_BYTES / 1024} KB a Consul transaction takes`,
    )
  }
  return value
}

function decode(value: string, where: string): StoreState {
  let text: string
  try {
    text = gunzipSync(Buffer.from(value, 'base64')).toString('utf8')
  } catch (err) {
    throw new StateFileError(`${where}: not a gzip-compressed record written by this program (${(err as Error).message})`)
  }
  return parseState(text, where)
}
