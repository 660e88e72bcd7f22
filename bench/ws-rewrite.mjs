#!/usr/bin/env node
// WebSocket text rewrite cost (issue 12, `websocket_credential_rewrite`; not a test: prints medians).
//
//   npm run build && node bench/ws-rewrite.mjs [--messages 2000] [--runs 5]
//
// In-process, no network: client frames (masked, each text message in two fragments) go through
//   rewrite:  wsClientRewriter (parse, unmask, buffer, substitute a bound placeholder, re-mask)
//   bare:     a PassThrough (what the relay does without the opt-in)
// for 1 KiB and 64 KiB messages. Reported per size: the median per-message time of each over the
// runs and the added time per message.
import { PassThrough } from 'node:stream'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadavg } from 'node:os'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const args = process.argv.slice(2)
const opt = (k, d) => (args.includes(k) ? Number(args[args.indexOf(k) + 1]) : d)
const N = opt('--messages', 2000)
const RUNS = opt('--runs', 5)
const { wsClientRewriter, encodeFrame } = await import(join(ROOT, 'dist/gateway/http/websocket-rewrite.js'))
const median = xs => [...xs].sort((a, b) => a - b)[xs.length >> 1]
const P = 'ghp_' + 'P'.repeat(36)
const V = 'ghp_' + 'v'.repeat(36)
const creds = [{ provider: 'gh', variable: 'GITHUB_TOKEN', placeholder: P, value: V }]

async function once(make, size) {
  const body = Buffer.alloc(size, 0x61)
  Buffer.from(P).copy(body, 10)
  const half = size >> 1
  const input = Buffer.concat([encodeFrame(1, body.subarray(0, half), true, false), encodeFrame(0, body.subarray(half), true)])
  const t = make()
  let got = 0
  t.on('data', d => (got += d.length))
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < N; i++) if (!t.write(input)) await new Promise(r => t.once('drain', r))
  t.end()
  await new Promise(r => t.once('end', r))
  return Number(process.hrtime.bigint() - t0) / 1e3 / N
}

const rewrite = () => wsClientRewriter({ credentials: () => creds, bound: () => true, violation: (c, r) => { throw new Error(`${c} ${r}`) } })
const bare = () => new PassThrough()
for (const size of [1024, 64 * 1024]) {
  const a = []
  const b = []
  for (let r = 0; r < RUNS; r++) {
    a.push(await once(rewrite, size))
    b.push(await once(bare, size))
  }
  console.log(`${size / 1024} KiB messages: rewrite ${median(a).toFixed(1)} µs/message, bare ${median(b).toFixed(1)} µs/message, added ${(median(a) - median(b)).toFixed(1)} µs (median of ${RUNS} runs × ${N} messages; load ${loadavg()[0].toFixed(1)})`)
}
