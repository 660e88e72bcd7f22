import { describe, expect, it, beforeAll, afterAll } from 'vitest'
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, symlinkSync, utimesSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { computeInputHash, contextMode, DigestCache, walkDir, type HashInputs } from '../../src/images/hash.js'
import { debianSources, parseDeb822, parseOneLine } from '../../src/images/mirror.js'
import { gatewayNode } from '../../src/images/context.js'
import { BASE_PACKAGES, mmdebstrapArgs, mmdebstrapMissing, offlineBaseHash, validateBuildArgs, lastLine } from '../../src/images/build.js'
import { parseWhich } from '../../src/cli/image.js'

const inputs = (over: Partial<HashInputs> = {}): HashInputs => ({
  containerfile: 'FROM ${BASE}\nRUN true\n',
  buildArgs: { BASE: 'localhost/podshell-base:bookworm' },
  baseImageId: 'sha256:aaa',
  files: [
    { dest: 'node', mode: 0o755, sha256: 'n1' },
    { dest: 'app/package.json', mode: 0o644, sha256: 'p1' },
  ],
  ...over,
})

describe('image input hash', () => {
  it('is stable and independent of file and build-arg order', () => {
    const a = computeInputHash(inputs())
    const b = computeInputHash(inputs({
      files: [...inputs().files].reverse(),
      buildArgs: { CODEX_VERSION: '1.0.0', BASE: 'x' },
    }))
    const c = computeInputHash(inputs({ buildArgs: { BASE: 'x', CODEX_VERSION: '1.0.0' } }))
    expect(a).toMatch(/^[0-9a-f]{64}$/)
    expect(computeInputHash(inputs())).toBe(a)
    expect(b).toBe(c)
  })

  it.each([
    ['the Containerfile', { containerfile: 'FROM ${BASE}\nRUN false\n' }],
    ['a build arg', { buildArgs: { BASE: 'docker.io/library/debian:bookworm-slim' } }],
    ['an added build arg', { buildArgs: { BASE: 'localhost/podshell-base:bookworm', CLAUDE_CODE_VERSION: '1.0.0' } }],
    ['the base image id', { baseImageId: 'sha256:bbb' }],
    ['a file content', { files: [{ dest: 'node', mode: 0o755, sha256: 'n2' }, { dest: 'app/package.json', mode: 0o644, sha256: 'p1' }] }],
    ['a file mode', { files: [{ dest: 'node', mode: 0o644, sha256: 'n1' }, { dest: 'app/package.json', mode: 0o644, sha256: 'p1' }] }],
    ['a file path', { files: [{ dest: 'bin/node', mode: 0o755, sha256: 'n1' }, { dest: 'app/package.json', mode: 0o644, sha256: 'p1' }] }],
    ['a removed file', { files: [{ dest: 'node', mode: 0o755, sha256: 'n1' }] }],
  ])('changes when %s changes', (_what, over) => {
    expect(computeInputHash(inputs(over as Partial<HashInputs>))).not.toBe(computeInputHash(inputs()))
  })

  it('normalises modes to 0755 / 0644 (what the context copy gets)', () => {
    expect(contextMode(0o100775)).toBe(0o755)
    expect(contextMode(0o100700)).toBe(0o755)
    expect(contextMode(0o100664)).toBe(0o644)
    expect(contextMode(0o100600)).toBe(0o644)
  })
})

describe('digest cache and context walk', () => {
  let dir: string
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'podshell-img-'))
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))

  it('re-reads a file whose size or mtime changed, and reuses the digest otherwise', () => {
    const f = join(dir, 'f.bin')
    writeFileSync(f, 'one')
    const cacheFile = join(dir, 'digests.json')
    const c1 = new DigestCache(cacheFile)
    const d1 = c1.hashFile(f)
    c1.save()
    const c2 = new DigestCache(cacheFile)
    expect(c2.hashFile(f)).toBe(d1)
    writeFileSync(f, 'two')
    utimesSync(f, new Date(), new Date(Date.now() + 5000))
    expect(c2.hashFile(f)).not.toBe(d1)
  })

  it('a corrupt cache file only costs re-reading', () => {
    const f = join(dir, 'g.bin')
    writeFileSync(f, 'x')
    const cacheFile = join(dir, 'bad.json')
    writeFileSync(cacheFile, '{not json')
    expect(new DigestCache(cacheFile).hashFile(f)).toMatch(/^[0-9a-f]{64}$/)
  })

  it('walks a directory sorted, following symlinks, with skips', () => {
    const d = join(dir, 'ctx')
    mkdirSync(join(d, 'b'), { recursive: true })
    writeFileSync(join(d, 'z.txt'), 'z')
    writeFileSync(join(d, 'b', 'a.js'), 'a')
    writeFileSync(join(d, 'b', 'a.d.ts'), 'd')
    symlinkSync(join(d, 'z.txt'), join(d, 'link.txt'))
    const files = walkDir(d, 'app', rel => rel.endsWith('.d.ts'))
    expect(files.map(f => f.dest)).toEqual(['app/b/a.js', 'app/link.txt', 'app/z.txt'])
  })
})

describe('node binary for the gateway image', () => {
  it('is the node running podshell on Linux, or PODSHELL_GATEWAY_NODE', () => {
    expect(gatewayNode({}, 'linux')).toMatch(/node/)
    expect(gatewayNode({ PODSHELL_GATEWAY_NODE: process.execPath }, 'linux')).toBe(gatewayNode({}, 'linux'))
  })

  it('off Linux (podman machine) demands a Linux node binary instead of copying a Mach-O one', () => {
    expect(() => gatewayNode({}, 'darwin')).toThrow(/needs a Linux node binary/)
    expect(gatewayNode({ PODSHELL_GATEWAY_NODE: process.execPath }, 'darwin')).toMatch(/node/)
  })

  it('fails with the fix when PODSHELL_GATEWAY_NODE does not exist', () => {
    expect(() => gatewayNode({ PODSHELL_GATEWAY_NODE: '/nonexistent/node' }, 'linux')).toThrow(/node binary not found/)
  })
})

describe('Debian mirror detection', () => {
  const bookwormDeb822 = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`
  it('reads deb822 sources (Debian 12 default) with security and updates', () => {
    expect(debianSources([{ path: '/etc/apt/sources.list.d/debian.sources', content: bookwormDeb822 }])).toEqual({
      lines: [
        'deb http://deb.debian.org/debian bookworm main',
        'deb http://deb.debian.org/debian bookworm-updates main',
        'deb http://deb.debian.org/debian-security bookworm-security main',
      ],
      fromHost: true,
    })
  })

  it('reads one-line sources.list with options, comments and deb-src', () => {
    const content = [
      '# main mirror',
      'deb [arch=amd64 signed-by=/x.gpg] http://mirror.example.org/debian/ bullseye main contrib',
      'deb-src http://mirror.example.org/debian bullseye main',
      'deb http://security.debian.org/debian-security bullseye-security main',
      'deb http://mirror.example.org/debian bullseye-updates main # trailing',
    ].join('\n')
    expect(parseOneLine(content)).toHaveLength(4)
    expect(debianSources([{ path: '/etc/apt/sources.list', content }]).lines).toEqual([
      // Retargeted at the image's suite; trailing slash dropped.
      'deb http://mirror.example.org/debian bookworm main',
      'deb http://security.debian.org/debian-security bookworm-security main',
      'deb http://mirror.example.org/debian bookworm-updates main',
    ])
  })

  it('maps the old "buster/updates" security suite', () => {
    const content = 'deb http://security.debian.org buster/updates main\ndeb http://deb.debian.org/debian buster main\n'
    expect(debianSources([{ path: '/etc/apt/sources.list', content }]).lines).toEqual([
      'deb http://deb.debian.org/debian bookworm main',
      'deb http://security.debian.org bookworm-security main',
    ])
  })

  it('ignores disabled stanzas, non-Debian suites (Ubuntu, third-party) and cdrom entries', () => {
    const files = [
      { path: '/etc/apt/sources.list.d/ubuntu.sources', content: 'Types: deb\nURIs: http://archive.ubuntu.com/ubuntu\nSuites: noble noble-updates\nComponents: main\n' },
      { path: '/etc/apt/sources.list.d/nodesource.sources', content: 'Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n' },
      { path: '/etc/apt/sources.list.d/off.sources', content: 'Types: deb\nURIs: http://local.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n' },
      { path: '/etc/apt/sources.list', content: 'deb cdrom:[Debian GNU/Linux 12]/ bookworm main\n' },
    ]
    expect(debianSources(files)).toEqual({ lines: ['deb http://deb.debian.org/debian bookworm main'], fromHost: false })
  })

  it('keeps a local file: mirror (hosts without internet)', () => {
    const files = [{ path: '/etc/apt/sources.list.d/local.sources', content: 'Types: deb deb-src\nURIs: file:/srv/mirror/debian\nSuites: trixie\nComponents: main\n' }]
    expect(debianSources(files).lines).toEqual(['deb file:/srv/mirror/debian bookworm main'])
  })

  it('parses deb822 continuation lines and several URIs', () => {
    const s = parseDeb822('Types: deb\nURIs: http://a.example/debian\n http://b.example/debian\nSuites: bookworm\nComponents: main\n')
    expect(s[0]!.uris).toEqual(['http://a.example/debian', 'http://b.example/debian'])
  })
})

describe('offline base bootstrap', () => {
  it('includes every package both Containerfiles check for, rootless (unshare) and minbase', () => {
    const args = mmdebstrapArgs('/c/rootfs.tar', ['deb http://deb.debian.org/debian bookworm main'])
    expect(args).toContain('--mode=unshare')
    expect(args).toContain('--variant=minbase')
    const include = args.find(a => a.startsWith('--include='))!.slice('--include='.length).split(',')
    for (const p of ['bash', 'git', 'curl', 'ca-certificates', 'python3', 'nodejs', 'procps', 'iproute2', 'coreutils', 'findutils', 'util-linux', 'socat']) {
      expect(include).toContain(p)
    }
    // Suite, target, then the mirror lines, as separate argv entries (no shell).
    expect(args.slice(-3)).toEqual(['bookworm', '/c/rootfs.tar', 'deb http://deb.debian.org/debian bookworm main'])
  })

  it('the base packages are exactly the ones the Containerfiles list', async () => {
    const { readFileSync } = await import('node:fs')
    const root = new URL('../../', import.meta.url)
    const want = new Set<string>()
    for (const f of ['images/sandbox/Containerfile', 'Containerfile']) {
      const m = /ARG PACKAGES="([^"]+)"/.exec(readFileSync(new URL(f, root), 'utf8'))
      for (const p of m![1]!.split(/\s+/)) want.add(p)
    }
    expect([...BASE_PACKAGES].sort()).toEqual([...want].sort())
  })

  it('without mmdebstrap: one line with the fix for the distribution', () => {
    const fedora = mmdebstrapMissing('NAME="Fedora Linux"\nID=fedora\nVERSION_ID=41\n')
    expect(fedora.oneLine()).toMatch(/^offline image builds need mmdebstrap, which is not installed: .*dnf install mmdebstrap debian-keyring.*--base/)
    expect(fedora.oneLine()).not.toContain('\n')
    const ubuntu = mmdebstrapMissing('ID=ubuntu\nID_LIKE=debian\n')
    expect(ubuntu.hint).toMatch(/^apt-get install mmdebstrap/)
    expect(mmdebstrapMissing('ID=debian\n').code).toBe('NO_MMDEBSTRAP')
  })

  it('base hash depends on the package set only (not on the mirror)', () => {
    expect(offlineBaseHash()).toMatch(/^[0-9a-f]{64}$/)
    expect(offlineBaseHash()).toBe(offlineBaseHash())
  })
})

describe('image build arguments', () => {
  it('accepts known agent versions, drops empty ones', () => {
    expect(validateBuildArgs({ CLAUDE_CODE_VERSION: '1.0.3', CODEX_VERSION: '', OPENCODE_VERSION: 'latest' })).toEqual({ CLAUDE_CODE_VERSION: '1.0.3', OPENCODE_VERSION: 'latest' })
  })

  it.each([
    ['CLAUDE_CODE_VERSION', '1.0 evil-package'],
    ['CODEX_VERSION', '$(id)'],
    ['OPENCODE_VERSION', '-g'],
    ['OPENCODE_VERSION', '1.0;rm -rf /'],
  ])('rejects %s=%j (it is expanded into npm argv)', (k, v) => {
    expect(() => validateBuildArgs({ [k]: v })).toThrow(/invalid/)
  })

  it('rejects unknown build args (BASE is set by --base, not --build-arg)', () => {
    expect(() => validateBuildArgs({ BASE: 'x' })).toThrow(/unknown build arg/)
  })

  it('parses which images to build', () => {
    expect(parseWhich('all')).toEqual(['sandbox', 'gateway'])
    expect(parseWhich('gateway')).toEqual(['gateway'])
    expect(() => parseWhich('base')).toThrow(/unknown image/)
  })

  it('reports the meaningful last line of tool output', () => {
    const out = 'time="x" level=warning msg="\\"/\\" is not a shared mount"\nSTEP 1/2: FROM x\nError: building at STEP "RUN apt-get": exit status 100\n'
    expect(lastLine(out)).toBe('building at STEP "RUN apt-get": exit status 100')
    expect(lastLine('E: Unable to locate package nope\nW: something\n', /^E: /)).toBe('E: Unable to locate package nope')
  })
})

