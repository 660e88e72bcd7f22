import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, renameSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cachedImageInfos, storeFileOf, storeImageInfos } from '../../src/images/status-cache.js'

// The create-time image check's cache (src/images/status-cache.ts): reused only while the image
// store's list file, the podman binary and the storage configuration are the ones it was read with.
let dir: string
let env: Record<string, string>
let store: string
let bin: string
const refs = ['localhost/podshell-sandbox:latest', 'localhost/podshell-gateway:latest']
const infos = [
  { id: 'a'.repeat(64), labels: {}, size: 1 },
  { id: 'b'.repeat(64), labels: { 'io.podshell.app-hash': 'x' }, size: 2 },
]
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'psh-imgcache-'))
  env = { HOME: dir, XDG_CACHE_HOME: join(dir, 'cache'), XDG_CONFIG_HOME: join(dir, 'config'), PODSHELL_HOME: join(dir, 'data') }
  mkdirSync(join(dir, 'storage', 'overlay-images'), { recursive: true })
  store = join(dir, 'storage', 'overlay-images', 'images.json')
  writeFileSync(store, '[]')
  bin = join(dir, 'podman')
  writeFileSync(bin, '#!/bin/sh\n')
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

describe('image status cache', () => {
  it('finds the store list file from the inspect output, and nothing from an odd one', () => {
    const upper = join(dir, 'storage', 'overlay', 'c'.repeat(64), 'diff')
    expect(storeFileOf({ GraphDriver: { Name: 'overlay', Data: { UpperDir: upper } } })).toBe(store)
    expect(storeFileOf({ GraphDriver: { Name: 'vfs', Data: {} } })).toBeUndefined()
    expect(storeFileOf({ GraphDriver: { Name: 'overlay', Data: { UpperDir: '/x/overlay/../../etc/diff' } } })).toBeUndefined()
    expect(storeFileOf({})).toBeUndefined()
  })

  it('is reused while nothing changed; a store rewrite, other refs, a new podman or a storage.conf is a miss', () => {
    storeImageInfos(env, bin, refs, infos, store)
    expect(cachedImageInfos(env, bin, refs)).toEqual(infos)
    expect(cachedImageInfos(env, bin, [refs[0]!])).toBeUndefined()
    // containers/storage rewrites the list atomically on any tag, build, pull or removal.
    writeFileSync(store + '.tmp', '[{}]')
    renameSync(store + '.tmp', store)
    expect(cachedImageInfos(env, bin, refs)).toBeUndefined()
    storeImageInfos(env, bin, refs, infos, store)
    expect(cachedImageInfos(env, bin, refs)).toEqual(infos)
    writeFileSync(bin, '#!/bin/sh\n# another podman\n')
    expect(cachedImageInfos(env, bin, refs)).toBeUndefined()
    storeImageInfos(env, bin, refs, infos, store)
    mkdirSync(join(dir, 'config', 'containers'), { recursive: true })
    writeFileSync(join(dir, 'config', 'containers', 'storage.conf'), '[storage]\ngraphroot = "/elsewhere"\n')
    expect(cachedImageInfos(env, bin, refs)).toBeUndefined()
    storeImageInfos(env, bin, refs, infos, store)
    expect(cachedImageInfos({ ...env, CONTAINERS_STORAGE_CONF: join(dir, 'other.conf') }, bin, refs)).toBeUndefined()
  })

  it('keeps no answer in which an image is missing', () => {
    storeImageInfos(env, bin, refs, [infos[0], undefined], store)
    expect(cachedImageInfos(env, bin, refs)).toBeUndefined()
  })
})
