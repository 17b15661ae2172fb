// The floor a handler run is compared with: a bare `node` that reads the same stdin the same
// way (all chunks, one string) and JSON.parses it. Nothing else.
const chunks = []
for await (const chunk of process.stdin) chunks.push(chunk)
const checks = JSON.parse(Buffer.concat(chunks).toString('utf8'))
if (!Array.isArray(checks)) process.exit(65)
