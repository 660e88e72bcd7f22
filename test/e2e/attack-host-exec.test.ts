import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { cli, hostDir, podman, TEST_HOME } from '../helpers/cli.js'
import { createSandbox, deleteSandboxes, expectLogged, sh } from '../helpers/attack.js'

declare module 'vitest' {
  interface TaskMeta {
    observed?: string
    control?: string
  }
}

/**
 * Host-executed files (issue 9, finding 2) and exec --timeout (finding 10), performed for real: the
 * agent, inside a rootless sandbox, plants what the user's own tools run on the host — a new
 * nested `.git` with core.fsmonitor, an `.envrc`, an fsmonitor/hook in the repo's own git dir —
 * and the host's real git 2.39, git's own prompt (__git_ps1) and direnv then run in that tree. Each
 * case first proves the payload works (the same files placed by hand in a directory no sandbox
 * watches DO run it), then that the watcher quarantined the plant, logged it, and the host tool
 * ran nothing.
 */

const GIT_ENV = { GIT_CONFIG_NOSYSTEM: '1', GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' }
const git = (dir: string, args: string[]) => execa('git', ['-C', dir, ...args], { reject: false, env: { ...process.env, ...GIT_ENV } })
const ps1 = (dir: string) =>
  execa('bash', ['-c', '. /usr/lib/git-core/git-sh-prompt; cd "$0" && GIT_PS1_SHOWDIRTYSTATE=1 GIT_PS1_SHOWUNTRACKEDFILES=1 __git_ps1 "%s"', dir], { reject: false, env: { ...process.env, ...GIT_ENV } })

/** direnv with the tree whitelisted (direnv.toml `[whitelist] prefix`): an .envrc there runs on `cd`. */
function direnvExec(dir: string, prefix: string) {
  const cfg = mkdtempSync(join(hostDir('direnv'), 'c'))
  writeFileSync(join(cfg, 'direnv.toml'), `[whitelist]\nprefix = [ "${prefix}" ]\n`)
  return execa('direnv', ['exec', dir, 'true'], { reject: false, env: { ...process.env, DIRENV_CONFIG: cfg, XDG_DATA_HOME: join(cfg, 'data') } })
}

async function makeRepo(): Promise<string> {
  const dir = hostDir('hexec')
  expect((await git(dir, ['init', '-q'])).exitCode).toBe(0)
  writeFileSync(join(dir, 'README'), 'project\n')
  mkdirSync(join(dir, 'docs', 'tools'), { recursive: true })
  writeFileSync(join(dir, 'docs', 'tools', 'notes.md'), 'tools\n')
  expect((await git(dir, ['add', '-A'])).exitCode).toBe(0)
  expect((await git(dir, ['commit', '-q', '-m', 'init'])).exitCode).toBe(0)
  return dir
}

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`)
    await new Promise(r => setTimeout(r, 50))
  }
}

const watchLog = (name: string) => {
  try {
    return readFileSync(join(TEST_HOME, 'quarantine', name, 'watch.log'), 'utf8')
  } catch {
    return ''
  }
}
const watcherPid = (name: string) => Number(readFileSync(join(TEST_HOME, 'sandboxes', name, 'watch', 'watcher.pid'), 'utf8').split(':')[0])

let repo = ''
let name = ''
let repo2 = ''
let name2 = ''

beforeAll(async () => {
  repo = await makeRepo()
  name = await createSandbox('hexec', { workdir: repo })
  // The repo's own git dir writable inside (an explicit rw mount of it): what the watcher must
  // police when the mount protections do not make it read-only.
  repo2 = await makeRepo()
  name2 = await createSandbox('hexecgit', { workdir: repo2, mounts: [`${join(repo2, '.git')}:rw`] })
})

afterAll(async () => {
  await deleteSandboxes([name, name2])
})

describe('host-executed files planted by the agent are quarantined before host tools run them', () => {
  it('a new nested .git with core.fsmonitor: quarantined; host git status and __git_ps1 run nothing', async ({ task }) => {
    const marker = join(repo, 'pwned-fsmonitor')
    // Control: the same .git, placed by hand where no sandbox watches, runs the payload.
    const ctl = hostDir('ctl')
    expect((await git(ctl, ['init', '-q'])).exitCode).toBe(0)
    expect((await git(ctl, ['config', 'core.fsmonitor', `touch ${ctl}/ran #`])).exitCode).toBe(0)
    await git(ctl, ['status'])
    expect(existsSync(join(ctl, 'ran'))).toBe(true)
    task.meta.control = 'the same .git placed by hand where no sandbox watches: host git status ran the fsmonitor payload'

    // The attack, at its strongest: the complete .git is built under another name in the project
    // (no rule matches `g`), then renamed into place: one atomic rename(2), one inotify event.
    const r = await sh(name, `git init -q /tmp/evil && git -C /tmp/evil config core.fsmonitor 'touch ${marker} #' && cp -r /tmp/evil/.git ${repo}/docs/tools/g && mv ${repo}/docs/tools/g ${repo}/docs/tools/.git; echo done`)
    expect(r.stdout).toContain('done')
    await until('docs/tools/.git quarantined', () => !existsSync(join(repo, 'docs', 'tools', '.git')) && watchLog(name).includes('docs/tools/.git'))
    await git(join(repo, 'docs', 'tools'), ['status'])
    await git(join(repo, 'docs', 'tools'), ['add', '-A'])
    await ps1(join(repo, 'docs', 'tools'))
    expect(existsSync(marker)).toBe(false)
    expect(existsSync(join(repo, 'docs', 'tools', '.git'))).toBe(false)
    // Logged: the OCSF finding (podshell logs) and watch.log, and the content kept for the user.
    await expectLogged(name, /FINDING:CREATE/, /docs\/tools\/\.git/)
    const saved = readdirSync(join(TEST_HOME, 'quarantine', name)).find(f => f.endsWith('%docs%tools%.git'))
    expect(saved).toBeTruthy()
    expect(readFileSync(join(TEST_HOME, 'quarantine', name, saved!, 'config'), 'utf8')).toContain('fsmonitor')
    task.meta.observed = 'docs/tools/.git quarantined and logged (FINDING); host git status, git add -A and __git_ps1 ran nothing'
  })

  it('a planted .envrc: quarantined; direnv on the host (tree whitelisted) runs nothing', async ({ task }) => {
    const marker = join(repo, 'pwned-envrc')
    const ctl = hostDir('ctl')
    writeFileSync(join(ctl, '.envrc'), `touch ${ctl}/ran\n`)
    await direnvExec(ctl, ctl)
    expect(existsSync(join(ctl, 'ran'))).toBe(true)

    await sh(name, `echo 'touch ${marker}' > ${repo}/docs/.envrc`)
    await until('.envrc quarantined', () => !existsSync(join(repo, 'docs', '.envrc')) && watchLog(name).includes('docs/.envrc'))
    await direnvExec(join(repo, 'docs'), repo)
    expect(existsSync(marker)).toBe(false)
    await expectLogged(name, /FINDING:CREATE/, /docs\/\.envrc/)
    task.meta.control = 'the same .envrc placed by hand in a whitelisted dir: direnv ran it'
    task.meta.observed = '.envrc quarantined and logged; direnv exec on the host ran nothing'
  })

  it("the repo's own .git/config gets core.fsmonitor and a hook: removed (ordinary git work kept); host git runs nothing", async ({ task }) => {
    const marker = join(repo2, 'pwned-config')
    const r = await sh(name2, `cd ${repo2} && git config user.name agent && git config core.fsmonitor 'touch ${marker} #' && printf '#!/bin/sh\\ntouch ${marker}\\n' > .git/h.tmp && chmod +x .git/h.tmp && mv .git/h.tmp .git/hooks/pre-commit && echo ok`)
    // The hook is made executable before it is renamed into place (one rename(2)): written in place,
    // the watcher may quarantine it between the write and the chmod (seen on Podman 5.4).
    expect(r.stdout, r.stderr).toContain('ok')
    await until('core.fsmonitor removed', () => !readFileSync(join(repo2, '.git', 'config'), 'utf8').includes('fsmonitor') && !existsSync(join(repo2, '.git', 'hooks', 'pre-commit')))
    // Ordinary git work of the agent stays: its user.name, and it can still commit inside.
    expect(readFileSync(join(repo2, '.git', 'config'), 'utf8')).toContain('name = agent')
    const c = await sh(name2, `cd ${repo2} && echo x > f && git add f && git -c user.email=a@b commit -q -m agent && echo committed`)
    expect(c.stdout).toContain('committed')
    await git(repo2, ['status'])
    writeFileSync(join(repo2, 'g'), 'y\n')
    await git(repo2, ['add', 'g'])
    await git(repo2, ['commit', '-q', '-m', 'host'])
    expect(existsSync(marker)).toBe(false)
    await expectLogged(name2, /FINDING:CREATE/, /\.git\/config/, /action:sanitized/)
    await expectLogged(name2, /FINDING:CREATE/, /\.git\/hooks\/pre-commit/)
    task.meta.observed = 'core.fsmonitor removed (user.name kept, the agent still commits), hook quarantined; host git status/commit ran nothing'
  })

  it('the watcher daemon killed with -9: the next podshell command rescans, a new daemon takes every sandbox over and catches what was planted meanwhile', async ({ task }) => {
    // One daemon serves every sandbox of the data dir.
    const pid = watcherPid(name)
    expect(watcherPid(name2)).toBe(pid)
    process.kill(pid, 'SIGKILL')
    await until('watcher gone', () => !existsSync(`/proc/${pid}`) || readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z'))
    // Planted with podman directly, in both sandboxes: no podshell command runs meanwhile.
    const r = await podman(['exec', `podshell.${name}.agent`, 'sh', '-c', `echo 'touch ${repo}/pwned-late' > ${repo}/.envrc && echo planted`])
    expect(r.stdout).toContain('planted')
    const r2 = await podman(['exec', `podshell.${name2}.agent`, 'sh', '-c', `echo 'touch ${repo2}/pwned-late' > ${repo2}/.envrc && echo planted`])
    expect(r2.stdout).toContain('planted')
    await new Promise(res => setTimeout(res, 300))
    expect(existsSync(join(repo, '.envrc'))).toBe(true) // nothing watched it
    expect(existsSync(join(repo2, '.envrc'))).toBe(true)
    const next = await cli(['sandbox', 'exec', '-n', name, '--', 'true'])
    expect(next.code).toBe(0)
    expect(existsSync(join(repo, '.envrc'))).toBe(false)
    expect(next.stderr).toMatch(/while the watcher was not running/)
    await expectLogged(name, /FINDING:CREATE/, /hexec-[^/]+\/\.envrc/)
    // And a new daemon runs again, serving the other sandbox too: its rescan on taking it over
    // quarantines the plant there without any command on that sandbox.
    const again = watcherPid(name)
    expect(again).not.toBe(pid)
    expect(existsSync(`/proc/${again}`)).toBe(true)
    await until(`${name2} taken over by the new daemon`, () => {
      try {
        return watcherPid(name2) === again
      } catch {
        return false
      }
    })
    await until(`${name2}'s .envrc quarantined`, () => !existsSync(join(repo2, '.envrc')))
    await expectLogged(name2, /FINDING:CREATE/, /hexec-[^/]+\/\.envrc/)
    task.meta.observed = '.envrc planted in two sandboxes while no daemon ran: quarantined by the next sandbox exec (first sandbox) and by the new daemon taking the second over'
  })
})

describe('the watcher with any valid sandbox name', () => {
  it('a 40-character name (names go up to 63): watched, and the daemon drops it at delete', async () => {
    const dir = await makeRepo()
    const long = `hexec-long-${process.pid.toString(36)}-${'x'.repeat(40)}`.slice(0, 40)
    const c = await cli(['sandbox', 'create', '--name', long, '--detach', '--workdir', dir])
    expect(c.code, c.stderr).toBe(0)
    expect(c.stderr).not.toMatch(/watcher/)
    const pid = watcherPid(long)
    await sh(long, `echo 'touch ${dir}/pwned' > ${dir}/.envrc`)
    await until('.envrc quarantined', () => !existsSync(join(dir, '.envrc')) && watchLog(long).includes('.envrc'))
    expect(existsSync(join(TEST_HOME, 'watchd', 'want', long))).toBe(true)
    expect((await cli(['sandbox', 'delete', long])).code).toBe(0)
    // The daemon (shared with the other sandboxes of this file) no longer serves it.
    expect(existsSync(join(TEST_HOME, 'watchd', 'want', long))).toBe(false)
    expect(existsSync(`/proc/${pid}`)).toBe(true)
    expect(watcherPid(name)).toBe(pid)
  })
})

describe('exec --timeout ends every process the exec started', () => {
  const alive = (tag: string) =>
    readdirSync('/proc').filter(p => /^\d+$/.test(p)).some(p => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'latin1').includes(tag)
      } catch {
        return false
      }
    })

  it('children that drop the environment (env -i), a root that re-execs without it, a setsid child: all gone', async () => {
    const t = String(Date.now() % 100000).padStart(5, '0')
    const r = await cli(['sandbox', 'exec', '-n', name, '--timeout', '2', '--', 'sh', '-c', `env -i sleep 7${t}1 & setsid sleep 7${t}2 & exec env -i sh -c "sleep 7${t}3 & sleep 7${t}4"`])
    expect(r.code).toBe(124)
    await new Promise(res => setTimeout(res, 500))
    for (const k of [1, 2, 3, 4]) expect(alive(`sleep\u00007${t}${k}`)).toBe(false)
  })

  it('a child that ignores SIGTERM is killed after the grace period', async () => {
    const t = String(Date.now() % 100000).padStart(5, '0')
    const r = await cli(['sandbox', 'exec', '-n', name, '--timeout', '1', '--', 'sh', '-c', `trap '' TERM; env -i sh -c "trap '' TERM; sleep 8${t}1" & sleep 8${t}2`])
    expect(r.code).toBe(124)
    await new Promise(res => setTimeout(res, 500))
    expect(alive(`sleep\u00008${t}1`)).toBe(false)
    expect(alive(`sleep\u00008${t}2`)).toBe(false)
  })
})

