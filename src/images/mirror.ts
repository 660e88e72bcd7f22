import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { DEBIAN_SUITE } from './names.js'

/**
 * Which Debian mirror an offline build bootstraps from: the one the host's apt already uses, so a
 * host with a local or proxied mirror (and no route to deb.debian.org) still works. Both apt source
 * formats are read: one-line `sources.list` and deb822 `*.sources`.
 *
 * Only entries for Debian suites are used (an Ubuntu mirror does not carry bookworm); each kept
 * entry is retargeted at the image's suite (`trixie-security` on the host becomes
 * `bookworm-security` in the image), and only the `main` component is used.
 */
export interface AptSource {
  types: string[]
  uris: string[]
  suites: string[]
  components: string[]
  enabled: boolean
}

export interface SourcesFile {
  path: string
  content: string
}

/** Debian codenames and aliases a mirror entry may name (suite without -updates/-security). */
const DEBIAN_SUITES = new Set([
  'buster', 'bullseye', 'bookworm', 'trixie', 'forky', 'duke', 'sid',
  'oldoldstable', 'oldstable', 'stable', 'testing', 'unstable',
])
const SUITE_RE = /^([a-z]+)(-updates|-security|\/updates)?$/

export const DEFAULT_DEBIAN_MIRROR = 'http://deb.debian.org/debian'

/** One-line format: `deb [opts] URI SUITE COMPONENT...`; comments and deb-src ignored. */
export function parseOneLine(content: string): AptSource[] {
  const out: AptSource[] = []
  for (const raw of content.split('\n')) {
    const line = raw.replace(/#.*$/, '').trim()
    if (!line) continue
    const m = /^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)((?:\s+\S+)*)$/.exec(line)
    if (!m) continue
    out.push({
      types: [m[1]!],
      uris: [m[3]!],
      suites: [m[4]!],
      components: m[5]!.trim().split(/\s+/).filter(Boolean),
      enabled: true,
    })
  }
  return out
}

/** deb822 format: stanzas separated by blank lines, `Key: value` fields, continuation lines. */
export function parseDeb822(content: string): AptSource[] {
  const out: AptSource[] = []
  const stanzas = content.split(/\n\s*\n/)
  for (const stanza of stanzas) {
    const fields = new Map<string, string>()
    let last: string | undefined
    for (const raw of stanza.split('\n')) {
      if (raw.startsWith('#')) continue
      if (/^\s/.test(raw) && last) {
        fields.set(last, `${fields.get(last)} ${raw.trim()}`)
        continue
      }
      const m = /^([A-Za-z0-9-]+):\s*(.*)$/.exec(raw)
      if (!m) continue
      last = m[1]!.toLowerCase()
      fields.set(last, m[2]!.trim())
    }
    if (!fields.has('uris') || !fields.has('suites')) continue
    const words = (k: string) => (fields.get(k) ?? '').split(/\s+/).filter(Boolean)
    out.push({
      types: words('types'),
      uris: words('uris'),
      suites: words('suites'),
      components: words('components'),
      enabled: !/^(no|false|0)$/i.test(fields.get('enabled') ?? 'yes'),
    })
  }
  return out
}

export function parseSourcesFile(f: SourcesFile): AptSource[] {
  return f.path.endsWith('.sources') ? parseDeb822(f.content) : parseOneLine(f.content)
}

/**
 * The sources lines (`deb URI SUITE main`) mmdebstrap gets: the host's Debian mirrors retargeted at
 * `suite`, main first; or deb.debian.org when the host names no Debian mirror. Pure: tests feed
 * captured files.
 */
export function debianSources(files: readonly SourcesFile[], suite: string = DEBIAN_SUITE): { lines: string[]; fromHost: boolean } {
  const seen = new Set<string>()
  const main: string[] = []
  const extra: string[] = []
  for (const f of files) {
    for (const s of parseSourcesFile(f)) {
      if (!s.enabled || !s.types.includes('deb')) continue
      for (const uri of s.uris) {
        if (!/^(https?|file):/.test(uri)) continue
        for (const hostSuite of s.suites) {
          const m = SUITE_RE.exec(hostSuite)
          if (!m || !DEBIAN_SUITES.has(m[1]!)) continue
          // sid has no -updates/-security; the image suite does, but only if the host's mirror serves them.
          const suffix = m[2] === '/updates' ? '-security' : (m[2] ?? '')
          const line = `deb ${uri.replace(/\/+$/, '')} ${suite}${suffix} main`
          if (seen.has(line)) continue
          seen.add(line)
          ;(suffix === '' ? main : extra).push(line)
        }
      }
    }
  }
  if (main.length === 0) return { lines: [`deb ${DEFAULT_DEBIAN_MIRROR} ${suite} main`], fromHost: false }
  return { lines: [...main, ...extra], fromHost: true }
}

/** Reads /etc/apt/sources.list and /etc/apt/sources.list.d/*.{list,sources} (missing files are fine). */
export function readAptSources(root = '/etc/apt'): SourcesFile[] {
  const files: SourcesFile[] = []
  const read = (path: string) => {
    try {
      files.push({ path, content: readFileSync(path, 'utf8') })
    } catch {
      // absent or unreadable: apt would skip it too
    }
  }
  read(join(root, 'sources.list'))
  let names: string[]
  try {
    names = readdirSync(join(root, 'sources.list.d')).sort()
  } catch {
    names = []
  }
  for (const n of names) if (/\.(list|sources)$/.test(n)) read(join(root, 'sources.list.d', n))
  return files
}
