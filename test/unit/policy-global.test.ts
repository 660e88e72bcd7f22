import { describe, it, expect } from 'vitest'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { activeGlobalPolicy, effectivePolicy, globalPolicyStore, type PolicyLayer } from '../../src/policy/global.js'
import { parsePolicyText } from '../../src/policy/parse.js'
import { podInfo, type CtrJson, type PodJson } from '../../src/sandbox/sandbox-info.js'

const policy = (host: string) => parsePolicyText(`version: 1\nnetwork_policies:\n  a:\n    endpoints:\n      - { host: ${host}, port: 443 }\n`, 'test').policy
const layer = (version: number, host: string): PolicyLayer => ({ version, hash: `h${version}`, policy: policy(host) })

describe('effective policy: global layer (OpenShell: the global policy replaces the sandbox policy)', () => {
  it('no global: the sandbox policy, source sandbox', () => {
    expect(effectivePolicy(layer(3, 'own.test'), undefined)).toMatchObject({ source: 'sandbox', version: 3 })
  })
  it('a global policy replaces the sandbox policy entirely (no endpoint of the sandbox survives)', () => {
    const e = effectivePolicy(layer(3, 'own.test'), layer(1, 'global.test'))!
    expect(e.source).toBe('global')
    expect(JSON.stringify(e.policy)).not.toContain('own.test')
    expect(JSON.stringify(e.policy)).toContain('global.test')
  })
  it('a global policy applies to a sandbox that has none of its own; neither: none', () => {
    expect(effectivePolicy(undefined, layer(2, 'global.test'))).toMatchObject({ source: 'global', version: 2 })
    expect(effectivePolicy(undefined, undefined)).toBeUndefined()
  })
})

describe('global policy store: set marks in force, same policy keeps its version, delete deactivates', () => {
  it('round trip', () => {
    const data = mkdtempSync(join(tmpdir(), 'psh-glob-'))
    expect(activeGlobalPolicy(data)).toBeUndefined()
    const store = globalPolicyStore(data)
    const r1 = store.add(policy('a.test'), 'f')
    store.markLoaded(r1.version)
    expect(activeGlobalPolicy(data)).toMatchObject({ version: 1, hash: r1.hash })
    const same = store.add(policy('a.test'), 'f')
    expect(same).toMatchObject({ version: 1, unchanged: true })
    expect(store.deactivate()).toBe(true)
    expect(activeGlobalPolicy(data)).toBeUndefined()
    expect(store.deactivate()).toBe(false)
    // Set again after delete: back in force under its old version.
    store.markLoaded(store.add(policy('a.test'), 'f').version)
    expect(activeGlobalPolicy(data)).toMatchObject({ version: 1 })
    const r2 = store.add(policy('b.test'), 'f')
    store.markLoaded(r2.version)
    expect(activeGlobalPolicy(data)).toMatchObject({ version: 2 })
    expect(store.list().map(r => r.status)).toEqual(['SUPERSEDED', 'LOADED'])
  })
})

describe('phase from Podman state (OpenShell ≥ v0.0.111)', () => {
  const data = mkdtempSync(join(tmpdir(), 'psh-phase-'))
  const pod: PodJson = { Id: 'p', Name: 'podshell.s', Status: 'Running', Created: '2026-01-01T00:00:00Z', Labels: { 'io.podshell.sandbox': 's' } }
  const ctr = (State: string, ExitCode: number, main = 'command'): CtrJson[] => [
    { Id: 'a', Names: ['podshell.s.agent'], State, ExitCode, Exited: State === 'exited', Labels: { 'io.podshell.sandbox': 's', 'io.podshell.role': 'agent', 'io.podshell.main': main } },
  ]
  it('main process exit 0 → Completed, exit code 0', () => {
    expect(podInfo(data, pod, ctr('exited', 0), true)).toMatchObject({ phase: 'Completed', exit_code: 0, main: 'command' })
  })
  it('non-zero (or 128+signal) → Error with that exit code', () => {
    expect(podInfo(data, pod, ctr('exited', 3), true)).toMatchObject({ phase: 'Error', exit_code: 3 })
    expect(podInfo(data, pod, ctr('exited', 130), true)).toMatchObject({ phase: 'Error', exit_code: 130 })
  })
  it('running → Ready; an idle main process is reported as such', () => {
    expect(podInfo(data, pod, ctr('running', 0, 'idle'), true)).toMatchObject({ phase: 'Ready', exit_code: null, main: 'idle' })
  })
  it('an agent container made before the label (older podshell) counts as idle', () => {
    const c = ctr('running', 0)
    delete c[0]!.Labels!['io.podshell.main']
    expect(podInfo(data, pod, c, true)).toMatchObject({ main: 'idle' })
  })
})
