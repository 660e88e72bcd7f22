import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { cli, hostDir } from '../helpers/cli.js'
import { createSandbox, curlProxy, deleteSandboxes, hostAddress, policyFile, Upstream } from '../helpers/attack.js'

/**
 * `policy set|get|list|delete --global` on real rootless Podman, with OpenShell's semantics: the
 * global policy replaces every sandbox's own policy while it is set (a running sandbox's egress
 * changes at once), sandbox-scoped `policy set` is refused meanwhile, enterprise rules bound it,
 * and deleting it gives the sandbox its own policy back.
 */
const H = hostAddress()
let up: Upstream
let name: string
let globalFile: string

beforeAll(async () => {
  up = await Upstream.start()
  name = await createSandbox('glob') // its own policy: the default, no egress
  globalFile = policyFile({ up: [{ host: H, port: up.port }] })
})

afterAll(async () => {
  await cli(['policy', 'delete', '--global'])
  await deleteSandboxes([name])
  await up?.close()
})

describe('global policy', () => {
  it("set --global opens a running sandbox's egress at once; get/list --global and the sandbox's policy say so", async () => {
    expect((await curlProxy(name, up.url('/t/g-before'))).status).toBe(403)
    const s = await cli(['policy', 'set', '--global', '--policy', globalFile, '--yes'])
    expect(s.code, s.stderr).toBe(0)
    expect(s.stderr).toMatch(/^✓ Global policy configured \(hash: [0-9a-f]{12}, settings revision: \d+\)$/m)
    expect((await curlProxy(name, up.url('/t/g-on'))).status).toBe(200)
    expect(up.seen('/t/g-on')).toHaveLength(1)

    const g = await cli(['policy', 'get', '--global', '--full'])
    expect(g.stdout).toMatch(/^Scope: {8}global\nVersion: {6}\d+\nHash: {9}[0-9a-f]{64}\nStatus: {7}Loaded\n/)
    expect(g.stdout).toContain(`host: ${H}`)
    const gj = JSON.parse((await cli(['policy', 'get', '--global', '-o', 'json'])).stdout)
    expect(gj).toMatchObject({ scope: 'global', status: 'loaded' })
    const l = (await cli(['policy', 'list', '--global'])).stdout.trim().split('\n')
    expect(l[0]).toMatch(/^VERSION\s+HASH\s+STATUS\s+CREATED\s+ERROR$/)
    expect(l[1]).toMatch(new RegExp(`^${gj.version}\\s+${gj.hash.slice(0, 12)}\\s+Loaded\\s+\\d{13}$`))

    const eff = JSON.parse((await cli(['policy', 'get', name, '-o', 'json'])).stdout)
    expect(eff).toMatchObject({ scope: 'sandbox', sandbox: name, status: 'effective', policy_source: 'global', global_policy_version: gj.version, hash: gj.hash })
    expect((await cli(['sandbox', 'get', name])).stdout).toMatch(/^ {2}Policy source: global$/m)

    // Setting the same policy again keeps its version (OpenShell: same hash, no new revision).
    const again = await cli(['policy', 'set', '--global', '--policy', globalFile])
    expect(again.stderr).toContain(`settings revision: ${gj.version})`)
  })

  it('while a global policy is set, a sandbox-scoped policy set is refused with OpenShell\'s message', async () => {
    const r = await cli(['policy', 'set', name, '--policy', globalFile])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/policy is managed globally; delete global policy before sandbox policy update/)
  })

  it('enterprise network_ceiling bounds the global policy: a wider one is refused in one line and the one in force stays', async () => {
    const d = hostDir('glob-ent')
    const ent = join(d, 'enterprise.yaml')
    writeFileSync(ent, stringify({ network_ceiling: { only: { endpoints: [{ host: 'api.example.test', port: 443 }] } } }))
    const before = JSON.parse((await cli(['policy', 'get', '--global', '-o', 'json'])).stdout)
    const r = await cli(['policy', 'set', '--global', '--policy', policyFile({ wide: [{ host: 'paste.example.com', port: 443 }] })], { env: { PODSHELL_ENTERPRISE_CONFIG: ent } })
    expect(r.code).not.toBe(0)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(r.stderr).toMatch(/paste\.example\.com:443/)
    expect(JSON.parse((await cli(['policy', 'get', '--global', '-o', 'json'])).stdout)).toMatchObject({ version: before.version, hash: before.hash, status: 'loaded' })
    expect((await curlProxy(name, up.url('/t/g-still'))).status).toBe(200)
  })

  it("delete --global gives the sandbox its own policy back at once; a second delete says there is none", async () => {
    const d = await cli(['policy', 'delete', '--global', '--yes'])
    expect(d.code, d.stderr).toBe(0)
    expect(d.stdout).toMatch(/^✓ Deleted global setting policy \(revision \d+\)$/m)
    expect((await curlProxy(name, up.url('/t/g-off'))).status).toBe(403)
    expect(up.seen('/t/g-off')).toHaveLength(0)
    expect(JSON.parse((await cli(['policy', 'get', name, '-o', 'json'])).stdout)).toMatchObject({ policy_source: 'sandbox' })
    expect((await cli(['policy', 'delete', '--global'])).stdout).toBe('! Global setting policy not found\n')
    expect((await cli(['policy', 'delete'])).stderr).toMatch(/use --global/)
  })
})
