import { describe, it, expect } from 'vitest'
import { mkdtempSync, mkdirSync, writeFileSync, symlinkSync, lstatSync, readlinkSync, readFileSync, existsSync, readdirSync, chmodSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { Readable } from 'node:stream'
import tar from 'tar-stream'
import { planUpload, uploadTarget, DEFAULT_LIMITS } from '../../src/transfer/upload.js'
import { extractSafe, safeName } from '../../src/transfer/download.js'
import { PodshellError } from '../../src/errors.js'
import { copyOutArgs } from '../../src/podman/exec-args.js'

const tmp = (p: string) => mkdtempSync(join(tmpdir(), `psh-xfer-${p}-`))

describe('planUpload: what goes in', () => {
  const tree = () => {
    const d = tmp('tree')
    const p = join(d, 'proj')
    mkdirSync(join(p, 'sub', 'deep'), { recursive: true })
    mkdirSync(join(p, '.git', 'info'), { recursive: true })
    mkdirSync(join(p, 'build'))
    writeFileSync(join(p, 'a.txt'), 'a')
    writeFileSync(join(p, 'x.log'), 'x')
    writeFileSync(join(p, 'sub', 'keep.log'), 'k')
    writeFileSync(join(p, 'sub', 'deep', 'z.tmp'), 'z')
    writeFileSync(join(p, 'build', 'out'), 'b')
    writeFileSync(join(p, '.git', 'HEAD'), 'ref')
    writeFileSync(join(p, '.gitignore'), '*.log\nbuild/\n')
    writeFileSync(join(p, 'sub', '.gitignore'), '!keep.log\n')
    writeFileSync(join(p, '.git', 'info', 'exclude'), '*.tmp\n')
    symlinkSync('/etc/passwd', join(p, 'sub', 'abs-link'))
    chmodSync(join(p, 'a.txt'), 0o4750)
    return p
  }

  it('honours .gitignore (nested override), .git/info/exclude, skips .git; keeps symlinks as links and modes without setuid', () => {
    const p = tree()
    const plan = planUpload(p, { gitIgnore: true, tarName: 'proj', limits: DEFAULT_LIMITS })
    const names = plan.entries.map(e => e.name)
    expect(names).toEqual(['proj', 'proj/.gitignore', 'proj/a.txt', 'proj/sub', 'proj/sub/.gitignore', 'proj/sub/abs-link', 'proj/sub/deep', 'proj/sub/keep.log'])
    const link = plan.entries.find(e => e.name === 'proj/sub/abs-link')!
    expect(link).toMatchObject({ type: 'symlink', linkname: '/etc/passwd', size: 0 })
    expect(plan.entries.find(e => e.name === 'proj/a.txt')!.mode).toBe(0o750)
  })

  it('--no-git-ignore uploads everything, .git included; "." uploads the contents flat', () => {
    const p = tree()
    const all = planUpload(p, { gitIgnore: false, tarName: '.', limits: DEFAULT_LIMITS }).entries.map(e => e.name)
    expect(all).toContain('.git/HEAD')
    expect(all).toContain('build/out')
    expect(all).toContain('x.log')
    expect(all[0]).toBe('.git')
  })

  it('a .gitignore of the enclosing repository above the uploaded directory applies', () => {
    const p = tree()
    const plan = planUpload(join(p, 'sub'), { gitIgnore: true, tarName: 'sub', limits: DEFAULT_LIMITS })
    expect(plan.entries.map(e => e.name)).toEqual(['sub', 'sub/.gitignore', 'sub/abs-link', 'sub/deep', 'sub/keep.log'])
  })

  it('refuses a FIFO, a missing path and a tree over the limits, each in one line', () => {
    const p = tree()
    execFileSync('mkfifo', [join(p, 'pipe')])
    expect(() => planUpload(p, { gitIgnore: true, tarName: 'proj', limits: DEFAULT_LIMITS })).toThrow(/is a FIFO/)
    expect(() => planUpload(join(p, 'nope'), { gitIgnore: true, tarName: 'x', limits: DEFAULT_LIMITS })).toThrow(/does not exist/)
    const q = tree()
    expect(() => planUpload(q, { gitIgnore: true, tarName: 'proj', limits: { maxFiles: 3, maxBytes: 1e9 } })).toThrow(/more than 3 files/)
    expect(() => planUpload(q, { gitIgnore: true, tarName: 'proj', limits: { maxFiles: 100, maxBytes: 1 } })).toThrow(/more than 1 bytes/)
  })

  it('all filtered out: uploaded unfiltered, and said so', () => {
    const d = tmp('allign')
    writeFileSync(join(d, '.gitignore'), '*\n')
    writeFileSync(join(d, 'f'), 'f')
    const plan = planUpload(d, { gitIgnore: true, tarName: '.', limits: DEFAULT_LIMITS })
    expect(plan.filteredEmpty).toBe(true)
    expect(plan.entries.map(e => e.name)).toEqual(['.gitignore', 'f'])
  })

  it('uploadTarget follows OpenShell: dir → DEST/<name>, "." flat, file to a DEST that names a file', () => {
    expect(uploadTarget('./proj', '/tmp/d', true)).toEqual({ dir: '/tmp/d', tarName: 'proj' })
    expect(uploadTarget('.', '/tmp/d', true)).toEqual({ dir: '/tmp/d', tarName: '.' })
    expect(uploadTarget('a.txt', '/tmp/d/b.txt', false)).toEqual({ dir: '/tmp/d', tarName: 'b.txt' })
    expect(uploadTarget('a.txt', '/tmp/d/', false)).toEqual({ dir: '/tmp/d/', tarName: 'a.txt' })
    expect(uploadTarget('a.txt', undefined, false)).toEqual({ dir: '', tarName: 'a.txt' })
  })
})

/** A tar built entry by entry, as a hostile producer would (any names, types and sizes). */
async function archive(entries: { header: tar.Headers; body?: string | Buffer }[]): Promise<Readable> {
  const pack = tar.pack()
  for (const e of entries) await new Promise<void>((res, rej) => pack.entry(e.header, e.body ?? '', err => (err ? rej(err) : res())))
  pack.finalize()
  return pack as unknown as Readable
}

const opts = { ...DEFAULT_LIMITS, force: false }

describe('extractSafe: a hostile archive writes nothing outside DEST', () => {
  const setup = () => {
    const base = tmp('ex')
    const dest = join(base, 'dest')
    const outside = join(base, 'outside')
    mkdirSync(dest)
    mkdirSync(outside)
    return { base, dest, outside }
  }

  it('extracts files, dirs, symlinks (target kept as text) and in-archive hard links; strips setuid', async () => {
    const { dest } = setup()
    const r = await extractSafe(
      await archive([
        { header: { name: './', type: 'directory', mode: 0o755 } },
        { header: { name: './d/', type: 'directory', mode: 0o755 } },
        { header: { name: './d/f', type: 'file', mode: 0o4755 }, body: 'hello' },
        { header: { name: './d/l', type: 'symlink', linkname: '/etc/passwd' } },
        { header: { name: './d/h', type: 'link', linkname: './d/f' } },
      ]),
      dest,
      opts,
    )
    expect(r).toEqual({ files: 5, bytes: 10 })
    expect(readFileSync(join(dest, 'd', 'f'), 'utf8')).toBe('hello')
    expect(lstatSync(join(dest, 'd', 'f')).mode & 0o7777).toBe(0o755)
    expect(readlinkSync(join(dest, 'd', 'l'))).toBe('/etc/passwd')
    expect(readFileSync(join(dest, 'd', 'h'), 'utf8')).toBe('hello')
  })

  const hostile: [string, { header: tar.Headers; body?: string }[], RegExp][] = [
    ['an absolute name', [{ header: { name: '/tmp/evil', type: 'file' }, body: 'x' }], /absolute path/],
    ['a .. name', [{ header: { name: 'a/../../outside/evil', type: 'file' }, body: 'x' }], /climbs out/],
    ['symlink then a file through it', [{ header: { name: 'l', type: 'symlink', linkname: '../outside' } }, { header: { name: 'l/evil', type: 'file' }, body: 'x' }], /through the symlink/],
    ['symlink then a directory through it', [{ header: { name: 'l', type: 'symlink', linkname: '../outside' } }, { header: { name: 'l/sub/', type: 'directory' } }], /through the symlink/],
    ['a hard link to a file outside', [{ header: { name: 'h', type: 'link', linkname: '../outside/secret' } }], /climbs out/],
    ['a hard link to an absolute path', [{ header: { name: 'h', type: 'link', linkname: '/etc/passwd' } }], /absolute path/],
    ['a hard link to a symlink extracted before', [{ header: { name: 'l', type: 'symlink', linkname: '../outside/secret' } }, { header: { name: 'h', type: 'link', linkname: 'l' } }], /not to a file extracted before/],
    ['a character device', [{ header: { name: 'dev', type: 'character-device', devmajor: 1, devminor: 3 } }], /character-device/],
    ['a FIFO', [{ header: { name: 'p', type: 'fifo' } }], /fifo/],
  ]
  for (const [what, entries, msg] of hostile) {
    it(`refuses ${what}`, async () => {
      const { dest, outside } = setup()
      writeFileSync(join(outside, 'secret'), 'keep')
      await expect(extractSafe(await archive(entries), dest, opts)).rejects.toThrow(msg)
      expect(readdirSync(outside)).toEqual(['secret'])
      expect(readFileSync(join(outside, 'secret'), 'utf8')).toBe('keep')
      expect(existsSync('/tmp/evil')).toBe(false)
    })
  }

  it('does not overwrite an existing file without force; with force it replaces a symlink, not its target', async () => {
    const { dest, outside } = setup()
    writeFileSync(join(outside, 'secret'), 'keep')
    symlinkSync(join(outside, 'secret'), join(dest, 'f'))
    await expect(extractSafe(await archive([{ header: { name: 'f', type: 'file' }, body: 'new' }]), dest, opts)).rejects.toThrow(/exists.*|--force/)
    await extractSafe(await archive([{ header: { name: 'f', type: 'file' }, body: 'new' }]), dest, { ...opts, force: true })
    expect(lstatSync(join(dest, 'f')).isFile()).toBe(true)
    expect(readFileSync(join(dest, 'f'), 'utf8')).toBe('new')
    expect(readFileSync(join(outside, 'secret'), 'utf8')).toBe('keep')
  })

  it('stops at the entry-count and byte limits, from the header, before writing the entry', async () => {
    const { dest } = setup()
    const many = Array.from({ length: 20 }, (_, i) => ({ header: { name: `e${i}`, type: 'file' as const }, body: '' }))
    await expect(extractSafe(await archive(many), dest, { ...opts, maxFiles: 10 })).rejects.toThrow(/more than 10 entries/)
    expect(readdirSync(dest).length).toBeLessThanOrEqual(10)
    const d2 = setup().dest
    await expect(extractSafe(await archive([{ header: { name: 'big', type: 'file' }, body: 'x'.repeat(100) }]), d2, { ...opts, maxBytes: 50 })).rejects.toThrow(/larger than 50 bytes/)
    expect(existsSync(join(d2, 'big'))).toBe(false)
  })

  it('safeName drops ./ and refuses what climbs, and NUL (a pax header can carry one)', () => {
    expect(() => safeName('a\0b')).toThrow(/NUL/)
    expect(safeName('./a//b/./c')).toBe('a/b/c')
    expect(safeName('./')).toBeUndefined()
    expect(() => safeName('../x')).toThrow(PodshellError)
  })
})

describe('download data path', () => {
  it('podman cp CONTAINER:ABS - (an absolute path; a path with ":" stays one argument)', () => {
    expect(copyOutArgs('podshell.x.agent', '/home/u/out/.')).toEqual(['cp', 'podshell.x.agent:/home/u/out/.', '-'])
    expect(copyOutArgs('podshell.x.agent', '/a:b')).toEqual(['cp', 'podshell.x.agent:/a:b', '-'])
    expect(() => copyOutArgs('podshell.x.agent', 'out')).toThrow(/absolute/)
    expect(() => copyOutArgs('podshell.x.agent', '-')).toThrow(/absolute/)
  })
})
