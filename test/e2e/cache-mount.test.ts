import { describe, it, expect } from 'vitest'
import { mkdirSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { cli, hostDir, uniqueName, podExists } from '../helpers/cli.js'

/**
 * podshell's cache dir holds what the host's podshell runs or trusts on every command: Node's
 * compile cache (V8 code), the OCI-runtime probe the fast exec path uses, image build contexts.
 * A sandbox with it mounted read-write could plant code there that runs on the host at the next
 * command. The attack: ask for that mount (default place and a relocated XDG_CACHE_HOME inside a
 * project); it must be refused in one line before anything is made, even with --allow-sensitive.
 */
describe("attack: mounting podshell's cache into a sandbox", () => {
  it('the default ~/.cache/podshell (or its compile cache) is refused, even with --allow-sensitive; nothing is made', async () => {
    const cache = join(homedir(), '.cache', 'podshell', 'node-compile-cache')
    mkdirSync(cache, { recursive: true })
    for (const [src, extra] of [
      [join(homedir(), '.cache', 'podshell'), []],
      [cache, ['--allow-sensitive']],
    ] as const) {
      const name = uniqueName('cachemnt')
      const r = await cli(['sandbox', 'create', '--name', name, ...extra, '--mount', `${src}:/x:rw`, '--no-keep', '--', 'true'])
      expect(r.code, r.stderr).toBe(2)
      expect(r.stderr).toMatch(/refusing to mount --mount .*podshell's cache/)
      expect(await podExists(name)).toBe(false)
    }
  })

  it('a project that holds the cache (XDG_CACHE_HOME inside it) is refused as --workdir', async () => {
    const proj = hostDir('cacheproj')
    const xdg = join(proj, '.xdg-cache')
    mkdirSync(join(xdg, 'podshell'), { recursive: true })
    const name = uniqueName('cachewd')
    const r = await cli(['sandbox', 'create', '--name', name, '--workdir', proj, '--no-keep', '--', 'true'], { env: { XDG_CACHE_HOME: xdg } })
    expect(r.code, r.stderr).toBe(2)
    expect(r.stderr).toMatch(/podshell's cache/)
    expect(await podExists(name)).toBe(false)
  })
})
