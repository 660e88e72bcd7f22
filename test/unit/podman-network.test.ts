import { describe, expect, it } from 'vitest'
import { pickGatewayNetwork, PASTA_GATEWAY_OPTIONS } from '../../src/podman/network.js'
import { gatewayRunArgs } from '../../src/gateway/lifecycle.js'
import { sysfsNetMaskArgs, sysfsNetMasks } from '../../src/podman/sysfs.js'
import { evaluate } from '../../src/doctor/checks.js'
import type { DoctorFacts } from '../../src/doctor/facts.js'

/**
 * The gateway's network helper (src/podman/network.ts): Podman 4 keeps its default (slirp4netns, no
 * flag); Podman 5 gets pasta with an address of its own, because pasta's default (a copy of the
 * host's address) makes the host's own addresses unreachable from the gateway. The e2e suite under
 * the Podman 5 lane (.ci/run) is what proves the gateway then reaches the test host; these pin the rule.
 */
describe('the gateway network rule', () => {
  it('Podman 4 with slirp4netns: no flag, podman\'s own default (argv as before)', () => {
    expect(pickGatewayNetwork('4.3.1', { pasta: false, slirp4netns: true })).toMatchObject({ helper: 'slirp4netns', args: [] })
    // Podman 4.3 does not know pasta: even when installed it is not asked for.
    expect(pickGatewayNetwork('4.9.4', { pasta: true, slirp4netns: true })).toMatchObject({ helper: 'slirp4netns', args: [] })
  })

  it('Podman 5 with pasta: pasta with slirp4netns\'s address layout, never the host\'s own address', () => {
    const n = pickGatewayNetwork('5.4.2', { pasta: true, slirp4netns: true })
    expect(n.helper).toBe('pasta')
    expect(n.args).toEqual(['--network', 'pasta:-a,10.0.2.100,-n,24,-g,10.0.2.2'])
    expect(PASTA_GATEWAY_OPTIONS).not.toContain('--map-gw')
  })

  it('slirp4netns is started with a fixed malloc mmap threshold (its per-connection buffers returned when the connection goes); pasta gets no extra environment', () => {
    expect(pickGatewayNetwork('4.3.1', { pasta: false, slirp4netns: true }).env).toEqual({ MALLOC_MMAP_THRESHOLD_: '65536' })
    expect(pickGatewayNetwork('5.0.0', { pasta: false, slirp4netns: true }).env).toEqual({ MALLOC_MMAP_THRESHOLD_: '65536' })
    expect(pickGatewayNetwork('5.4.2', { pasta: true, slirp4netns: true }).env).toEqual({})
    expect(pickGatewayNetwork('5.4.2', { pasta: false, slirp4netns: false }).env).toEqual({})
  })

  it('Podman 5 without pasta falls back to slirp4netns by name; neither helper: none picked', () => {
    expect(pickGatewayNetwork('5.0.0', { pasta: false, slirp4netns: true })).toMatchObject({ helper: 'slirp4netns', args: ['--network', 'slirp4netns'] })
    expect(pickGatewayNetwork('5.4.2', { pasta: false, slirp4netns: false }).helper).toBeUndefined()
    expect(pickGatewayNetwork('4.3.1', { pasta: true, slirp4netns: false }).helper).toBeUndefined()
  })

  it('the network arguments go before the image in the gateway\'s podman run', () => {
    const args = gatewayRunArgs('/home/u/.local/share/podshell', { HOME: '/home/u' }, 'localhost/podshell-gateway:latest', ['--network', 'pasta:-a,10.0.2.100'])
    const img = args.indexOf('localhost/podshell-gateway:latest')
    expect(args.indexOf('--network')).toBeGreaterThan(0)
    expect(args.indexOf('--network')).toBeLessThan(img)
    expect(args.filter(a => a === '--network')).toHaveLength(1)
  })
})

/** Facts of the Podman 5 lane on this project's machine (scripts/podman5-lane.sh: Debian 13 tree, hybrid cgroups). */
const podman5Lane: DoctorFacts = {
  platform: 'linux',
  uid: 1010,
  user: 'psh-ci5',
  binaries: { podman: '/usr/bin/podman', pasta: '/usr/bin/pasta', slirp4netns: '/usr/bin/slirp4netns' },
  podman: { ok: true, path: '/usr/bin/podman', version: '5.4.2', runtime: { runtime: 'runc', reason: 'crun failed: x; runc works', failed: [{ runtime: 'crun', error: 'x' }] } },
  info: {
    rootless: true, graphDriver: 'overlay', graphRoot: '/home/psh-ci5/.local/share/containers/storage', cgroupVersion: 'v1', cgroupManager: 'cgroupfs',
    cgroupControllers: [], seccompEnabled: true, selinuxEnabled: false, networkBackend: 'netavark', pasta: '/usr/bin/pasta', slirp4netns: '/usr/bin/slirp4netns',
  },
  subuid: [{ start: 689824, count: 65536 }],
  subgid: [{ start: 689824, count: 65536 }],
  subidSource: 'files',
  tun: { exists: true, readWrite: true },
  xdgRuntimeDir: { value: '/run/user/1010', exists: true, ownedByUser: true, mode: 0o700 },
  cgroup: { layout: 'hybrid', limits: { outcome: 'ignored', detail: 'Resource limits are not supported and ignored on cgroups V1 rootless systems' } },
  seccompProfile: { path: '/x/seccomp/default.json', ok: true },
}

describe('doctor reports the network backend and the gateway helper', () => {
  it('Podman 5.4: netavark, pasta picked', () => {
    const r = evaluate(podman5Lane)
    expect(r.podman_version).toBe('5.4.2')
    expect(r.network).toEqual({ backend: 'netavark', gateway_helper: 'pasta' })
    const c = r.checks.find(x => x.id === 'network')!
    expect(c).toMatchObject({ status: 'ok', detail: expect.stringMatching(/^pasta .*netavark backend; found: pasta, slirp4netns/) })
  })

  it('Podman 4.3 with CNI: slirp4netns picked', () => {
    const r = evaluate({ ...podman5Lane, binaries: { podman: '/usr/bin/podman', slirp4netns: '/usr/bin/slirp4netns' }, podman: { ...podman5Lane.podman, version: '4.3.1' } as DoctorFacts['podman'], info: { ...podman5Lane.info!, networkBackend: 'cni', pasta: undefined } })
    expect(r.network).toEqual({ backend: 'cni', gateway_helper: 'slirp4netns' })
    expect(r.checks.find(x => x.id === 'network')!.detail).toMatch(/^slirp4netns \(podman 4 default\); cni backend/)
  })

  it('Podman 4.3 with only pasta fails with the fix (4.3 cannot use pasta)', () => {
    const r = evaluate({ ...podman5Lane, binaries: { podman: '/usr/bin/podman', pasta: '/usr/bin/pasta' }, podman: { ...podman5Lane.podman, version: '4.3.1' } as DoctorFacts['podman'], info: { ...podman5Lane.info!, slirp4netns: undefined } })
    expect(r.checks.find(x => x.id === 'network')).toMatchObject({ status: 'fail', fix: expect.stringMatching(/install slirp4netns/) })
    expect(r.network.gateway_helper).toBeNull()
  })
})

describe('the host interfaces are masked in the agent\'s /sys under Podman 5 (src/podman/sysfs.ts)', () => {
  it('masks the class dir, the virtual dir and each physical device\'s net dir; never a path with a comma', () => {
    const args = sysfsNetMaskArgs(['/sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0', '/sys/devices/virtual/net/lo', '/sys/devices/x,y/net/evil', '/etc/net/z'])
    const dests = args.filter((_, i) => i % 2 === 1).map(m => /destination=([^,]+)/.exec(m)![1])
    expect(dests).toEqual(['/sys/class/net', '/sys/devices/pci0000:00/0000:00:03.0/virtio2/net', '/sys/devices/virtual/net'])
    for (const m of args.filter((_, i) => i % 2 === 1)) expect(m).toMatch(/^type=tmpfs,destination=\S+,ro=true,tmpfs-mode=000,notmpcopyup$/)
  })

  it('Podman 4 gets no masks (its sysfs is the sandbox\'s own); Podman 5 gets them from this host\'s /sys', () => {
    expect(sysfsNetMasks('4.3.1')).toEqual([])
    const five = sysfsNetMasks('5.4.2')
    expect(five).toContain('type=tmpfs,destination=/sys/class/net,ro=true,tmpfs-mode=000,notmpcopyup')
  })
})
