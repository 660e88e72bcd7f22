import { describe, expect, it } from 'vitest'
import { podmanError, staleRootlessState } from '../../src/podman/podman.js'

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

  it('other failures keep their own classification', () => {
    const gone = podmanError(['exec', 'x'], { stdout: '', stderr: 'Error: no such container x', exitCode: 125 })
    expect(gone.code).toBe('PODMAN_FAILED')
    expect(gone.hint).toMatch(/sandbox list/)
    expect(staleRootlessState('Error: crun: cgroups in hybrid mode not supported')).toBeUndefined()
  })
})
