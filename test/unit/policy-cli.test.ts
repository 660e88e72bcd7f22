import { describe, it, expect } from 'vitest'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Command } from 'commander'
import { CliContext } from '../../src/cli/context.js'
import { registerPolicyValidate, registerSchemaPolicy } from '../../src/cli/policy.js'
import { PodshellError } from '../../src/errors.js'

function harness() {
  const out: string[] = []
  const notes: string[] = []
  const ctx = new CliContext({ HOME: '/nonexistent' }, { stdout: t => void out.push(t), note: t => void notes.push(t) })
  const program = new Command('podshell').exitOverride()
  const policy = program.command('policy')
  const schema = program.command('schema')
  registerPolicyValidate(policy, ctx)
  registerSchemaPolicy(schema, ctx)
  const run = async (...args: string[]): Promise<{ stdout: string; error?: PodshellError }> => {
    try {
      await program.parseAsync(['node', 'podshell', ...args])
      return { stdout: out.splice(0).join('') }
    } catch (e) {
      if (!(e instanceof PodshellError)) throw e
      return { stdout: out.splice(0).join(''), error: e }
    }
  }
  return { run }
}

const dir = mkdtempSync(join(tmpdir(), 'podshell-cli-'))
const good = join(dir, 'good.yaml')
writeFileSync(good, 'version: 1\nnetwork_policies:\n  claude_code:\n    endpoints: [{ host: api.anthropic.com, port: 443 }]\n    binaries: [{ path: /usr/local/bin/claude }]\n')
const bad = join(dir, 'bad.yaml')
writeFileSync(bad, 'version: 1\nnetwork_policies:\n  gh:\n    endpoints: [{ hots: api.github.com, port: 70000 }]\n')

describe('podshell policy validate', () => {
  it('prints "valid" and the unenforced-field warnings, exit 0', async () => {
    const { run } = harness()
    const r = await run('policy', 'validate', good)
    expect(r.error).toBeUndefined()
    const lines = r.stdout.trimEnd().split('\n')
    expect(lines[0]).toBe('valid')
    expect(lines).toContain('warning: network_policies.claude_code.binaries: not enforced — any process in the sandbox may use these endpoints')
  })

  it('prints one problem per line with key paths, exit 1', async () => {
    const { run } = harness()
    const r = await run('policy', 'validate', bad)
    expect(r.error?.exitCode).toBe(1)
    expect(r.error?.code).toBe('POLICY_INVALID')
    const lines = r.stdout.trimEnd().split('\n')
    expect(lines).toContain('network_policies.gh.endpoints[0].hots: unrecognized key (did you mean "host"?)')
    expect(lines).toContain('network_policies.gh.endpoints[0].port: must be between 1 and 65535')
  })

  it('-o json gives {valid, errors, warnings}', async () => {
    const { run } = harness()
    const ok = await run('policy', 'validate', good, '-o', 'json')
    const j = JSON.parse(ok.stdout)
    expect(j.valid).toBe(true)
    expect(j.errors).toEqual([])
    expect(j.warnings.length).toBeGreaterThan(0)
    const ko = await run('policy', 'validate', bad, '-o', 'json')
    expect(ko.error?.exitCode).toBe(1)
    const k = JSON.parse(ko.stdout)
    expect(k.valid).toBe(false)
    expect(k.errors).toContain("network_policies.gh.endpoints[0].port: must be between 1 and 65535")
    expect(k.warnings).toEqual([])
  })

  it('a missing file is invalid, never "no policy"', async () => {
    const { run } = harness()
    const r = await run('policy', 'validate', join(dir, 'missing.yaml'), '-o', 'json')
    expect(r.error?.exitCode).toBe(1)
    expect(JSON.parse(r.stdout).errors[0]).toContain('policy file not found')
  })
})

describe('podshell schema policy', () => {
  it('prints the JSON Schema', async () => {
    const { run } = harness()
    const r = await run('schema', 'policy')
    const s = JSON.parse(r.stdout)
    expect(s.properties.version).toBeDefined()
    expect(s.additionalProperties).toBe(false)
  })
})
