#!/usr/bin/env node
// Writes docs/security-report.md from the last test run:
//   test-results/vitest.json       vitest's JSON reporter (vitest.config.ts): every attack test with
//                                  its status and the `observed` / `control` metadata it recorded
//   test-results/faults.json       figures written by test/e2e/fault-*.test.ts
//   test-results/load.json         figures written by test/e2e/load-*.test.ts
//   test-results/policy-fuzz.json  figures written by test/unit/policy-fuzz.test.ts
//
//   npm run security-report                 (after `npm test`, or a vitest run of the e2e files)
//   node scripts/security-report.mjs --check  exits 1 when an attack test failed or is missing
//
// The attack tests name themselves `#N <attack> → <expected>` (N = the case in
// research/peers.md §14); that convention is all this script relies on.
import { readFileSync, writeFileSync, existsSync, mkdirSync, readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { dirname, join, basename } from 'node:path'
import { release, cpus } from 'node:os'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const RESULTS = join(ROOT, 'test-results')
const OUT = join(ROOT, 'docs', 'security-report.md')

/** The bypass catalogue (research/peers.md §14), short names. */
const CASES = {
  1: 'Direct TCP with the proxy variables removed',
  2: 'Direct connect to an allowed host, bypassing the proxy',
  3: 'Raw IP literal through the proxy, and without SNI',
  4: 'Alternate IP spellings canonicalised before policy',
  5: 'Hostname case and trailing-dot variants',
  6: 'Wildcard edges (apex, depth, lookalikes)',
  7: 'Allowed host on a forbidden port',
  8: 'Non-HTTP protocol to an allowed host',
  9: 'DNS to an arbitrary resolver',
  10: 'DNS tunnelling through the permitted resolver',
  11: 'DoH / DoT / mDNS bypass',
  12: 'DNS rebinding to loopback, private, metadata, v4-mapped forms',
  13: 'Resolve-then-connect race; client-pinned addresses',
  14: 'SNI spoofing and domain fronting',
  15: 'Cloud metadata endpoints',
  16: 'Loopback and host services',
  17: 'RFC 1918 lateral movement',
  18: 'IPv6 egress',
  19: 'UDP / QUIC',
  20: 'ICMP',
  21: 'The proxy or a sidecar as a relay',
  22: 'Unauthenticated use of the proxy; SOCKS',
  23: 'Request smuggling',
  24: 'L7 method bypass',
  25: 'curl --connect-to / --resolve pinning',
  26: 'Empty allowlist means deny all',
  27: 'Fail closed when the gateway or bridge is dead',
  28: 'Kill or replace the relay from inside',
  29: 'Firewall / route tampering',
  30: 'Writes outside the allowed roots',
  31: 'Symlink escapes',
  32: 'Replacing a protected dir with a symlink',
  33: 'Hard links to sensitive files',
  34: 'Rename / move bypass',
  35: 'Persistence and hook files in a writable repo',
  36: 'Creating not-yet-existing protected files',
  37: 'Reading credential files',
  38: 'Glob-denied secrets in the workspace (.ai-read-deny)',
  39: 'A read-denied dir masked by a writable tmpfs',
  40: 'Mount ordering',
  41: 'Device nodes and setuid escalation',
  42: 'Host PIDs visible through /proc',
  43: 'ptrace / process_vm_* / /proc/N/mem against a helper',
  44: 'umount /proc; capabilities; namespaces',
  45: 'io_uring and other unprivileged kernel surface',
  46: 'AF_UNIX access to host daemons',
  47: 'Inherited file descriptors / SCM_RIGHTS',
  48: '32-bit syscalls, AF_VSOCK, AF_NETLINK',
  49: 'Orphan processes; interrupted lifecycle',
  50: 'Missing or malformed seccomp profile',
  51: 'Rewriting host-owned helper files',
  52: 'Core dumps',
  53: 'Secrets readable inside the sandbox',
  54: 'Credential sent to a host outside the policy',
  55: 'Credential injection over cleartext HTTP',
  56: 'Spoofing the control environment',
  57: 'Policy self-edit from inside',
  58: 'Misspelled keys and missing policy fail closed',
}

/**
 * Cases this design cannot block, or where a test cannot be the whole answer. Shown as such,
 * never as a passing test.
 */
const NOT_BLOCKED = {
  10: 'Not applicable as stated: the sandbox has no resolver at all (its network namespace has only `lo`; #9). Residual: the gateway resolves the names of requests the policy allows, so with a wildcard endpoint (`*.example.com`) an agent can choose the first label of names the gateway looks up — a DNS query for `<data>.example.com` leaves through the gateway\'s resolver. Keep wildcards narrow.',
  14: 'Partially blocked: on endpoints the gateway inspects (L7 `protocol: rest`/`websocket`, not `tls: skip`) it terminates TLS, so a ClientHello whose SNI is not the CONNECT host fails the handshake and a request whose Host names another site gets 403 `policy_denied` — both logged (tls-inspection.test.ts #14). On tunnelled endpoints (L4, `tls: skip`) the gateway reads the ClientHello and closes a tunnel whose SNI is not the CONNECT host, logged (tls-inspection.test.ts #14, gateway-tls unit test). Residual: inside such a tunnel the Host header is encrypted, so fronting with the right SNI and another site\'s Host on a shared CDN still works there; list such domains with `protocol: rest` and `access: full` to have every request checked.',
  47: 'Tested for inherited descriptors (an exec\'d process holds only stdio). SCM_RIGHTS passing needs a unix socket to a process outside the sandbox; none is reachable (#46), so there is nothing further to test.',
  53: 'In the default placeholder mode the agent holds only a same-shaped placeholder; the real value is in no file inside, no `/proc/*/environ`, not in podshell\'s data dir, output or logs (tested). With `--credential-mode env` (the explicit escape hatch, warned at create) the agent can read its real credentials from its environment, because the tool needs them; what is tested then is that they are nowhere else.',
  54: 'Partially: in placeholder mode (default) the placeholder is substituted only on its provider\'s own endpoints (host, port, path); to an allowed but unbound host or in a query to the bound host\'s other path the request is refused with 403 `credential_endpoint_mismatch` and never forwarded, and in a body without opt-in it reaches the upstream as the inert placeholder (tested). Residual: on the bound endpoint the agent can use the credential for anything that endpoint allows (the provider\'s own API); with `--credential-mode env` the real value goes wherever the policy allows.',
}

/** Residual risks found by the suite that are not in the catalogue's terms. */
const EXTRA_NOTES = [
  'A new `.mcp.json`, `.vscode/` or `.envrc` can be created in a read-write project when none existed (only existing ones, and an absent `.claude` at a repo root, are protected). The host tools that read them ask for approval before running what they name; podshell does not stop the file from being written.',
]

function readJson(name) {
  const p = join(RESULTS, name)
  if (!existsSync(p)) return undefined
  try {
    return JSON.parse(readFileSync(p, 'utf8'))
  } catch (e) {
    throw new Error(`${p}: ${e.message}`, { cause: e })
  }
}

const cell = s =>
  String(s ?? '')
    .replace(/\r?\n/g, ' ')
    .replace(/\|/g, '\\|')
    .replace(/\s+/g, ' ')
    .trim()
const clip = (s, n = 220) => (s.length > n ? `${s.slice(0, n - 1)}…` : s)

const vitest = readJson('vitest.json')
if (!vitest) {
  console.error('test-results/vitest.json is missing: run the tests first (npm test)')
  process.exit(1)
}

/**
 * The report is evidence: it is written only from a COMPLETE run — every adversarial e2e file of
 * the checkout (attack-*, fault-*, load-*) present in the results with no test failed or skipped,
 * the unit tests the issue-9 section cites present, and the fault, load and fuzz figures there.
 * A partial run (one file, a filtered run, a run that stopped) would publish a report that
 * silently lacks rows, so it writes nothing and says why in one line.
 */
function completenessProblem(v) {
  const ran = new Map((v.testResults ?? []).map(f => [basename(f.name), f]))
  const e2eDir = join(ROOT, 'test', 'e2e')
  const expected = existsSync(e2eDir) ? readdirSync(e2eDir).filter(f => /^(attack|fault|load)-.*\.test\.ts$/.test(f)) : []
  const missing = [...expected, ...ISSUE9_UNIT_FILES].filter(f => !ran.has(f))
  if (missing.length) return `the run has no results for ${missing.join(', ')}: run the whole suite (npm test) first`
  for (const f of expected) {
    const bad = (ran.get(f).assertionResults ?? []).filter(a => a.status !== 'passed')
    if (bad.length) return `${f}: ${bad.length} test(s) ${[...new Set(bad.map(a => a.status))].join('/')} (first: ${bad[0].title.slice(0, 80)}): fix them, rerun, then write the report`
  }
  for (const name of ['faults.json', 'load.json', 'policy-fuzz.json']) if (!existsSync(join(RESULTS, name))) return `test-results/${name} is missing: run the whole suite (npm test) first`
  return undefined
}
const ISSUE9_UNIT_FILES = ['rules-glob.test.ts', 'gateway-http.test.ts']
const incomplete = completenessProblem(vitest)
if (incomplete && !process.argv.includes('--check')) {
  console.error(`podshell: not writing docs/security-report.md: ${incomplete}`)
  process.exit(1)
}

/** Every test of the adversarial files, with its case number, attack and expectation. */
const tests = []
for (const file of vitest.testResults ?? []) {
  const fname = basename(file.name)
  if (!/^(attack|fault|load)-.*\.test\.ts$/.test(fname)) continue
  for (const a of file.assertionResults ?? []) {
    const m = /^#(\d+)\s+(.*?)(?:\s+→\s+(.*))?$/.exec(a.title)
    tests.push({
      file: fname,
      case: m ? Number(m[1]) : undefined,
      attack: m ? m[2] : a.title,
      expected: m?.[3] ?? '',
      status: a.status,
      ms: a.duration,
      observed: a.meta?.observed,
      control: a.meta?.control,
      failure: (a.failureMessages ?? [])[0]?.split('\n')[0],
    })
  }
}

const attacks = tests.filter(t => t.file.startsWith('attack-') && t.case !== undefined)
const numbered = tests.filter(t => t.case !== undefined)
const failed = numbered.filter(t => t.status !== 'passed')
const passed = numbered.filter(t => t.status === 'passed')

const when = new Date(vitest.startTime ?? Date.now()).toISOString().replace(/\.\d+Z$/, 'Z')
const out = []
out.push('# podshell security report')
out.push('')
out.push(`Generated by \`npm run security-report\` from the test run of ${when} (kernel ${release()}, ${cpus().length} CPUs, Node ${process.versions.node}). Do not edit by hand: rerun the tests and the script.`)
out.push('')
out.push('Every row is a test that performs the attack for real, from inside a rootless podshell sandbox created with the podshell CLI (or, for faults, against a live one), and asserts that it fails — and, where the gateway sees it, that `podshell logs` records the denial. "Observed" is what the attack actually got; "control" is what the same kernel-level attack got in a container without podshell\'s seccomp profile (same image, same uid, same empty network namespace), showing what podshell adds. Case numbers refer to the bypass catalogue in research/peers.md §14 (srt, Codex, AWF, OpenShell and others).')
out.push('')
out.push('## Summary')
out.push('')
const coveredCases = new Set(numbered.map(t => t.case))
out.push(`- **${attacks.length} attack tests** (${new Set(attacks.map(t => t.file)).size} files) plus ${numbered.length - attacks.length} numbered fault tests: **${passed.length} passed, ${failed.length} failed**.`)
out.push(`- Catalogue cases with at least one test: ${coveredCases.size} of 58; listed below as not (fully) blockable by this design: ${Object.keys(NOT_BLOCKED).length}.`)
if (failed.length) {
  out.push(`- **Failed — each is an open finding:**`)
  for (const t of failed) out.push(`  - #${t.case} ${t.attack} (${t.file}): ${clip(cell(t.failure ?? t.status), 300)}`)
}
out.push('')

out.push('## Coverage by case')
out.push('')
out.push('| Case | Catalogue entry | Tests | Passed | Failed | Note |')
out.push('|---:|---|---:|---:|---:|---|')
for (let n = 1; n <= 58; n++) {
  const ts = numbered.filter(t => t.case === n)
  const p = ts.filter(t => t.status === 'passed').length
  const f = ts.length - p
  const note = NOT_BLOCKED[n] ? 'see "Not (fully) blockable"' : ts.length === 0 ? '**no test**' : f ? '**open finding**' : ''
  out.push(`| ${n} | ${CASES[n]} | ${ts.length} | ${p} | ${f ? `**${f}**` : 0} | ${note} |`)
}
out.push('')

out.push('## Attacks')
out.push('')
for (const file of [...new Set(tests.map(t => t.file))]) {
  const rows = tests.filter(t => t.file === file)
  out.push(`### ${file}`)
  out.push('')
  out.push('| Case | Attack | Expected | Result |')
  out.push('|---:|---|---|---|')
  for (const t of rows) {
    const status = t.status === 'passed' ? 'blocked ✔' : `**${t.status.toUpperCase()}**`
    const obs = t.observed ? ` — ${clip(cell(t.observed))}` : ''
    const ctl = t.control ? ` (control: ${clip(cell(t.control), 120)})` : ''
    const why = t.status !== 'passed' && t.failure ? ` — ${clip(cell(t.failure), 200)}` : ''
    const shown = t.file.startsWith('attack-') || t.status !== 'passed' ? status : t.status === 'passed' ? 'holds ✔' : status
    out.push(`| ${t.case ?? ''} | ${cell(t.attack)} | ${cell(t.expected)} | ${shown}${obs}${ctl}${why} |`)
  }
  out.push('')
}

/** Issue 9 (the red team's findings): which tests perform each finding's attack. */
const FINDINGS = [
  [1, 'Moving a protected mount out of the way (rename an ancestor of the submodule\'s read-only .git)', (f, t) => /\[issue 9 findings? [^\]]*\b1\b/.test(t)],
  [2, 'New nested repositories and other host-executed files (.git anywhere, .envrc, editor tasks)', (f, t) => f === 'attack-host-exec.test.ts' && t.startsWith('host-executed files')],
  [3, "Every project's Claude data from any session", (f, t) => /\[issue 9 finding 3\]/.test(t)],
  [4, 'One sandbox stalls the gateway for all (ReDoS path, 8 KiB target bound)', (f, t) => /issue 9 finding 4/.test(t) || (f === 'gateway-http.test.ts' && /414|admission|queue/.test(t))],
  [5, 'Audit evidence flushed by a flood of denials', (f, t) => /AUDIT-1/.test(t)],
  [6, 'Agent settings in subdirectories renamed away', (f, t) => /\[issue 9 findings? [^\]]*\b6\b/.test(t)],
  [7, 'Host services through unix sockets in a mounted tree', (f, t) => /\[issue 9 finding 7\]/.test(t)],
  [8, 'Hostless allowed_ips endpoints resolving attacker-chosen names', (f, t) => /DNS-1/.test(t)],
  [9, 'HTTP framing and semantics (Connection: Content-Length / Host, method override)', (f, t) => f === 'attack-network.test.ts' && /^#2[34] .*(Connection: |method override)/.test(t.split(' > ').pop())],
  [10, 'exec --timeout survivors; a planted deep tree failing launches; markers in node_modules/.git', (f, t) => /\[issue 9 finding 10\]/.test(t) || t.startsWith('exec --timeout')],
  [11, 'Host resources (processes, tmpfs, disk, logs)', f => f === 'attack-limits.test.ts'],
]
const all = []
for (const file of vitest.testResults ?? []) {
  for (const a of file.assertionResults ?? []) all.push({ file: basename(file.name), full: [...(a.ancestorTitles ?? []), a.title].join(' > '), a })
}
out.push('## Issue 9: the red team\'s findings')
out.push('')
out.push('Each finding of the red-team report (issue 9) and the tests that now perform its attack for real; "observed" is what the attack got.')
out.push('')
out.push('| Finding | Test | Result |')
out.push('|---:|---|---|')
for (const [n, what, match] of FINDINGS) {
  const hits = all.filter(x => match(x.file, x.full))
  if (hits.length === 0) out.push(`| ${n} | ${cell(what)}: **no test in this run** | |`)
  for (const h of hits) {
    const ok = h.a.status === 'passed'
    const obs = h.a.meta?.observed ? ` — ${clip(cell(h.a.meta.observed))}` : ''
    out.push(`| ${n} | ${cell(what)}: ${clip(cell(h.a.title), 160)} (${h.file}) | ${ok ? 'blocked ✔' : `**${h.a.status.toUpperCase()}**`}${obs} |`)
  }
}
out.push('')

out.push('## Not (fully) blockable by this design')
out.push('')
for (const [n, why] of Object.entries(NOT_BLOCKED)) out.push(`- **#${n} ${CASES[n]}.** ${why}`)
for (const note of EXTRA_NOTES) out.push(`- ${note}`)
out.push('')

const faults = readJson('faults.json')
out.push('## Faults')
out.push('')
if (!faults) out.push('_test-results/faults.json missing: the fault tests did not run._')
else {
  const g = faults.gateway_crash
  const k = faults.gateway_kill
  const b = faults.bridge_kill
  const c = faults.create_kill
  const s = faults.state_dir
  out.push('| Fault | What happened |')
  out.push('|---|---|')
  if (g) out.push(`| Gateway process killed (-9) during a download | transfer stopped at ${g.download_mib_at_kill} MiB (curl exit ${g.curl_exit}) ${g.transfer_failed_ms} ms after the kill; no direct route meanwhile; Podman's restart policy brought the gateway back and the same sandbox had egress ${g.egress_back_ms} ms after the kill |`)
  if (k) out.push(`| Gateway container killed (\`podman kill -s KILL\`, no auto-restart) during a download | transfer stopped at ${k.download_mib_at_kill} MiB (curl exit ${k.curl_exit}); requests from inside failed closed (curl exit ${k.down_curl_exit}), \`sandbox get\` said "${cell(k.reported)}"; the next \`podshell sandbox exec\` restarted it and got through in ${k.next_command_ms} ms; same pod |`)
  if (b) out.push(`| Bridge container killed | no egress, no direct route, \`sandbox get\` said "${cell(b.reported)}"; \`sandbox restart\` → egress again in ${b.restart_to_egress_ms} ms; same pod |`)
  if (c) out.push(`| \`podshell\` killed -9 during \`sandbox create\` (${c.trials} trials, seed ${c.seed}, delays 0–1.5 s) | right after the kills: ${c.left_nothing} left nothing, ${c.left_half_made} half-made, ${c.left_complete} complete; after the next commands and \`podshell gc\` (${c.gc_ms} ms): ${c.complete} complete, ${c.removed} nothing, **${c.half_made_after_gc} half-made**, no orphaned pod, container, volume, secret or state entry |`)
  if (s) {
    if (s.eacces) out.push(`| State dir not writable (mode 0555) | \`${cell(s.eacces)}\` |`)
    if (s.erofs) out.push(`| State dir on a read-only filesystem | \`${cell(s.erofs)}\` |`)
    if (s.enospc_create) out.push(`| State dir on a full filesystem (1 MiB tmpfs), \`sandbox create\` | \`${cell(s.enospc_create)}\` |`)
    if (s.enospc_provider) out.push(`| State dir on a full filesystem, \`provider create\` | \`${cell(s.enospc_provider)}\` |`)
  }
}
out.push('')

const load = readJson('load.json')?.gateway
out.push('## Load')
out.push('')
if (!load) out.push('_test-results/load.json missing: the load test did not run._')
else {
  out.push(`${load.sandboxes} sandboxes at once, each looping allowed and denied requests (plain HTTP and CONNECT, a new connection each) through the one gateway for ${load.seconds} s, against an upstream on the same host:`)
  out.push('')
  out.push('| Figure | Value |')
  out.push('|---|---|')
  out.push(`| Requests | ${load.requests} (${load.requests_per_second}/s) |`)
  out.push(`| Allowed: succeeded / failed | ${load.allowed_ok} / **${load.allowed_fail}** |`)
  out.push(`| Denied: refused (403) / not refused | ${load.denied_refused} / **${load.denied_not_refused}** |`)
  out.push(`| Latency (one request incl. connect) | p50 ${load.p50_ms_median_of_sandboxes} ms (median sandbox), p99 ${load.p99_ms_worst_sandbox} ms (worst sandbox) |`)
  out.push(`| Gateway RSS | ${load.gateway_rss_mib.baseline} MiB before, **${load.gateway_rss_mib.peak} MiB peak**, ${load.gateway_rss_mib.after} MiB after (${load.gateway_rss_mib.samples} samples) |`)
  if (load.gateway_heap_used_mib) out.push(`| Gateway heap in use | ${load.gateway_heap_used_mib.baseline} MiB before, ${load.gateway_heap_used_mib.peak} MiB peak, ${load.gateway_heap_used_mib.after_10s_idle} MiB after 10 s idle |`)
}
out.push('')

const fuzz = readJson('policy-fuzz.json')
out.push('## Policy fuzzing')
out.push('')
if (!fuzz) out.push('_test-results/policy-fuzz.json missing: the policy fuzz test did not run._')
else {
  out.push(`${fuzz.documents} mutated policy documents (seed ${fuzz.seed}): ${fuzz.valid} valid, ${fuzz.rejected} rejected, **${fuzz.crashes} crashes**, ${fuzz.rejections_without_key_path} rejections without a key path, ${fuzz.round_trip_failures} round-trip failures. Per document p50 ${fuzz.per_document_ms?.p50} ms, p99 ${fuzz.per_document_ms?.p99} ms, max ${fuzz.per_document_ms?.max} ms; heap ${fuzz.heap_mb?.before} → ${fuzz.heap_mb?.after_gc} MiB after GC (peak sampled ${fuzz.heap_mb?.peak_sampled} MiB).`)
}
out.push('')

mkdirSync(dirname(OUT), { recursive: true })
writeFileSync(OUT, out.join('\n'))
console.log(`wrote ${OUT.replace(ROOT + '/', '')}: ${attacks.length} attack tests, ${passed.length} passed, ${failed.length} failed`)
if (process.argv.includes('--check') && (failed.length || attacks.length === 0)) process.exit(1)
