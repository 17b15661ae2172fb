/**
 * docs/admin-guide.md cannot go stale against the code: every key of the config schema is
 * listed in it, the README links it, and the systemd units it ships pass systemd's own check.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { copyFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { ConfigSchema } from '../lib/config/config.js'

const root = join(import.meta.dirname, '..')
const guide = readFileSync(join(root, 'docs', 'admin-guide.md'), 'utf8')
const run = promisify(execFile)

interface Def {
  type: string
  shape?: Record<string, unknown>
  innerType?: unknown
  in?: unknown
  out?: unknown
  options?: unknown[]
}
const def = (s: unknown) => (s as { _zod: { def: Def } })._zod.def

/** Every key path of a zod schema ("masakari.auth.passwordFile"), through defaults, optionals, unions and preprocessing. */
export function schemaKeys(schema: unknown, prefix = '', out = new Set<string>()): Set<string> {
  const d = def(schema)
  if (d.type === 'object') {
    for (const [k, v] of Object.entries(d.shape!)) {
      out.add(prefix + k)
      schemaKeys(v, `${prefix}${k}.`, out)
    }
  } else if (['default', 'prefault', 'optional', 'nullable', 'readonly'].includes(d.type)) schemaKeys(d.innerType, prefix, out)
  else if (d.type === 'pipe') {
    schemaKeys(d.in, prefix, out)
    schemaKeys(d.out, prefix, out)
  } else if (d.type === 'union') for (const o of d.options!) schemaKeys(o, prefix, out)
  return out
}

t.test('every key of the config schema is in the admin guide', async (t) => {
  const keys = [...schemaKeys(ConfigSchema)]
  t.ok(keys.includes('masakari.auth.applicationCredentialSecretEnv'), 'the walk reaches into the auth union')
  t.ok(keys.includes('metrics.textfile') && keys.includes('log.level') && keys.includes('consul.gossip.pushPullInterval'))
  t.same(
    keys.filter((k) => !guide.includes(`\`${k}\``)),
    [],
    'keys missing from docs/admin-guide.md',
  )
})

t.test('the walk finds a key the guide does not list (so the test above can fail)', async (t) => {
  const { z } = await import('zod')
  const extended = ConfigSchema.extend({ notInTheGuide: z.object({ deeper: z.number().default(1) }).prefault({}) })
  t.same(
    [...schemaKeys(extended)].filter((k) => !guide.includes(`\`${k}\``)),
    ['notInTheGuide', 'notInTheGuide.deeper'],
  )
})

t.test('the README links the guide, and the guide the README sections it names', async (t) => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  t.match(readme, /\]\(docs\/admin-guide\.md\)/)
  const named: Record<string, string> = {
    '#install-on-three-controllers': '## Install on three controllers',
    '#guarantees': '## Guarantees',
  }
  for (const [anchor, heading] of Object.entries(named)) {
    t.ok(guide.includes(`../README.md${anchor}`), anchor)
    t.ok(readme.includes(`\n${heading}\n`), `README has ${heading}`)
  }
})

const NETWORKS = ['management', 'tenant', 'storage']
const unit = (n: string) => join(root, 'consul-config', 'systemd', `consul-${n}.service`)

t.test('the systemd units: one per network, each on its own config and data dir, as the consul user', async (t) => {
  for (const n of NETWORKS) {
    const text = readFileSync(unit(n), 'utf8')
    t.match(text, new RegExp(`^ExecStart=/usr/bin/consul agent -config-dir=/etc/consul.d/${n}$`, 'm'), n)
    t.match(text, new RegExp(`^StateDirectory=consul-${n}$`, 'm'))
    t.match(text, /^EnvironmentFile=-\/etc\/masakari-consul\/environment$/m, `${n}: passwordEnv reaches the watch runs`)
    t.match(text, /^User=consul$/m)
    for (const kind of ['controller', 'compute']) {
      const agent = JSON.parse(readFileSync(join(root, 'consul-config', kind, `${n}.json`), 'utf8'))
      t.equal(agent.data_dir, `/var/lib/consul-${n}`, `${kind}/${n}.json's data_dir is the unit's StateDirectory`)
    }
  }
})

const systemdAnalyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find(existsSync)

t.test('the systemd units pass systemd-analyze verify', { skip: systemdAnalyze ? false : 'no systemd-analyze here' }, async (t) => {
  for (const n of NETWORKS) {
    await t.resolves(run(systemdAnalyze!, ['verify', unit(n)]), n)
  }
  // And the check can fail: a unit whose ExecStart is not an absolute path.
  const dir = t.testdir({})
  const bad = join(dir, 'consul-bad.service')
  await copyFile(unit('storage'), bad)
  const { writeFile, readFile } = await import('node:fs/promises')
  await writeFile(bad, (await readFile(bad, 'utf8')).replace('ExecStart=/usr/bin/consul', 'ExecStart=/nonexistent/consul'))
  await t.rejects(run(systemdAnalyze!, ['verify', bad]))
})
