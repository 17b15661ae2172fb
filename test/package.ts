/**
 * The package as an operator gets it (from the dist/ that npm test builds): `npm pack`, the tarball installed into an
 * empty directory with no network, and the installed `masakari-consul` command run as a process:
 * --version, --help, status, outbox, validate (also as an unprivileged user facing a file root
 * left behind).
 */
import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { chmod, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { configYaml, payload } from './helpers.js'

const root = join(import.meta.dirname, '..')
const run = promisify(execFile)

function command(bin: string, args: string[], opts: { stdin?: string; asNobody?: boolean; env?: Record<string, string> } = {}) {
  const [file, argv] = opts.asNobody
    ? ['setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, bin, ...args]]
    : [process.execPath, [bin, ...args]]
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(file, argv as string[], { env: { PATH: process.env.PATH ?? '', ...opts.env } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    child.on('close', (code) => resolve({ code, stdout, stderr }))
    child.stdin.end(opts.stdin ?? '')
  })
}

t.test('npm pack → npm install --offline into an empty directory → masakari-consul runs from it', async (t) => {
  const dir = t.testdir({ pack: {}, install: {}, etc: {} })
  // --ignore-scripts: not prepack's build. npm test builds first (scripts/prepare.mjs); building
  // again here would rewrite dist/ under the test files running alongside (crash-safety.ts).
  const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', join(dir, 'pack')], {
    cwd: root,
    maxBuffer: 1 << 24,
  })
  const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>
  const files = info!.files.map((f) => f.path).sort()
  for (const f of [
    'package.json',
    'README.md',
    'LICENSE',
    'consul-config/logrotate/masakari-consul',
    'consul-config/acl/masakari-consul.hcl',
    'dist/evaluate.js',
    'dist/checks-handler.js',
    'consul-config/pulse.sh',
    'consul-config/watches/storage.json',
  ])
    t.ok(files.includes(f), `the tarball has ${f}`)
  t.same(
    files.filter((f) => !/^(dist\/(evaluate|checks-handler)\.js|consul-config\/.*|docs\/.*|README\.md|LICENSE|package\.json)$/.test(f)),
    [],
    'nothing else: no sources, tests, source maps or the demo',
  )
  const mode = info!.files.find((f) => f.path === 'dist/evaluate.js') as { mode?: number } | undefined
  t.ok(((mode?.mode ?? 0) & 0o111) !== 0, 'dist/evaluate.js is executable (its #! line): a symlink on the PATH runs it')
  const manifest = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'))
  t.same(manifest.dependencies ?? {}, {}, 'the bundles carry their libraries: nothing to fetch at install')

  const install = join(dir, 'install')
  await writeFile(join(install, 'package.json'), '{"private": true}\n')
  await run('npm', ['install', '--offline', '--no-audit', '--no-fund', join(dir, 'pack', info!.filename)], { cwd: install })
  const bin = join(install, 'node_modules', '.bin', 'masakari-consul')

  const version = await command(bin, ['--version'])
  t.equal(version.code, 0, version.stderr)
  t.equal(version.stdout.trim(), manifest.version)
  const help = await command(bin, ['status', '--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /masakari-consul status\n\nthe host × network table; read-only/)
  t.match(help.stdout, /Exit codes: 0 ok, 64 usage/)
  const top = await command(bin, ['--help'])
  t.equal(top.code, 0)
  t.match(top.stdout, /Commands:\n {2}masakari-consul status .*\[default\]/s)
  t.match(top.stdout, /Exit codes: 0 ok, 64 usage/)

  // The offline config of the other process tests: Keystone on port 1 refuses at once.
  const stateDir = join(dir, 'etc', 'state')
  const config = join(dir, 'etc', 'config.yaml')
  await writeFile(config, configYaml(stateDir, { masakari: { authUrl: 'http://127.0.0.1:1/v3' } }))
  const handler = join(install, 'node_modules', 'masakari-consul', 'dist', 'checks-handler.js')
  const fed = await command(handler, ['--network', 'storage', '--config', config], {
    stdin: payload({ controller: 'passing', cmp1: 'passing' }),
    env: { CONSUL_INDEX: '5' },
  })
  t.equal(fed.code, 0, fed.stderr)
  const status = await command(bin, ['status', '--config', config])
  t.equal(status.code, 0, status.stderr)
  t.match(status.stdout, /HOST\s+MANAGEMENT\s+TENANT\s+STORAGE/)
  t.match(status.stdout, /cmp1\s+unknown\s+unknown\s+up\s/)
  const json = await command(bin, ['status', '--json', '--config', config])
  t.match(JSON.parse(json.stdout), { dryRun: true, snapshots: { storage: { consulIndex: '5', nodes: 2 } } })

  const outbox = await command(bin, ['outbox', '--config', config])
  t.equal(outbox.code, 0, outbox.stderr)
  t.match(outbox.stdout, /pending \(0\):\n {2}none\nexpired undelivered \(0\):/)

  const validate = await command(bin, ['validate', '--config', config])
  t.equal(validate.code, 69, 'Keystone unreachable')
  t.match(validate.stdout, /✓ config .*\n✓ strategy: .*\n✓ state directory .*can create, read and write in it\n/)
  t.match(validate.stdout, /✗ keystone http:\/\/127\.0\.0\.1:1\/v3: .*ECONNREFUSED/)
})

t.test(
  'validate as the Consul agent’s user names the file root left behind',
  { skip: process.getuid?.() !== 0 && 'needs root to act as nobody' },
  async (t) => {
    const dir = t.testdir({ state: { 'state.json': '{}', snapshots: {} } })
    const stateDir = join(dir, 'state')
    const config = join(dir, 'config.yaml')
    await writeFile(config, configYaml(stateDir, { logFile: '' }))
    for (const d of [dir, stateDir, join(stateDir, 'snapshots')]) await chmod(d, 0o777)
    await chmod(join(stateDir, 'state.json'), 0o600) // as root's run of evaluate.js leaves it
    const r = await command(join(root, 'dist', 'evaluate.js'), ['validate', '--config', config], { asNobody: true })
    t.equal(r.code, 74, r.stdout + r.stderr)
    t.match(r.stdout, /✗ state directory .*: nobody \(uid 65534\) cannot read and write: .*state\.json \(owner uid 0, mode 0600\)\n/)
    t.notMatch(r.stdout, /snapshots \(owner/, 'a directory it may use is not listed')
  },
)
