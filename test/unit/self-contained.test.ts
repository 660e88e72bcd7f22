import { describe, expect, it } from 'vitest'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * The suite stands alone: `git clone && npm ci && npm run test:unit` passes with nothing beside the
 * checkout (CI gets a shared/ dir beside the clone, developers' machines may not). A test that
 * reaches for ../shared (as three did, and a fourth came back) fails here, naming the file; the
 * OpenShell fixtures are in test/fixtures/.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const OUTSIDE = [/\.\.\/\.\.\/\.\.\/shared\b/, /\.\.\/shared\//, /['"]\.\.['"],\s*['"]shared['"]/]

function files(dir: string): string[] {
  return readdirSync(dir).flatMap(n => {
    const p = join(dir, n)
    if (n === 'node_modules' || n === 'fixtures') return []
    return statSync(p).isDirectory() ? files(p) : /\.(ts|mjs|js)$/.test(n) ? [p] : []
  })
}

describe('the repository stands alone', () => {
  it('no source, test, bench or script file reads a sibling ../shared directory', () => {
    const all = ['src', 'test', 'bench', 'scripts'].flatMap(d => files(join(ROOT, d)))
    expect(all.length).toBeGreaterThan(50)
    const offenders = all.filter(f => OUTSIDE.some(re => re.test(readFileSync(f, 'utf8')))).map(f => relative(ROOT, f))
    expect(offenders).toEqual([])
  })
})
