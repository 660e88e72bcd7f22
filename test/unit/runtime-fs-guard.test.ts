import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { Podman, SandboxRuntime, type CreateOptions, type SandboxDeps } from '../../src/index.js'
import { secureCreateOptions } from '../../src/sandbox/spec.js'
import { EMPTY_MASK_FILE } from '../../src/sandbox/sockets.js'

/**
 * The runtime's plan carries the issue-9 filesystem guards whatever front end built the options:
 * pins for the ancestors of protected mounts and masks (mount-guard.ts) and socket masks
 * (sockets.ts). A regression guard for the call sites in runtime.ts (podman is a stub script that
 * is never asked to run anything here: plan() has no podman call).
 */
let root: string
let home: string
let proj: string
let data: string
let env: Record<string, string>
let server: Server | undefined

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'podshell-fsguard-'))
  home = join(root, 'home', 'dev')
  proj = join(home, 'src', 'proj')
  data = join(root, 'data')
  mkdirSync(join(proj, '.git', 'hooks'), { recursive: true })
  mkdirSync(join(proj, 'packages', 'web', '.claude'), { recursive: true })
  mkdirSync(join(proj, 'team', 'secrets'), { recursive: true })
  writeFileSync(join(proj, 'team', 'secrets', '.ai-read-deny'), '')
  mkdirSync(join(proj, '.devenv', 'pg'), { recursive: true })
  const bin = join(root, 'podman')
  writeFileSync(bin, '#!/bin/sh\necho "podman version 4.3.1"\n')
  chmodSync(bin, 0o755)
  writeFileSync(join(root, 'seccomp.json'), '{}')
  env = { HOME: home, PATH: process.env.PATH ?? '/usr/bin:/bin', PODSHELL_HOME: data, XDG_CONFIG_HOME: join(home, '.config'), XDG_CACHE_HOME: join(root, 'cache'), PODSHELL_RUNTIME: 'runc', PODSHELL_PODMAN: bin }
})
afterEach(() => {
  server?.close()
  server = undefined
  rmSync(root, { recursive: true, force: true })
})

const load = () => ({ enterpriseDefaultPath: join(root, 'no-enterprise.yaml') })

async function planOf(o: Partial<CreateOptions>) {
  const podman = await Podman.detect({ env, noCache: true })
  const deps = { seccompProfile: join(root, 'seccomp.json') } as unknown as SandboxDeps
  const rt = new SandboxRuntime({ podman, dataDir: data, env, deps, say: () => undefined, configLoad: load() })
  const base: CreateOptions = { command: ['true'], mounts: [], env: {}, labels: {}, providers: [], detach: true, keep: true, workdir: proj, workdirMode: 'rw', ...o }
  const { options } = await secureCreateOptions(base, env, load())
  return rt.plan(options)
}

describe('runtime plan: issue-9 filesystem guards', () => {
  it('pins the ancestors of a nested read-only bind and of a mask inside the read-write workdir', async () => {
    const p = await planOf({})
    const pins = p.mounts.filter(m => m.mode === 'rw' && m.target !== proj).map(m => m.target).sort()
    expect(pins).toEqual([join(proj, 'packages'), join(proj, 'packages', 'web'), join(proj, 'team')])
    expect(p.masks).toEqual([join(proj, 'team', 'secrets')])
  })

  it('covers a host socket with the empty read-only file, unless --allow-socket names it', async () => {
    const sock = join(proj, '.devenv', 'pg', '.s.PGSQL.5432')
    server = createServer()
    await new Promise<void>(res => server!.listen(sock, () => res()))
    const p = await planOf({ workdirMode: 'ro' })
    expect(p.mounts).toContainEqual({ source: join(data, EMPTY_MASK_FILE), target: sock, mode: 'ro' })
    expect(p.maskedSockets).toEqual([sock])
    expect(p.masks).not.toContain(sock)
    const allowed = await planOf({ workdirMode: 'ro', allowSockets: [sock] })
    expect(allowed.mounts.some(m => m.target === sock)).toBe(false)
    expect(allowed.maskedSockets).toEqual([])
  })
})
