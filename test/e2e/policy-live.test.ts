import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { cli, hostDir, uniqueName } from '../helpers/cli.js'

/**
 * The live policy verbs on a real sandbox, in the shapes tools parse: NemoClaw reads `policy get`'s
 * Version/Hash/Status header, a `---` line and the YAML after it, edits it, and `policy set --wait`s.
 */
let name: string
let dir: string
const P1 = 'version: 1\nfilesystem_policy:\n  include_workdir: true\n  read_only: [/usr]\nnetwork_policies:\n  a:\n    name: a\n    endpoints:\n      - { host: api.example.test, port: 443 }\n'

beforeAll(async () => {
  dir = hostDir('pol-live')
  writeFileSync(join(dir, 'p1.yaml'), P1)
  name = uniqueName('pol')
  const r = await cli(['sandbox', 'create', '--name', name, '--policy', join(dir, 'p1.yaml'), '--detach'])
  expect(r.code, r.stderr).toBe(0)
})

afterAll(async () => {
  await cli(['sandbox', 'delete', name])
})

describe('policy get / set / update / list on a live sandbox', () => {
  it('policy get --full prints Version/Hash/Status, a --- line, then the policy YAML (as NemoClaw parses it)', async () => {
    const r = await cli(['policy', 'get', name, '--full'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/^Version: {6}1\nHash: {9}[0-9a-f]{64}\nStatus: {7}Effective\n/)
    const yaml = r.stdout.slice(r.stdout.indexOf('\n---\n') + 5)
    expect(parse(yaml)).toMatchObject({ version: 1, network_policies: { a: { endpoints: [{ host: 'api.example.test', port: 443 }] } } })
    const j = JSON.parse((await cli(['policy', 'get', name, '--full', '-o', 'json'])).stdout)
    expect(j).toMatchObject({ version: 1, status: 'effective', revision_status: 'loaded', policy: { version: 1 } })
    // Without --full (OpenShell's metadata view) there is no document.
    expect((await cli(['policy', 'get', name])).stdout).not.toContain('---')
  })

  it('policy update --add-endpoint --wait loads revision 2 with the generated rule name; --dry-run changes nothing', async () => {
    const dry = await cli(['policy', 'update', name, '--add-endpoint', 'registry.npmjs.org:443', '--dry-run'])
    expect(dry.code, dry.stderr).toBe(0)
    expect(dry.stdout).toContain('registry.npmjs.org')
    const up = await cli(['policy', 'update', name, '--add-endpoint', 'registry.npmjs.org:443', '--wait'])
    expect(up.code, up.stderr).toBe(0)
    const got = await cli(['policy', 'get', name, '--full'])
    expect(got.stdout).toMatch(/^Version: {6}2\n/)
    expect(got.stdout).toContain('allow_registry_npmjs_org_443')
  })

  it('a static change (filesystem_policy shrinking) is refused with OpenShell\'s rule, and nothing is stored', async () => {
    writeFileSync(join(dir, 'shrink.yaml'), P1.replace('  read_only: [/usr]\n', ''))
    const r = await cli(['policy', 'set', name, '--policy', join(dir, 'shrink.yaml'), '--wait'])
    expect(r.code).not.toBe(0)
    expect(r.stderr).toMatch(/filesystem/i)
    expect((await cli(['policy', 'get', name])).stdout).toMatch(/^Version: {6}2\n/)
  })

  it('an invalid policy is refused before anything is stored, naming the key path', async () => {
    writeFileSync(join(dir, 'bad.yaml'), P1.replace('host: api.example.test', 'hots: api.example.test'))
    const r = await cli(['policy', 'set', name, '--policy', join(dir, 'bad.yaml'), '--wait'])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/network_policies\.a\.endpoints\[0\]\.hots/)
  })

  it('policy list shows VERSION HASH STATUS CREATED ERROR, newest first, the older revision Superseded', async () => {
    const r = await cli(['policy', 'list', name])
    const lines = r.stdout.trim().split('\n')
    expect(lines[0]).toMatch(/^VERSION\s+HASH\s+STATUS\s+CREATED\s+ERROR$/)
    expect(lines[1]).toMatch(/^2\s+[0-9a-f]{12}\s+Loaded\s+\d{13}$/)
    expect(lines[2]).toMatch(/^1\s+[0-9a-f]{12}\s+Superseded\s+\d{13}$/)
  })
})
