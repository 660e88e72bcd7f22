import { describe, it, expect } from 'vitest'
import {
  createdSandboxHeader,
  deletedSandboxLine,
  policyEffective,
  policyListTable,
  policyRevision,
  policySubmittedLine,
  profilesTable,
  policyUnchangedLine,
  providerGetBlock,
  providerJson,
  sandboxGetBlock,
  sandboxJson,
  sandboxListTable,
  startedSandboxLine,
  statusBlock,
  stoppedSandboxLine,
} from '../../src/cli/openshell-format.js'
import { formatCreated, table } from '../../src/cli/output.js'
import type { SandboxInfo } from '../../src/sandbox/runtime.js'
import type { PolicyRevision } from '../../src/policy/store.js'

/**
 * The lines OpenShell's clients parse, rendered from fixed inputs and compared with the text
 * OpenShell's CLI prints for the same inputs (crates/openshell-cli/src/run.rs, commands/common.rs,
 * commands/gateway.rs at NVIDIA/OpenShell 2f7fb6559, colours removed). The e2e side of the same
 * table is test/e2e/openshell-parity.test.ts.
 */
const info: SandboxInfo = {
  id: '0b3c1c8e-0000-4000-8000-000000000001',
  name: 'demo-box',
  labels: { team: 'a', env: 'dev' },
  created_at: '2026-12-03T08:41:05.123Z',
  phase: 'Ready',
  image: 'localhost/podshell-sandbox:latest',
  workdir: null,
  mounts: [],
  providers: [],
  session_type: null,
  egress: 'up',
  exit_code: null,
  main: 'idle',
  pod: 'podshell.demo-box',
}
const H = 'a'.repeat(64)
const rev: PolicyRevision = { version: 3, hash: H, created_at_ms: 1764751265123, source: 'x', status: 'LOADED', loaded_at_ms: 1764751265200 }
const doc = { policy: { version: 1 } as never, yaml: 'version: 1\n' }

describe('OpenShell formats', () => {
  it('CREATED is `YYYY-MM-DD HH:MM:SS` UTC (format_epoch_ms), from ISO or epoch ms', () => {
    expect(formatCreated('2026-12-03T08:41:05.123Z')).toBe('2026-12-03 08:41:05')
    expect(formatCreated(1764751265123)).toBe('2025-12-03 08:41:05')
    expect(formatCreated('')).toBe('-')
    expect(formatCreated('garbage')).toBe('-')
  })

  it('create / delete / stop / start lines', () => {
    expect(createdSandboxHeader('demo-box')).toBe('\nCreated sandbox: demo-box\n\n')
    expect(deletedSandboxLine('demo-box')).toBe('✓ Deleted sandbox demo-box\n')
    expect(stoppedSandboxLine('demo-box')).toBe('✓ Stopped sandbox demo-box\n')
    expect(startedSandboxLine('demo-box')).toBe('✓ Started sandbox demo-box\n')
  })

  it('sandbox list: NAME, CREATED (19 wide), PHASE, two spaces apart', () => {
    expect(sandboxListTable([info])).toBe('NAME      CREATED              PHASE\ndemo-box  2026-12-03 08:41:05  Ready\n')
  })

  it('sandbox get: the Sandbox: block with sorted labels, then podshell facts, then Policy:', () => {
    const out = sandboxGetBlock(info, { version: 3, yaml: 'version: 1\nnetwork_policies: {}\n' })
    expect(out.split('\n').slice(0, 12)).toEqual([
      'Sandbox:',
      '',
      `  Id: ${info.id}`,
      '  Name: demo-box',
      '  Phase: Ready',
      '  Resource version: 0',
      '  Labels: ',
      '    env: dev',
      '    team: a',
      '  Policy source: sandbox',
      '  Revision: 3',
      '  Created: 2026-12-03 08:41:05',
    ])
    expect(out).toContain('\nPolicy:\n\n  version: 1\n  network_policies: {}\n')
  })

  it('sandbox JSON has OpenShell\'s keys (sandbox_to_json) and keeps podshell\'s', () => {
    const j = sandboxJson(info, 3)
    expect(Object.keys(j).slice(0, 9)).toEqual(['id', 'name', 'workspace', 'labels', 'annotations', 'resource_version', 'created_at', 'phase', 'current_policy_version'])
    expect(j).toMatchObject({ created_at: '2026-12-03 08:41:05', current_policy_version: 3, image: info.image, egress: 'up' })
  })

  it('policy get (effective) header and JSON keys', () => {
    expect(policyEffective('demo-box', rev, doc, 'table', true)).toBe(
      `Version:      3\nHash:         ${H}\nStatus:       Effective\nSource:       sandbox\nConfig rev:   3\nRevision:     Loaded\n---\nversion: 1\n`,
    )
    expect(policyEffective('demo-box', rev, doc, 'table', false)).not.toContain('---')
    const j = JSON.parse(policyEffective('demo-box', rev, doc, 'json', true))
    expect(j).toMatchObject({ scope: 'sandbox', sandbox: 'demo-box', version: 3, active_version: 3, hash: H, status: 'effective', policy_source: 'sandbox', policy: { version: 1 } })
  })

  it('policy get --rev and policy list', () => {
    expect(policyRevision('demo-box', rev, 3, doc, 'table', false)).toBe(`Version:      3\nHash:         ${H}\nStatus:       Loaded\nActive:       3\nCreated:      1764751265123 ms\nLoaded:       1764751265200 ms\n`)
    expect(JSON.parse(policyRevision('demo-box', rev, 3, doc, 'json', false))).toMatchObject({ scope: 'sandbox', status: 'loaded', active_version: 3 })
    expect(policyListTable([rev])).toBe('VERSION  HASH           STATUS       CREATED                  ERROR\n3        aaaaaaaaaaaa   Loaded       1764751265123\n')
  })

  it('policy set lines', () => {
    expect(policySubmittedLine(2, H)).toBe('✓ Policy version 2 submitted (hash: aaaaaaaaaaaa)')
    expect(policyUnchangedLine(2, H)).toBe('· Policy unchanged (version 2, hash: aaaaaaaaaaaa)')
  })

  it('provider get: Credential keys / Config keys, <none> when empty; JSON credential_keys', () => {
    const p = { name: 'gh', type: 'github', credentials: ['GITHUB_TOKEN', 'GH_TOKEN'], config: {}, created_at: '2026-12-03T08:41:05Z', updated_at: '2026-12-03T08:41:05Z' }
    const out = providerGetBlock(p)
    expect(out).toContain('\n  Credential keys: GH_TOKEN, GITHUB_TOKEN\n')
    expect(out).toContain('\n  Config keys: <none>\n')
    expect(out.startsWith('Provider:\n\n  Id: gh\n  Name: gh\n  Type: github\n')).toBe(true)
    expect(providerJson(p)).toMatchObject({ name: 'gh', type: 'github', credential_keys: ['GH_TOKEN', 'GITHUB_TOKEN'] })
    // Issue 12: binding and mode per credential
    expect((providerJson(p) as { credential_bindings: unknown[] }).credential_bindings[0]).toMatchObject({ mode: 'placeholder', binding: { hosts: expect.arrayContaining(['api.github.com:443']) } })
  })

  it('status: Connected / Disconnected and OpenShell\'s JSON status names', () => {
    const base = { gateway: 'podshell-gateway', server: 'unix:///x/control.sock', podman: { version: '4.3.1', runtime: 'runc', rootless_limits: false }, container: 'running', data_dir: '/x' }
    const up = statusBlock({ ...base, connected: true, version: '0.1.0' }, 'table') as string
    expect(up.split('\n').slice(0, 7)).toEqual(['Server Status', '', '  Gateway: podshell-gateway', '  Server: unix:///x/control.sock', '  Status: Connected', '  Authentication: Not required (gateway)', '  Version: 0.1.0'])
    const down = statusBlock({ ...base, connected: false, error: 'gone' }, 'table') as string
    expect(down).toContain('  Status: Disconnected\n  Error: gone\n')
    expect(down).not.toMatch(/Connected\b(?<!Disconnected)/)
    expect(statusBlock({ ...base, connected: true }, 'json')).toMatchObject({ status: 'connected', authentication: { status: 'not_required', mode: 'gateway' } })
  })

  it('list-profiles: grouped by category in OpenShell order, ID SCOPE SOURCE NAME and the number of endpoints', () => {
    const row = (id: string, category: string, o: Partial<{ scope: string; source: string; endpoints: number; inference_capable: boolean }> = {}) => ({
      id,
      display_name: id.toUpperCase(),
      category,
      scope: o.scope ?? '',
      source: o.source ?? 'builtin',
      endpoints: o.endpoints ?? 1,
      inference_capable: o.inference_capable ?? false,
    })
    const out = profilesTable([row('github', 'source_control', { endpoints: 3 }), row('acme', 'other', { scope: 'workspace', source: 'user' }), row('nv', 'inference', { inference_capable: true })])
    expect(out).toBe(
      [
        'Available Provider Profiles:',
        '',
        '  OTHER',
        '    ID      SCOPE      SOURCE   NAME    ENDPOINTS',
        '    acme    workspace  user     ACME    1',
        '',
        '  INFERENCE',
        '    ID      SCOPE      SOURCE   NAME    ENDPOINTS',
        '    nv                 builtin  NV      1  inference',
        '',
        '  SOURCE CONTROL',
        '    ID      SCOPE      SOURCE   NAME    ENDPOINTS',
        '    github             builtin  GITHUB  3',
        '',
      ].join('\n'),
    )
    expect(profilesTable([])).toBe('No provider profiles found.\n')
  })

  it('tables are two spaces apart', () => {
    expect(table(['A', 'BB'], [['xyz', '1']])).toBe('A    BB\nxyz  1\n')
  })
})
