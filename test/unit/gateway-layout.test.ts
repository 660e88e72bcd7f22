import { describe, it, expect } from 'vitest'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { migrateGatewayView } from '../../src/gateway/layout.js'
import { gatewaySandboxDir, sandboxAuditDir, sandboxDir, sandboxEgressDir, sandboxPolicyDir, sandboxProvidersFile } from '../../src/config/paths.js'
import { sandboxTlsDir } from '../../src/tls/paths.js'

describe("the gateway's view of the data dir (layout 2)", () => {
  it('puts everything the gateway reads or writes per sandbox under <data>/gateway, and nothing else', () => {
    const d = '/d'
    for (const p of [sandboxPolicyDir(d, 's'), sandboxEgressDir(d, 's'), sandboxAuditDir(d, 's'), sandboxProvidersFile(d, 's'), sandboxTlsDir(d, 's')]) expect(p.startsWith('/d/gateway/sandboxes/s/')).toBe(true)
    expect(sandboxDir(d, 's')).toBe('/d/sandboxes/s')
  })

  it('moves a layout-1 data dir into it (same inodes: a running bridge keeps its egress mount), keeps the rest, and is idempotent', () => {
    const data = mkdtempSync(join(tmpdir(), 'pslayout-'))
    const old = join(data, 'sandboxes', 'box')
    for (const sub of ['policy', 'egress', 'audit', 'tls', 'home', 'watch']) mkdirSync(join(old, sub), { recursive: true })
    writeFileSync(join(old, 'policy', 'rev-1.yaml'), 'version: 1\n')
    writeFileSync(join(old, 'providers.json'), '[]')
    writeFileSync(join(old, 'agent.json'), '{}')
    const egressIno = statSync(join(old, 'egress')).ino
    mkdirSync(join(data, 'sandboxes', 'not a name'), { recursive: true })
    expect(migrateGatewayView(data)).toBe(5)
    expect(readFileSync(join(sandboxPolicyDir(data, 'box'), 'rev-1.yaml'), 'utf8')).toBe('version: 1\n')
    expect(statSync(sandboxEgressDir(data, 'box')).ino).toBe(egressIno)
    expect(existsSync(sandboxProvidersFile(data, 'box'))).toBe(true)
    for (const stays of ['home', 'watch', 'agent.json']) expect(existsSync(join(old, stays))).toBe(true)
    for (const moved of ['policy', 'egress', 'audit', 'tls', 'providers.json']) expect(existsSync(join(old, moved))).toBe(false)
    expect(existsSync(join(gatewaySandboxDir(data, 'box'), 'home'))).toBe(false)
    expect(migrateGatewayView(data)).toBe(0)
  })
})
