// Helpers every bench shares (not a bench itself).
import { execFile } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { networkInterfaces } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')

const args = process.argv.slice(2)

/** The number after flag `k` on the command line, or `d`. */
export const opt = (k, d) => (args.includes(k) ? Number(args[args.indexOf(k) + 1]) : d)

/** The median (the mean of the two middle values for an even count). */
export function median(xs) {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

/**
 * The test network's address (PODSHELL_TEST_ADDR, default 198.18.0.2) when this process runs in
 * the test network namespace (scripts/test-netns.sh), else undefined: bench upstreams bind only
 * there, never to this machine's LAN address.
 */
export function testAddress() {
  const want = process.env.PODSHELL_TEST_ADDR ?? '198.18.0.2'
  return Object.values(networkInterfaces()).flat().find(i => i && i.family === 'IPv4' && i.address === want)?.address
}

/**
 * Runs `code` in a child Node (`-e`, an ES module with `esm`) with `argv`, so client work never
 * sits on the bench's (gateway's) event loop; resolves with the JSON of its last stdout line.
 */
export function runClient(code, argv, { env = process.env, esm = false } = {}) {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [...(esm ? ['--input-type=module'] : []), '-e', code, ...argv], { env, maxBuffer: 16 << 20, timeout: 300_000 }, (e, stdout, stderr) => {
      if (e) reject(new Error(`client ${argv.slice(0, 3).join(' ')} failed: ${stderr || e.message}`))
      else resolve(JSON.parse(stdout.trim().split('\n').pop()))
    })
  })
}

/**
 * Sandbox `name` in an in-process gateway's data dir, as podshell leaves it: its dirs, the trust
 * bundle (the data dir's CA + the upstream test CA `caFile`), a policy and, when given, providers.
 */
export async function benchSandbox(data, name, { caFile, policyText, providers }) {
  const d = p => import(join(ROOT, 'dist', p))
  const { ensureCa } = await d('tls/ca.js')
  const { writeUpstreamRoots, prepareSandboxTrust } = await d('tls/trust.js')
  const { PolicyStore } = await d('policy/store.js')
  const { parsePolicyText } = await d('policy/parse.js')
  const paths = await d('config/paths.js')
  const ca = await ensureCa(data, { user: 'bench', host: 'bench' })
  const roots = writeUpstreamRoots(data, { hostBundle: undefined, extraCaFiles: [caFile] })
  for (const dd of [paths.sandboxDir(data, name), paths.sandboxPolicyDir(data, name), paths.sandboxEgressDir(data, name), paths.sandboxAuditDir(data, name)]) mkdirSync(dd, { recursive: true })
  prepareSandboxTrust(data, name, ca, roots)
  if (providers) writeFileSync(paths.sandboxProvidersFile(data, name), JSON.stringify(providers))
  new PolicyStore(paths.sandboxPolicyDir(data, name)).add(parsePolicyText(policyText, 'bench').policy, 'bench')
}
