import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { cli, hostDir, uniqueName, podExists, type CliResult } from '../helpers/cli.js'

/**
 * OpenShell's documented command lines, run against podshell, with the exact lines its clients
 * parse (OpenShell's e2e harness `extract_field(output, "Created sandbox")`, its smoke test waiting
 * for `Connected`, NemoClaw reading `policy get --full` and `provider get`, …). The formats come
 * from crates/openshell-cli/src/run.rs at NVIDIA/OpenShell 2f7fb6559; a later OpenShell release is
 * a diff of this table (and of src/cli/openshell-format.ts, which renders them).
 *
 * Each row: the command line (with @N@ / @P@ / FILE placeholders), the stream, and the line
 * patterns that must appear in it (a whole line each, `^…$` with the `m` flag).
 */
interface Row {
  what: string
  argv: string[]
  stream: 'stdout' | 'stderr'
  lines: RegExp[]
  code?: number
}

const HASH12 = '[0-9a-f]{12}'
const CREATED = '\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d'

let name: string
let prov: string
let dir: string
const long = `${uniqueName('plong')}-${'x'.repeat(63)}`.slice(0, 62) + 'z' // 63 characters
const P1 = 'version: 1\nnetwork_policies:\n  a:\n    name: a\n    endpoints:\n      - { host: api.example.test, port: 443 }\n'
const P2 = P1.replace('api.example.test', 'api2.example.test')

const fill = (argv: string[]) => argv.map(a => a.replace('@N@', name).replace('@P@', prov).replace('FILE1', join(dir, 'p1.yaml')).replace('FILE2', join(dir, 'p2.yaml')))
const re = (s: string) => new RegExp(`^${s}$`, 'm')

beforeAll(async () => {
  dir = hostDir('parity')
  writeFileSync(join(dir, 'p1.yaml'), P1)
  writeFileSync(join(dir, 'p2.yaml'), P2)
  name = uniqueName('parity')
  prov = uniqueName('pprov')
})

afterAll(async () => {
  await cli(['policy', 'delete', '--global'])
  await cli(['sandbox', 'delete', name])
  await cli(['sandbox', 'delete', long])
  await cli(['provider', 'delete', prov, '--force'])
})

describe('OpenShell command lines and the lines clients parse', () => {
  // Order matters: each row runs on the state the rows before it made.
  const rows: Row[] = [
    { what: 'status (clients wait for Connected)', argv: ['status'], stream: 'stdout', lines: [re('Server Status'), re('  Status: Connected'), re('  Version: .+')] },
    {
      what: 'sandbox create --detach prints Created sandbox: NAME',
      argv: ['sandbox', 'create', '--name', '@N@', '--label', 'team=parity', '--policy', 'FILE1', '--detach', '--', 'sleep', 'infinity'],
      stream: 'stdout',
      lines: [re('Created sandbox: @N@')],
    },
    { what: 'sandbox list: header and row', argv: ['sandbox', 'list', '--selector', 'team=parity'], stream: 'stdout', lines: [re('NAME +CREATED +PHASE'), re(`@N@  ${CREATED}  Ready`)] },
    { what: 'sandbox list --names --limit --offset', argv: ['sandbox', 'list', '--selector', 'team=parity', '--names', '--limit', '1', '--offset', '0'], stream: 'stdout', lines: [re('@N@')] },
    {
      what: 'sandbox get: key/value block',
      argv: ['sandbox', 'get', '@N@'],
      stream: 'stdout',
      lines: [re('Sandbox:'), re('  Id: \\S+'), re('  Name: @N@'), re('  Phase: Ready'), re('  Labels: '), re('    team: parity'), re('  Policy source: sandbox'), re('  Revision: 1'), re('Policy:'), re('  version: 1')],
    },
    { what: 'sandbox exec --no-login-shell', argv: ['sandbox', 'exec', '-n', '@N@', '--no-login-shell', '--', 'echo', 'hi'], stream: 'stdout', lines: [re('hi')] },
    { what: 'policy set: submitted (hash: H)', argv: ['policy', 'set', '@N@', '--policy', 'FILE2', '--wait'], stream: 'stderr', lines: [re(`✓ Policy version 2 submitted \\(hash: ${HASH12}\\)`), re('✓ Policy version 2 loaded \\(active version: 2\\)')] },
    { what: 'policy set again: unchanged, same version', argv: ['policy', 'set', '@N@', '--policy', 'FILE2', '--wait'], stream: 'stderr', lines: [re(`· Policy unchanged \\(version 2, hash: ${HASH12}\\)`)] },
    { what: 'policy get --full: header, ---, YAML', argv: ['policy', 'get', '@N@', '--full'], stream: 'stdout', lines: [re('Version: {6}2'), re('Hash: {9}[0-9a-f]{64}'), re('Status: {7}Effective'), re('---'), re('      - host: api2.example.test')] },
    { what: 'policy list', argv: ['policy', 'list', '@N@'], stream: 'stdout', lines: [re('VERSION  HASH           STATUS       CREATED                  ERROR'), re(`2 +${HASH12} +Loaded +\\d{13}`), re(`1 +${HASH12} +Superseded +\\d{13}`)] },
    { what: 'sandbox get --policy-only: only the YAML', argv: ['sandbox', 'get', '@N@', '--policy-only'], stream: 'stdout', lines: [re('version: 1'), re('      - host: api2.example.test')] },
    { what: 'provider create', argv: ['provider', 'create', '--name', '@P@', '--type', 'generic', '--credential', 'PARITY_TOKEN=parity-value-1234'], stream: 'stdout', lines: [re('✓ Created provider @P@')] },
    { what: 'provider create again: AlreadyExists', argv: ['provider', 'create', '--name', '@P@', '--type', 'generic', '--credential', 'PARITY_TOKEN=parity-value-1234'], stream: 'stderr', lines: [/AlreadyExists/], code: 1 },
    { what: 'provider get: Credential keys / Config keys', argv: ['provider', 'get', '@P@'], stream: 'stdout', lines: [re('Provider:'), re('  Name: @P@'), re('  Type: generic'), re('  Credential keys: PARITY_TOKEN'), re('  Config keys: <none>')] },
    { what: 'policy set --global', argv: ['policy', 'set', '--global', '--policy', 'FILE1', '--yes'], stream: 'stderr', lines: [re(`✓ Global policy configured \\(hash: ${HASH12}, settings revision: \\d+\\)`)] },
    { what: 'policy get --global', argv: ['policy', 'get', '--global'], stream: 'stdout', lines: [re('Scope: {8}global'), re('Version: {6}\\d+'), re('Hash: {9}[0-9a-f]{64}'), re('Status: {7}Loaded')] },
    { what: 'policy list --global', argv: ['policy', 'list', '--global'], stream: 'stdout', lines: [re('VERSION  HASH           STATUS       CREATED                  ERROR'), re(`\\d+ +${HASH12} +Loaded +\\d{13}`)] },
    { what: 'policy get NAME with a global policy: Source global', argv: ['policy', 'get', '@N@'], stream: 'stdout', lines: [re('Status: {7}Effective'), re('Source: {7}global'), re('Global: {7}\\d+')] },
    { what: 'policy delete --global', argv: ['policy', 'delete', '--global', '--yes'], stream: 'stdout', lines: [re('✓ Deleted global setting policy \\(revision \\d+\\)')] },
    { what: 'sandbox stop', argv: ['sandbox', 'stop', '@N@'], stream: 'stdout', lines: [re('✓ Stopped sandbox @N@')] },
    { what: 'sandbox start', argv: ['sandbox', 'start', '@N@'], stream: 'stdout', lines: [re('✓ Started sandbox @N@')] },
    { what: 'sandbox delete', argv: ['sandbox', 'delete', '@N@'], stream: 'stdout', lines: [re('✓ Deleted sandbox @N@')] },
  ]

  for (const row of rows) {
    it(`${row.what}: podshell ${row.argv.join(' ')}`, async () => {
      const r: CliResult = await cli(fill(row.argv))
      expect(r.code, r.stderr).toBe(row.code ?? 0)
      const text = r[row.stream]
      for (const l of row.lines) expect(text).toMatch(new RegExp(l.source.replace(/@N@/g, name).replace(/@P@/g, prov), l.flags))
    })
  }

  it('sandbox get -o json and list -o json have OpenShell\'s keys; created_at as OpenShell prints it', async () => {
    const n = uniqueName('pjson')
    expect((await cli(['sandbox', 'create', '--name', n, '--detach'])).code).toBe(0)
    try {
      const g = JSON.parse((await cli(['sandbox', 'get', n, '-o', 'json'])).stdout)
      for (const k of ['id', 'name', 'workspace', 'labels', 'annotations', 'resource_version', 'created_at', 'phase', 'current_policy_version', 'policy_source', 'revision', 'policy']) expect(g).toHaveProperty(k)
      expect(g.created_at).toMatch(new RegExp(`^${CREATED}$`))
      const l = JSON.parse((await cli(['sandbox', 'list', '-o', 'json'])).stdout) as { name: string }[]
      expect(l.find(x => x.name === n)).toMatchObject({ name: n, workspace: 'default', phase: 'Ready' })
      const pj = JSON.parse((await cli(['policy', 'get', n, '--full', '-o', 'json'])).stdout)
      expect(pj).toMatchObject({ scope: 'sandbox', sandbox: n, status: 'effective', policy_source: 'sandbox', version: 1, active_version: 1 })
      expect(pj.hash).toMatch(/^[0-9a-f]{64}$/)
      expect(pj.policy).toMatchObject({ version: 1 })
    } finally {
      await cli(['sandbox', 'delete', n])
    }
  })

  it('a foreground create says Created sandbox: NAME on stderr and keeps stdout the command\'s', async () => {
    const n = uniqueName('pfg')
    const r = await cli(['sandbox', 'create', '--name', n, '--no-keep', '--', 'echo', 'only-this'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe('only-this\n')
    expect(r.stderr).toMatch(new RegExp(`^Created sandbox: ${n}$`, 'm'))
  })

  it('sandbox create with no name: the generated name is in the Created sandbox: line', async () => {
    const r = await cli(['sandbox', 'create', '--detach'])
    expect(r.code, r.stderr).toBe(0)
    const m = /^Created sandbox: (\S+)$/m.exec(r.stdout)
    expect(m).not.toBeNull()
    expect(await podExists(m![1]!)).toBe(true)
    expect((await cli(['sandbox', 'delete', m![1]!])).stdout).toBe(`✓ Deleted sandbox ${m![1]}\n`)
  })

  it('a 63-character name (a DNS label) works end to end, egress gateway included; 64 is refused in one line', async () => {
    expect(long).toHaveLength(63)
    const r = await cli(['sandbox', 'create', '--name', long, '--detach'])
    expect(r.code, r.stderr).toBe(0)
    const e = await cli(['sandbox', 'exec', '-n', long, '--', 'sh', '-c', 'hostname; curl -s -o /dev/null -w "%{http_code}" http://denied.example.test/'])
    expect(e.stdout).toBe(`${long}\n403`)
    expect((await cli(['sandbox', 'delete', long])).code).toBe(0)
    const bad = await cli(['sandbox', 'create', '--name', long + 'y', '--detach'])
    expect(bad.code).toBe(2)
    expect(bad.stderr.trim().split('\n')).toHaveLength(1)
    expect(bad.stderr).toMatch(/1-63 characters/)
    expect(await podExists(long + 'y')).toBe(false)
  })

  it('completions bash is a completion script for every verb', async () => {
    const r = await cli(['completions', 'bash'])
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^complete -o default -F _podshell_complete podshell$/m)
    for (const v of ['sandbox', 'policy', 'provider', 'status', 'logs']) expect(r.stdout).toContain(`${v}=${v}`)
  })

  it('sandbox get --policy-only is YAML only (parses as the policy)', async () => {
    const n = uniqueName('ppol')
    expect((await cli(['sandbox', 'create', '--name', n, '--policy', join(dir, 'p1.yaml'), '--detach'])).code).toBe(0)
    try {
      const r = await cli(['sandbox', 'get', n, '--policy-only'])
      expect(parse(r.stdout)).toMatchObject({ version: 1, network_policies: { a: { endpoints: [{ host: 'api.example.test', port: 443 }] } } })
    } finally {
      await cli(['sandbox', 'delete', n])
    }
  })
})
