import { describe, expect, it } from 'vitest'
import { evaluate, type DoctorReport } from '../../src/doctor/checks.js'
import { parseGetSubIds, parseSubIds, type DoctorFacts } from '../../src/doctor/facts.js'
import { renderReport } from '../../src/doctor/doctor.js'

/** Facts gathered by `gatherFacts` on this project's Debian 12 machine (hybrid cgroups, crun 1.8). */
const debianHybrid: DoctorFacts = {
  platform: 'linux',
  uid: 1004,
  user: 'podshell-dev3',
  binaries: { podman: '/usr/bin/podman', docker: '/usr/local/bin/docker', slirp4netns: '/usr/bin/slirp4netns', getsubids: '/usr/bin/getsubids' },
  podman: {
    ok: true,
    path: '/usr/bin/podman',
    version: '4.3.1',
    runtime: {
      runtime: 'runc',
      reason: 'crun failed: crun: cgroups in hybrid mode not supported, drop all controllers from cgroupv2; runc works',
      failed: [{ runtime: 'crun', error: 'crun: cgroups in hybrid mode not supported, drop all controllers from cgroupv2' }],
    },
  },
  info: {
    rootless: true,
    graphDriver: 'overlay',
    graphRoot: '/home/podshell-dev3/.local/share/containers/storage',
    cgroupVersion: 'v1',
    cgroupManager: 'cgroupfs',
    cgroupControllers: [],
    seccompEnabled: true,
    selinuxEnabled: false,
    networkBackend: 'netavark',
    slirp4netns: '/usr/bin/slirp4netns',
  },
  subuid: [{ start: 331072, count: 65536 }],
  subgid: [{ start: 296608, count: 65536 }],
  subidSource: 'files',
  tun: { exists: true, readWrite: true },
  xdgRuntimeDir: { value: '/run/user/1004', exists: true, ownedByUser: true, mode: 0o700 },
  cgroup: { layout: 'hybrid', limits: { outcome: 'ignored', detail: 'Resource limits are not supported and ignored on cgroups V1 rootless systems' } },
  seccompProfile: { path: '/home/podshell-dev3/main/seccomp/default.json', ok: true },
  images: [
    { kind: 'sandbox', ref: 'localhost/podshell-sandbox:latest', state: 'current', id: 'd22dc40d7a2bc524c58ef53f4d5963cdf7540e1e8f769343f7a98959812461fb', size: 307087477, base: 'localhost/podshell-base:bookworm' },
    { kind: 'gateway', ref: 'localhost/podshell-gateway:latest', state: 'current', id: '1baa5830f41784b55b98f1e5b9324f4d36de52190e696a254ed68d5cc9a68c67', size: 442007130, base: 'localhost/podshell-base:bookworm' },
  ],
}

/** A Fedora-like host: cgroup v2 with delegation, crun works, pasta. */
const fedoraV2: DoctorFacts = {
  ...debianHybrid,
  uid: 1000,
  user: 'dev',
  binaries: { podman: '/usr/bin/podman', pasta: '/usr/bin/pasta', openshell: '/home/dev/.local/bin/openshell' },
  podman: { ok: true, path: '/usr/bin/podman', version: '5.2.2', runtime: { runtime: 'crun', reason: 'crun works', failed: [] } },
  info: { ...debianHybrid.info!, cgroupVersion: 'v2', cgroupManager: 'systemd', cgroupControllers: ['cpu', 'io', 'memory', 'pids'], selinuxEnabled: true, pasta: '/usr/bin/pasta', slirp4netns: undefined },
  xdgRuntimeDir: { value: '/run/user/1000', exists: true, ownedByUser: true, mode: 0o700 },
  cgroup: { layout: 'v2', delegated: ['cpu', 'io', 'memory', 'pids'], limits: { outcome: 'applied', detail: 'ok' } },
}

const byId = (r: DoctorReport, id: string) => {
  const c = r.checks.find(x => x.id === id)
  if (!c) throw new Error(`no check ${id}`)
  return c
}
const facts = (over: Partial<DoctorFacts>, base: DoctorFacts = debianHybrid): DoctorFacts => ({ ...base, ...over })

describe('doctor on this machine (captured facts)', () => {
  const r = evaluate(debianHybrid)

  it('can run (exit 0): no check fails', () => {
    expect(r.ok).toBe(true)
    expect(r.checks.filter(c => c.status === 'fail')).toEqual([])
  })

  it('reports the crun -> runc fallback with the reason from the probe', () => {
    expect(r.runtime).toEqual({
      name: 'runc',
      reason: expect.stringContaining('cgroups in hybrid mode not supported'),
      fallback: true,
      failed: [{ runtime: 'crun', error: expect.stringContaining('hybrid mode') }],
    })
    expect(byId(r, 'runtime').detail).toMatch(/^runc, fallback: crun failed: .*hybrid mode.*; runc works$/)
  })

  it('warns that rootless resource limits are ignored on hybrid cgroups, with the kernel-argument fix', () => {
    const c = byId(r, 'cgroups')
    expect(c.status).toBe('warn')
    expect(c.detail).toMatch(/hybrid.*ignored/)
    expect(c.fix).toMatch(/systemd\.unified_cgroup_hierarchy=1/)
  })

  it('reports binaries on PATH', () => {
    expect(r).toMatchObject({ has_podman: true, has_docker: true, has_openshell: false, podman_version: '4.3.1' })
  })

  it('has every check named in the brief, in a stable order', () => {
    expect(r.checks.map(c => c.id)).toEqual(['podman', 'rootless', 'subids', 'runtime', 'storage', 'network', 'seccomp', 'cgroups', 'xdg', 'images'])
  })

  it('renders a table with the fixes of what is not ok', () => {
    const t = renderReport(r)
    expect(t).toMatch(/^CHECK\s+STATUS\s+DETAIL\n/)
    expect(t).toMatch(/OCI runtime\s+OK\s+runc, fallback/)
    expect(t).toMatch(/WARN cgroups \/ resource limits: boot with cgroup v2/)
    expect(t).toMatch(/podshell can run on this host \(1 warning\)\n$/)
  })
})

describe('doctor on other hosts', () => {
  it('cgroup v2 with delegated controllers, crun: all ok, no fallback', () => {
    const r = evaluate(fedoraV2)
    expect(r.ok).toBe(true)
    expect(r.checks.every(c => c.status === 'ok')).toBe(true)
    expect(r.runtime).toMatchObject({ name: 'crun', fallback: false })
    expect(byId(r, 'network').detail).toMatch(/^pasta/)
    expect(r.has_openshell).toBe(true)
  })

  it('cgroup v2 without memory delegation: limits fail, fix is the systemd Delegate drop-in', () => {
    const r = evaluate(facts({ cgroup: { layout: 'v2', delegated: ['pids'], limits: { outcome: 'failed', detail: 'crun: opening file `memory.max` for writing: No such file or directory' } } }, fedoraV2))
    const c = byId(r, 'cgroups')
    expect(c.status).toBe('warn')
    expect(c.detail).toMatch(/memory\.max/)
    expect(c.fix).toMatch(/Delegate=cpu cpuset io memory pids/)
    expect(r.ok).toBe(true)
  })

  it('cgroup v2 where limits apply but cpu is not delegated: warns', () => {
    const r = evaluate(facts({ cgroup: { layout: 'v2', delegated: ['memory', 'pids'], limits: { outcome: 'applied', detail: 'ok' } } }, fedoraV2))
    expect(byId(r, 'cgroups')).toMatchObject({ status: 'warn', detail: expect.stringMatching(/cpu not delegated/) })
  })

  it('root is not supported: fail, exit 1', () => {
    const r = evaluate(facts({ uid: 0, user: 'root', info: { ...debianHybrid.info!, rootless: false } }))
    expect(byId(r, 'rootless')).toMatchObject({ status: 'fail', fix: 'run podshell as your normal user' })
    expect(r.ok).toBe(false)
    expect(r.checks.some(c => c.id === 'subids')).toBe(false)
  })

  it('no podman: podman fails, dependent checks are not run, binaries still reported', () => {
    const r = evaluate(facts({
      binaries: { docker: '/usr/bin/docker' },
      podman: { ok: false, error: 'podman not found: install podman >= 4.3', code: 'PODMAN_NOT_FOUND' },
      info: undefined,
      infoError: 'podman is not usable',
      images: undefined,
      cgroup: { layout: 'v2' },
    }))
    expect(r.ok).toBe(false)
    expect(byId(r, 'podman')).toMatchObject({ status: 'fail', fix: expect.stringMatching(/install podman >= 4\.3/) })
    expect(byId(r, 'runtime').detail).toMatch(/not checked/)
    expect(r).toMatchObject({ has_podman: false, has_docker: true, podman_version: null, runtime: null })
  })

  it('podman older than 4.3 fails', () => {
    const r = evaluate(facts({ podman: { ok: false, error: 'podman 4.2.0 is too old: install podman >= 4.3', code: 'PODMAN_TOO_OLD' } }))
    expect(byId(r, 'podman')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/4\.2\.0 is too old/) })
  })

  it('no working runtime fails with the runtimes errors', () => {
    const r = evaluate(facts({ podman: { ok: false, error: 'no working OCI runtime: crun: x; runc: y', code: 'NO_RUNTIME' } }))
    expect(byId(r, 'runtime')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/crun: x; runc: y/) })
  })

  it('stale rootless state fails the podman check with `podman system migrate` as the fix', () => {
    const error = "podman's rootless state is stale: its pause process is gone: run `podman system migrate` once"
    const r = evaluate(facts({ podman: { ok: false, error, code: 'PODMAN_STALE_STATE' }, info: undefined }))
    expect(byId(r, 'podman')).toMatchObject({ status: 'fail', fix: expect.stringMatching(/^run `podman system migrate`/) })
    expect(byId(r, 'runtime').status).not.toBe('fail')
    expect(r.ok).toBe(false)
  })

  it('vfs storage warns with the storage.conf fix and the reset', () => {
    const r = evaluate(facts({ info: { ...debianHybrid.info!, graphDriver: 'vfs' } }))
    const c = byId(r, 'storage')
    expect(c.status).toBe('warn')
    expect(c.fix).toContain('[storage]\ndriver = "overlay"')
    expect(c.fix).toContain('podman system reset')
    expect(r.ok).toBe(true)
  })

  it('missing subuid range fails; a short range warns', () => {
    expect(byId(evaluate(facts({ subuid: [], subidSource: 'none' })), 'subids')).toMatchObject({ status: 'fail', fix: expect.stringMatching(/usermod --add-subuids/) })
    expect(byId(evaluate(facts({ subgid: [{ start: 100000, count: 1000 }] })), 'subids').status).toBe('warn')
    expect(byId(evaluate(facts({ subidSource: 'getsubids' })), 'subids').detail).toMatch(/getsubids/)
  })

  it('/dev/net/tun not writable (this host before setup) fails: the gateway cannot get a network', () => {
    const r = evaluate(facts({ tun: { exists: true, readWrite: false, error: 'EACCES' } }))
    expect(byId(r, 'network')).toMatchObject({ status: 'fail', fix: expect.stringMatching(/chmod 666 \/dev\/net\/tun/) })
    expect(r.ok).toBe(false)
  })

  it('no pasta and no slirp4netns fails', () => {
    const r = evaluate(facts({ binaries: { podman: '/usr/bin/podman' }, info: { ...debianHybrid.info!, slirp4netns: undefined } }))
    expect(byId(r, 'network').status).toBe('fail')
  })

  it('seccomp disabled in podman fails (the agent would run unfiltered); a broken profile file fails', () => {
    expect(byId(evaluate(facts({ info: { ...debianHybrid.info!, seccompEnabled: false } })), 'seccomp').status).toBe('fail')
    expect(byId(evaluate(facts({ seccompProfile: { path: '/x.json', ok: false, error: 'ENOENT' } })), 'seccomp')).toMatchObject({ status: 'fail', detail: expect.stringMatching(/\/x\.json: ENOENT/) })
  })

  it('XDG_RUNTIME_DIR: unset warns, missing or foreign fails, group-readable warns', () => {
    expect(byId(evaluate(facts({ xdgRuntimeDir: { exists: false, ownedByUser: false } })), 'xdg').status).toBe('warn')
    expect(byId(evaluate(facts({ xdgRuntimeDir: { value: '/run/user/1004', exists: false, ownedByUser: false } })), 'xdg').status).toBe('fail')
    expect(byId(evaluate(facts({ xdgRuntimeDir: { value: '/run/user/1004', exists: true, ownedByUser: false, mode: 0o700 } })), 'xdg').status).toBe('fail')
    expect(byId(evaluate(facts({ xdgRuntimeDir: { value: '/run/user/1004', exists: true, ownedByUser: true, mode: 0o755 } })), 'xdg').status).toBe('warn')
  })

  it('images missing or stale warn (built on first use), never fail', () => {
    const missing = evaluate(facts({ images: [{ kind: 'sandbox', ref: 'localhost/podshell-sandbox:latest', state: 'missing' }, { kind: 'gateway', ref: 'localhost/podshell-gateway:latest', state: 'current', id: 'abc' }] }))
    expect(byId(missing, 'images')).toMatchObject({ status: 'warn', detail: expect.stringMatching(/podshell-sandbox.*first use/) })
    const stale = evaluate(facts({ images: [{ kind: 'gateway', ref: 'localhost/podshell-gateway:latest', state: 'stale', id: 'abc' }] }))
    expect(byId(stale, 'images')).toMatchObject({ status: 'warn', fix: 'podshell image build gateway' })
    expect(missing.ok && stale.ok).toBe(true)
  })
})

describe('doctor off Linux (podman machine)', () => {
  it('macOS: host-side checks (subids, tun, XDG) do not apply; podman and the VM decide', () => {
    const r = evaluate(facts({
      platform: 'darwin',
      uid: 501,
      user: 'dev',
      binaries: { podman: '/opt/homebrew/bin/podman' },
      subuid: [],
      subgid: [],
      subidSource: 'none',
      tun: { exists: false, readWrite: false },
      xdgRuntimeDir: { exists: false, ownedByUser: false },
      info: { ...debianHybrid.info!, cgroupVersion: 'v2', pasta: '/usr/bin/pasta', slirp4netns: undefined },
      cgroup: { layout: 'v2', limits: { outcome: 'applied', detail: 'ok' } },
    }, fedoraV2))
    expect(r.ok).toBe(true)
    expect(byId(r, 'subids').detail).toMatch(/podman machine/)
    expect(byId(r, 'network').status).toBe('ok')
    expect(byId(r, 'xdg').status).toBe('ok')
  })
})

describe('subordinate id parsing', () => {
  it('matches the user by name or uid and skips others and junk', () => {
    const content = 'alice:100000:65536\n1004:200000:1000\npodshell-dev3:331072:65536\n# comment\nbad line\nbob:1:x\n'
    expect(parseSubIds(content, 'podshell-dev3', 1004)).toEqual([{ start: 200000, count: 1000 }, { start: 331072, count: 65536 }])
    expect(parseSubIds(content, 'carol', 1005)).toEqual([])
  })

  it('parses getsubids output', () => {
    expect(parseGetSubIds('0: podshell-dev3 331072 65536\n1: podshell-dev3 500000 10\n')).toEqual([{ start: 331072, count: 65536 }, { start: 500000, count: 10 }])
    expect(parseGetSubIds('Error fetching ranges\n')).toEqual([])
  })
})
