/**
 * The answer of `podman image inspect <sandbox> <gateway>` on every `sandbox create`, kept while the
 * image store is unchanged.
 *
 * The inspect is a podman process (130–450 ms here) that competes for the CPU with the pod create
 * running beside it. Its answer (id, labels, size of each image) changes only when the store's
 * image list changes, and containers/storage rewrites `<graphroot>/<driver>-images/images.json` on
 * every build, tag, untag, pull and removal (atomically: a new inode and mtime). So the answer is
 * stored with that file's identity (device, inode, size, mtime in ns), and with the podman binary's
 * and the storage configuration's (a new podman, or a storage.conf that moves the store, is a
 * miss), and reused while all are the same. The store file is located from the inspect output
 * itself (GraphDriver.Data.UpperDir of the image), never guessed from defaults.
 *
 * Only an answer in which every image exists is kept: a missing image means a build follows (which
 * changes the store anyway). What the answer is used for is unchanged: the gateway's app hash is
 * still compared on every create (src/images/build.ts imageStatus), and the agent's and bridge's
 * `podman run` still fail if an image was removed since (as with the uncached check, which has the
 * same window between its inspect and the run).
 */
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { cacheDir, homeDir, type Env } from '../config/paths.js'
import { binaryKey } from '../podman/runtime-cache.js'
import { writeFileAtomic } from '../util/fs.js'
import type { ImageInfo } from './build.js'

export const imageStatusCacheFile = (env: Env) => join(cacheDir(env), 'image-status.json')

interface Entry {
  key: string
  refs: string[]
  infos: ImageInfo[]
}

function fileId(p: string): string {
  try {
    const s = statSync(p, { bigint: true })
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`
  } catch {
    return '-'
  }
}

/**
 * The store's image list file, from one image's inspect JSON: `<graphroot>/<driver>/<layer>/diff`
 * is its UpperDir, and the list is `<graphroot>/<driver>-images/images.json`.
 */
export function storeFileOf(img: { GraphDriver?: { Name?: string; Data?: Record<string, string> | null } | null }): string | undefined {
  const name = img.GraphDriver?.Name
  const upper = img.GraphDriver?.Data?.UpperDir
  if (!name || !/^[a-z0-9]+$/.test(name) || !upper) return undefined
  const m = new RegExp(`^(/.+)/${name}/[0-9a-f]{64}/diff$`).exec(upper)
  return m ? join(m[1]!, `${name}-images`, 'images.json') : undefined
}

/** Identity of everything the cached answer depends on. */
function cacheKey(env: Env, podmanBin: string, storeFile: string): string {
  const confs = [env.CONTAINERS_STORAGE_CONF, join(env.XDG_CONFIG_HOME ?? join(homeDir(env), '.config'), 'containers', 'storage.conf'), '/etc/containers/storage.conf', '/usr/share/containers/storage.conf']
  return [binaryKey(podmanBin), `store=${storeFile}`, fileId(storeFile), `conf=${env.CONTAINERS_STORAGE_CONF ?? ''}`, ...confs.map(c => (c ? `${c}=${fileId(c)}` : '-'))].join('|')
}

/** The cached infos of `refs`, when the store and configuration are those they were read from. */
export function cachedImageInfos(env: Env, podmanBin: string, refs: readonly string[]): ImageInfo[] | undefined {
  let e: Entry
  try {
    e = JSON.parse(readFileSync(imageStatusCacheFile(env), 'utf8')) as Entry
  } catch {
    return undefined
  }
  if (!e || typeof e.key !== 'string' || !Array.isArray(e.refs) || !Array.isArray(e.infos) || e.refs.join('\n') !== refs.join('\n')) return undefined
  const store = /\|store=([^|]+)\|/.exec(e.key)?.[1]
  if (!store || cacheKey(env, podmanBin, store) !== e.key) return undefined
  if (!e.infos.every(i => i && typeof i.id === 'string' && typeof i.size === 'number' && i.labels && typeof i.labels === 'object')) return undefined
  return e.infos
}

/** Keeps an answer in which every ref exists; `storeFile` from storeFileOf. Best effort. */
export function storeImageInfos(env: Env, podmanBin: string, refs: readonly string[], infos: readonly (ImageInfo | undefined)[], storeFile: string | undefined): void {
  if (!storeFile || infos.length !== refs.length || infos.some(i => !i)) return
  try {
    const e: Entry = { key: cacheKey(env, podmanBin, storeFile), refs: [...refs], infos: infos as ImageInfo[] }
    writeFileAtomic(imageStatusCacheFile(env), JSON.stringify(e) + '\n')
  } catch {
    // a cache
  }
}
