import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { cli, cliSpawn, uniqueName, TEST_HOME } from '../helpers/cli.js'

/**
 * OpenShell ≥ v0.0.111 lifecycle (PR #2884) on real rootless Podman: a foreground kept
 * `create -- CMD` makes CMD the sandbox's main process; exit 0 → Completed, non-zero → Error with
 * the exit code; `sandbox start` runs it again; `connect` shows a running main process's output
 * (OpenShell's e2e harness waits for `Ready` through it) and leaving it does not stop the process.
 */
const ok = uniqueName('lcok')
const bad = uniqueName('lcbad')
const main = uniqueName('lcmain')
const idle = uniqueName('lcidle')

const phase = async (n: string) => JSON.parse((await cli(['sandbox', 'get', n, '-o', 'json'])).stdout) as { phase: string; exit_code: number | null; main: string }

async function poll<T>(what: string, fn: () => Promise<T>, done: (v: T) => boolean, tries = 150): Promise<T> {
  let v = await fn()
  for (let i = 0; i < tries && !done(v); i++) {
    await new Promise(r => setTimeout(r, 200))
    v = await fn()
  }
  if (!done(v)) throw new Error(`${what}: still ${JSON.stringify(v)}`)
  return v
}

beforeAll(async () => {
  const d = await cli(['sandbox', 'create', '--name', main, '--detach', '--', 'sh', '-c', 'echo Ready && sleep infinity'])
  expect(d.code, d.stderr).toBe(0)
})

afterAll(async () => {
  await cli(['sandbox', 'delete', ok, bad, main, idle])
})

describe('main-process lifecycle', () => {
  it('exit 0 of a foreground kept create -- CMD → Completed, output streamed, exit code 0; exec then says why it cannot run', async () => {
    const r = await cli(['sandbox', 'create', '--name', ok, '--', 'sh', '-c', 'echo from-main; exit 0'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toContain('from-main')
    expect(r.stderr).toContain(`Created sandbox: ${ok}`)
    expect(await phase(ok)).toMatchObject({ phase: 'Completed', exit_code: 0, main: 'command' })
    expect((await cli(['sandbox', 'get', ok])).stdout).toMatch(/^ {2}Phase: Completed$/m)
    const e = await cli(['sandbox', 'exec', '-n', ok, '--', 'true'])
    expect(e.code).not.toBe(0)
    expect(e.stderr).toMatch(new RegExp(`sandbox ${ok} is Completed`))
  })

  it('non-zero exit → Error with exit_code (get table and -o json); sandbox start runs the command again', async () => {
    const r = await cli(['sandbox', 'create', '--name', bad, '--', 'sh', '-c', 'echo run >> "$HOME/runs"; exit 3'])
    expect(r.code).toBe(3)
    expect(await phase(bad)).toMatchObject({ phase: 'Error', exit_code: 3 })
    expect((await cli(['sandbox', 'get', bad])).stdout).toMatch(/^ {2}Exit code: 3$/m)
    const runs = join(TEST_HOME, 'sandboxes', bad, 'home', 'runs')
    expect(readFileSync(runs, 'utf8')).toBe('run\n')
    const s = await cli(['sandbox', 'start', bad])
    expect(s.code, s.stderr).toBe(0)
    expect(s.stdout).toContain(`Started sandbox ${bad}`)
    await poll('second run', async () => readFileSync(runs, 'utf8'), v => v === 'run\nrun\n')
    await poll('phase after the second run', () => phase(bad), v => v.phase === 'Error' && v.exit_code === 3)
  })

  it('connect to a detached main process shows its output (Ready); ending connect leaves it running', async () => {
    expect(await phase(main)).toMatchObject({ phase: 'Ready', main: 'command' })
    const c = cliSpawn(['sandbox', 'connect', main])
    let out = ''
    c.stdout?.on('data', (b: Buffer) => (out += b.toString()))
    await poll('Ready through connect', async () => out, v => v.includes('Ready'))
    c.kill('SIGTERM')
    await c
    expect(out.split('\n')).toContain('Ready')
    expect(await phase(main)).toMatchObject({ phase: 'Ready' })
  })

  it('plain create (no command) keeps an idle main process and connect opens a login shell, as before', async () => {
    expect((await cli(['sandbox', 'create', '--name', idle, '--detach'])).code).toBe(0)
    expect(await phase(idle)).toMatchObject({ phase: 'Ready', main: 'idle' })
    const r = await cli(['sandbox', 'connect', idle], { input: 'echo shell-$((40+2))\nexit 5\n' })
    expect(r.stdout).toContain('shell-42')
    expect(r.code).toBe(5)
    expect(await phase(idle)).toMatchObject({ phase: 'Ready' })
  })
})
