import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { stringify } from 'yaml'
import { Podman, SandboxRuntime, type CreateOptions, type SandboxDeps } from '../../src/index.js'
import { PodshellError } from '../../src/errors.js'
import { secureCreateOptions } from '../../src/sandbox/spec.js'

/**
 * The library API applies the security rules itself (issue 10: they used to live in CLI hooks, so
 * `SandboxRuntime.create` mounted ~/.ssh when asked). Every refusal here happens in validation,
 * before podman: the podman binary is a script that logs each call, and the log must show none
 * beyond `--version`; no dependency may be called and no state dir may appear.
 */
let root: string
let home: string
let proj: string
let data: string
let log: string
let env: Record<string, string>
let depCalls: string[]

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'podshell-rtsec-'))
  home = join(root, 'home', 'dev')
  proj = join(home, 'src', 'proj')
  data = join(root, 'data')
  mkdirSync(join(home, '.ssh'), { recursive: true })
  writeFileSync(join(home, '.ssh', 'id_ed25519'), 'PRIVATE KEY')
  mkdirSync(proj, { recursive: true })
  log = join(root, 'podman.log')
  const bin = join(root, 'podman')
  writeFileSync(bin, `#!/bin/sh\necho "$*" >> ${log}\necho "podman version 4.3.1"\n`)
  chmodSync(bin, 0o755)
  env = { HOME: home, PATH: process.env.PATH ?? '/usr/bin:/bin', PODSHELL_HOME: data, XDG_CONFIG_HOME: join(home, '.config'), XDG_CACHE_HOME: join(root, 'cache'), PODSHELL_RUNTIME: 'runc', PODSHELL_PODMAN: bin }
  depCalls = []
})
afterEach(() => rmSync(root, { recursive: true, force: true }))

function deps(): SandboxDeps {
  const called = (what: string) => () => {
    depCalls.push(what)
    throw new Error(`${what} must not be called`)
  }
  return {
    ensureImages: called('ensureImages'),
    ensureGateway: called('ensureGateway'),
    registerWithGateway: called('registerWithGateway'),
    unregisterFromGateway: called('unregisterFromGateway'),
    gatewayAlive: called('gatewayAlive'),
    storeInitialPolicy: called('storeInitialPolicy'),
    prepareCredentials: called('prepareCredentials'),
    removeCredentials: called('removeCredentials'),
    gcCredentials: called('gcCredentials'),
    credentialsNeedGc: () => false,
    audit: called('audit'),
    seccompProfile: join(root, 'seccomp.json'),
    prepareTrust: called('prepareTrust'),
  }
}

async function runtime(enterprise?: string): Promise<SandboxRuntime> {
  const podman = await Podman.detect({ env, noCache: true })
  return new SandboxRuntime({ podman, dataDir: data, env, deps: deps(), say: () => undefined, configLoad: { enterpriseDefaultPath: enterprise ?? join(root, 'no-enterprise.yaml') } })
}

const base = (o: Partial<CreateOptions> = {}): CreateOptions => ({ command: ['true'], mounts: [], env: {}, labels: {}, providers: [], detach: true, keep: true, workdir: proj, ...o })

async function refusal(p: Promise<unknown>): Promise<PodshellError> {
  try {
    await p
  } catch (e) {
    if (e instanceof PodshellError) return e
    throw e
  }
  throw new Error('expected a refusal')
}

function podmanCalls(): string[] {
  return existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : []
}

describe('SandboxRuntime.create (library API) enforces the mount and enterprise rules itself', () => {
  it('refuses a --mount of ~/.ssh before podman or any dependency is called, leaving nothing', async () => {
    const rt = await runtime()
    const e = await refusal(rt.create(base({ mounts: [{ source: join(home, '.ssh'), target: '/keys', mode: 'ro' }] })))
    expect(e.code).toBe('SENSITIVE_PATH')
    expect(e.oneLine()).toMatch(/refusing to mount --mount .*\.ssh.*SSH keys/)
    expect(podmanCalls()).toEqual(['--version'])
    expect(depCalls).toEqual([])
    expect(existsSync(join(data, 'sandboxes'))).toBe(false)
  })

  it('refuses $HOME as the workdir (it would expose ~/.ssh)', async () => {
    const rt = await runtime()
    const e = await refusal(rt.create(base({ workdir: home })))
    expect(e.code).toBe('SENSITIVE_PATH')
    expect(podmanCalls()).toEqual(['--version'])
  })

  it('applies the enterprise file: an image outside required.images is refused', async () => {
    const ent = join(root, 'enterprise.yaml')
    writeFileSync(ent, stringify({ required: { images: ['localhost/approved:*'] } }))
    const rt = await runtime(ent)
    const e = await refusal(rt.create(base({ image: 'localhost/other:1' })))
    expect(e.code).toBe('ENTERPRISE_REFUSED')
    expect(podmanCalls()).toEqual(['--version'])
  })

  it('passEnv (env_pass values) is validated like --env: a proxy variable is refused before podman', async () => {
    const rt = await runtime()
    writeFileSync(join(root, 'seccomp.json'), '{}')
    const e = await refusal(rt.create(base({ passEnv: { HTTPS_PROXY: 'http://evil.example:8080' }, seccompProfile: join(root, 'seccomp.json') })))
    expect(e.oneLine()).toMatch(/HTTPS_PROXY is set by podshell/)
    expect(podmanCalls()).toEqual(['--version'])
  })

  it('options secured once cannot be widened afterwards: frozen, and a widened copy is secured again', async () => {
    const { options } = await secureCreateOptions(base(), env, { enterpriseDefaultPath: join(root, 'none.yaml') })
    expect(() => (options.mounts as unknown[]).push({ source: join(home, '.ssh'), target: '/k', mode: 'ro' })).toThrow(TypeError)
    const rt = await runtime()
    const widened = { ...options, mounts: [...options.mounts, { source: join(home, '.ssh'), target: '/k', mode: 'ro' as const }] }
    expect((await refusal(rt.create(widened))).code).toBe('SENSITIVE_PATH')
    expect(podmanCalls()).toEqual(['--version'])
  })
})

describe('signals come from the caller, not the process', () => {
  it('a SIGINT from the given source during provisioning removes the half-made sandbox and rejects with 130', async () => {
    const { EventEmitter } = await import('node:events')
    const signals = new EventEmitter()
    writeFileSync(join(root, 'seccomp.json'), '{}')
    const calls: string[] = []
    let registered: () => void = () => undefined
    const d: SandboxDeps = {
      ...deps(),
      ensureImages: async () => ({ gatewayReplaced: false }),
      gatewayAlive: async () => true,
      storeInitialPolicy: () => ({ warnings: [] }),
      prepareTrust: async () => ({ mounts: [], env: {} }),
      // The gateway "hangs": the interrupt arrives while create waits for it.
      registerWithGateway: () =>
        new Promise(() => {
          calls.push('register')
          registered()
        }),
      unregisterFromGateway: async (n: string) => {
        calls.push(`unregister ${n}`)
      },
    }
    const podman = await Podman.detect({ env, noCache: true })
    const rt = new SandboxRuntime({ podman, dataDir: data, env, deps: d, say: () => undefined, signals, configLoad: { enterpriseDefaultPath: join(root, 'none.yaml') } })
    const waiting = new Promise<void>(r => (registered = r))
    const before = process.listenerCount('SIGINT')
    const p = rt.create(base({ name: 'intr' }))
    await waiting
    expect(existsSync(join(data, 'sandboxes', 'intr'))).toBe(true)
    expect(process.listenerCount('SIGINT')).toBe(before)
    signals.emit('SIGINT')
    const e = await refusal(p)
    expect(e.code).toBe('INTERRUPTED')
    expect(e.exitCode).toBe(130)
    expect(calls).toEqual(['register', 'unregister intr'])
    expect(existsSync(join(data, 'sandboxes', 'intr'))).toBe(false)
    expect(signals.listenerCount('SIGINT')).toBe(0)
    expect(podmanCalls()).toEqual(['--version'])
  })
})

describe('restart treats the stored description as outside input', () => {
  const write = (d: Record<string, unknown>) => {
    mkdirSync(join(data, 'sandboxes', 'box'), { recursive: true })
    writeFileSync(join(data, 'sandboxes', 'box', 'agent.json'), JSON.stringify(d))
  }
  const good = () => ({
    version: 2, name: 'box', image: 'localhost/podshell-sandbox:latest', main: ['sleep', 'infinity'], home, uid: 1000, gid: 1000, workdir: proj,
    mounts: [{ source: proj, target: proj, mode: 'rw' }], masks: [], tmpfsDirs: [], seccomp: join(root, 'seccomp.json'), resources: {}, env: {}, callerEnv: [], providers: [],
  })

  it('a description rewritten to mount ~/.ssh (e.g. from the gateway container, which mounts the data dir) is refused before podman', async () => {
    write({ ...good(), mounts: [{ source: join(home, '.ssh'), target: '/k', mode: 'ro' }] })
    const e = await refusal((await runtime()).restart('box'))
    expect(e.code).toBe('SENSITIVE_PATH')
    expect(podmanCalls()).toEqual(['--version'])
  })

  it('a malformed description (podman separators in a mount source, unknown keys) is refused in one line', async () => {
    write({ ...good(), mounts: [{ source: `${proj},destination=/etc`, target: proj, mode: 'rw' }] })
    const e = await refusal((await runtime()).restart('box'))
    expect(e.code).toBe('STATE')
    expect(e.oneLine()).toMatch(/stored description of sandbox box is invalid \(mounts\.0\.source/)
    write({ ...good(), privileged: true })
    expect((await refusal((await runtime()).restart('box'))).code).toBe('STATE')
    expect(podmanCalls()).toEqual(['--version', '--version'])
  })
})
