import { customAlphabet } from 'nanoid'
import { SANDBOX_NAME_RE } from '../util/patterns.js'

/**
 * Names. A sandbox name is a DNS-1123 label of at most 19 characters (OpenShell's routable-name
 * limit). Podman objects derive from it with "." separators, which a DNS label cannot contain, so
 * no two sandboxes' objects can collide ("a-agent" vs "a" + "-agent").
 */
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

export const podName = (name: string) => `podshell.${name}`
export const agentContainer = (name: string) => `podshell.${name}.agent`
export const bridgeContainer = (name: string) => `podshell.${name}.bridge`
export const infraContainer = (name: string) => `podshell.${name}.infra`

/** Label keys (the source of truth for lifecycle). */
export const L = {
  sandbox: 'io.podshell.sandbox',
  id: 'io.podshell.id',
  created: 'io.podshell.created',
  role: 'io.podshell.role',
  image: 'io.podshell.image',
  workdir: 'io.podshell.workdir',
  mounts: 'io.podshell.mounts',
  providers: 'io.podshell.providers',
  sessionType: 'io.podshell.session-type',
  creator: 'io.podshell.creator',
  command: 'io.podshell.command',
  keep: 'io.podshell.keep',
  userPrefix: 'io.podshell.label.',
} as const
