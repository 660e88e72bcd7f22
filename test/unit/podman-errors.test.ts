import { describe, expect, it } from 'vitest'
import { podmanError, podmanStateProblem } from '../../src/podman/podman.js'

/** podman 4.3.1's stderr on a host whose XDG_RUNTIME_DIR outlived its pause process (seen in CI). */
const STALE =
  'time="2026-11-28T01:40:04Z" level=warning msg="\\"/\\" is not a shared mount, this could cause issues or missing mounts with rootless containers"\n' +
  'time="2026-11-28T01:40:04Z" level=error msg="invalid internal status, try resetting the pause process with \\"podman system migrate\\": could not find any running process: no such process"'

describe('podman failures name the fix', () => {
  it('a stale pause process is reported as stale state with `podman system migrate`, not as a missing runtime', () => {
    const e = podmanError(['run', '--rm'], { stdout: '', stderr: STALE, exitCode: 1 })
    expect(e.code).toBe('PODMAN_STALE_STATE')
    expect(e.oneLine()).toMatch(/stale.*podman system migrate/)
    expect(e.oneLine()).not.toMatch(/install crun/)
  })

  it('layers written under another subuid range are reported with `podman system reset`', () => {
    const stderr =
      'time="2026-11-28T01:48:28Z" level=warning msg="Found incomplete layer \\"a78\\", deleting it"\n' +
      'Error: openfdat /home/u/.local/share/containers/storage/overlay/a7819319fe21580112e914f19f4d5c4c5797e55b2255e7f3fe4ace2bb99f21fc: permission denied'
    const e = podmanError(['image', 'inspect'], { stdout: '', stderr, exitCode: 125 })
    expect(e.code).toBe('PODMAN_STORAGE_IDMAP')
    expect(e.hint).toMatch(/podman system reset/)
  })

  it('other failures keep their own classification', () => {
    const gone = podmanError(['exec', 'x'], { stdout: '', stderr: 'Error: no such container x', exitCode: 125 })
    expect(gone.code).toBe('PODMAN_FAILED')
    expect(gone.hint).toMatch(/sandbox list/)
    expect(podmanStateProblem('Error: crun: cgroups in hybrid mode not supported')).toBeUndefined()
  })
})
