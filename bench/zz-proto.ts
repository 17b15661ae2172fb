import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { checksPayload } from './payloads.js'
import { run, FLOOR, ROOT } from './proc.js'
const n = Number(process.argv[2] ?? 10000)
const dir = `/tmp/proto-${n}`
mkdirSync(dir, { recursive: true })
const file = join(dir, 'p.json')
const text = checksPayload({ hosts: n, servicesPerHost: 10 })
writeFileSync(file, text)
console.log('payload MB', (text.length / 1e6).toFixed(1))
writeFileSync(join(dir, 'config.yaml'), `stateDir: ${dir}/state\nhostname: controller\nmasakari:\n  authUrl: http://127.0.0.1:1/v3\n  auth: {username: u, userDomainName: Default, password: p, projectName: service, projectDomainName: Default}\n`)
const h = join(ROOT, 'dist', 'checks-handler.js')
for (const net of ['management', 'tenant', 'storage']) {
  const r = await run(process.execPath, [h, '--network', net, '--config', join(dir, 'config.yaml')], { stdinFile: file, probe: true })
  console.log('first', net, r.code, r.ms.toFixed(0), r.maxRssKb, r.stderr.slice(-300))
}
for (let i = 0; i < 3; i++) {
  const r = await run(process.execPath, [h, '--network', 'storage', '--config', join(dir, 'config.yaml')], { stdinFile: file, probe: true })
  const f = await run(process.execPath, [FLOOR], { stdinFile: file, probe: true })
  console.log('steady', r.code, r.ms.toFixed(0), r.maxRssKb, 'floor', f.ms.toFixed(0), f.maxRssKb)
}
