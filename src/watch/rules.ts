import { AGENT_SETTINGS, HOOK_CONFIGS } from '../sandbox/tree-scan.js'

/**
 * Host-executed files: what a tool on the HOST runs (or loads as code) on sight when the user
 * enters, opens or runs git in a directory the agent could write. The one list podshell's watcher
 * (src/watch/watcher.ts) enforces; extend it with `host_exec_files` in config.yaml or
 * enterprise.yaml (src/watch/schema.ts), or `PODSHELL_HOST_EXEC_FILES` (comma separated).
 *
 * Why each is here (all tried or documented behaviour of the tool named):
 *   - `.git` (dir or file, anywhere): `git status` / `git add` / a prompt's `__git_ps1` in that
 *     directory read its config: core.fsmonitor, core.hooksPath, aliases, filters run commands;
 *     hooks run at `git commit`. A `.git` FILE (`gitdir: …`) points git at any directory.
 *   - a bare-repository layout (`HEAD` + `objects/` + `refs/`): git discovers a directory that IS a
 *     git dir (safe.bareRepository defaults to "all"), so its `config` applies (core.pager on `git
 *     log`): the watcher moves its `HEAD` aside, which is what makes git take it for a repository.
 *   - `.envrc`: direnv evaluates it with bash on `cd` (once allowed; a prompt hook runs it).
 *   - mise (`mise.toml`, `.mise.toml`): `[env]` `_.source` and hooks run on `cd` when activated.
 *   - editor workspace files: `.vscode/tasks.json` (`runOn: folderOpen`), `.vscode/settings.json`
 *     (terminal profiles, tool paths run by extensions), `.vscode/launch.json`, `*.code-workspace`,
 *     JetBrains `.idea/workspace.xml` and `.idea/runConfigurations/`.
 *   - agent settings (`.claude/settings.json` hooks, `.mcp.json` servers …): the next unsandboxed
 *     agent session runs them (AGENT_SETTINGS, shared with the mount protections).
 *   - hook runners next to a repo (`.husky/`, `.pre-commit-config.yaml`, lefthook): `git commit`
 *     on the host runs what they name (HOOK_CONFIGS, shared with the mount protections).
 *
 * A pattern is a relative path of one or more segments, matched at any depth; a segment may use `*`
 * (any characters but `/`). A path INSIDE a matched directory matches too (its match is the dir).
 */
export const DEFAULT_HOST_EXEC_PATTERNS: readonly string[] = [
  '.git',
  '.envrc',
  'mise.toml',
  '.mise.toml',
  '.vscode/tasks.json',
  '.vscode/settings.json',
  '.vscode/launch.json',
  '*.code-workspace',
  '.idea/workspace.xml',
  '.idea/runConfigurations',
  // `.vscode` itself is not: extensions.json or a spell-check word list run nothing.
  ...AGENT_SETTINGS.filter(s => s !== '.vscode'),
  ...HOOK_CONFIGS,
]

export interface HostExecRule {
  readonly pattern: string
  readonly segments: readonly RegExp[]
}

import { PATTERN_RE } from './patterns.js'
export { PATTERN_RE }

export function compileRule(pattern: string): HostExecRule {
  if (!PATTERN_RE.test(pattern) || pattern.split('/').some(s => s === '..' || s === '.')) {
    throw new Error(`invalid host-executed file pattern ${JSON.stringify(pattern.slice(0, 80))}: use a relative path like .vscode/tasks.json (segments of letters, digits, ._-*)`)
  }
  const segments = pattern.split('/').map(s => new RegExp('^' + s.replace(/[.+?^${}()|[\]\\-]/g, '\\$&').replace(/\*/g, '[^/]*') + '$'))
  return { pattern, segments }
}

/** The rules in force: the defaults plus the configured extra patterns (validated). */
export function hostExecRules(extraPatterns: readonly string[] = []): HostExecRule[] {
  return [...new Set([...DEFAULT_HOST_EXEC_PATTERNS, ...extraPatterns])].map(compileRule)
}

/**
 * Extra patterns from the environment the watcher runs in (`PODSHELL_HOST_EXEC_FILES`, comma
 * separated). Invalid entries are reported, never silently dropped.
 */
export function extraPatternsFromEnv(env: { readonly [k: string]: string | undefined }): { patterns: string[]; errors: string[] } {
  const raw = env.PODSHELL_HOST_EXEC_FILES
  const patterns: string[] = []
  const errors: string[] = []
  for (const p of (raw ?? '').split(',').map(s => s.trim()).filter(Boolean)) {
    try {
      compileRule(p)
      patterns.push(p)
    } catch (e) {
      errors.push((e as Error).message)
    }
  }
  return { patterns, errors }
}

export interface RuleMatch {
  /** Relative path (from the mount root) of the matched entry: the file, or the matched dir. */
  readonly matched: string
  readonly pattern: string
  /** True when the matched entry is a `.git` entry (handled by the git rules). */
  readonly git: boolean
}

/**
 * The shortest prefix of `rel` (a path relative to a mount root, `/`-separated) that a rule matches,
 * or undefined. Shortest: `a/.git/hooks/x` matches `a/.git`, `a/.husky/pre-commit` matches `a/.husky`.
 */
export function matchHostExec(rel: string, rules: readonly HostExecRule[]): RuleMatch | undefined {
  const segs = rel.split('/').filter(Boolean)
  // Fast path for the common case (every entry of every scan): no segment can start a match.
  const idx = indexOf(rules)
  if (!segs.some(s => idx.first.has(s)) && !(idx.globs.length && segs.some(s => idx.globs.some(g => g.test(s))))) return undefined
  let best: RuleMatch | undefined
  let bestLen = Infinity
  for (const r of rules) {
    const k = r.segments.length
    for (let i = 0; i + k <= segs.length && i + k < bestLen; i++) {
      let ok = true
      for (let j = 0; j < k; j++) {
        if (!r.segments[j]!.test(segs[i + j]!)) {
          ok = false
          break
        }
      }
      if (ok) {
        bestLen = i + k
        best = { matched: segs.slice(0, i + k).join('/'), pattern: r.pattern, git: r.pattern === '.git' }
        break
      }
    }
  }
  return best
}

const INDEX = new WeakMap<readonly HostExecRule[], { first: Set<string>; globs: RegExp[] }>()
/** First segments of the rules: literal names in a set, the ones with `*` as regexes. */
function indexOf(rules: readonly HostExecRule[]): { first: Set<string>; globs: RegExp[] } {
  let i = INDEX.get(rules)
  if (!i) {
    i = { first: new Set(), globs: [] }
    for (const r of rules) {
      const head = r.pattern.split('/')[0]!
      if (head.includes('*')) i.globs.push(r.segments[0]!)
      else i.first.add(head)
    }
    INDEX.set(rules, i)
  }
  return i
}

// ───────────────────────────── git dirs the agent may use ─────────────────────────────

/**
 * Inside a git dir that existed when the sandbox was created (the repo's own `.git`), the agent may
 * do git work: objects, refs, index, logs, HEAD, branches, packed-refs, COMMIT_EDITMSG … What it
 * must not change is what makes the HOST's git run a program:
 *   - `hooks/` (every hook runs on the host's next commit/checkout/merge/push);
 *   - `config` and `config.worktree` (keys that run commands: see SAFE_GIT_KEYS for what stays);
 *   - `commondir`, and `gitdir`/`commondir` of linked worktrees (they redirect git to another,
 *     agent-written git dir with its own config and hooks);
 *   - `info/attributes`? No: attributes only name drivers, and drivers live in config.
 * Returns what kind of protected file a path inside the git dir (relative to the git dir) is.
 */
export function gitDirEntryKind(relInGitDir: string): 'config' | 'hooks' | 'redirect' | undefined {
  const s = relInGitDir.split('/').filter(Boolean)
  if (s.length === 0) return undefined
  if (s[0] === 'hooks') return 'hooks'
  if (s.length === 1 && (s[0] === 'config' || s[0] === 'config.worktree')) return 'config'
  if (s.length === 1 && s[0] === 'commondir') return 'redirect'
  if (s[0] === 'worktrees' && s.length === 3 && (s[2] === 'commondir' || s[2] === 'gitdir')) return 'redirect'
  if (s[0] === 'worktrees' && s.length === 3 && s[2] === 'config.worktree') return 'config'
  // Submodules' git dirs live in modules/<path>/: the same rules, one level down.
  const m = s.indexOf('modules')
  if (m === 0 && s.length >= 3) {
    for (let i = 2; i < s.length; i++) {
      const inner = gitDirEntryKind(s.slice(i).join('/'))
      if (inner && (s[i] === 'hooks' || s[i] === 'config' || s[i] === 'config.worktree' || s[i] === 'commondir')) return inner
    }
  }
  return undefined
}

/**
 * git config keys an agent doing ordinary git work may add or change (section.name, lower case;
 * `<sub>` = any subsection). Everything else that was not in the file, with the same value, when
 * the sandbox was created is removed: an allowlist, because git keeps adding keys that run
 * commands (core.fsmonitor, core.hooksPath, core.sshCommand, core.pager, core.editor,
 * core.askPass, core.gitProxy, sequence.editor, diff.external, diff.<d>.textconv/command,
 * merge.<d>.driver, filter.<f>.clean/smudge/process, pager.<cmd>, alias.* with `!`,
 * credential.helper, gpg.program, gpg.ssh.defaultKeyCommand, remote.<r>.uploadpack/receivepack,
 * url.<u>.insteadOf (towards ext::), protocol.<p>.allow, submodule.<s>.update = !cmd,
 * interactive.diffFilter, trailer.<t>.command, tar.<f>.command, web.browser, imap.tunnel,
 * include.path, includeIf.<c>.path, core.worktree …), and a denylist would miss the next one.
 */
const SAFE_GIT_KEYS: readonly RegExp[] = [
  /^core\.(repositoryformatversion|filemode|bare|logallrefupdates|ignorecase|precomposeunicode|symlinks|autocrlf|eol|safecrlf|checkstat|trustctime|abbrev|quotepath|sparsecheckout|sparsecheckoutcone|untrackedcache|commitgraph|multipackindex|compression|loosecompression|bigfilethreshold|preloadindex|protecthfs|protectntfs)$/,
  /^remote\.<sub>\.(url|pushurl|fetch|push|tagopt|prune|prunetags|mirror|skipfetchall|skipdefaultupdate|promisor|partialclonefilter)$/,
  /^branch\.<sub>\.(remote|merge|rebase|pushremote|description)$/,
  /^user\.(name|email)$/,
  /^init\.defaultbranch$/,
  /^pull\.(rebase|ff)$/,
  /^push\.(default|autosetupremote|followtags)$/,
  /^fetch\.(prune|prunetags|writecommitgraph)$/,
  /^merge\.(ff|conflictstyle)$/,
  /^rebase\.(autosquash|autostash|updaterefs)$/,
  /^commit\.verbose$/,
  /^color\.[a-z.]+$/,
  /^color\.<sub>\.[a-z]+$/,
  /^advice\.[a-z]+$/,
  /^gc\.(auto|autodetach|autopacklimit)$/,
  /^extensions\.(objectformat|partialclone|preciousobjects|worktreeconfig)$/,
  /^submodule\.<sub>\.(url|active|branch|fetchrecursesubmodules|ignore)$/,
  /^diff\.(renames|algorithm|colormoved|noprefix|mnemonicprefix|submodule)$/,
  /^status\.[a-z]+$/,
  /^log\.(decorate|date|follow)$/,
  /^index\.(version|threads)$/,
  /^rerere\.(enabled|autoupdate)$/,
  /^lfs\.repositoryformatversion$/,
]

/** URL forms that run a program: git's ext:: and fd:: transports. */
const EXEC_URL = /^\s*"?\s*(ext|fd)::/i

export interface GitConfigEntry {
  /** section.<sub>.name form for matching (subsection replaced by `<sub>`), lower-cased section/name. */
  readonly shape: string
  /** section.subsection.name as git names it (subsection case kept). */
  readonly key: string
  readonly value: string
  /** Line indexes (0-based) the entry occupies (continuation lines included). */
  readonly lines: readonly number[]
}

export interface ParsedGitConfig {
  readonly entries: GitConfigEntry[]
  readonly lines: string[]
  /** False when a line is not in the subset this parser understands: the caller restores instead. */
  readonly understood: boolean
}

/**
 * A conservative parser for the git config format: sections `[s]`, `[s "sub"]`, `[s.sub]`,
 * `name = value` and bare `name` lines, comments, quoted values and backslash continuations.
 * Anything else (an entry on a section line, a broken header, a NUL) makes `understood` false:
 * callers then restore the whole file rather than guess what git would read.
 */
export function parseGitConfig(text: string): ParsedGitConfig {
  const lines = text.split('\n')
  const entries: GitConfigEntry[] = []
  let understood = !text.includes('\0')
  let section = ''
  let sub: string | undefined
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!
    const t = raw.trim()
    if (t === '' || t.startsWith('#') || t.startsWith(';')) continue
    if (t.startsWith('[')) {
      const m = /^\[\s*([A-Za-z0-9.-]+)(?:\s+"((?:[^"\\\n]|\\.)*)")?\s*\]\s*(?:[#;].*)?$/.exec(t)
      if (!m) {
        understood = false
        continue
      }
      const name = m[1]!
      if (m[2] !== undefined) {
        section = name.toLowerCase()
        sub = m[2].replace(/\\(.)/g, '$1')
      } else if (name.includes('.')) {
        // Deprecated [section.subsection]: subsection is lower-cased by git.
        const dot = name.indexOf('.')
        section = name.slice(0, dot).toLowerCase()
        sub = name.slice(dot + 1).toLowerCase()
      } else {
        section = name.toLowerCase()
        sub = undefined
      }
      continue
    }
    const m = /^([A-Za-z][A-Za-z0-9-]*)\s*(?:=\s*(.*))?$/.exec(t)
    if (!m || section === '') {
      understood = false
      continue
    }
    const used = [i]
    let value = m[2] ?? 'true'
    // Backslash continuation: the value goes on on the next line.
    while (/(^|[^\\])(\\\\)*\\$/.test(value) && i + 1 < lines.length) {
      i++
      used.push(i)
      value = value.slice(0, -1) + lines[i]!
    }
    const name = m[1]!.toLowerCase()
    entries.push({
      shape: sub === undefined ? `${section}.${name}` : `${section}.<sub>.${name}`,
      key: sub === undefined ? `${section}.${name}` : `${section}.${sub}.${name}`,
      value: value.trim(),
      lines: used,
    })
  }
  return { entries, lines, understood }
}

/** Whether a config entry may stay: allowlisted (and not an exec URL), or present verbatim at baseline. */
export function gitEntryAllowed(e: GitConfigEntry, baseline: ReadonlySet<string>): boolean {
  if (baseline.has(`${e.key}=${e.value}`)) return true
  if (!SAFE_GIT_KEYS.some(r => r.test(e.shape))) return false
  if (/^(remote\.<sub>\.(url|pushurl)|submodule\.<sub>\.url)$/.test(e.shape) && EXEC_URL.test(e.value)) return false
  return true
}

export interface GitConfigVerdict {
  /** Nothing to do. */
  readonly clean: boolean
  /** The file with the offending entries removed, or undefined: restore the baseline text instead. */
  readonly sanitized?: string
  /** Keys removed (or, when restoring, every key that differed). */
  readonly removed: string[]
}

/**
 * Decides what to do with a changed git config: keep it (clean), remove the entries that run
 * commands (sanitized), or — when the file is not understood — restore the baseline text.
 */
export function judgeGitConfig(text: string, baselineText: string | undefined): GitConfigVerdict {
  const base = new Set(baselineText === undefined ? [] : parseGitConfig(baselineText).entries.map(e => `${e.key}=${e.value}`))
  const p = parseGitConfig(text)
  const bad = p.entries.filter(e => !gitEntryAllowed(e, base))
  if (!p.understood) return { clean: false, removed: bad.map(e => e.key).concat(['(unparsed lines)']) }
  if (!bad.length) return { clean: true, removed: [] }
  const drop = new Set(bad.flatMap(e => e.lines))
  const sanitized = p.lines.filter((_, i) => !drop.has(i)).join('\n')
  // Belt and braces: the result must itself be clean, or the caller restores the baseline.
  const again = parseGitConfig(sanitized)
  if (!again.understood || again.entries.some(e => !gitEntryAllowed(e, base))) return { clean: false, removed: bad.map(e => e.key) }
  return { clean: false, sanitized, removed: bad.map(e => e.key) }
}
