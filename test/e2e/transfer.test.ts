import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdirSync, writeFileSync, readFileSync, existsSync, readdirSync, readlinkSync, symlinkSync, chmodSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { cli, uniqueName, hostDir, podExists } from '../helpers/cli.js'

/**
 * `sandbox upload`, `create --upload` and `sandbox download` on real rootless Podman, and the
 * hostile-archive cases: a sandbox whose PATH holds a directory the agent writes (as many agent
 * images do: ~/.local/bin) lets the agent replace `tar`. A directory or a file is archived by
 * `podman cp` (the agent's tar is not run: tested); a symlink named directly is archived by the
 * sandbox's `tar`, so there the agent answers with any archive it likes. The agent does that here
 * with python's tarfile; every case is refused or bounded, is in the sandbox's audit log, and
 * nothing is written outside the destination. Hostile trees made with real files (a FIFO, a
 * sparse 3 GiB file) go through podman cp and are refused the same way.
 */
const uid = process.getuid!()

let name: string
let work: string
const sh = (script: string) => cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', script])

function tree(root: string): string {
  const p = join(root, 'proj')
  mkdirSync(join(p, 'sub'), { recursive: true })
  mkdirSync(join(p, 'build'))
  mkdirSync(join(p, '.git', 'info'), { recursive: true })
  writeFileSync(join(p, 'a.sh'), '#!/bin/sh\necho run\n')
  chmodSync(join(p, 'a.sh'), 0o750)
  writeFileSync(join(p, 'x.log'), 'ignored')
  writeFileSync(join(p, 'sub', 'keep.log'), 'kept')
  writeFileSync(join(p, 'sub', 'z.tmp'), 'excluded')
  writeFileSync(join(p, 'build', 'out'), 'ignored dir')
  writeFileSync(join(p, '.git', 'HEAD'), 'ref: refs/heads/main\n')
  writeFileSync(join(p, '.gitignore'), '*.log\nbuild/\n')
  writeFileSync(join(p, 'sub', '.gitignore'), '!keep.log\n')
  writeFileSync(join(p, '.git', 'info', 'exclude'), '*.tmp\n')
  symlinkSync('../a.sh', join(p, 'sub', 'link'))
  symlinkSync('/etc/shadow', join(p, 'sub', 'abs'))
  return p
}

beforeAll(async () => {
  work = hostDir('xfer')
  name = uniqueName('xfer')
  const p = tree(work)
  const r = await cli(['sandbox', 'create', '--name', name, '--detach', '--upload', `${p}:/tmp/in`])
  expect(r.code, r.stderr).toBe(0)
  expect(r.stderr).toMatch(/^✓ Upload complete/m)
})

afterAll(async () => {
  await cli(['sandbox', 'delete', name])
})

describe('upload', () => {
  it('create --upload: .gitignore (nested !, info/exclude) honoured, .git skipped, symlinks kept as links, modes kept, owned by the agent', async () => {
    const r = await sh('cd /tmp/in && find . | sort; stat -c "%a %u" proj/a.sh; readlink proj/sub/link proj/sub/abs')
    expect(r.stdout.trim().split('\n')).toEqual([
      '.',
      './proj',
      './proj/.gitignore',
      './proj/a.sh',
      './proj/sub',
      './proj/sub/.gitignore',
      './proj/sub/abs',
      './proj/sub/keep.log',
      './proj/sub/link',
      `750 ${uid}`,
      '../a.sh',
      '/etc/shadow',
    ])
  })

  it('sandbox upload --no-git-ignore takes everything; a file can be renamed by its DEST; default DEST is the home', async () => {
    const p = join(work, 'proj')
    expect((await cli(['sandbox', 'upload', name, p, '/tmp/all', '--no-git-ignore'])).code).toBe(0)
    expect((await sh('ls -A /tmp/all/proj | sort | tr "\\n" " "')).stdout).toBe('.git .gitignore a.sh build sub x.log ')
    expect((await cli(['sandbox', 'upload', name, join(p, 'a.sh'), '/tmp/renamed.sh'])).code).toBe(0)
    expect((await sh('/tmp/renamed.sh')).stdout).toBe('run\n')
    expect((await cli(['sandbox', 'upload', name, join(p, 'a.sh')])).code).toBe(0)
    expect((await sh('cat ~/a.sh | head -1')).stdout).toBe('#!/bin/sh\n')
  })

  it('bad uploads: one line each, nothing half-written', async () => {
    const p = join(work, 'proj')
    const ro = await cli(['sandbox', 'upload', name, p, '/usr/share/podshell-x'])
    expect(ro.code).toBe(1)
    expect(ro.stderr.trim().split('\n').at(-1), ro.stderr).toMatch(/^podshell: upload into sandbox .* failed: .*(Read-only file system|Permission denied|exited with code [1-9]\d* and printed no reason).*: choose a destination/)
    const missing = await cli(['sandbox', 'upload', name, join(work, 'nope')])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toBe(`podshell: local path does not exist: ${join(work, 'nope')}: give an existing file or directory\n`)
    const f = join(work, 'fifo-tree')
    mkdirSync(f)
    writeFileSync(join(f, 'ok'), 'ok')
    execFileSync('mkfifo', [join(f, 'pipe')])
    const fifo = await cli(['sandbox', 'upload', name, f, '/tmp/fifo'])
    expect(fifo.code).toBe(2)
    expect(fifo.stderr).toMatch(/^podshell: cannot upload .*pipe: it is a FIFO: /)
    const big = await cli(['sandbox', 'upload', name, p, '/tmp/big', '--max-files', '3'])
    expect(big.code).toBe(2)
    expect(big.stderr).toMatch(/more than 3 files/)
    expect((await sh('ls -d /tmp/fifo /tmp/big 2>&1; ls -A /tmp | grep -c podshell-upload')).stdout).toMatch(/No such file.*\n.*No such file.*\n0\n/)
  })

  it('create --upload of a missing path fails before anything is made', async () => {
    const n = uniqueName('xferbad')
    const r = await cli(['sandbox', 'create', '--name', n, '--detach', '--upload', join(work, 'nope')])
    expect(r.code).toBe(2)
    expect(r.stderr.trim().split('\n')).toHaveLength(1)
    expect(await podExists(n)).toBe(false)
  })
})

describe('download', () => {
  it('a directory into DEST, a file to DEST/<name>; no overwrite without --force; a missing path is one line', async () => {
    await sh('mkdir -p ~/out/d && echo one > ~/out/d/f && ln -s /etc/passwd ~/out/l && chmod 4755 ~/out/d/f')
    const dest = join(work, 'dl')
    const r = await cli(['sandbox', 'download', name, 'out', dest])
    expect(r.code, r.stderr).toBe(0)
    expect(readFileSync(join(dest, 'd', 'f'), 'utf8')).toBe('one\n')
    expect(statSync(join(dest, 'd', 'f')).mode & 0o7777).toBe(0o755)
    expect(readlinkSync(join(dest, 'l'))).toBe('/etc/passwd')
    const again = await cli(['sandbox', 'download', name, 'out', dest])
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/exists: pass --force/)
    expect((await cli(['sandbox', 'download', name, 'out', dest, '--force'])).code).toBe(0)
    const file = await cli(['sandbox', 'download', name, 'out/d/f', dest])
    expect(file.code, file.stderr).toBe(0)
    expect(readFileSync(join(dest, 'f'), 'utf8')).toBe('one\n')
    const missing = await cli(['sandbox', 'download', name, '/nope/x', dest])
    expect(missing.code).toBe(2)
    expect(missing.stderr.split('\n').filter(l => l.startsWith('podshell:'))).toEqual([`podshell: /nope/x does not exist in sandbox ${name}: give a path that exists there (relative paths are under its home)`])
  })
})

/**
 * The agent's `tar`: a python tarfile writer streaming the case named in ~/case (JSON) to stdout.
 * It ignores podshell's arguments, as a hostile replacement would.
 */
const EVIL_TAR = String.raw`#!/usr/bin/python3
import io, json, os, sys, tarfile
open(os.path.expanduser('~/tar-ran'), 'w').close()
c = json.load(open(os.path.expanduser('~/case')))
out = tarfile.open(fileobj=sys.stdout.buffer, mode='w|', format=tarfile.GNU_FORMAT)
def add(name, type=tarfile.REGTYPE, data=b'', size=None, fileobj=None, **kw):
    ti = tarfile.TarInfo(name)
    ti.type = type
    ti.size = (len(data) if size is None else size) if type == tarfile.REGTYPE else 0
    for k, v in kw.items():
        setattr(ti, k, v)
    out.addfile(ti, (fileobj or io.BytesIO(data)) if type == tarfile.REGTYPE else None)
class Zeros:
    def read(self, n=-1):
        return bytes(n if n > 0 else 65536)
o = c['outside']
k = c['case']
if k == 'absolute':
    add(o + '/pwned-abs', data=b'x')
elif k == 'dotdot':
    add('a/../../outside/pwned-dd', data=b'x')
    add('../../../../../../../../..' + o + '/pwned-dd2', data=b'x')
elif k == 'symlink-then-file':
    add('l', tarfile.SYMTYPE, linkname=o)
    add('l/pwned-sym', data=b'x')
elif k == 'hardlink-outside':
    add('h', tarfile.LNKTYPE, linkname=o + '/secret')
elif k == 'hardlink-relative':
    add('h', tarfile.LNKTYPE, linkname='../outside/secret')
elif k == 'device':
    add('null', tarfile.CHRTYPE, devmajor=1, devminor=3)
elif k == 'setuid':
    add(c.get('name', 'suid'), data=b'#!/bin/sh\n', mode=0o4755)
elif k == 'many':
    for i in range(1000000):
        add('f%d' % i)
elif k == 'sparse':
    add('big', size=4 * 1024 ** 3, fileobj=Zeros())
out.close()
`

describe('hostile archives from the agent', () => {
  let evil: string
  let base: string

  beforeAll(async () => {
    base = hostDir('hostile')
    evil = uniqueName('evil')
    // The image's PATH holds a directory the agent writes (~/.local/bin, as in many agent images).
    const home = process.env.HOME!
    const r = await cli(['sandbox', 'create', '--name', evil, '--detach', '--env', `PATH=${home}/.local/bin:/usr/local/bin:/usr/bin:/bin`])
    expect(r.code, r.stderr).toBe(0)
    writeFileSync(join(base, 'tar'), EVIL_TAR)
    expect((await cli(['sandbox', 'upload', evil, join(base, 'tar'), '.local/bin/tar'])).code).toBe(0)
    expect((await cli(['sandbox', 'exec', '-n', evil, '--', 'sh', '-c', 'chmod 755 ~/.local/bin/tar && command -v tar'])).stdout).toBe(`${home}/.local/bin/tar\n`)
    // A symlink named directly is archived by the sandbox's tar (the agent's, here).
    expect((await cli(['sandbox', 'exec', '-n', evil, '--', 'sh', '-c', 'ln -s nowhere /tmp/lnk'])).code).toBe(0)
  })
  const tarRan = async () => (await cli(['sandbox', 'exec', '-n', evil, '--', 'sh', '-c', 'if [ -e ~/tar-ran ]; then rm ~/tar-ran; echo yes; else echo no; fi'])).stdout.trim()

  afterAll(async () => {
    await cli(['sandbox', 'delete', evil])
  })

  // The agent's own doing (podshell's upload would now run the agent's `tar`, too).
  const setCase = (c: object) => cli(['sandbox', 'exec', '-n', evil, '--no-tty', '--', 'sh', '-c', 'cat > ~/case'], { input: JSON.stringify(c) })

  const cases: [string, RegExp, string[]][] = [
    ['absolute', /is an absolute path/, []],
    ['dotdot', /climbs out with \.\./, []],
    ['symlink-then-file', /would be written through the symlink/, []],
    ['hardlink-outside', /absolute path/, []],
    ['hardlink-relative', /climbs out with \.\./, []],
    ['device', /is a character-device, which is not extracted/, []],
    ['many', /more than 5000 entries/, []],
    ['sparse', /larger than 2147483648 bytes \(entry "big" alone is 4294967296\)/, []],
  ]
  for (const [k, msg, allowed] of cases) {
    it(`${k}: refused in one line, logged, nothing outside DEST`, async () => {
      const dir = join(base, k)
      const dest = join(dir, 'dest')
      const outside = join(dir, 'outside')
      mkdirSync(outside, { recursive: true })
      mkdirSync(dest)
      writeFileSync(join(outside, 'secret'), 'keep')
      expect((await setCase({ case: k, outside })).code).toBe(0)
      // Into DEST/lnk through a staging directory inside DEST, removed after the refusal.
      const r = await cli(['sandbox', 'download', evil, '/tmp/lnk', dest, '--max-files', '5000'])
      expect(r.code).toBe(1)
      expect(await tarRan()).toBe('yes')
      const errs = r.stderr.split('\n').filter(l => l.startsWith('podshell:'))
      expect(errs).toHaveLength(1)
      expect(errs[0]).toMatch(msg)
      expect(readdirSync(outside)).toEqual(['secret'])
      expect(readFileSync(join(outside, 'secret'), 'utf8')).toBe('keep')
      expect(readdirSync(dir).sort()).toEqual(['dest', 'outside'])
      expect(readdirSync(dest)).toEqual(allowed)
      const logs = await cli(['logs', evil, '-n', '50', '--source', 'sandbox'])
      expect(logs.stdout).toMatch(/download_failed/)
    })
  }

  it('setuid: extracted without the setuid bit', async () => {
    const dest = join(base, 'suid-dest')
    expect((await setCase({ case: 'setuid', name: 'lnk', outside: join(base, 'none') })).code).toBe(0)
    const r = await cli(['sandbox', 'download', evil, '/tmp/lnk', dest])
    expect(r.code, r.stderr).toBe(0)
    expect(await tarRan()).toBe('yes')
    expect(statSync(dest).mode & 0o7777).toBe(0o755)
    expect(existsSync(join(base, 'none'))).toBe(false)
  })

  it("a directory or a file is archived by podman cp: the agent's tar is not run", async () => {
    const outside = join(base, 'notrun-outside')
    mkdirSync(outside)
    expect((await setCase({ case: 'absolute', outside })).code).toBe(0)
    expect((await cli(['sandbox', 'exec', '-n', evil, '--', 'sh', '-c', 'mkdir -p /tmp/real/s && echo hi > /tmp/real/s/f'])).code).toBe(0)
    const dest = join(base, 'notrun-dest')
    const r = await cli(['sandbox', 'download', evil, '/tmp/real', dest])
    expect(r.code, r.stderr).toBe(0)
    expect(readFileSync(join(dest, 's', 'f'), 'utf8')).toBe('hi\n')
    const f = await cli(['sandbox', 'download', evil, '/tmp/real/s/f', join(base, 'notrun-file')])
    expect(f.code, f.stderr).toBe(0)
    expect(readFileSync(join(base, 'notrun-file'), 'utf8')).toBe('hi\n')
    expect(await tarRan()).toBe('no')
    expect(readdirSync(outside)).toEqual([])
  })

  const real: [string, string, RegExp][] = [
    ['fifo', 'mkdir -p /tmp/fifo && mkfifo /tmp/fifo/p', /is a fifo, which is not extracted/],
    ['sparse', 'mkdir -p /tmp/sparse && truncate -s 3G /tmp/sparse/big', /larger than 2147483648 bytes \(entry "big" alone is 3221225472\)/],
  ]
  for (const [k, make, msg] of real) {
    it(`a real ${k} in the tree (through podman cp): refused in one line, logged`, async () => {
      expect((await cli(['sandbox', 'exec', '-n', evil, '--', 'sh', '-c', make])).code).toBe(0)
      const dest = join(base, `real-${k}`)
      const r = await cli(['sandbox', 'download', evil, `/tmp/${k}`, dest])
      expect(r.code).toBe(1)
      const errs = r.stderr.split('\n').filter(l => l.startsWith('podshell:'))
      expect(errs).toHaveLength(1)
      expect(errs[0]).toMatch(msg)
      expect(readdirSync(dest)).toEqual([])
      expect(await tarRan()).toBe('no')
    })
  }
})
