import { describe, it, expect } from 'vitest'
import { gatewayRunArgs, gatewayContainerName, GATEWAY_CONTAINER, GATEWAY_COMMAND } from '../../src/gateway/lifecycle.js'
import { dataDir } from '../../src/config/paths.js'
import { GATEWAY_IMAGE } from '../../src/images/names.js'
import { parseDuration } from '../../src/cli/logs.js'

const env = { HOME: '/home/u' }

describe('gateway container name', () => {
  it('is podshell-gateway for the default data dir', () => {
    expect(gatewayContainerName(dataDir(env), env)).toBe(GATEWAY_CONTAINER)
    expect(gatewayContainerName('/home/u/.local/share/podshell', { ...env, PODSHELL_HOME: '/home/u/.local/share/podshell' })).toBe(GATEWAY_CONTAINER)
  })
  it('is distinct (and stable) for any other data dir, so two data dirs never share a gateway', () => {
    const a = gatewayContainerName('/tmp/a', env)
    expect(a).toMatch(/^podshell-gateway-[0-9a-f]{10}$/)
    expect(gatewayContainerName('/tmp/a', env)).toBe(a)
    expect(gatewayContainerName('/tmp/b', env)).not.toBe(a)
  })
})

describe('gateway run arguments', () => {
  const args = gatewayRunArgs('/home/u/.local/share/podshell', env)
  it('hardens the container and restarts it on crash', () => {
    const joined = args.join(' ')
    expect(joined).toContain('--cap-drop ALL')
    expect(joined).toContain('--security-opt no-new-privileges')
    expect(args).toContain('--read-only')
    expect(joined).toContain('--restart always')
    expect(joined).toContain('--label io.podshell.role=gateway')
    expect(joined).toContain('--label io.podshell.data=/home/u/.local/share/podshell')
  })
  it("mounts only the gateway's view of the data dir (<data>/gateway), and runs `gateway serve` on the data path", () => {
    const mounts = args.filter((a, i) => args[i - 1] === '--mount' || args[i - 1] === '-v')
    expect(mounts).toHaveLength(1)
    expect(mounts[0]).toMatch(/^type=bind,source=\/home\/u\/\.local\/share\/podshell\/gateway,destination=\/var\/lib\/podshell\/gateway(,relabel=shared)?$/)
    expect(args.slice(-GATEWAY_COMMAND.length - 1)).toEqual([GATEWAY_IMAGE, ...GATEWAY_COMMAND])
    expect(GATEWAY_COMMAND).toEqual(['node', '/opt/podshell/dist/cli/main.js', 'gateway', 'serve', '--data', '/var/lib/podshell'])
  })
  it('never uses a private SELinux label (:Z) on the shared data dir', () => {
    expect(args.join(' ')).not.toMatch(/relabel=private|:Z/)
  })
  it.each(['/data,dir', '/data:dir', 'relative/dir', '/a/../b'])('refuses a data dir podman would misparse: %s', d => {
    expect(() => gatewayRunArgs(d, env)).toThrow(/data dir/)
  })
})

describe('log durations', () => {
  it.each([
    ['30s', 30_000],
    ['5m', 300_000],
    ['2h', 7_200_000],
    ['1d', 86_400_000],
    ['500ms', 500],
    ['10', 10_000],
    ['1.5m', 90_000],
  ])('%s = %d ms', (s, ms) => {
    expect(parseDuration(s)).toBe(ms)
  })
  it.each(['', '5x', '-1m', 'm5', '5 m'])('rejects %j', s => {
    expect(() => parseDuration(s)).toThrow(/invalid duration/)
  })
})
