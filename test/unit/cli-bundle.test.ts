/**
 * The bundled CLI (dist/bundle, made by scripts/bundle.mjs and loaded by dist/cli/main.js) and the
 * plain compiled modules (dist/cli/run.js, what a tsc-only build runs) are the same program: they
 * must give the same output, exit codes and one-line errors. And the bundle must be self-contained,
 * because the gateway image holds it without node_modules.
 */
import { describe, expect, it } from 'vitest'
import { execFile } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const BUNDLED = join(ROOT, 'dist', 'cli', 'main.js')
const PLAIN = join(ROOT, 'dist', 'cli', 'run.js')
const FIXTURES = join(ROOT, 'test', 'fixtures', 'openshell-policies')

function run(entry: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const home = mkdtempSync(join(tmpdir(), 'podshell-bundle-home-'))
  return new Promise(resolve => {
    execFile(process.execPath, [entry, ...args], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home } }, (e, stdout, stderr) => {
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, stdout, stderr })
    })
  })
}

describe('the bundled CLI', () => {
  it('imports nothing but its own chunks and node: builtins (the gateway image has no node_modules)', () => {
    const dir = join(ROOT, 'dist', 'bundle')
    const files = readdirSync(dir).filter(f => f.endsWith('.js'))
    expect(files).toContain('run.js')
    const specifiers = new Set<string>()
    for (const f of files) {
      const text = readFileSync(join(dir, f), 'utf8')
      // esbuild's output: `import{a as b}from"./chunk-X.js";`, `import"x";`, `import("./chunk-X.js")`,
      // and require("fs") in CommonJS dependencies.
      for (const m of text.matchAll(/(?:^|;)\s*import\s*(?:[\w$*{}\s,]*?from\s*)?["']([^"']+)["']/gm)) specifiers.add(m[1]!)
      for (const m of text.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g)) specifiers.add(m[1]!)
      for (const m of text.matchAll(/require\(\s*["']([^"']+)["']\s*\)/g)) specifiers.add(m[1]!)
    }
    const foreign = [...specifiers].filter(s => !s.startsWith('./') && !s.startsWith('node:') && !/^[a-z_]+$/.test(s))
    expect(foreign).toEqual([])
    expect(specifiers.size).toBeGreaterThan(3)
    // Bare names must be Node builtins (CommonJS dependencies require('fs') and the like).
    const { builtinModules } = process.getBuiltinModule('node:module') as typeof import('node:module')
    const bare = [...specifiers].filter(s => /^[a-z_]+$/.test(s))
    expect(bare.filter(s => !builtinModules.includes(s))).toEqual([])
  })

  it.each([
    ['--version', ['--version']],
    ['the JSON schema of a policy', ['schema', 'policy']],
    ['validating a shipped OpenShell policy', ['policy', 'validate', join(FIXTURES, readdirSync(FIXTURES).find(f => /\.ya?ml$/.test(f))!)]],
    ['an invalid sandbox name for the fast exec path (falls through to the full CLI)', ['sandbox', 'exec', '-n', 'Not A Name', '--', 'true']],
    ['an unknown command', ['sandbox', 'frobnicate']],
  ])('answers %s exactly like the plain modules', async (_what, args) => {
    const [a, b] = await Promise.all([run(BUNDLED, args), run(PLAIN, args)])
    expect(a).toEqual(b)
    expect(a.stdout.length + a.stderr.length).toBeGreaterThan(0)
  })

  it('reports a broken policy with the same one line and exit code as the plain modules', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'podshell-bundle-'))
    const bad = join(dir, 'bad.yaml')
    writeFileSync(bad, 'version: 1\nnetwrk_policies: {}\n')
    const [a, b] = await Promise.all([run(BUNDLED, ['policy', 'validate', bad]), run(PLAIN, ['policy', 'validate', bad])])
    expect(a).toEqual(b)
    expect(a.code).not.toBe(0)
    expect(a.stderr.trim().split('\n')).toHaveLength(1)
    expect(a.stdout + a.stderr).toMatch(/netwrk_policies/)
  })
})
