import { describe, it, expect, beforeEach } from 'vitest'
import { mkdtempSync, readFileSync, writeFileSync, readdirSync, existsSync, utimesSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import { PolicyStore } from '../../src/policy/store.js'
import { PolicyError, type Policy } from '../../src/policy/schema.js'
import { parsePolicyText } from '../../src/policy/parse.js'
import { policyHash, restrictiveDefaultPolicy } from '../../src/policy/document.js'
import { PodshellError } from '../../src/errors.js'

const pol = (host: string): Policy => ({ version: 1, network_policies: { a: { endpoints: [{ host, port: 443 }] } } })

let dir: string
let store: PolicyStore
beforeEach(() => {
  dir = join(mkdtempSync(join(tmpdir(), 'podshell-store-')), 'policy')
  store = new PolicyStore(dir)
})

describe('PolicyStore: revisions written by the CLI', () => {
  it('starts empty', () => {
    expect(store.list()).toEqual([])
    expect(store.latest()).toBeUndefined()
    expect(store.current()).toBeUndefined()
    expect(store.get(1)).toBeUndefined()
  })

  it('adds revisions 1, 2, 3 as PENDING with canonical YAML, hash, time and source', () => {
    const t0 = Date.now()
    const r1 = store.add(restrictiveDefaultPolicy(), 'default')
    const r2 = store.add(pol('a.example.com'), 'policy set p.yaml')
    expect([r1.version, r2.version]).toEqual([1, 2])
    expect(r2.status).toBe('PENDING')
    expect(r2.hash).toBe(policyHash(pol('a.example.com')))
    expect(r2.created_at_ms).toBeGreaterThanOrEqual(t0)
    expect(r2.source).toBe('policy set p.yaml')
    const got = store.get(2)!
    expect(got.policy).toEqual(pol('a.example.com'))
    expect(parsePolicyText(readFileSync(join(dir, 'rev-2.yaml'), 'utf8'), 'x').policy).toEqual(pol('a.example.com'))
    expect(got.yaml).toBe(readFileSync(join(dir, 'rev-2.yaml'), 'utf8'))
    expect(store.latest()!.version).toBe(2)
    expect(store.current()).toBeUndefined() // nothing LOADED yet
    const listed = JSON.parse(readFileSync(join(dir, 'revisions.json'), 'utf8'))
    expect(listed.map((r: { version: number }) => r.version)).toEqual([1, 2])
    expect(Object.keys(listed[0]).sort()).toEqual(['created_at_ms', 'hash', 'source', 'version'])
  })

  it('refuses to store an invalid policy', () => {
    expect(() => store.add({ version: 1, network_policies: { a: { endpoints: [{ host: '*', port: 443 }] } } }, 'bad')).toThrow(PolicyError)
    expect(store.list()).toEqual([])
  })

  it('flattens control characters in the source', () => {
    expect(store.add(pol('a.example.com'), 'line1\nline2').source).toBe('line1 line2')
  })

  it('leaves no temporary files or lock behind', () => {
    store.add(pol('a.example.com'), 's')
    store.markLoaded(1)
    expect(readdirSync(dir).sort()).toEqual(['rev-1.yaml', 'revisions.json', 'status.json'])
  })
})

describe('PolicyStore: status written by the gateway', () => {
  it('PENDING → LOADED → SUPERSEDED, and current() is the latest LOADED', () => {
    store.add(pol('a.example.com'), 's1')
    store.add(pol('b.example.com'), 's2')
    store.markLoaded(1)
    expect(store.list().map(r => r.status)).toEqual(['LOADED', 'PENDING'])
    expect(store.current()!.version).toBe(1)
    expect(store.current()!.loaded_at_ms).toBeGreaterThan(0)
    store.markLoaded(2)
    expect(store.list().map(r => r.status)).toEqual(['SUPERSEDED', 'LOADED'])
    expect(store.current()!.version).toBe(2)
  })

  it('FAILED keeps the previous LOADED revision in force, with the error', () => {
    store.add(pol('a.example.com'), 's1')
    store.markLoaded(1)
    store.add(pol('b.example.com'), 's2')
    store.markFailed(2, 'gateway: cannot load: bad thing')
    const list = store.list()
    expect(list.map(r => r.status)).toEqual(['LOADED', 'FAILED'])
    expect(list[1]!.load_error).toBe('gateway: cannot load: bad thing')
    expect(store.current()!.version).toBe(1)
    expect(store.latest()!.version).toBe(2)
  })

  it('older revisions that never loaded become SUPERSEDED when a newer one loads', () => {
    store.add(pol('a.example.com'), 's1')
    store.add(pol('b.example.com'), 's2')
    store.add(pol('c.example.com'), 's3')
    store.markFailed(1, 'x')
    store.markLoaded(3)
    expect(store.list().map(r => r.status)).toEqual(['FAILED', 'SUPERSEDED', 'LOADED'])
  })

  it('has exactly one LOADED revision at any time', () => {
    for (let i = 0; i < 5; i++) store.add(pol(`h${i}.example.com`), 's')
    for (const v of [2, 5, 1, 4]) {
      store.markLoaded(v)
      const loaded = store.list().filter(r => r.status === 'LOADED')
      expect(loaded.map(r => r.version)).toEqual([v])
      expect(store.current()!.version).toBe(v)
    }
  })

  it('refuses status for a revision that does not exist', () => {
    expect(() => store.markLoaded(7)).toThrow(/does not exist/)
    expect(() => store.markFailed(7, 'x')).toThrow(PodshellError)
  })

  it('a status write never touches revisions.json (separate writers, separate files)', () => {
    for (let i = 0; i < 3; i++) store.add(pol(`h${i}.example.com`), 's')
    const before = readFileSync(join(dir, 'revisions.json'))
    for (let i = 0; i < 200; i++) {
      if (i % 3 === 0) store.markFailed((i % 3) + 1, `error ${i}`)
      else store.markLoaded((i % 3) + 1)
    }
    expect(readFileSync(join(dir, 'revisions.json')).equals(before)).toBe(true)
    expect(store.list()).toHaveLength(3)
    JSON.parse(readFileSync(join(dir, 'status.json'), 'utf8'))
  })

  it('interleaved CLI adds and gateway status writes keep both files valid', () => {
    for (let i = 0; i < 50; i++) {
      const rev = store.add(pol(`h${i}.example.com`), `s${i}`)
      if (i % 4 === 3) store.markFailed(rev.version, 'bad')
      else store.markLoaded(rev.version)
      const list = store.list()
      expect(list).toHaveLength(i + 1)
      expect(list.filter(r => r.status === 'LOADED').length).toBeLessThanOrEqual(1)
    }
    expect(store.current()!.version).toBe(50)
  })
})

describe('PolicyStore: fails closed on damage', () => {
  it('a corrupt revisions.json is an error, not an empty store', () => {
    store.add(pol('a.example.com'), 's')
    writeFileSync(join(dir, 'revisions.json'), '[{"version": 1, "hash": "nope"')
    expect(() => store.list()).toThrow(/revisions.json is unreadable/)
    expect(() => store.add(pol('b.example.com'), 's')).toThrow(PodshellError)
  })

  it('a corrupt status.json is an error', () => {
    store.add(pol('a.example.com'), 's')
    writeFileSync(join(dir, 'status.json'), '{"1": {"status": "RUNNING"}}')
    expect(() => store.current()).toThrow(/status.json is unreadable/)
  })

  it('a revision file edited on disk no longer matches its hash and is refused', () => {
    store.add(pol('a.example.com'), 's')
    writeFileSync(join(dir, 'rev-1.yaml'), 'version: 1\nnetwork_policies:\n  a: { endpoints: [{ host: evil.example.com, port: 443 }] }\n')
    expect(() => store.get(1)).toThrow(/no longer matches its recorded hash/)
  })

  it('a listed revision whose file is missing is an error', () => {
    store.add(pol('a.example.com'), 's')
    writeFileSync(join(dir, 'rev-1.yaml'), '')
    expect(() => store.get(1)).toThrow(PolicyError)
  })
})

describe('PolicyStore: concurrent CLI writers', () => {
  it('removes a stale lock left by a dead process', () => {
    store.add(pol('a.example.com'), 's')
    const lock = join(dir, 'revisions.lock')
    writeFileSync(lock, '999999999')
    const old = new Date(Date.now() - 60_000)
    utimesSync(lock, old, old)
    expect(store.add(pol('b.example.com'), 's').version).toBe(2)
    expect(existsSync(lock)).toBe(false)
  })

  it('four processes adding at once get distinct, gap-free versions', async () => {
    const run = promisify(execFile)
    const viteNode = fileURLToPath(new URL('../../node_modules/.bin/vite-node', import.meta.url))
    const writer = fileURLToPath(new URL('./fixtures/policy-store-writer.ts', import.meta.url))
    const results = await Promise.all(
      ['a', 'b', 'c', 'd'].map(tag => run(viteNode, [writer, dir, tag, '8'], { cwd: fileURLToPath(new URL('../..', import.meta.url)) })),
    )
    const versions = results.flatMap(r => JSON.parse(r.stdout.trim().split('\n').at(-1)!) as number[])
    expect(versions.sort((x, y) => x - y)).toEqual(Array.from({ length: 32 }, (_, i) => i + 1))
    const list = store.list()
    expect(list.map(r => r.version)).toEqual(Array.from({ length: 32 }, (_, i) => i + 1))
    for (const r of list) expect(policyHash(store.get(r.version)!.policy)).toBe(r.hash)
  }, 120_000)
})

describe('PolicyStore.add is idempotent (OpenShell keeps the version of an identical policy)', () => {
  it('the same policy again returns the newest revision, unchanged, and stores nothing', () => {
    const store = new PolicyStore(mkdtempSync(join(tmpdir(), 'pstore-idem-')))
    const r1 = store.add(pol('a.example.com'), 's1')
    const again = store.add(pol('a.example.com'), 's2')
    expect(again).toMatchObject({ version: r1.version, hash: r1.hash, unchanged: true })
    expect(store.list()).toHaveLength(1)
    const r2 = store.add(pol('b.example.com'), 's3')
    expect(r2.version).toBe(2)
    expect(r2.unchanged).toBeUndefined()
  })
  it('a FAILED newest revision is retried by a new revision of the same policy', () => {
    const store = new PolicyStore(mkdtempSync(join(tmpdir(), 'pstore-idem-')))
    const r1 = store.add(pol('a.example.com'), 's1')
    store.markFailed(r1.version, 'boom')
    const r2 = store.add(pol('a.example.com'), 's2')
    expect(r2.version).toBe(2)
    expect(r2.unchanged).toBeUndefined()
  })
})
