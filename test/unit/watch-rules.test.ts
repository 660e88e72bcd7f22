import { describe, it, expect } from 'vitest'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { compileRule, extraPatternsFromEnv, gitDirEntryKind, hostExecRules, judgeGitConfig, matchHostExec, parseGitConfig } from '../../src/watch/rules.js'
import { HostExecWatcher, walkTree, writableRoots } from '../../src/watch/watcher.js'
import { renderFinding } from '../../src/watch/quarantine.js'
import { UserConfigSchema } from '../../src/config/config.js'
import { watcherMissing, rootsFile, pidFile, degradedFile, writeWatchFile } from '../../src/watch/paths.js'
import { selfCreatorId } from '../../src/util/process.js'

const rules = hostExecRules()

describe('host-executed file rules', () => {
  it('matches the listed files at any depth, and paths inside matched dirs by their dir', () => {
    expect(matchHostExec('docs/tools/.git', rules)?.matched).toBe('docs/tools/.git')
    expect(matchHostExec('docs/tools/.git/hooks/pre-commit', rules)).toMatchObject({ matched: 'docs/tools/.git', git: true })
    expect(matchHostExec('.envrc', rules)?.matched).toBe('.envrc')
    expect(matchHostExec('a/b/.vscode/tasks.json', rules)?.matched).toBe('a/b/.vscode/tasks.json')
    expect(matchHostExec('a/.husky/pre-commit', rules)?.matched).toBe('a/.husky')
    expect(matchHostExec('x/my.code-workspace', rules)?.matched).toBe('x/my.code-workspace')
    expect(matchHostExec('pkg/.claude/settings.json', rules)?.matched).toBe('pkg/.claude')
    expect(matchHostExec('src/index.ts', rules)).toBeUndefined()
    expect(matchHostExec('.vscode/extensions.json', rules)).toBeUndefined()
    expect(matchHostExec('docs/.envrc.bak', rules)).toBeUndefined()
  })

  it('takes extra patterns from the environment and refuses invalid ones with a message', () => {
    const r = extraPatternsFromEnv({ PODSHELL_HOST_EXEC_FILES: '.tool/run.sh, ../x ,Taskfile.yml' })
    expect(r.patterns).toEqual(['.tool/run.sh', 'Taskfile.yml'])
    expect(r.errors[0]).toMatch(/invalid host-executed file pattern "\.\.\/x"/)
    expect(matchHostExec('a/Taskfile.yml', hostExecRules(r.patterns))?.matched).toBe('a/Taskfile.yml')
    expect(() => compileRule('/abs')).toThrow()
  })

  it('config.yaml host_exec_files: valid patterns accepted, invalid ones refused with the key path', () => {
    expect(UserConfigSchema.parse({ host_exec_files: ['Taskfile.yml', '.tool/*.sh'] }).host_exec_files).toHaveLength(2)
    const bad = UserConfigSchema.safeParse({ host_exec_files: ['../etc/passwd'] })
    expect(bad.success).toBe(false)
    expect(bad.error?.issues[0]?.path).toEqual(['host_exec_files', 0])
  })

  it('classifies protected files inside a git dir', () => {
    expect(gitDirEntryKind('config')).toBe('config')
    expect(gitDirEntryKind('hooks/pre-commit')).toBe('hooks')
    expect(gitDirEntryKind('commondir')).toBe('redirect')
    expect(gitDirEntryKind('worktrees/w/gitdir')).toBe('redirect')
    expect(gitDirEntryKind('modules/sub/config')).toBe('config')
    expect(gitDirEntryKind('objects/ab/cdef')).toBeUndefined()
    expect(gitDirEntryKind('refs/heads/main')).toBeUndefined()
  })
})

describe('git config judgement', () => {
  const base = '[core]\n\trepositoryformatversion = 0\n\tbare = false\n[remote "origin"]\n\turl = https://example.com/r.git\n'

  it('keeps ordinary git work (user, branches, remotes) and removes keys that run commands', () => {
    const v = judgeGitConfig(base + '[user]\n\tname = agent\n[branch "f"]\n\tremote = origin\n', base)
    expect(v.clean).toBe(true)
    for (const [k, extra] of [
      ['core.fsmonitor', '[core]\n\tfsmonitor = touch /tmp/x #\n'],
      ['core.hookspath', '[core]\n\thooksPath = /tmp/h\n'],
      ['core.sshcommand', '[core]\n\tsshCommand = sh -c evil\n'],
      ['core.pager', '[core]\n\tpager = evil\n'],
      ['alias.st', '[alias]\n\tst = !evil\n'],
      ['filter.x.smudge', '[filter "x"]\n\tsmudge = evil\n'],
      ['diff.x.textconv', '[diff "x"]\n\ttextconv = evil\n'],
      ['credential.helper', '[credential]\n\thelper = !evil\n'],
      ['include.path', '[include]\n\tpath = /tmp/evil.cfg\n'],
      ['includeif.gitdir:/.path', '[includeIf "gitdir:/"]\n\tpath = /tmp/evil.cfg\n'],
      ['remote.x.url', '[remote "x"]\n\turl = ext::sh -c evil\n'],
      ['core.fsmonitor', '[core "x"]\n[core]\n\tfsmonitor = \\\nevil\n'],
    ] as const) {
      const v2 = judgeGitConfig(base + extra, base)
      expect(v2.clean, k).toBe(false)
      expect(v2.sanitized, k).toBeDefined()
      expect(parseGitConfig(v2.sanitized!).entries.map(e => e.key)).not.toContain(k)
      expect(v2.sanitized).toContain('url = https://example.com/r.git')
    }
  })

  it("keeps what the user already had, even a key that runs commands, unchanged; a changed value goes", () => {
    const mine = base + '[core]\n\tpager = less -R\n'
    expect(judgeGitConfig(mine, mine).clean).toBe(true)
    const v = judgeGitConfig(base + '[core]\n\tpager = sh -c evil\n', mine)
    expect(v.removed).toEqual(['core.pager'])
  })

  it('restores (no sanitized text) when the file is not in the subset it understands', () => {
    const v = judgeGitConfig(base + '[core] fsmonitor = evil\n', base)
    expect(v.clean).toBe(false)
    expect(v.sanitized).toBeUndefined()
  })
})

describe('watcher engine (host directories, no container)', () => {
  function setup() {
    const root = mkdtempSync(join(tmpdir(), 'pswatch-'))
    const data = mkdtempSync(join(tmpdir(), 'pswatchdata-'))
    mkdirSync(join(root, '.git', 'hooks'), { recursive: true })
    writeFileSync(join(root, '.git', 'HEAD'), 'ref: refs/heads/main\n')
    mkdirSync(join(root, '.git', 'refs'))
    mkdirSync(join(root, '.git', 'objects'))
    writeFileSync(join(root, '.git', 'config'), '[core]\n\tbare = false\n')
    writeFileSync(join(root, '.envrc'), 'export A=1\n')
    mkdirSync(join(root, 'docs'))
    mkdirSync(join(data, 'sandboxes', 'sb'), { recursive: true })
    const baseline = HostExecWatcher.takeBaseline([root], rules)
    const w = new HostExecWatcher({ q: { dataDir: data, name: 'sb' }, roots: [root], rules, baseline })
    return { root, data, w }
  }

  it('the baseline is what the user had: a rescan of an unchanged tree finds nothing', () => {
    const { w } = setup()
    expect(w.scan().findings).toBe(0)
  })

  it('a new nested .git, a new .envrc, a changed .envrc, a planted hook and a bare-repo layout are quarantined and recorded', () => {
    const { root, data, w } = setup()
    mkdirSync(join(root, 'docs', 'tools', '.git'), { recursive: true })
    writeFileSync(join(root, 'docs', 'tools', '.git', 'config'), '[core]\n\tfsmonitor = evil\n')
    writeFileSync(join(root, 'docs', '.envrc'), 'evil\n')
    writeFileSync(join(root, '.envrc'), 'evil\n')
    writeFileSync(join(root, '.git', 'hooks', 'pre-commit'), '#!/bin/sh\nevil\n')
    mkdirSync(join(root, 'bare', 'refs'), { recursive: true })
    mkdirSync(join(root, 'bare', 'objects'))
    writeFileSync(join(root, 'bare', 'HEAD'), 'ref: refs/heads/main\n')
    const r = w.scan()
    expect(r.findings).toBe(5)
    expect(existsSync(join(root, 'docs', 'tools', '.git'))).toBe(false)
    expect(existsSync(join(root, 'docs', '.envrc'))).toBe(false)
    expect(readFileSync(join(root, '.envrc'), 'utf8')).toBe('export A=1\n') // the user's version restored
    expect(existsSync(join(root, '.git', 'hooks', 'pre-commit'))).toBe(false)
    expect(existsSync(join(root, 'bare', 'HEAD'))).toBe(false)
    const q = readdirSync(join(data, 'quarantine', 'sb'))
    expect(q.some(f => f.endsWith('%docs%tools%.git'))).toBe(true)
    const audit = readFileSync(join(data, 'gateway', 'sandboxes', 'sb', 'audit', 'ocsf.jsonl'), 'utf8').trim().split('\n').map(l => JSON.parse(l) as { class_uid: number; disposition: string })
    expect(audit.filter(a => a.class_uid === 2004 && a.disposition === 'Quarantined')).toHaveLength(5)
    expect(readFileSync(join(data, 'quarantine', 'sb', 'watch.log'), 'utf8').split('\n').filter(Boolean)).toHaveLength(5)
    expect(w.scan().findings).toBe(0)
  })

  it("sanitises the repo's own git config in place, keeping the agent's ordinary changes", () => {
    const { root, w } = setup()
    writeFileSync(join(root, '.git', 'config'), '[core]\n\tbare = false\n\tfsmonitor = evil\n[user]\n\tname = agent\n')
    expect(w.check(root, '.git/config')).toBe(1)
    const text = readFileSync(join(root, '.git', 'config'), 'utf8')
    expect(text).not.toContain('fsmonitor')
    expect(text).toContain('name = agent')
  })

  it('never follows a symlinked parent out of the tree (the rename is pinned to the real directory)', () => {
    const { root, w } = setup()
    const outside = mkdtempSync(join(tmpdir(), 'pswatch-outside-'))
    writeFileSync(join(outside, '.envrc'), 'the user\'s own, outside the sandbox\n')
    symlinkSync(outside, join(root, 'link'))
    w.check(root, 'link/.envrc')
    expect(readFileSync(join(outside, '.envrc'), 'utf8')).toContain('own')
  })

  it('walks are bounded and say so', () => {
    const { root } = setup()
    for (let i = 0; i < 50; i++) mkdirSync(join(root, 'd' + i))
    expect(walkTree(root, { maxEntries: 10, timeoutMs: 10_000 }, () => undefined).complete).toBe(false)
    expect(walkTree(root, { maxEntries: 10_000, timeoutMs: 10_000 }, () => undefined).complete).toBe(true)
  })

  it('watches only writable mounts, nested ones folded into their parent', () => {
    expect(writableRoots([{ source: '/a', mode: 'rw' }, { source: '/a/b', mode: 'rw' }, { source: '/c', mode: 'ro' }, { source: '/d', mode: 'rw' }])).toEqual(['/a', '/d'])
  })

  it('a rescan is due when no watcher runs or the running one lost its watch; also with nothing writable (the disk guard); never for a sandbox older than the watcher', () => {
    const data = mkdtempSync(join(tmpdir(), 'pswatchdata-'))
    mkdirSync(join(data, 'sandboxes', 'sb'), { recursive: true })
    expect(watcherMissing(data, 'sb')).toBe(false) // created before the watcher existed
    writeWatchFile(rootsFile(data, 'sb'), '[]')
    expect(watcherMissing(data, 'sb')).toBe(true) // nothing writable mounted: the home is still guarded
    writeWatchFile(rootsFile(data, 'sb'), '["/r"]')
    expect(watcherMissing(data, 'sb')).toBe(true)
    writeWatchFile(pidFile(data, 'sb'), selfCreatorId())
    expect(watcherMissing(data, 'sb')).toBe(false)
    writeWatchFile(degradedFile(data, 'sb'), 'ENOSPC')
    expect(watcherMissing(data, 'sb')).toBe(true)
    rmSync(degradedFile(data, 'sb'))
    expect(watcherMissing(data, 'sb')).toBe(false)
    writeWatchFile(pidFile(data, 'sb'), `${process.pid}:1`) // a recycled pid: another start time
    expect(watcherMissing(data, 'sb')).toBe(true)
    // The watcher never recreates a removed state dir.
    expect(() => writeWatchFile(join(data, 'sandboxes', 'gone', 'watch', 'ready'), 'x')).toThrow(/ENOENT/)
    expect(existsSync(join(data, 'sandboxes', 'gone'))).toBe(false)
  })

  it('renders an OCSF Detection Finding', () => {
    const r = renderFinding('sb', { path: '/r/.envrc', rule: '.envrc', reason: 'x', action: 'quarantined', savedTo: '/q/1' }, 1000)
    expect(r.json).toMatchObject({ class_uid: 2004, category_uid: 2, type_uid: 200401, disposition_id: 3, severity_id: 4 })
    expect(r.shorthand).toMatch(/^FINDING:CREATE \[HIGH\] QUARANTINED \/r\/\.envrc/)
  })
})
