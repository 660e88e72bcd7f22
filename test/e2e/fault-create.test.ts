import { describe, it, expect, afterAll } from 'vitest'
import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { cli, cliSpawn, podman, uniqueName, TEST_HOME } from '../helpers/cli.js'
import { policyFile, hostAddress, recordFigures, sleep } from '../helpers/attack.js'
import { prng } from '../helpers/prng.js'

/**
 * kill -9 of podshell at random points of `sandbox create`, many times over. Whatever the moment,
 * after the next podshell command (here `podshell gc`; every state-changing command runs gc
 * first) there must be no half-made sandbox: each attempt either produced a complete, Ready
 * sandbox or left nothing at all — no pod, container, volume, secret or state-dir entry.
 *
 * The trial delays come from a seeded PRNG (PODSHELL_FAULT_SEED, printed in the test's metadata),
 * so a failing run can be replayed exactly.
 */

declare module 'vitest' {
  interface TaskMeta {
    observed?: string
  }
}

const SEED = Number(process.env.PODSHELL_FAULT_SEED ?? 20261127)
const TRIALS = 30
const names: string[] = []
const provider = `fk-${process.pid.toString(36)}`

afterAll(async () => {
  const live = (await cli(['sandbox', 'list', '--names'])).stdout.split('\n').filter(n => names.includes(n))
  if (live.length) await cli(['sandbox', 'delete', ...live])
  await cli(['provider', 'delete', provider])
})

/** Waits until no podman process started on behalf of sandbox `n` is still running (killed podshell leaves them orphaned). */
async function orphansDone(n: string): Promise<void> {
  const deadline = Date.now() + 60_000
  for (;;) {
    const ps = (await execa('ps', ['-eo', 'args'], { reject: false })).stdout.split('\n')
    const busy = ps.filter(l => /^(\S*\/)?podman\s/.test(l) && l.includes(n))
    if (busy.length === 0) return
    if (Date.now() > deadline) throw new Error(`podman still working for ${n}: ${busy.join(' | ')}`)
    await sleep(100)
  }
}

interface Trial {
  name: string
  delayMs: number
  exited: string
  /** What the kill left, seen before any other podshell command ran. */
  left: 'nothing' | 'half-made' | 'complete'
  outcome?: 'complete' | 'removed'
}

/** What exists of sandbox `n` right now (podman and the state dir; no podshell command involved). */
async function whatIsLeft(n: string): Promise<Trial['left']> {
  const pod = (await podman(['pod', 'exists', `podshell.${n}`])).code === 0
  const ctr = JSON.parse((await podman(['ps', '-a', '--filter', `label=io.podshell.sandbox=${n}`, '--format', 'json'])).stdout || '[]') as { State: string; Labels?: Record<string, string> }[]
  const state = existsSync(join(TEST_HOME, 'sandboxes', n))
  const agent = ctr.some(c => c.Labels?.['io.podshell.role'] === 'agent' && c.State.toLowerCase() === 'running')
  if (pod && agent && state) return 'complete'
  return pod || state || ctr.length ? 'half-made' : 'nothing'
}

describe('kill -9 during sandbox create', () => {
  it(`#49 kill -9 of podshell at ${TRIALS} seeded random points (0–1.5 s) of \`sandbox create\` → after gc each attempt is a complete sandbox or nothing; no orphaned pod, container, volume, secret or state`, async ({ task }) => {
    const p = await cli(['provider', 'create', '--name', provider, '--type', 'github', '--credential', 'GITHUB_TOKEN'], { env: { GITHUB_TOKEN: 'fault-test-token-value' } })
    expect(p.code, p.stderr).toBe(0)
    const policy = policyFile({ up: [{ host: hostAddress(), port: 9 }] })
    const secretsBefore = (await podman(['secret', 'ls', '--format', '{{.Name}}'])).stdout.split('\n').filter(Boolean).sort()
    const rand = prng(SEED)
    const trials: Trial[] = []
    for (let i = 0; i < TRIALS; i++) {
      const name = uniqueName('fk')
      names.push(name)
      const delayMs = Math.floor(rand() * 1500)
      const child = cliSpawn(['sandbox', 'create', '--name', name, '--detach', '--provider', provider, '--policy', policy])
      await sleep(delayMs)
      child.kill('SIGKILL')
      const r = await child
      await orphansDone(name)
      trials.push({ name, delayMs, exited: r.signal ? r.signal : `exit ${r.exitCode}`, left: await whatIsLeft(name) })
    }

    const t0 = Date.now()
    const gc = await cli(['gc'])
    const gcMs = Date.now() - t0
    expect(gc.code, gc.stderr).toBe(0)

    const listed = JSON.parse((await cli(['sandbox', 'list', '-o', 'json'])).stdout || '[]') as { name: string; phase: string; egress: string }[]
    const pods = (await podman(['pod', 'ps', '--filter', 'label=io.podshell.sandbox', '--format', '{{index .Labels "io.podshell.sandbox"}}'])).stdout.split('\n').filter(Boolean)
    const ctrJson = JSON.parse((await podman(['ps', '-a', '--filter', 'label=io.podshell.sandbox', '--format', 'json'])).stdout || '[]') as { State: string; Labels?: Record<string, string> }[]
    const ctrs = ctrJson.map(c => `${c.Labels?.['io.podshell.sandbox'] ?? ''} ${c.Labels?.['io.podshell.role'] ?? 'infra'} ${c.State.toLowerCase()}`)
    const volumes = (await podman(['volume', 'ls', '--filter', 'label=io.podshell.sandbox', '--format', '{{.Name}}'])).stdout.trim()
    const stateDirs = existsSync(join(TEST_HOME, 'sandboxes')) ? readdirSync(join(TEST_HOME, 'sandboxes')) : []

    for (const t of trials) {
      const inList = listed.find(s => s.name === t.name)
      const hasPod = pods.includes(t.name)
      const mine = ctrs.filter(c => c.startsWith(`${t.name} `))
      const hasState = stateDirs.includes(t.name)
      if (hasPod || inList || mine.length || hasState) {
        t.outcome = 'complete'
        // Complete means complete: listed Ready, pod, agent and bridge running, state present.
        expect(inList?.phase, `${t.name} (killed after ${t.delayMs} ms): ${JSON.stringify({ inList, hasPod, mine, hasState })}`).toBe('Ready')
        expect(hasPod).toBe(true)
        expect(hasState).toBe(true)
        expect(mine.some(c => / agent running$/.test(c))).toBe(true)
        expect(mine.some(c => / bridge running$/.test(c))).toBe(true)
      } else {
        t.outcome = 'removed'
      }
    }
    // Nothing podshell-labelled belongs to anything but a complete sandbox.
    const complete = new Set(trials.filter(t => t.outcome === 'complete').map(t => t.name))
    const ours = (s: string) => names.includes(s)
    expect(pods.filter(ours).filter(n => !complete.has(n))).toEqual([])
    expect(ctrs.map(c => c.split(' ')[0]!).filter(ours).filter(n => !complete.has(n))).toEqual([])
    expect(stateDirs.filter(ours).filter(n => !complete.has(n))).toEqual([])
    expect(volumes).toBe('')
    expect((await podman(['secret', 'ls', '--format', '{{.Name}}'])).stdout.split('\n').filter(Boolean).sort()).toEqual(secretsBefore)

    const removed = trials.filter(t => t.outcome === 'removed').length
    const halfMade = trials.filter(t => t.left === 'half-made').length
    // The kills must actually have landed mid-create, or this test proved nothing.
    expect(halfMade).toBeGreaterThan(0)
    task.meta.observed = `seed ${SEED}: ${TRIALS} kills at ${trials.map(t => t.delayMs).join(',')} ms left ${trials.filter(t => t.left === 'nothing').length} nothing, ${halfMade} half-made, ${trials.filter(t => t.left === 'complete').length} complete; after the next commands and gc: ${complete.size} complete, ${removed} nothing, 0 half-made (last gc ${gcMs} ms: ${gc.stdout.trim().split('\n').slice(0, 3).join('; ')})`
    recordFigures('faults', 'create_kill', {
      seed: SEED,
      trials: TRIALS,
      complete: complete.size,
      removed,
      left_nothing: trials.filter(t => t.left === 'nothing').length,
      left_half_made: halfMade,
      left_complete: trials.filter(t => t.left === 'complete').length,
      half_made_after_gc: 0,
      gc_ms: gcMs,
      delays_ms: trials.map(t => t.delayMs),
      gc_output: gc.stdout.trim().split('\n'),
    })
  }, 600_000)
})

describe('gc never removes what is not its own', () => {
  it('`podshell gc` run with another PODSHELL_HOME (a second data dir of the same user) leaves this data dir\'s provider secrets alone', async ({ task }) => {
    const p = `gcx-${process.pid.toString(36)}`
    const c = await cli(['provider', 'create', '--name', p, '--type', 'github', '--credential', 'GITHUB_TOKEN'], { env: { GITHUB_TOKEN: 'value-of-the-first-data-dir' } })
    expect(c.code, c.stderr).toBe(0)
    try {
      const secret = `podshell.provider.${p}.GITHUB_TOKEN`
      expect((await podman(['secret', 'inspect', secret])).code).toBe(0)
      const other = join(TEST_HOME, '..', `podshell-test-other-${process.pid}`)
      const gc = await cli(['gc'], { env: { PODSHELL_HOME: other } })
      expect(gc.code, `the gc itself must have run: ${gc.stderr}`).toBe(0)
      const still = (await podman(['secret', 'inspect', secret])).code === 0
      task.meta.observed = `gc in ${other}: "${gc.stdout.trim()}"; the first data dir's secret ${still ? 'is still there' : 'was DELETED'}`
      expect(still, 'gc of another data dir deleted this provider\'s secret').toBe(true)
    } finally {
      await cli(['provider', 'delete', p])
    }
  })
})
