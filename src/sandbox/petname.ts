import { customAlphabet } from 'nanoid'
import { SANDBOX_NAME_RE } from '../util/patterns.js'

// Generated sandbox names, apart from naming.ts: nanoid loads node:crypto, and the fast
// `sandbox exec` path (which needs naming.ts, never a new name) should not pay for it.
const ADJECTIVES = ['amber', 'brave', 'calm', 'clever', 'quiet', 'rapid', 'solid', 'swift', 'tidy', 'bold', 'keen', 'lucid', 'noble', 'proud', 'sunny', 'vivid', 'witty', 'zesty', 'agile', 'merry']
const NOUNS = ['otter', 'falcon', 'maple', 'harbor', 'comet', 'cedar', 'heron', 'badger', 'lark', 'quartz', 'willow', 'ember', 'fjord', 'gecko', 'lynx', 'puffin', 'raven', 'tundra', 'walrus', 'zephyr']
const letters = customAlphabet('abcdefghijklmnopqrstuvwxyz', 6)
const suffix = customAlphabet('abcdefghijklmnopqrstuvwxyz0123456789', 4)

/** Two-word petname plus a short random suffix, truncated to 19; 6 random letters as fallback. */
export function generateName(taken: ReadonlySet<string> = new Set()): string {
  for (let i = 0; i < 20; i++) {
    const a = ADJECTIVES[Math.floor(Math.random() * ADJECTIVES.length)]!
    const n = NOUNS[Math.floor(Math.random() * NOUNS.length)]!
    let name = `${a}-${n}`
    if (name.length > 14) name = name.slice(0, 14).replace(/-+$/, '')
    name = `${name}-${suffix()}`
    if (SANDBOX_NAME_RE.test(name) && !taken.has(name)) return name
  }
  return letters()
}

