import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, realpathSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { checkMount } from '../../src/sandbox/sensitive.js'
import { devProtections, findReadDenyDirs, readDenyAncestor, scanTree } from '../../src/sandbox/tree-scan.js'

let root: string
let home: string

beforeEach(() => {
  root = realpathSync(mkdtempSync(join(tmpdir(), 'podshell-sens-')))
  home = join(root, 'home', 'u')
  for (const d of ['.ssh', '.aws', '.config/gh', '.local/share/containers', 'src/proj', '.claude/projects']) mkdirSync(join(home, d), { recursive: true })
  writeFileSync(join(home, '.ssh', 'id_ed25519'), 'PRIVATE KEY')
  writeFileSync(join(home, '.claude', '.credentials.json'), '{"token":"x"}')
})
afterEach(() => rmSync(root, { recursive: true, force: true }))

describe('checkMount: sensitive host paths are never mounted', () => {
  it('refuses a sensitive path itself, naming what it holds', () => {
    expect(checkMount(join(home, '.ssh'), home)).toMatch(/~\/\.ssh is ~\/\.ssh \(SSH keys\)/)
    expect(checkMount(join(home, '.aws'), home)).toMatch(/AWS credentials/)
    expect(checkMount(join(home, '.config', 'gh'), home)).toMatch(/GitHub CLI tokens/)
  })

  it('refuses a path inside a sensitive path', () => {
    expect(checkMount(join(home, '.ssh', 'id_ed25519'), home)).toMatch(/is inside ~\/\.ssh/)
  })

  it('refuses a parent that CONTAINS a sensitive path: mounting $HOME would expose ~/.ssh', () => {
    expect(checkMount(home, home)).toMatch(/mounting your home directory would expose ~\/\./)
    expect(checkMount(join(home, '.config'), home)).toMatch(/would expose ~\/\.config\//)
    expect(checkMount('/', home)).toMatch(/would expose/)
    expect(checkMount(join(home, '.claude'), home)).toMatch(/Claude Code OAuth tokens/)
  })

  it('allows a project directory and Claude\'s projects/ dir', () => {
    expect(checkMount(join(home, 'src', 'proj'), home)).toBeUndefined()
    expect(checkMount(join(home, '.claude', 'projects'), home)).toBeUndefined()
  })

  it('catches a symlink that points at ~/.ssh (realpath), and one that points at a parent of it', () => {
    const link = join(root, 'innocent')
    symlinkSync(join(home, '.ssh'), link)
    expect(checkMount(link, home)).toMatch(/resolves to .*\.ssh.*SSH keys/)
    const up = join(root, 'up')
    symlinkSync(home, up)
    expect(checkMount(up, home)).toMatch(/would expose/)
    // A symlinked directory component in the middle of the path is resolved too.
    expect(checkMount(join(up, '.aws', 'credentials'), home)).toMatch(/AWS credentials/)
  })

  it('catches a ~/.ssh that is itself a symlink into another directory', () => {
    const keys = join(root, 'vault', 'ssh')
    mkdirSync(keys, { recursive: true })
    rmSync(join(home, '.ssh'), { recursive: true })
    symlinkSync(keys, join(home, '.ssh'))
    expect(checkMount(keys, home)).toMatch(/SSH keys/)
    expect(checkMount(join(root, 'vault'), home)).toMatch(/would expose ~\/\.ssh/)
  })

  it('checks paths that do not exist yet by their nearest existing parent', () => {
    expect(checkMount(join(home, '.ssh', 'new', 'deeper'), home)).toMatch(/inside ~\/\.ssh/)
    expect(checkMount(join(home, 'src', 'not-yet'), home)).toBeUndefined()
  })

  it('allowSensitive permits secrets but never sandbox escapes (engine storage, sockets, podshell data)', () => {
    expect(checkMount(join(home, '.aws'), home, { allowSensitive: true })).toBeUndefined()
    expect(checkMount(join(home, '.local', 'share', 'containers'), home, { allowSensitive: true })).toMatch(/Podman storage/)
    expect(checkMount('/run/user/1000', home, { allowSensitive: true, uid: 1000 })).toMatch(/XDG_RUNTIME_DIR|runtime dirs/)
    expect(checkMount('/var/run/docker.sock', home, { allowSensitive: true })).toMatch(/Docker socket/)
    const data = join(root, 'psdata')
    expect(checkMount(join(data, 'sandboxes', 'x'), home, { allowSensitive: true, podshellDataDir: data })).toMatch(/podshell's data/)
    // $HOME contains escape-class paths too, so even allowSensitive cannot mount it.
    expect(checkMount(home, home, { allowSensitive: true })).toMatch(/would expose/)
  })

  it("never mounts podshell's cache dir (its compile cache and runtime probe run on the host), default or relocated, even with allowSensitive", () => {
    mkdirSync(join(home, '.cache', 'podshell', 'node-compile-cache'), { recursive: true })
    expect(checkMount(join(home, '.cache', 'podshell'), home, { allowSensitive: true })).toMatch(/podshell's cache/)
    expect(checkMount(join(home, '.cache', 'podshell', 'node-compile-cache'), home, { allowSensitive: true })).toMatch(/podshell's cache/)
    // A parent that contains it (a project holding an XDG_CACHE_HOME) is refused too.
    const xdg = join(home, 'src', 'proj', '.xdg-cache', 'podshell')
    mkdirSync(xdg, { recursive: true })
    expect(checkMount(join(home, 'src', 'proj'), home, { podshellCacheDir: xdg })).toMatch(/podshell's cache/)
    expect(checkMount(join(home, 'src', 'proj'), home)).toBeUndefined()
  })

  it('honours extra sensitive paths from the enterprise config (relative to home or absolute)', () => {
    mkdirSync(join(home, 'corp-vpn'), { recursive: true })
    expect(checkMount(join(home, 'corp-vpn'), home, { extra: ['corp-vpn'] })).toMatch(/enterprise/)
    expect(checkMount('/srv/secrets/x', home, { extra: ['/srv/secrets'] })).toMatch(/inside \/srv\/secrets/)
  })
})

describe('.ai-read-deny discovery', () => {
  it('finds every marked directory, inside node_modules and .git too, not descending into marked trees', async () => {
    const p = join(home, 'src', 'proj')
    for (const d of ['secrets/inner', 'docs', 'node_modules/pkg', '.git/objects', 'a/b/c/private']) mkdirSync(join(p, d), { recursive: true })
    writeFileSync(join(p, 'secrets', '.ai-read-deny'), '')
    writeFileSync(join(p, 'secrets', 'inner', '.ai-read-deny'), '')
    writeFileSync(join(p, 'a', 'b', 'c', 'private', '.ai-read-deny'), '')
    writeFileSync(join(p, 'node_modules', 'pkg', '.ai-read-deny'), '')
    writeFileSync(join(p, '.git', 'objects', '.ai-read-deny'), '')
    const r = await findReadDenyDirs(p)
    expect(r.complete).toBe(true)
    expect(r.dirs).toEqual([join(p, '.git', 'objects'), join(p, 'a', 'b', 'c', 'private'), join(p, 'node_modules', 'pkg'), join(p, 'secrets')])
  })

  it('collects git entries and agent settings only outside node_modules and .git', async () => {
    const p = join(home, 'src', 'proj')
    for (const d of ['.git', 'node_modules/pkg/.vscode', 'node_modules/pkg/.git', 'web/.claude']) mkdirSync(join(p, d), { recursive: true })
    const r = await scanTree(p)
    expect(r.gitEntries).toEqual([join(p, '.git')])
    expect(r.agentSettings).toEqual([join(p, 'web', '.claude')])
  })

  it('records unix sockets (sockets.ts masks them)', async () => {
    const p = join(home, 'src', 'proj')
    mkdirSync(join(p, 'node_modules', 'x'), { recursive: true })
    const { createServer } = await import('node:net')
    const socks = [join(p, 'db.sock'), join(p, 'node_modules', 'x', 'ipc.sock')]
    const servers = await Promise.all(socks.map(s => new Promise<import('node:net').Server>(res => { const srv = createServer(); srv.listen(s, () => res(srv)) })))
    try {
      expect((await scanTree(p)).sockets).toEqual(socks.sort())
    } finally {
      for (const srv of servers) srv.close()
    }
  })

  it('does not follow symlinks out of the tree', async () => {
    const p = join(home, 'src', 'proj')
    mkdirSync(join(root, 'outside', 'x'), { recursive: true })
    writeFileSync(join(root, 'outside', 'x', '.ai-read-deny'), '')
    symlinkSync(join(root, 'outside'), join(p, 'link'))
    const r = await findReadDenyDirs(p)
    expect(r.dirs).toEqual([])
  })

  it('masks what lies below the depth bound instead of failing (a planted deep tree neither fails the launch nor hides a marker)', async () => {
    const p = join(home, 'src', 'proj')
    mkdirSync(join(p, 'l1', 'l2', 'l3', 'l4'), { recursive: true })
    writeFileSync(join(p, 'l1', 'l2', 'l3', 'l4', '.ai-read-deny'), '')
    const shallow = await scanTree(p, { maxDepth: 2 })
    expect(shallow.complete).toBe(true)
    expect(shallow.stoppedBy).toBe('depth')
    expect(shallow.frontier).toEqual([join(p, 'l1', 'l2', 'l3')])
    expect(shallow.readDeny).toEqual([join(p, 'l1', 'l2', 'l3')])
    const deep = await scanTree(p, { maxDepth: 8 })
    expect(deep.complete).toBe(true)
    expect(deep.frontier).toEqual([])
    expect(deep.readDeny).toEqual([join(p, 'l1', 'l2', 'l3', 'l4')])
  })

  it('a wide unvisited frontier is lifted to fewer, larger masks (never the root)', async () => {
    const p = join(home, 'src', 'proj')
    for (let i = 0; i < 300; i++) mkdirSync(join(p, 'planted', `d${i}`, 'e'), { recursive: true })
    mkdirSync(join(p, 'src', 'x', 'y'), { recursive: true })
    const r = await scanTree(p, { maxDepth: 2 })
    expect(r.complete).toBe(true)
    expect(r.readDeny).toEqual([join(p, 'planted'), join(p, 'src', 'x', 'y')].sort())
    expect(r.frontier).toEqual(r.readDeny)
  })

  it('a marker or protected path under a name podman cannot mount ("," or ":") masks its nearest expressible ancestor instead of failing the launch', async () => {
    const p = join(home, 'src', 'proj')
    mkdirSync(join(p, 'sub', 'x,y', '.vscode'), { recursive: true })
    mkdirSync(join(p, 'docs', 'a:b'), { recursive: true })
    writeFileSync(join(p, 'docs', 'a:b', '.ai-read-deny'), '')
    mkdirSync(join(p, 'plain,dir'), { recursive: true })
    const r = await scanTree(p)
    expect(r.complete).toBe(true)
    expect(r.readDeny).toEqual([join(p, 'docs'), join(p, 'sub')])
    expect(r.agentSettings).toEqual([])
    // At the top level there is no expressible ancestor but the root: fail closed, as before.
    mkdirSync(join(p, 'top,level', '.claude'), { recursive: true })
    expect((await scanTree(p)).complete).toBe(false)
  })

  it('reports an incomplete scan when the time budget runs out before the root is read (callers fail closed)', async () => {
    const p = join(home, 'src', 'proj')
    for (let i = 0; i < 50; i++) mkdirSync(join(p, `d${i}`, 'e'), { recursive: true })
    const r = await scanTree(p, { timeoutMs: -1 })
    expect(r.complete).toBe(false)
    expect(r.stoppedBy).toBe('timeout')
  })

  it('finds a marker ABOVE a mount root (ai-guardian denies the whole subtree)', () => {
    mkdirSync(join(home, 'src', 'secret-team', 'repo'), { recursive: true })
    writeFileSync(join(home, 'src', 'secret-team', '.ai-read-deny'), '')
    expect(readDenyAncestor(join(home, 'src', 'secret-team', 'repo'))).toBe(join(home, 'src', 'secret-team'))
    expect(readDenyAncestor(join(home, 'src', 'proj'))).toBeUndefined()
  })
})

describe('development-session protections inside a read-write project', () => {
  function repo(dir: string, config = '[core]\n\tbare = false\n') {
    mkdirSync(join(dir, '.git', 'hooks'), { recursive: true })
    writeFileSync(join(dir, '.git', 'config'), config)
  }

  it('keeps the whole .git dir and agent settings read-only, and asks for an absent .claude to be created (then bound read-only)', async () => {
    const p = join(home, 'src', 'proj')
    repo(p)
    mkdirSync(join(p, '.vscode'))
    writeFileSync(join(p, '.mcp.json'), '{}')
    writeFileSync(join(p, '.pre-commit-config.yaml'), 'repos: []\n')
    const prot = devProtections(await scanTree(p))
    expect(prot.readOnly).toEqual([join(p, '.git'), join(p, '.mcp.json'), join(p, '.pre-commit-config.yaml'), join(p, '.vscode')].sort())
    expect(prot.create).toEqual([join(p, '.claude')])
  })

  it('protects an existing .claude directory (settings.json and settings.local.json hooks run on the host)', async () => {
    const p = join(home, 'src', 'proj')
    repo(p)
    mkdirSync(join(p, '.claude'))
    writeFileSync(join(p, '.claude', 'settings.json'), '{}')
    const prot = devProtections(await scanTree(p))
    expect(prot.readOnly).toContain(join(p, '.claude'))
    expect(prot.create).toEqual([])
  })

  it('protects the directory core.hooksPath names (husky) besides the read-only .git', async () => {
    const p = join(home, 'src', 'proj')
    mkdirSync(join(p, '.git'), { recursive: true })
    writeFileSync(join(p, '.git', 'config'), '[core]\n\thooksPath = .husky/_\n')
    mkdirSync(join(p, '.husky', '_'), { recursive: true })
    const prot = devProtections(await scanTree(p))
    expect(prot.readOnly).toContain(join(p, '.husky', '_'))
    expect(prot.readOnly).toContain(join(p, '.husky'))
    expect(prot.readOnly).toContain(join(p, '.git'))
    expect(prot.create).not.toContain(join(p, '.git', 'hooks'))
  })

  it('finds nested repositories of a workspace and resolves worktree .git files', async () => {
    const ws = join(home, 'src', 'ws')
    repo(join(ws, 'a'))
    repo(join(ws, 'b'))
    // b-wt is a worktree of b: its .git is a file pointing into b/.git/worktrees/b-wt.
    mkdirSync(join(ws, 'b', '.git', 'worktrees', 'b-wt'), { recursive: true })
    writeFileSync(join(ws, 'b', '.git', 'worktrees', 'b-wt', 'commondir'), '../..\n')
    mkdirSync(join(ws, 'b-wt'))
    writeFileSync(join(ws, 'b-wt', '.git'), `gitdir: ${join(ws, 'b', '.git', 'worktrees', 'b-wt')}\n`)
    const prot = devProtections(await scanTree(ws))
    expect(prot.readOnly).toEqual(expect.arrayContaining([join(ws, 'a', '.git'), join(ws, 'b', '.git'), join(ws, 'b', '.git', 'worktrees', 'b-wt'), join(ws, 'b-wt', '.git')]))
    expect(prot.create).toEqual(expect.arrayContaining([join(ws, '.claude'), join(ws, 'a', '.claude'), join(ws, 'b', '.claude'), join(ws, 'b-wt', '.claude')]))
  })

  it('leaves paths inside .ai-read-deny trees to the mask (never binds them)', async () => {
    const p = join(home, 'src', 'proj')
    repo(p)
    mkdirSync(join(p, 'hidden', 'sub'), { recursive: true })
    writeFileSync(join(p, 'hidden', '.ai-read-deny'), '')
    repo(join(p, 'hidden', 'sub'))
    const scan = await scanTree(p)
    const prot = devProtections(scan)
    expect(scan.readDeny).toEqual([join(p, 'hidden')])
    expect(prot.readOnly.some(x => x.startsWith(join(p, 'hidden')))).toBe(false)
    expect(prot.create.some(x => x.startsWith(join(p, 'hidden')))).toBe(false)
  })
})
