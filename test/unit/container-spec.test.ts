import { describe, expect, it } from 'vitest'
import { HARDENING, podCreateArgs, runArgs, type ContainerSpec } from '../../src/podman/container-spec.js'
import { agentSpec, bridgeSpec, podSpec } from '../../src/sandbox/containers.js'
import { fromLegacy, type AgentDescription } from '../../src/sandbox/description.js'
import { DEFAULT_LIMITS, pidsLimit, sandboxLimits } from '../../src/sandbox/resources.js'
import { gatewayRunArgs } from '../../src/gateway/lifecycle.js'
import { PodshellError } from '../../src/errors.js'
import { readSecretValues } from '../../src/credentials/secrets.js'
import type { Podman } from '../../src/podman/podman.js'
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'

const desc: AgentDescription = {
  version: 2, name: 'box', image: 'localhost/podshell-sandbox:latest', main: ['sleep', 'infinity'], home: '/home/u', uid: 1000, gid: 1000,
  workdir: '/home/u/src/p', mounts: [{ source: '/home/u/src/p', target: '/home/u/src/p', mode: 'rw' }, { source: '/home/u/src/p/.git', target: '/home/u/src/p/.git', mode: 'ro' }],
  masks: ['/home/u/src/p/secret'], tmpfsDirs: [], seccomp: '/opt/podshell/seccomp/default.json', resources: {}, env: { FOO: 'bar' }, callerEnv: ['MY_TOKEN'], providers: [],
}
const render = (c: ContainerSpec, values: Record<string, string> = {}, cgroupLimits = false) => runArgs(c, { values, cgroupLimits }, { verb: 'run-detached' })

describe('container specs rendered to podman argv (src/podman/container-spec.ts)', () => {
  it('every container (agent, bridge, gateway) carries the one hardening list', () => {
    const agent = render(agentSpec(desc, { dataDir: '/d', limits: DEFAULT_LIMITS, pids: undefined, secretArgs: [] }).spec).args
    const bridge = render(bridgeSpec('box', '/d', 1000, 1000, DEFAULT_LIMITS, false)).args
    const gateway = gatewayRunArgs('/d')
    for (const args of [agent, bridge, gateway]) {
      const joined = args.join('\u0000')
      expect(joined).toContain(HARDENING.join('\u0000'))
    }
  })

  it('the agent gets bounded scratch tmpfs, RLIMIT_NPROC and a capped log; no unbounded --read-only-tmpfs', () => {
    const { args } = render(agentSpec(desc, { dataDir: '/d', limits: sandboxLimits({ nproc: 512, tmp_size: '64Mi' }), pids: undefined, secretArgs: [] }).spec)
    expect(args).toContain('--read-only-tmpfs=false')
    expect(args).toContain(`/tmp:rw,nosuid,nodev,exec,mode=1777,size=${64 * 1024 * 1024}`)
    expect(args.some(a => a.startsWith('/run:') && a.includes(`size=${DEFAULT_LIMITS.runBytes}`))).toBe(true)
    expect(args).toContain('nproc=512:512')
    expect(args).toContain(`max-size=${DEFAULT_LIMITS.logMaxBytes}`)
  })

  it('env: values by name through podman\'s environment; caller values only when supplied, never in argv', () => {
    const a = agentSpec(desc, { dataDir: '/d', limits: DEFAULT_LIMITS, pids: undefined, secretArgs: [] })
    const withToken = render(a.spec, { ...a.values, MY_TOKEN: 'sekrit' })
    expect(withToken.args.join(' ')).not.toContain('sekrit')
    expect(withToken.podmanEnv.MY_TOKEN).toBe('sekrit')
    expect(withToken.podmanEnv.FOO).toBe('bar')
    const without = render(a.spec, a.values)
    expect(without.args).not.toContain('MY_TOKEN')
  })

  it('cgroup limits (pids, cpus, memory) only where the host enforces them', () => {
    const spec = agentSpec({ ...desc, resources: { cpus: 2, memory: '1073741824' } }, { dataDir: '/d', limits: DEFAULT_LIMITS, pids: 4096, secretArgs: [] }).spec
    expect(render(spec, {}, false).args).not.toContain('--pids-limit')
    expect(render(spec, {}, false).args).not.toContain('--cpus')
    const v2 = render(spec, {}, true).args
    expect(v2.slice(v2.indexOf('--pids-limit'), v2.indexOf('--pids-limit') + 2)).toEqual(['--pids-limit', '4096'])
    expect(v2).toContain('--cpus')
  })

  it('resources.pids: refused where the pids cgroup is not enforced, default only where it is', () => {
    expect(() => pidsLimit(1000, false)).toThrow(PodshellError)
    expect(pidsLimit(1000, true)).toBe(1000)
    expect(pidsLimit(undefined, false)).toBeUndefined()
    expect(pidsLimit(undefined, true)).toBe(4096)
  })

  it('the pod: loopback only, keep-id', () => {
    expect(podCreateArgs(podSpec('box', { a: 'b' }))).toEqual(['pod', 'create', '--name', 'podshell.box', '--infra-name', 'podshell.box.infra', '--hostname', 'box', '--network', 'none', '--userns', 'keep-id', '--label', 'a=b'])
  })
})

describe('legacy agent.json (argv + env values) → description', () => {
  it('keeps mounts, masks, scratch dirs, seccomp, workdir, user; drops argv and every stored --env NAME value', () => {
    const old = {
      flags: [
        '--pod', 'podshell.box', '--name', 'podshell.box.agent', '--label', 'io.podshell.sandbox=box', '--label', 'io.podshell.role=agent',
        '--http-proxy=false', '--user', '1000:1000', '--init', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges',
        '--security-opt', 'seccomp=/opt/s.json', '--read-only', '--read-only-tmpfs', '--tmpfs', '/tmp:rw,nosuid,nodev,mode=1777', '--ulimit', 'core=0:0',
        '--mount', 'type=bind,source=/d/sandboxes/box/home,destination=/home/u',
        '--mount', 'type=bind,source=/home/u/src/p,destination=/home/u/src/p',
        '--mount', 'type=bind,source=/home/u/src/p/.git,destination=/home/u/src/p/.git,ro=true',
        '--mount', 'type=tmpfs,destination=/opt/claude,tmpfs-mode=0700,U=true,notmpcopyup',
        '--mount', 'type=tmpfs,destination=/home/u/src/p/secret,ro=true,tmpfs-mode=000,notmpcopyup',
        '--workdir', '/home/u/src/p',
        '--env', 'HOME=/home/u', '--env', 'LANG=C.UTF-8', '--env', 'MY_TOKEN', '--env', 'HTTP_PROXY=http://127.0.0.1:3128',
      ],
      env: { MY_TOKEN: 'secret-value' },
      image: 'localhost/podshell-sandbox:latest',
      main: ['sleep', 'infinity'],
      providers: ['gh'],
    }
    const d = fromLegacy('/d', 'box', old)
    expect(d).toMatchObject({
      version: 2, home: '/home/u', uid: 1000, gid: 1000, seccomp: '/opt/s.json', workdir: '/home/u/src/p', providers: ['gh'],
      mounts: [{ source: '/home/u/src/p', target: '/home/u/src/p', mode: 'rw' }, { source: '/home/u/src/p/.git', target: '/home/u/src/p/.git', mode: 'ro' }],
      masks: ['/home/u/src/p/secret'], tmpfsDirs: ['/opt/claude'], env: { LANG: 'C.UTF-8' }, callerEnv: ['MY_TOKEN'],
    })
    expect(JSON.stringify(d)).not.toContain('secret-value')
  })
})

describe('podman hardening flags are written only under src/podman/', () => {
  it('the secret-reading helper container gets the one hardening list and no network', async () => {
    let seen: readonly string[] = []
    const podman = { run: async (args: readonly string[]) => ((seen = args), { stdout: '["v0","v1"]', stderr: '', exitCode: 0 }) } as unknown as Podman
    expect(await readSecretValues(podman, ['podshell.provider.gh.A', 'podshell.provider.gh.B'], 'localhost/gw:latest')).toEqual(['v0', 'v1'])
    expect(seen.join('\u0000')).toContain(HARDENING.join('\u0000'))
    expect(seen).toContain('--network=none')
    expect(seen).toContain('podshell.provider.gh.B,type=env,target=PODSHELL_V1')
    expect(seen.indexOf('localhost/gw:latest')).toBeGreaterThan(seen.indexOf('--secret'))
  })

  it('no module outside src/podman/ writes a hardening flag (grep over src/, comments aside)', () => {
    const src = join(import.meta.dirname, '..', '..', 'src')
    const files = (readdirSync(src, { recursive: true }) as string[]).filter(f => f.endsWith('.ts')).map(f => join(src, f))
    // A string literal that starts with one of these flags, or the no-new-privileges option anywhere in code.
    const flag = /['"`]--(cap-drop|cap-add|security-opt|read-only|userns|privileged|ulimit)\b|no-new-privileges/
    const offenders: string[] = []
    for (const f of files) {
      const rel = relative(src, f)
      if (rel.startsWith('podman/')) continue
      readFileSync(f, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          const code = line.trimStart()
          if (code.startsWith('*') || code.startsWith('//') || code.startsWith('/*')) return
          if (flag.test(code)) offenders.push(`src/${rel}:${i + 1}: ${code}`)
        })
    }
    expect(files.length).toBeGreaterThan(50)
    expect(offenders).toEqual([])
  })
})
