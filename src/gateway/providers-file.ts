/**
 * A sandbox's providers.json as the gateway reads it (written by podshell, not secret): the
 * attachments the policy engine attributes requests to, and the placeholders its proxy substitutes.
 * Malformed entries are skipped; an absent or unreadable file is "no providers" (attribution is
 * informational, never a reason to deny or allow).
 */
import { readFileSync, statSync } from 'node:fs'
import { sandboxProvidersFile } from '../config/paths.js'
import type { ProviderAttachment } from './policy-engine.js'
import type { Served } from './served.js'

export interface ProvidersFile {
  /** Identity of the file read (inode, size, mtime): a change means reload. */
  stamp: string
  list: ProviderAttachment[]
  placeholders: Served['placeholders']
}

export function readProvidersFile(dataDir: string, name: string): ProvidersFile {
  const file = sandboxProvidersFile(dataDir, name)
  try {
    const st = statSync(file)
    const stamp = `${st.ino}:${st.size}:${st.mtimeMs}`
    const raw = JSON.parse(readFileSync(file, 'utf8')) as unknown
    const list: ProviderAttachment[] = []
    const placeholders: { provider: string; variable: string; placeholder: string }[] = []
    if (Array.isArray(raw)) {
      for (const p of raw) {
        if (
          p &&
          typeof p === 'object' &&
          typeof (p as ProviderAttachment).name === 'string' &&
          typeof (p as ProviderAttachment).type === 'string'
        ) {
          const creds = (p as { credentials?: unknown }).credentials
          for (const c of Array.isArray(creds) ? (creds as unknown[]) : []) {
            const v = c as { variable?: unknown; placeholder?: unknown }
            if (typeof v?.variable === 'string' && typeof v.placeholder === 'string' && /^[A-Za-z0-9_-]{8,}$/.test(v.placeholder)) {
              placeholders.push({ provider: (p as ProviderAttachment).name, variable: v.variable, placeholder: v.placeholder })
            }
          }
          const cfg = (p as { config?: unknown }).config
          const eps = (p as { endpoints?: unknown }).endpoints
          const endpoints = (Array.isArray(eps) ? (eps as { host?: unknown; port?: unknown; path?: unknown }[]) : [])
            .filter(e => typeof e?.host === 'string' && Number.isInteger(e.port) && (e.path === undefined || typeof e.path === 'string'))
            .map(e => ({ host: e.host as string, port: e.port as number, ...(typeof e.path === 'string' ? { path: e.path } : {}) }))
          list.push({
            name: (p as ProviderAttachment).name,
            type: (p as ProviderAttachment).type,
            config:
              cfg && typeof cfg === 'object'
                ? (Object.fromEntries(Object.entries(cfg).filter(([, v]) => typeof v === 'string')) as Record<string, string>)
                : {},
            ...(endpoints.length ? { endpoints } : {}),
          })
        }
      }
    }
    return { stamp, list, placeholders }
  } catch {
    // Absent or unreadable: attribution is informational, never a reason to deny or allow.
    return { stamp: 'none', list: [], placeholders: [] }
  }
}
