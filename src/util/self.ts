import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/**
 * The entry that runs podshell's own background commands (`podshell _watch`, `_teardown`):
 * dist/cli/main.js, found from dist/<dir>/ or from the bundle (dist/bundle/).
 */
export function cliMain(): string {
  const near = fileURLToPath(new URL('../cli/main.js', import.meta.url))
  if (existsSync(near)) return near
  return fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))
}
