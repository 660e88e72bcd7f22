import { describe, it, expect } from 'vitest'
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml'
import { PolicyError } from '../../src/policy/schema.js'
import { parsePolicyText } from '../../src/policy/parse.js'
import { policyHash, policyToYaml, unenforcedWarnings } from '../../src/policy/document.js'
import { prng } from '../helpers/prng.js'

/**
 * Fuzzing the policy parser (issue requirement): documents mutated from the OpenShell fixtures go
 * through parsePolicyText. Properties checked for every document:
 *   - no crash: the only error ever thrown is PolicyError;
 *   - every rejection names a key path or a document-level reason, on one line;
 *   - every accepted document round-trips through canonical YAML to the same hash, and
 *     unenforcedWarnings() handles it;
 * and for the whole run: no hang (the test timeout), bounded heap growth. Counts, timing and heap
 * numbers go to test-results/policy-fuzz.json for the security report.
 */

const SEED = Number(process.env.PODSHELL_FUZZ_SEED ?? 0x5eed_cafe)
/** Documents per run: 10,000 by default; PODSHELL_FUZZ_COUNT runs fewer (a quick local run) or more. */
const COUNT = fuzzCount(process.env.PODSHELL_FUZZ_COUNT)
/**
 * Below this many documents the valid/rejected mix is not checked: a short run may see only one kind.
 * The test's timeout (the "no hang" bound) grows with COUNT: 60 ms a document, at least 300 s
 * (10,000 documents take ~130 s on an idle 2-core machine, over 300 s on a busy one).
 */
const MIX_MIN = 1000
const TIMEOUT_MS = Math.max(300_000, COUNT * 60)
const fixturesDir = process.env.PODSHELL_FIXTURES_DIR ?? fileURLToPath(new URL('../fixtures/openshell-policies/', import.meta.url))

function fuzzCount(raw: string | undefined): number {
  if (raw === undefined || raw === '') return 10_000
  const n = Number(raw)
  if (!Number.isSafeInteger(n) || n < 1)
    throw new Error(`PODSHELL_FUZZ_COUNT=${JSON.stringify(raw)}: must be a whole number of documents >= 1 (default 10000)`)
  return n
}
const resultsFile = fileURLToPath(new URL('../../test-results/policy-fuzz.json', import.meta.url))

const rand = prng(SEED)
const int = (n: number) => Math.floor(rand() * n)
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!
const chance = (p: number) => rand() < p

const UNICODE = [
  'é',
  'ß',
  'Ω',
  '中文',
  '🙂',
  '\u200b',
  '\u202e',
  '\u0000',
  '\u001b[31m',
  '\n',
  '\t',
  'ﬁ',
  'İ',
  '\ud83d',
  '𝒳',
  ' ',
  '\u2028',
  '"',
  "'",
  ':',
  '#',
  '&',
  '*',
  '!',
  '{',
  '}',
  '[',
  ']',
  ',',
  '|',
  '>',
  '%',
  '@',
  '`',
]
const KEYS = [
  'version',
  'filesystem_policy',
  'network_policies',
  'endpoints',
  'binaries',
  'host',
  'port',
  'ports',
  'protocol',
  'rules',
  'allow',
  'method',
  'path',
  'access',
  'enforcement',
  'tls',
  'allowed_ips',
  'deny_rules',
  'process',
  'run_as_user',
  'landlock',
  'mcp',
  'network_middlewares',
  '__proto__',
  'constructor',
  'toString',
  '<<',
]
const HOSTS = [
  '*',
  '**',
  '*.com',
  '**.com',
  '*.example.com',
  'a.*.example.com',
  'a.b*.example.com',
  '*-x.example.com',
  '',
  ' ',
  'exa mple.com',
  '10.0.0.1',
  '::1',
  'localhost',
  'x'.repeat(300),
  'a..b.com',
  'a.com.',
  '{a,b}.example.com',
]
const IPS = [
  '127.0.0.1',
  '10.0.0.0/8',
  '0.0.0.0/0',
  '169.254.169.254',
  '::1',
  'fe80::1',
  '::ffff:127.0.0.1',
  '10.0.0.0/33',
  'abc',
  '1.2.3.4/0',
  '192.168.0.0/16',
  '',
  '::/0',
  '2001:db8::/32',
]

function randomScalar(): unknown {
  switch (int(14)) {
    case 0:
      return int(70000) - 1000
    case 1:
      return pick([0, -1, 65535, 65536, 70000, 2 ** 31, 2 ** 53, 1e300, 0.5, -0])
    case 2:
      return pick([true, false, null])
    case 3:
      return pick(['', ' ', '0', 'root', 'sandbox', '4294967295', '4294967294', '/', '..', '/a/../b', 'relative/path'])
    case 4:
      return pick(HOSTS)
    case 5:
      return pick(IPS)
    case 6:
      return Array.from({ length: 1 + int(6) }, () => pick(UNICODE)).join('')
    case 7:
      return pick(['rest', 'tcp', 'mcp', 'json-rpc', 'graphql', 'sql', 'websocket', 'REST', 'grpc'])
    case 8:
      return pick(['read-only', 'read-write', 'full', 'audit', 'enforce', 'skip', 'terminate', 'best_effort', 'hard_requirement'])
    case 9:
      return pick(['GET', 'POST', '*', 'tools/call', 'tools/*', 'WEBSOCKET_TEXT', '/**', '**', '/x[', '/{a'])
    case 10:
      return []
    case 11:
      return {}
    case 12:
      return `/${'a'.repeat(chance(0.1) ? 4000 + int(200) : int(300))}`
    default:
      return `s${int(1000)}`
  }
}

function randomValue(depth = 0): unknown {
  if (depth > 3 || chance(0.6)) return randomScalar()
  if (chance(0.5)) return Array.from({ length: int(4) }, () => randomValue(depth + 1))
  const o: Record<string, unknown> = {}
  for (let i = 0; i < int(4); i++) o[chance(0.7) ? pick(KEYS) : `k${int(50)}`] = randomValue(depth + 1)
  return o
}

type Slot = { parent: Record<string, unknown> | unknown[]; key: string | number }

function slots(root: unknown): Slot[] {
  const out: Slot[] = []
  const stack: unknown[] = [root]
  while (stack.length) {
    const v = stack.pop()
    if (Array.isArray(v))
      v.forEach((c, i) => {
        out.push({ parent: v, key: i })
        stack.push(c)
      })
    else if (v && typeof v === 'object')
      for (const [k, c] of Object.entries(v)) {
        out.push({ parent: v as Record<string, unknown>, key: k })
        stack.push(c)
      }
  }
  return out
}

const maps = (root: unknown) =>
  slots(root)
    .map(s => (s.parent as Record<string | number, unknown>)[s.key])
    .filter(v => v && typeof v === 'object' && !Array.isArray(v)) as Record<string, unknown>[]

function misspell(k: string): string {
  if (k.length === 0) return 'x'
  const i = int(k.length)
  switch (int(5)) {
    case 0:
      return k.slice(0, i) + k.slice(i + 1)
    case 1:
      return k.slice(0, i) + pick(['x', '_', '-', 'e', 's']) + k.slice(i)
    case 2:
      return i + 1 < k.length ? k.slice(0, i) + k[i + 1] + k[i] + k.slice(i + 2) : k + 's'
    case 3:
      return k.toUpperCase()
    default:
      return k + pick(UNICODE)
  }
}

function nest(depth: number): unknown {
  let v: unknown = randomScalar()
  for (let i = 0; i < depth; i++) v = chance(0.5) ? [v] : { [pick(KEYS)]: v }
  return v
}

/** Object-level mutations; each returns the strategy name. */
const objectMutations: Record<string, (doc: Record<string, unknown>) => void> = {
  swapType(doc) {
    const all = slots(doc)
    if (!all.length) return
    const s = pick(all)
    ;(s.parent as Record<string | number, unknown>)[s.key] = randomValue()
  },
  misspellKey(doc) {
    const m = maps(doc).concat(doc)
    const o = pick(m)
    const ks = Object.keys(o)
    if (!ks.length) return
    const k = pick(ks)
    const v = o[k]
    delete o[k]
    o[misspell(k)] = v
  },
  addKey(doc) {
    const o = pick(maps(doc).concat(doc))
    o[chance(0.5) ? pick(KEYS) : misspell(pick(KEYS))] = randomValue()
  },
  deleteKey(doc) {
    const o = pick(maps(doc).concat(doc))
    const ks = Object.keys(o)
    if (ks.length) delete o[pick(ks)]
  },
  deepNesting(doc) {
    const all = slots(doc)
    const depth = pick([10, 40, 70, 150])
    if (!all.length) doc.x = nest(depth)
    else {
      const s = pick(all)
      ;(s.parent as Record<string | number, unknown>)[s.key] = nest(depth)
    }
  },
  hugeArray(doc) {
    const n = pick([100, 300, 1000, 2500, 12000])
    const gen = pick([
      () => `/p${int(1e6)}`,
      () => int(70000),
      () => ({ host: `h${int(1e6)}.example.com`, port: 443 }),
      () => ({ path: `/usr/bin/b${int(1e4)}` }),
      () => pick(IPS),
    ])
    const arr = Array.from({ length: n }, gen)
    const targets: [string[], unknown][] = [
      [['filesystem_policy', 'read_only'], arr],
      [['network_policies', 'fz', 'endpoints'], arr],
      [['network_policies', 'fz', 'binaries'], arr],
    ]
    const [path, value] = pick(targets)
    let o = doc as Record<string, unknown>
    for (const k of path.slice(0, -1)) o = (o[k] && typeof o[k] === 'object' ? o[k] : (o[k] = {})) as Record<string, unknown>
    o[path.at(-1)!] = value
  },
  unicode(doc) {
    const all = slots(doc)
    if (!all.length) return
    const s = pick(all)
    if (chance(0.5) && !Array.isArray(s.parent)) {
      const v = (s.parent as Record<string, unknown>)[s.key as string]
      delete (s.parent as Record<string, unknown>)[s.key as string]
      ;(s.parent as Record<string, unknown>)[`${s.key}${pick(UNICODE)}`] = v
    } else (s.parent as Record<string | number, unknown>)[s.key] = Array.from({ length: 1 + int(8) }, () => pick(UNICODE)).join('')
  },
  duplicateItems(doc) {
    const arrays = slots(doc)
      .map(s => (s.parent as Record<string | number, unknown>)[s.key])
      .filter(Array.isArray) as unknown[][]
    if (!arrays.length) return
    const a = pick(arrays)
    if (a.length) for (let i = 0; i < 1 + int(5); i++) a.push(structuredClone(a[int(a.length)]))
  },
  boundaryEndpoint(doc) {
    const np = (
      doc.network_policies && typeof doc.network_policies === 'object' ? doc.network_policies : (doc.network_policies = {})
    ) as Record<string, unknown>
    const ep: Record<string, unknown> = { host: pick(HOSTS), port: pick([0, 1, 443, 65535, 65536, -1]) }
    if (chance(0.5)) ep.ports = Array.from({ length: int(4) }, () => pick([0, 80, 443, 70000]))
    if (chance(0.5)) ep.protocol = pick(['rest', 'tcp', 'mcp', 'json-rpc', 'graphql', 'sql', 'websocket'])
    if (chance(0.4)) ep.access = pick(['read-only', 'read-write', 'full'])
    if (chance(0.4)) ep.rules = chance(0.3) ? [] : [{ allow: { method: pick(['GET', '*', 'tools/call']), path: pick(['/x', '**', 'x']) } }]
    if (chance(0.3)) ep.deny_rules = chance(0.3) ? [] : [{ method: 'POST', path: '/x' }]
    if (chance(0.3)) ep.allowed_ips = [pick(IPS), pick(IPS)]
    if (chance(0.2)) ep.enforcement = pick(['enforce', 'audit'])
    if (chance(0.2)) ep.tls = pick(['skip', 'terminate'])
    np[`b${int(100)}`] = { endpoints: [ep], binaries: [{ path: '/usr/bin/curl' }] }
  },
  boundaryProcessFs(doc) {
    doc.process = {
      run_as_user: pick(['0', 'root', 'sandbox', '1', '4294967294', '4294967295', '-1', '+5', '']),
      run_as_group: pick(['sandbox', '0']),
    }
    doc.filesystem_policy = {
      read_only: [pick(['/', '/usr', 'usr', '/a/../b', ''])],
      read_write: [pick(['/', '///', '/tmp', '/tmp/..'])],
      include_workdir: pick([true, false, 'yes']),
    }
  },
  middlewares(doc) {
    const n = int(14)
    const m: Record<string, unknown> = {}
    for (let i = 0; i < n; i++)
      m[`m${i}`] = {
        middleware: pick(['x', '']),
        order: chance(0.3) ? 1 : i,
        endpoints: chance(0.2) ? undefined : { include: [pick(['*.example.com', '', '{a,b}.x.com', 'a b'])] },
      }
    doc.network_middlewares = JSON.parse(JSON.stringify(m))
  },
}

/** Text-level mutations, applied to the serialized YAML. */
const textMutations: Record<string, (text: string) => string> = {
  aliasBomb(text) {
    const width = 2 + int(9)
    const depth = 2 + int(9)
    const rows = [`l0: &l0 [${Array(width).fill('"x"').join(', ')}]`]
    for (let i = 1; i < depth; i++)
      rows.push(
        `l${i}: &l${i} [${Array(width)
          .fill(`*l${i - 1}`)
          .join(', ')}]`,
      )
    return chance(0.5) ? `${text}\n${rows.join('\n')}\n` : `${rows.join('\n')}\n${text}`
  },
  aliasReuse(text) {
    return text.replace(/^(\s+)- \{ path: ([^}]+) \}/m, '$1- &anch { path: $2 }') + '\nextra_alias: *anch\n'
  },
  duplicateLine(text) {
    const lines = text.split('\n')
    const i = int(lines.length)
    lines.splice(i, 0, lines[i] ?? '')
    return lines.join('\n')
  },
  duplicateTopKey(text) {
    return `${text}\nversion: 1\n`
  },
  multiDocument(text) {
    return chance(0.5) ? `${text}\n---\n${text}` : `---\n${text}\n...\n---\nversion: 1\n`
  },
  truncate(text) {
    return text.slice(0, int(text.length + 1))
  },
  flipChars(text) {
    const chars = [...text]
    for (let i = 0; i < 1 + int(6); i++)
      chars[int(chars.length)] = pick(['{', '[', ':', '-', '&', '*', '!', '|', '"', "'", '\t', '\n', ' ', '%', '@', '`', '#'])
    return chars.join('')
  },
  flowNestingBomb(text) {
    const n = pick([100, 1000, 5000])
    return `${text}\nbomb: ${'['.repeat(n)}${']'.repeat(n)}\n`
  },
  tags(text) {
    return text.replace(/port: (\d+)/, `port: ${pick(['!!str', '!!float', '!custom', '!!binary'])} $1`)
  },
  oversized(text) {
    return `${text}\n# ${'z'.repeat(256 * 1024)}\n`
  },
}

const KEY_PATH =
  /^(\(document\)|(?:[A-Za-z_][A-Za-z0-9_-]*|\["(?:[^"\\]|\\.)*"\])(?:\.[A-Za-z_][A-Za-z0-9_-]*|\[\d+\]|\["(?:[^"\\]|\\.)*"\])*): \S/

describe('policy parser fuzzing', () => {
  it(
    `survives ${COUNT} mutated documents (seed ${SEED})`,
    async () => {
      const fixtures = readdirSync(fixturesDir)
        .filter(f => /\.ya?ml$/.test(f))
        .map(f => readFileSync(join(fixturesDir, f), 'utf8'))
      expect(fixtures.length).toBeGreaterThan(0)
      const parsedFixtures = fixtures.map(t => parseYaml(t) as Record<string, unknown>)

      setFlagsFromString('--expose-gc')
      const gc = runInNewContext('gc') as () => void
      gc()
      const heapBefore = process.memoryUsage().heapUsed
      let heapPeak = heapBefore

      const counts = { total: 0, valid: 0, rejected: 0, crashes: 0, badMessages: 0, roundTripFailures: 0 }
      const byStrategy: Record<string, { n: number; valid: number; rejected: number; parse_ms: number; bytes: number }> = {}
      const failures: string[] = []
      const durations: number[] = []
      let bytes = 0
      let slowest = { ms: 0, strategy: '', bytes: 0 }
      const objectNames = Object.keys(objectMutations)
      const textNames = Object.keys(textMutations)
      const t0 = performance.now()

      // The first documents each lead with one strategy in turn, so every strategy runs even in a
      // short run (PODSHELL_FUZZ_COUNT=50); after them the choice is random.
      const allNames = [...objectNames, ...textNames]
      for (let i = 0; i < COUNT; i++) {
        const doc = structuredClone(pick(parsedFixtures)) ?? {}
        const applied: string[] = []
        const forced = allNames[i]
        if (forced !== undefined && objectNames.includes(forced)) {
          objectMutations[forced]!(doc)
          applied.push(forced)
        }
        const rounds = forced !== undefined && textNames.includes(forced) ? 0 : 1 + int(3)
        for (let r = 0; r < rounds; r++) {
          if (chance(0.75)) {
            // Huge arrays cost the most to generate and parse (the yaml package reads ~2-3 MB/s):
            // they get a quarter of the weight of the other mutations.
            let name = pick(objectNames)
            if (name === 'hugeArray' && chance(0.75)) name = pick(objectNames)
            objectMutations[name]!(doc)
            applied.push(name)
          }
        }
        let text: string
        try {
          text = stringifyYaml(doc, { aliasDuplicateObjects: false, lineWidth: 0 })
        } catch {
          text = JSON.stringify(doc) ?? 'null'
        }
        if (applied.length === 0 || chance(0.25)) {
          const name = forced !== undefined && textNames.includes(forced) ? forced : pick(textNames)
          text = textMutations[name]!(text)
          applied.push(name)
        }
        const strategy = applied.join('+')
        const main = applied[0]!
        const stat = (byStrategy[main] ??= { n: 0, valid: 0, rejected: 0, parse_ms: 0, bytes: 0 })
        stat.n++
        counts.total++
        bytes += text.length
        stat.bytes += text.length

        const start = performance.now()
        const noteSlowest = () => {
          const ms = performance.now() - start
          if (ms > slowest.ms) slowest = { ms: +ms.toFixed(1), strategy, bytes: text.length }
        }
        try {
          const { policy, warnings } = parsePolicyText(text, `fuzz#${i}`)
          durations.push(performance.now() - start)
          stat.parse_ms += performance.now() - start
          noteSlowest()
          counts.valid++
          stat.valid++
          for (const w of warnings) if (w.includes('\n')) failures.push(`#${i} ${strategy}: multi-line warning`)
          const again = parsePolicyText(policyToYaml(policy), 'roundtrip').policy
          if (policyHash(again) !== policyHash(policy)) {
            counts.roundTripFailures++
            failures.push(`#${i} ${strategy}: canonical YAML does not round-trip`)
          }
          unenforcedWarnings(policy)
        } catch (e) {
          durations.push(performance.now() - start)
          stat.parse_ms += performance.now() - start
          noteSlowest()
          if (!(e instanceof PolicyError)) {
            counts.crashes++
            failures.push(
              `#${i} ${strategy}: crashed with ${(e as Error)?.constructor?.name}: ${String((e as Error)?.message).slice(0, 200)}`,
            )
            continue
          }
          counts.rejected++
          stat.rejected++
          const bad = e.issues.filter(msg => !KEY_PATH.test(msg) || msg.includes('\n'))
          if (e.issues.length === 0 || bad.length > 0) {
            counts.badMessages++
            failures.push(`#${i} ${strategy}: message without key path: ${JSON.stringify(bad[0] ?? '(no issues)').slice(0, 200)}`)
          }
          if (e.oneLine().includes('\n')) failures.push(`#${i} ${strategy}: multi-line error`)
        }
        if (i % 500 === 0) {
          heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed)
          // Let the test runner's RPC breathe during the long synchronous loop.
          await new Promise(r => setImmediate(r))
        }
      }

      const elapsedMs = performance.now() - t0
      heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed)
      gc()
      const heapAfter = process.memoryUsage().heapUsed
      durations.sort((a, b) => a - b)
      const q = (p: number) => Number(durations[Math.min(durations.length - 1, Math.floor(p * durations.length))]!.toFixed(3))

      const report = {
        seed: SEED,
        documents: counts.total,
        valid: counts.valid,
        rejected: counts.rejected,
        crashes: counts.crashes,
        rejections_without_key_path: counts.badMessages,
        round_trip_failures: counts.roundTripFailures,
        input_bytes: bytes,
        elapsed_ms: Math.round(elapsedMs),
        parse_ms_total: Math.round(durations.reduce((a, b) => a + b, 0)),
        per_document_ms: { p50: q(0.5), p99: q(0.99), max: q(1) },
        slowest_document: slowest,
        heap_mb: {
          before: +(heapBefore / 2 ** 20).toFixed(1),
          peak_sampled: +(heapPeak / 2 ** 20).toFixed(1),
          after_gc: +(heapAfter / 2 ** 20).toFixed(1),
          growth_after_gc: +((heapAfter - heapBefore) / 2 ** 20).toFixed(1),
        },
        by_strategy: byStrategy,
        node: process.version,
        cpus: (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? null,
        first_failures: failures.slice(0, 20),
        at: new Date().toISOString(),
      }
      mkdirSync(join(resultsFile, '..'), { recursive: true })
      writeFileSync(resultsFile, JSON.stringify(report, null, 2) + '\n')

      expect(failures.slice(0, 10)).toEqual([])
      expect(counts.total).toBe(COUNT)
      // Both outcomes, so the fuzzer is not trivially producing only garbage or only the untouched
      // fixtures; and every strategy ran (all of them once COUNT reaches their number).
      if (COUNT >= MIX_MIN) {
        expect(counts.valid).toBeGreaterThan(0)
        expect(counts.rejected).toBeGreaterThan(0)
      }
      for (const name of allNames.slice(0, COUNT)) expect(byStrategy[name]?.n ?? 0, name).toBeGreaterThan(0)
      // Bounded memory: retained heap after GC stays small however hostile the inputs were.
      expect(heapAfter - heapBefore).toBeLessThan(64 * 2 ** 20)
    },
    TIMEOUT_MS,
  )
})
