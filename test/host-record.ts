/** Tables keyed by host name: any Consul node name is an ordinary key. */
import t from 'tap'
import { z } from 'zod'
import { emptyHostRecord, hostEntry, hostRecordSchema, withHostEntry } from '../lib/base/host-record.js'

const PROTO_NAMES = ['constructor', 'toString', 'hasOwnProperty', '__proto__', 'valueOf']
const schema = hostRecordSchema(z.object({ n: z.number() }))

t.test('the schema keeps every prototype-named key, with its value, and nothing inherited', async (t) => {
  // JSON.parse keeps `__proto__` as an own key, as a state file read from disk has it.
  const text = `{${PROTO_NAMES.map((h, i) => `"${h}":{"n":${i}}`).join(',')}}`
  const out = schema.parse(JSON.parse(text))
  t.same(Object.keys(out), PROTO_NAMES)
  for (const [i, h] of PROTO_NAMES.entries()) t.same(hostEntry(out, h), { n: i }, h)
  t.equal(Object.getPrototypeOf(out), null)
  t.equal(JSON.stringify(out), text.replace(/\s/g, ''), 'serializes back to the same document')
  const empty = schema.parse({})
  t.equal(empty.constructor, undefined, 'an absent `constructor` is absent')
  t.equal(empty.toString, undefined)
})

t.test('every bad entry is reported at its host, at once', async (t) => {
  const r = schema.safeParse(JSON.parse('{"__proto__":{"n":"x"},"ok":{"n":1},"constructor":{}}'))
  t.equal(r.success, false)
  t.same(
    r.error!.issues.map((i) => i.path),
    [
      ['__proto__', 'n'],
      ['constructor', 'n'],
    ],
  )
  t.match(schema.safeParse([]).error?.issues[0]?.message, /expected an object keyed by host name/)
  t.equal(schema.safeParse(null).success, false)
})

t.test('hostEntry reads own entries only; withHostEntry adds any name without touching the original', async (t) => {
  const table = emptyHostRecord<number>()
  for (const h of PROTO_NAMES) t.equal(hostEntry(table, h), undefined, h)
  const plain: Record<string, number> = { a: 1 }
  t.equal(hostEntry(plain, 'constructor'), undefined, 'not Object from a plain table either')
  let next = table
  PROTO_NAMES.forEach((h, i) => {
    next = withHostEntry(next, h, i)
  })
  t.same(Object.keys(next), PROTO_NAMES)
  t.equal(hostEntry(next, '__proto__'), 3)
  t.equal(Object.getPrototypeOf(next), null)
  t.same(Object.keys(table), [], 'the original is unchanged')
  t.same(Object.keys(withHostEntry(plain, '__proto__', 2)), ['a', '__proto__'], 'a plain table copies to one without prototype')
})
