import { claudeProjectName } from '../../src/sandbox/claude-data.js'
import { describe, it, expect, beforeEach, afterEach } from 'vitest'
import { existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { PodshellError } from '../../src/errors.js'
import { mergeConfigs, type EffectiveConfig } from '../../src/config/index.js'
import { parsePolicyText } from '../../src/policy/parse.js'
import { renderTemplate } from '../../src/policy/templates.js'
import { homeMountpoints, parseSpec, prepareSpecLaunch, secureCreateOptions, specJsonSchema, specToCreateOptions, SpecSchema, type Spec, type SpecContext } from '../../src/sandbox/spec.js'
import type { CreateOptions } from '../../src/sandbox/types.js'

let root: string
let home: string
let env: Record<string, string>
let proj: string
let claude: string

const UUID = '3f2b9c1e-8d4a-4f6b-9a2e-1c5d7e9f0a12'

function git(dir: string) {
  mkdirSync(join(dir, '.git', 'hooks'), { recursive: true })
  writeFileSync(join(dir, '.git', 'config'), '[core]\n\tbare = false\n')
  writeFileSync(join(dir, 'main.py'), 'print(1)\n')
}

beforeEach(() => {
  root = realpathSync(mkdtempSync(join(tmpdir(), 'podshell-spec-')))
  home = join(root, 'home', 'dev_user')
  env = { HOME: home, XDG_CONFIG_HOME: join(home, '.config'), ANTHROPIC_API_KEY: 'sk-ant-test', XDG_RUNTIME_DIR: join(root, 'run', 'user', '1000') }
  for (const d of ['.ssh', '.aws', '.config/devaiflow', '.local/share/devaiflow/sessions', '.local/state/devaiflow', '.cache/devaiflow/clones', '.claude/skills/daf-workflow', '.claude/projects']) mkdirSync(join(home, d), { recursive: true })
  writeFileSync(join(home, '.ssh', 'id_ed25519'), 'PRIVATE')
  writeFileSync(join(home, '.claude', 'settings.json'), '{"hooks":{}}')
  writeFileSync(join(home, '.claude', '.credentials.json'), '{"claudeAiOauth":{}}')
  writeFileSync(join(home, '.claude', 'skills', 'daf-workflow', 'SKILL.md'), '# daf')
  writeFileSync(join(home, '.config', 'devaiflow', 'config.json'), '{}')
  writeFileSync(join(home, '.local', 'share', 'devaiflow', 'sessions.json'), '{}')
  proj = join(home, 'src', 'my_proj')
  git(proj)
  claude = join(home, '.claude')
  mkdirSync(join(root, 'run', 'user', '1000'), { recursive: true })
})
afterEach(() => rmSync(root, { recursive: true, force: true }))

function config(over: Partial<EffectiveConfig> = {}): EffectiveConfig {
  return { ...mergeConfigs({}, undefined, env, { user: join(home, '.config', 'podshell', 'config.yaml') }), ...over }
}

function ctx(over: Partial<SpecContext> = {}): SpecContext {
  return { config: config(), podshellDataDir: join(home, '.local', 'share', 'podshell'), podshellConfigDir: join(home, '.config', 'podshell'), uid: 1000, ...over }
}

const devaiflow = () => ({
  data_dir: join(home, '.local', 'share', 'devaiflow'),
  config_dir: join(home, '.config', 'devaiflow'),
  state_dir: join(home, '.local', 'state', 'devaiflow'),
})

function spec(over: Record<string, unknown> = {}): Spec {
  return SpecSchema.parse({
    version: 1,
    session_type: 'development',
    cwd: proj,
    argv: ['claude', '--session-id', UUID, 'Read your daf-workflow skill and follow the Session Initialization instructions.', '--add-dir', join(claude, 'skills')],
    daf: { session_name: 'PROJ-123', command: 'new', agent_session_id: UUID },
    claude_config_dir: claude,
    devaiflow: devaiflow(),
    env_pass: ['ANTHROPIC_API_KEY', 'GH_TOKEN'],
    ...over,
  })
}

function mountOf(o: CreateOptions, p: string) {
  return o.mounts.find(m => m.target === p)
}

async function refusal(p: Promise<unknown>): Promise<PodshellError> {
  try {
    await p
  } catch (e) {
    expect(e).toBeInstanceOf(PodshellError)
    return e as PodshellError
  }
  throw new Error('expected a refusal')
}

function parseError(v: unknown): string {
  try {
    parseSpec(JSON.stringify(v), 'spec.json')
  } catch (e) {
    expect(e).toBeInstanceOf(PodshellError)
    const pe = e as PodshellError
    expect(pe.exitCode).toBe(2)
    expect(pe.oneLine()).not.toContain('\n')
    return pe.oneLine()
  }
  throw new Error('expected the spec to be rejected')
}

const minimal = () => ({ version: 1, session_type: 'development', cwd: '/srv/p', argv: ['claude'] })

describe('spec validation', () => {
  it('accepts a minimal spec', () => {
    expect(parseSpec(JSON.stringify(minimal()), 'x').cwd).toBe('/srv/p')
  })

  it('is strict at every level and names the full key path of unknown keys', () => {
    expect(parseError({ ...minimal(), cwdd: '/x' })).toMatch(/invalid spec spec\.json: cwdd: unknown key/)
    expect(parseError({ ...minimal(), daf: { sessionname: 'x' } })).toMatch(/daf\.sessionname: unknown key/)
    expect(parseError({ ...minimal(), mounts: [{ path: '/a', mode: 'rw', extra: 1 }] })).toMatch(/mounts\[0\]\.extra: unknown key/)
    expect(parseError({ ...minimal(), version: 2 })).toMatch(/version: must be 1/)
    expect(parseError({ ...minimal(), session_type: 'hacking' })).toMatch(/session_type:/)
  })

  it('rejects path traversal, relative paths, newlines, NUL and podman separators, naming the key', () => {
    expect(parseError({ ...minimal(), cwd: '/home/u/../../etc' })).toMatch(/cwd "\/home\/u\/\.\.\/\.\.\/etc"|cwd: must not contain "\.\."/)
    expect(parseError({ ...minimal(), cwd: 'relative/dir' })).toMatch(/cwd: must be an absolute path/)
    expect(parseError({ ...minimal(), mounts: [{ path: '/a\nb', mode: 'ro' }] })).toMatch(/mounts\[0\]\.path: must not contain NUL or newlines/)
    expect(parseError({ ...minimal(), projects: ['/a', '/b\0c'] })).toMatch(/projects\[1\]: must not contain NUL/)
    expect(parseError({ ...minimal(), workspace: '/a:/etc' })).toMatch(/workspace: must not contain ":" or ","/)
    expect(parseError({ ...minimal(), mounts: [{ path: '/a,ro=false', mode: 'ro' }] })).toMatch(/mounts\[0\]\.path: must not contain ":" or ","/)
    expect(parseError({ ...minimal(), env: { FOO: 'a\0b' } })).toMatch(/env\.FOO: must not contain NUL/)
    expect(parseError({ ...minimal(), argv: ['claude', 'x\0y'] })).toMatch(/argv\[1\]: must not contain NUL/)
  })

  it('rejects 10 KB strings where names, labels and paths go', () => {
    const big = 'a'.repeat(10 * 1024)
    expect(parseError({ ...minimal(), name: big })).toMatch(/name: must be a DNS-1123 label/)
    expect(parseError({ ...minimal(), cwd: '/' + big })).toMatch(/cwd: must be at most 4096 characters/)
    expect(parseError({ ...minimal(), labels: { team: big } })).toMatch(/labels\.team: must be at most 253/)
    expect(parseError({ ...minimal(), labels: { [big]: 'x' } })).toMatch(/labels/)
    expect(parseError({ ...minimal(), daf: { session_name: big } })).toMatch(/daf\.session_name: must be at most 253/)
    expect(parseError({ ...minimal(), env_pass: [big] })).toMatch(/env_pass\[0\]: must be a POSIX name/)
    expect(parseError({ ...minimal(), providers: [big] })).toMatch(/providers\[0\]:/)
    expect(parseError({ ...minimal(), image: big })).toMatch(/image:/)
  })

  it('rejects leading dashes that podman or the agent CLI would read as flags', () => {
    expect(parseError({ ...minimal(), argv: ['--dangerously-skip-permissions'] })).toMatch(/argv\[0\]: must be the command name/)
    expect(parseError({ ...minimal(), argv: [''] })).toMatch(/argv\[0\]/)
    expect(parseError({ ...minimal(), name: '-x' })).toMatch(/name:/)
    expect(parseError({ ...minimal(), image: '--privileged' })).toMatch(/image: must be an image reference/)
    expect(parseError({ ...minimal(), providers: ['-jira'] })).toMatch(/providers\[0\]:/)
    expect(parseError({ ...minimal(), labels: { team: '-x' } })).toMatch(/labels\.team: must not start with "-"/)
    expect(parseError({ ...minimal(), daf: { session_name: '--rm' } })).toMatch(/daf\.session_name: must not start with "-"/)
    expect(parseError({ ...minimal(), daf: { agent_session_id: '-1' } })).toMatch(/daf\.agent_session_id/)
    // Later arguments may be flags: the agent's own options.
    expect(parseSpec(JSON.stringify({ ...minimal(), argv: ['claude', '--print', '--dangerously-skip-permissions'] }), 'x').argv[1]).toBe('--print')
  })

  it('refuses environment names the runtime or the spec itself owns', () => {
    expect(parseError({ ...minimal(), env: { HTTPS_PROXY: 'http://evil:1' } })).toMatch(/env\.HTTPS_PROXY: HTTPS_PROXY is set by the sandbox runtime/)
    expect(parseError({ ...minimal(), env: { https_proxy: 'http://evil:1' } })).toMatch(/env\.https_proxy/)
    expect(parseError({ ...minimal(), env_pass: ['HOME'] })).toMatch(/env_pass\[0\]: HOME is set by the sandbox runtime/)
    expect(parseError({ ...minimal(), env: { PODSHELL_SANDBOX: 'x' } })).toMatch(/env\.PODSHELL_SANDBOX/)
    expect(parseError({ ...minimal(), env: { CLAUDE_CONFIG_DIR: '/x' } })).toMatch(/env\.CLAUDE_CONFIG_DIR: CLAUDE_CONFIG_DIR is derived from claude_config_dir/)
    expect(parseError({ ...minimal(), env_pass: ['DAF_SESSION_NAME'] })).toMatch(/derived from daf\.session_name/)
    expect(parseError({ ...minimal(), labels: { 'devaiflow.session': 'x' } })).toMatch(/labels\["devaiflow\.session"\]: is set by podshell/)
  })

  it('refuses policy together with template, and bad template hosts', () => {
    expect(parseError({ ...minimal(), policy: '/p.yaml', template: {} })).toMatch(/template: give policy or template, not both/)
    expect(parseError({ ...minimal(), template: { jira_url: 'file:///etc/passwd' } })).toMatch(/template: invalid --jira-url/)
    expect(parseError({ ...minimal(), template: { model_apis: ['*.com'] } })).toMatch(/TLD wildcard/)
  })

  it('rejects non-objects and non-JSON', () => {
    expect(() => parseSpec('[]', 's')).toThrow(/expected a JSON object/)
    expect(() => parseSpec('{"version":1,', 's')).toThrow(/not JSON/)
  })

  it('has a JSON Schema with a description on every property', () => {
    const schema = specJsonSchema() as { properties: Record<string, { description?: string; properties?: Record<string, { description?: string }> }>; additionalProperties: boolean }
    expect(schema.additionalProperties).toBe(false)
    for (const [k, v] of Object.entries(schema.properties)) {
      expect(v.description, k).toBeTruthy()
      for (const [k2, v2] of Object.entries(v.properties ?? {})) expect(v2.description, `${k}.${k2}`).toBeTruthy()
    }
  })
})

describe('specToCreateOptions: DevAIFlow launch shapes', () => {
  it('credential_mode: env is carried to the create options; absent or placeholder means placeholders; anything else is refused', async () => {
    expect((await specToCreateOptions(spec({ credential_mode: 'env' }), env, ctx())).credentialMode).toBe('env')
    expect((await specToCreateOptions(spec(), env, ctx())).credentialMode).toBeUndefined()
    expect((await specToCreateOptions(spec({ credential_mode: 'placeholder' }), env, ctx())).credentialMode).toBeUndefined()
    expect(parseError({ ...minimal(), credential_mode: 'plain' })).toMatch(/credential_mode/)
  })

  it('claude, new development session: project rw at the same path, only its own Claude projects/<encoded> rw, settings and skills ro, no credentials', async () => {
    const o = await specToCreateOptions(spec(), env, ctx())
    expect(o.workdir).toBe(proj)
    expect(o.workdirMode).toBe('rw')
    expect(o.sessionType).toBe('development')
    expect(o.command).toEqual(spec().argv)
    for (const m of o.mounts) expect(m.source, 'same path inside').toBe(m.target)
    // Only this project's directory of projects/ (issue 9, finding 3); its memory is writable in development.
    expect(mountOf(o, join(claude, 'projects'))).toBeUndefined()
    expect(mountOf(o, join(claude, 'projects', claudeProjectName(proj)))?.mode).toBe('rw')
    expect(mountOf(o, join(claude, 'projects', claudeProjectName(proj), 'memory'))).toBeUndefined()
    expect(mountOf(o, join(claude, 'settings.json'))?.mode).toBe('ro')
    expect(mountOf(o, join(claude, 'skills'))?.mode).toBe('ro')
    expect(o.mounts.some(m => m.target === claude || m.target.includes('.credentials.json'))).toBe(false)
    expect(mountOf(o, join(home, '.local', 'share', 'devaiflow'))?.mode).toBe('rw')
    expect(mountOf(o, join(home, '.config', 'devaiflow'))?.mode).toBe('ro')
    expect(mountOf(o, join(home, '.local', 'state', 'devaiflow'))?.mode).toBe('rw')
    // ~/.claude is the default location under $HOME: no CLAUDE_CONFIG_DIR, no scratch dir needed.
    expect(o.env.CLAUDE_CONFIG_DIR).toBeUndefined()
    expect(o.tmpfsDirs).toEqual([])
    expect(o.env).toMatchObject({ DEVAIFLOW_IN_SESSION: '1', DAF_SESSION_NAME: 'PROJ-123', CS_SESSION_NAME: 'PROJ-123', DAF_COMMAND: 'new', AI_AGENT_SESSION_ID: UUID })
    // env_pass values travel apart from env: handed to podman at create, never stored (issue 12).
    expect(o.passEnv).toEqual({ ANTHROPIC_API_KEY: 'sk-ant-test' })
    expect('ANTHROPIC_API_KEY' in o.env).toBe(false)
    expect('GH_TOKEN' in o.env).toBe(false)
    expect(o.labels).toEqual({ 'devaiflow.session': 'PROJ-123', 'devaiflow.session-type': 'development' })
    // Development protections: git hooks/config stay read-only, an absent .claude cannot be planted:
    // it is created empty on the host (owned by the user, not by a subordinate uid) and bound read-only.
    expect(mountOf(o, join(proj, '.git'))?.mode).toBe('ro')
    expect(mountOf(o, join(proj, '.claude'))?.mode).toBe('ro')
    expect(existsSync(join(proj, '.claude'))).toBe(true)
    expect(o.masks).toEqual([])
    // The built-in development policy.
    expect(o.policyFile).toMatch(/policies\/development\.yaml$/)
    expect(parsePolicyText(o.policyText!, 'p').policy.filesystem_policy?.include_workdir).toBe(true)
  })

  it('claude resume: the conversation file appears on the host at <claude_dir>/projects/<encoded cwd>/<uuid>.jsonl', async () => {
    const o = await specToCreateOptions(spec({ argv: ['claude', '--resume', UUID, '--add-dir', join(claude, 'skills')], daf: { session_name: 'PROJ-123', command: 'open', agent_session_id: UUID } }), env, ctx())
    // DevAIFlow's encoding: "/" and "_" become "-".
    const encoded = proj.replace(/[/_]/g, '-')
    const conversation = join(claude, 'projects', encoded, `${UUID}.jsonl`)
    const rw = o.mounts.filter(m => m.mode === 'rw' && (conversation === m.target || conversation.startsWith(m.target + '/')))
    expect(rw.length).toBeGreaterThan(0)
    // The covering mount's source IS its target: what the agent writes there is that host path.
    for (const m of rw) expect(m.source).toBe(m.target)
    // No read-only mount sits on the way to it.
    expect(o.mounts.some(m => m.mode === 'ro' && conversation.startsWith(m.target + '/'))).toBe(false)
    expect(o.env.DAF_COMMAND).toBe('open')
  })

  it('claude headless investigation: project read-only, investigation policy, large prompt kept intact', async () => {
    const prompt = 'Investigate: why does login fail?\n' + 'context '.repeat(3000)
    const o = await specToCreateOptions(spec({ session_type: 'investigation', argv: ['claude', '--print', '--session-id', UUID, prompt], daf: { command: 'investigate', session_name: 'inv-1' } }), env, ctx())
    expect(o.workdirMode).toBe('ro')
    expect(o.command[4]).toBe(prompt)
    expect(o.policyFile).toMatch(/policies\/investigation\.yaml$/)
    // Read-only project: nothing to protect inside, nothing masked.
    expect(o.mounts.some(m => m.target.startsWith(proj + '/'))).toBe(false)
    expect(o.masks).toEqual([])
    expect(o.labels['devaiflow.session-type']).toBe('investigation')
  })

  it('opencode: no Claude dir in the spec, so nothing of ~/.claude is mounted', async () => {
    const o = await specToCreateOptions(spec({ argv: ['opencode', '--session', 'ses_abc123'], claude_config_dir: undefined, daf: { agent_session_id: 'ses_abc123' } }), env, ctx())
    expect(o.mounts.some(m => m.target.startsWith(claude))).toBe(false)
    expect(o.env.AI_AGENT_SESSION_ID).toBe('ses_abc123')
    expect(o.command[0]).toBe('opencode')
  })

  it('multi-project workspace: cwd is the workspace root, every repo at its own path, each repo protected', async () => {
    const ws = join(home, 'ws')
    git(join(ws, 'api'))
    git(join(ws, 'web'))
    const elsewhere = join(home, 'other', 'lib')
    git(elsewhere)
    const o = await specToCreateOptions(
      spec({ cwd: ws, workspace: ws, projects: [join(ws, 'api'), join(ws, 'web'), elsewhere], daf: { agent_session_id: UUID } }),
      env,
      ctx(),
    )
    expect(o.workdir).toBe(ws)
    expect(o.workdirMode).toBe('rw')
    // Repos inside the workspace are covered by the workspace mount; the one outside gets its own.
    expect(mountOf(o, join(ws, 'api'))).toBeUndefined()
    expect(mountOf(o, elsewhere)).toEqual({ source: elsewhere, target: elsewhere, mode: 'rw' })
    for (const r of [join(ws, 'api'), join(ws, 'web'), elsewhere]) {
      expect(mountOf(o, join(r, '.git'))?.mode, r).toBe('ro')
      expect(mountOf(o, join(r, '.claude'))?.mode, r).toBe('ro')
    }
    // Multi-project new sets only DEVAIFLOW_IN_SESSION and AI_AGENT_SESSION_ID (as daf does today).
    expect(o.env.DEVAIFLOW_IN_SESSION).toBe('1')
    expect(o.env.DAF_SESSION_NAME).toBeUndefined()
  })

  it('multi-project ticket_creation: workspace and repos read-only', async () => {
    const ws = join(home, 'ws')
    git(join(ws, 'api'))
    const o = await specToCreateOptions(spec({ session_type: 'ticket_creation', cwd: ws, workspace: ws, projects: [join(ws, 'api')] }), env, ctx())
    expect(o.workdirMode).toBe('ro')
    const enc = (p: string) => join(claude, 'projects', claudeProjectName(p))
    expect(o.mounts.filter(m => m.mode === 'rw').map(m => m.target).sort()).toEqual([enc(ws), enc(join(ws, 'api')), join(home, '.local', 'share', 'devaiflow'), join(home, '.local', 'state', 'devaiflow')].sort())
    // ticket_creation: each project's auto-memory is read-only (the next session loads it).
    expect(mountOf(o, join(enc(ws), 'memory'))?.mode).toBe('ro')
    expect(mountOf(o, join(enc(join(ws, 'api')), 'memory'))?.mode).toBe('ro')
  })

  it('temp clone (ticket_creation): the clone under the DevAIFlow cache is the read-only workdir', async () => {
    const clone = join(home, '.cache', 'devaiflow', 'clones', 'daf-session-x1', 'my_proj')
    git(clone)
    const o = await specToCreateOptions(spec({ session_type: 'ticket_creation', cwd: clone, temp_clones: [clone], daf: { command: 'jira-new', session_name: 'creation-PROJ-9' } }), env, ctx())
    expect(o.workdir).toBe(clone)
    expect(o.workdirMode).toBe('ro')
    expect(o.mounts.some(m => m.target === clone)).toBe(false)
    expect(o.policyFile).toMatch(/ticket_creation\.yaml$/)
  })

  it('refuses a "temp clone" outside the DevAIFlow clone dir', async () => {
    const e = await refusal(specToCreateOptions(spec({ temp_clones: [proj] }), env, ctx()))
    expect(e.oneLine()).toMatch(/temp_clones\[0\] .* is not inside the DevAIFlow clone dir/)
  })

  it('CLAUDE_CONFIG_DIR outside $HOME: set in the env, and its dir becomes a writable scratch parent', async () => {
    const c = join(root, 'opt', 'claude-cfg')
    mkdirSync(join(c, 'skills'), { recursive: true })
    const o = await specToCreateOptions(spec({ claude_config_dir: c }), env, ctx())
    expect(o.env.CLAUDE_CONFIG_DIR).toBe(c)
    expect(o.tmpfsDirs).toEqual([c])
    expect(mountOf(o, join(c, 'projects', claudeProjectName(proj)))?.mode).toBe('rw')
    expect(existsSync(join(c, 'projects', claudeProjectName(proj)))).toBe(true)
  })

  it('unified DevAIFlow dir ($DEVAIFLOW_HOME): read-write, its config files read-only', async () => {
    const uni = join(home, '.daf-sessions')
    mkdirSync(join(uni, 'backends'), { recursive: true })
    writeFileSync(join(uni, 'config.json'), '{}')
    writeFileSync(join(uni, 'sessions.json'), '{}')
    const o = await specToCreateOptions(spec({ devaiflow: { data_dir: uni, config_dir: uni } }), env, ctx())
    expect(o.env.DEVAIFLOW_HOME).toBe(uni)
    expect(mountOf(o, uni)?.mode).toBe('rw')
    expect(mountOf(o, join(uni, 'config.json'))?.mode).toBe('ro')
    expect(mountOf(o, join(uni, 'backends'))?.mode).toBe('ro')
    expect(mountOf(o, join(uni, 'sessions.json'))).toBeUndefined()
  })

  it('non-default XDG dirs: sets XDG_*_HOME so daf inside resolves the same paths', async () => {
    const data = join(root, 'xdg', 'data', 'devaiflow')
    const cfg = join(root, 'xdg', 'config', 'devaiflow')
    mkdirSync(data, { recursive: true })
    mkdirSync(cfg, { recursive: true })
    const o = await specToCreateOptions(spec({ devaiflow: { data_dir: data, config_dir: cfg } }), env, ctx())
    expect(o.env.XDG_DATA_HOME).toBe(join(root, 'xdg', 'data'))
    expect(o.env.XDG_CONFIG_HOME).toBe(join(root, 'xdg', 'config'))
    const odd = join(root, 'daf-data')
    mkdirSync(odd)
    expect((await refusal(specToCreateOptions(spec({ devaiflow: { data_dir: odd, config_dir: cfg } }), env, ctx()))).oneLine()).toMatch(/does not end in \/devaiflow/)
  })

  it('masks .ai-read-deny directories inside any mounted tree', async () => {
    mkdirSync(join(proj, 'secrets', 'prod'), { recursive: true })
    writeFileSync(join(proj, 'secrets', '.ai-read-deny'), '')
    const o = await specToCreateOptions(spec({ session_type: 'investigation' }), env, ctx())
    expect(o.masks).toEqual([join(proj, 'secrets')])
  })

  it('refuses a mount below a directory marked .ai-read-deny', async () => {
    writeFileSync(join(home, 'src', '.ai-read-deny'), '')
    const e = await refusal(specToCreateOptions(spec(), env, ctx()))
    expect(e.oneLine()).toMatch(/refusing to mount spec cwd .* is marked \.ai-read-deny/)
  })

  it('a tree deeper than the scan bound does not fail the launch: what the scan did not reach is masked', async () => {
    mkdirSync(join(proj, 'a', 'b', 'c', 'd'), { recursive: true })
    const o = await specToCreateOptions(spec(), env, ctx({ config: config({ readDenyScan: { maxDepth: 2, timeoutMs: 5000 } }) }))
    expect(o.masks).toContain(join(proj, 'a', 'b', 'c'))
  })

  it('fails closed when the scan budget runs out before the root is read (nothing smaller than the tree could be masked)', async () => {
    const e = await refusal(specToCreateOptions(spec(), env, ctx({ config: config({ readDenyScan: { maxDepth: 2, timeoutMs: -1 } }) })))
    expect(e.oneLine()).toMatch(/cannot finish the \.ai-read-deny scan of spec cwd/)
    expect(e.code).toBe('READ_DENY_SCAN')
  })

  it('refuses a read-write mount of a package cache the host executes from (~/.m2/repository); read-only is fine', async () => {
    const m2 = join(home, '.m2', 'repository')
    mkdirSync(m2, { recursive: true })
    const e = await refusal(specToCreateOptions(spec({ mounts: [{ path: m2, mode: 'rw' }] }), env, ctx()))
    expect(e.oneLine()).toMatch(/refusing to mount spec mounts\[0\] .*read-write: ~\/\.m2\/repository is inside ~\/\.m2, the Maven repository/)
    expect(e.code).toBe('HOST_EXECUTED')
    const o = await specToCreateOptions(spec({ mounts: [{ path: m2, mode: 'ro' }] }), env, ctx())
    expect(mountOf(o, m2)?.mode).toBe('ro')
  })

  it('passes allow_sockets through', async () => {
    const o = await specToCreateOptions(spec({ allow_sockets: [join(proj, 'db.sock')] }), env, ctx())
    expect(o.allowSockets).toEqual([join(proj, 'db.sock')])
  })
})

describe('specToCreateOptions: refusals', () => {
  it('refuses $HOME as the cwd: it would expose ~/.ssh', async () => {
    const e = await refusal(specToCreateOptions(spec({ cwd: home }), env, ctx()))
    expect(e.oneLine()).toMatch(/refusing to mount spec cwd: mounting your home directory would expose/)
    expect(e.code).toBe('SENSITIVE_PATH')
  })

  it('refuses ~/.ssh and a symlink to it as extra mounts', async () => {
    expect((await refusal(specToCreateOptions(spec({ mounts: [{ path: join(home, '.ssh'), mode: 'ro' }] }), env, ctx()))).oneLine()).toMatch(/mounts\[0\].*SSH keys/)
    symlinkSync(join(home, '.ssh'), join(home, 'src', 'keys'))
    expect((await refusal(specToCreateOptions(spec({ mounts: [{ path: join(home, 'src', 'keys'), mode: 'ro' }] }), env, ctx()))).oneLine()).toMatch(/resolves to .*\.ssh/)
  })

  it('refuses a project that is a symlink into a sensitive dir', async () => {
    symlinkSync(join(home, '.aws'), join(home, 'src', 'cloud'))
    expect((await refusal(specToCreateOptions(spec({ cwd: join(home, 'src', 'cloud') }), env, ctx()))).oneLine()).toMatch(/AWS credentials/)
  })

  it('allow_sensitive permits secret paths but never the runtime dir or podshell\'s data', async () => {
    const o = await specToCreateOptions(spec({ allow_sensitive: true, mounts: [{ path: join(home, '.aws'), mode: 'ro' }] }), env, ctx())
    expect(mountOf(o, join(home, '.aws'))?.mode).toBe('ro')
    expect(o.allowSensitive).toBe(true)
    expect((await refusal(specToCreateOptions(spec({ allow_sensitive: true, mounts: [{ path: join(root, 'run', 'user', '1000'), mode: 'ro' }] }), env, ctx()))).oneLine()).toMatch(/XDG_RUNTIME_DIR/)
    mkdirSync(join(home, '.local', 'share', 'podshell'), { recursive: true })
    expect((await refusal(specToCreateOptions(spec({ allow_sensitive: true, mounts: [{ path: join(home, '.local', 'share', 'podshell'), mode: 'rw' }] }), env, ctx()))).oneLine()).toMatch(/podshell's data/)
  })

  it('refuses a claude_config_dir inside ~/.ssh before creating anything there', async () => {
    const e = await refusal(specToCreateOptions(spec({ claude_config_dir: join(home, '.ssh') }), env, ctx()))
    expect(e.oneLine()).toMatch(/claude_config_dir/)
    expect(existsSync(join(home, '.ssh', 'projects'))).toBe(false)
  })

  it('refuses a read-write extra mount overlapping the project of a read-only session type', async () => {
    const e = await refusal(specToCreateOptions(spec({ session_type: 'investigation', mounts: [{ path: join(proj, '.git'), mode: 'rw' }] }), env, ctx()))
    expect(e.oneLine()).toMatch(/mounts\[0\] .*read-write mount overlapping the project in a investigation session/)
  })

  it('refuses one path given twice with different modes, and missing paths', async () => {
    expect((await refusal(specToCreateOptions(spec({ mounts: [{ path: proj, mode: 'ro' }] }), env, ctx()))).oneLine()).toMatch(/also cwd with another mode/)
    expect((await refusal(specToCreateOptions(spec({ cwd: join(home, 'nope') }), env, ctx()))).oneLine()).toMatch(/spec cwd .*nope does not exist/)
  })
})

describe('policy resolution and the whole launch', () => {
  it('prefers the spec policy, then a template, then <policy_dir>/<type>.yaml, then the built-in', async () => {
    const dir = join(root, 'my-policies')
    mkdirSync(dir)
    writeFileSync(join(dir, 'development.yaml'), renderTemplate('development', { registries: ['npm'] }))
    let o = await specToCreateOptions(spec(), env, ctx({ config: config({ policyDir: dir }) }))
    expect(o.policyFile).toBe(join(dir, 'development.yaml'))
    o = await specToCreateOptions(spec({ template: { jira_url: 'https://acme.atlassian.net' } }), env, ctx({ config: config({ policyDir: dir }) }))
    expect(o.policyFile).toBeUndefined()
    expect(parsePolicyText(o.policyText!, 't').policy.network_policies!.jira!.endpoints![0]!.host).toBe('acme.atlassian.net')
    const own = join(root, 'own.yaml')
    writeFileSync(own, renderTemplate('development'))
    o = await specToCreateOptions(spec({ policy: own }), env, ctx({ config: config({ policyDir: dir }) }))
    expect(o.policyFile).toBe(own)
  })

  it('with a locked policy_dir, never falls back to the built-in policies', async () => {
    const dir = join(root, 'locked')
    mkdirSync(dir)
    const e = await refusal(specToCreateOptions(spec(), env, ctx({ config: config({ policyDir: dir, policyDirLocked: true }) })))
    expect(e.oneLine()).toMatch(/no policy for session type development/)
  })

  it('prepareSpecLaunch applies the enterprise rules (a ceiling narrower than the development policy refuses it)', async () => {
    const ent = join(root, 'enterprise.yaml')
    writeFileSync(ent, stringify({ network_ceiling: { model: { endpoints: [{ host: 'api.anthropic.com', port: 443 }] } } }))
    const text = JSON.stringify({ version: 1, session_type: 'development', cwd: proj, argv: ['claude'] })
    const e = await refusal(prepareSpecLaunch(text, 'stdin', env, { load: { enterpriseDefaultPath: ent } }))
    expect(e.oneLine()).toMatch(/not within the enterprise network ceiling/)
    const ok = await prepareSpecLaunch(JSON.stringify({ version: 1, session_type: 'investigation', cwd: proj, argv: ['claude'] }), 'stdin', env, { load: { enterpriseDefaultPath: ent }, keep: false })
    expect(ok.options.keep).toBe(false)
    expect(ok.options.workdirMode).toBe('ro')
    expect(Object.keys(ok.policy.network_policies!)).toEqual(['model_api'])
  })
})

describe('secureCreateOptions: plain `sandbox create` flags get the same rules', () => {
  const flags = (o: Partial<CreateOptions> = {}): CreateOptions => ({ mounts: [], env: {}, labels: {}, detach: false, keep: true, command: [], providers: [], ...o })
  const noEnterprise = { enterpriseDefaultPath: '/nonexistent/podshell-enterprise.yaml' }

  it('refuses --workdir $HOME and a --mount of a symlink to ~/.ssh', async () => {
    expect((await refusal(secureCreateOptions(flags({ workdir: home }), env, noEnterprise))).oneLine()).toMatch(/refusing to mount --workdir .*would expose/)
    symlinkSync(join(home, '.ssh'), join(root, 'k'))
    expect((await refusal(secureCreateOptions(flags({ mounts: [{ source: join(root, 'k'), target: '/k', mode: 'ro' }] }), env, noEnterprise))).oneLine()).toMatch(/SSH keys/)
  })

  it('adds the read-only protections and .ai-read-deny masks to a read-write workdir', async () => {
    mkdirSync(join(proj, 'private'))
    writeFileSync(join(proj, 'private', '.ai-read-deny'), '')
    const { options } = await secureCreateOptions(flags({ workdir: proj }), env, noEnterprise)
    expect(mountOf(options, join(proj, '.git'))?.mode).toBe('ro')
    expect(mountOf(options, join(proj, '.claude'))?.mode).toBe('ro')
    expect(options.masks).toEqual([join(proj, 'private')])
  })

  it('a session type without a policy gets that session type\'s policy (resolved by the library, not the CLI)', async () => {
    const { options } = await secureCreateOptions(flags({ workdir: proj, sessionType: 'investigation' }), env, noEnterprise)
    expect(options.policyFile).toMatch(/policies\/investigation\.yaml$/)
    expect(options.workdirMode).toBe('ro')
    expect(Object.isFrozen(options.mounts)).toBe(true)
  })

  it('applies the enterprise file: a policy outside the locked dir is refused', async () => {
    const ent = join(root, 'enterprise.yaml')
    mkdirSync(join(root, 'locked'))
    writeFileSync(ent, stringify({ policy_dir: join(root, 'locked') }))
    const own = join(root, 'own.yaml')
    writeFileSync(own, renderTemplate('development'))
    const e = await refusal(secureCreateOptions(flags({ workdir: proj, policyFile: own, policyText: renderTemplate('development') }), env, { enterpriseDefaultPath: ent }))
    expect(e.oneLine()).toMatch(/outside the locked policy_dir/)
  })
})

describe('homeMountpoints: what the runtime pre-creates in the sandbox home', () => {
  it('lists every parent of a target under $HOME as a directory, and file targets as files', async () => {
    const o = await specToCreateOptions(spec(), env, ctx())
    const mp = homeMountpoints(home, o)
    expect(mp.dirs).toEqual(expect.arrayContaining(['.claude', '.claude/projects', '.claude/skills', 'src', 'src/my_proj', '.local', '.local/share', '.local/share/devaiflow', '.config', '.config/devaiflow']))
    expect(mp.files).toEqual(['.claude/settings.json'])
    expect(mp.dirs).toContain('src/my_proj/.git')
    expect(mp.dirs).not.toContain('.claude/settings.json')
    // Nothing outside $HOME, nothing absolute.
    expect([...mp.dirs, ...mp.files].every(p => !p.startsWith('/') && !p.includes('..'))).toBe(true)
  })

  it('ignores targets outside $HOME', () => {
    expect(homeMountpoints(home, { workdir: '/srv/p', mounts: [{ source: '/srv/q', target: '/srv/q', mode: 'ro' }], masks: ['/srv/p/x'], tmpfsDirs: ['/opt/claude'] })).toEqual({ dirs: [], files: [] })
  })
})
