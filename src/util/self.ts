import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { SANDBOX_NAME_RE } from './patterns.js'

/**
 * The entry that runs podshell's own background commands (`podshell _watch`, `_teardown`):
 * dist/cli/main.js, found from dist/<dir>/ or from the bundle (dist/bundle/).
 */
export function cliMain(): string {
  const near = fileURLToPath(new URL('../cli/main.js', import.meta.url))
  if (existsSync(near)) return near
  return fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))
}

/**
 * The arguments of podshell's own background commands (`_watch`, `_teardown`): `--data DIR NAME`,
 * DIR absolute and NAME a sandbox name; undefined when they are not that.
 */
export function internalArgs(argv: readonly string[]): { dataDir: string; name: string } | undefined {
  const i = argv.indexOf('--data')
  const dataDir = i >= 0 ? argv[i + 1] : undefined
  const name = argv.filter((a, k) => !a.startsWith('--') && k !== i + 1)[0]
  if (!dataDir || !dataDir.startsWith('/') || !name || !SANDBOX_NAME_RE.test(name)) return undefined
  return { dataDir, name }
}
