import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { stringify } from 'yaml'
import { cli, podman, uniqueName, hostDir, podExists, TEST_HOME } from '../helpers/cli.js'

/**
 * Issue 9 finding 11 (one sandbox starving the host) and issue 10/12 (restart re-renders the agent
 * from its description; no secret value stored), performed for real in rootless sandboxes.
 *
 * Before: RLIMIT_NPROC inside was the host's pid_max (32,768: 3,000 processes started without
 * resistance), /tmp, /run and /var/tmp were 12 GiB tmpfs each, container logs unbounded, env_pass
 * values sat in agent.json in plain text, and a restart replayed the old release's argv.
 */

/** A config dir of its own for this file's sandboxes (resources.* keys). */
function configWith(resources: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'podshell-limits-cfg-'))
  mkdirSync(join(dir, 'podshell'))
  writeFileSync(join(dir, 'podshell', 'config.yaml'), stringify({ resources }))
  return dir
}

async function inspectAgent(name: string): Promise<{ HostConfig: { Ulimits: { Name: string; Soft: number }[]; Tmpfs?: Record<string, string>; LogConfig: { Type: string; Path?: string; Size?: string } }; Mounts: { Destination: string; Type: string; Options?: string[] }[] }> {
  const r = await podman(['container', 'inspect', `podshell.${name}.agent`])
  expect(r.code, r.stderr).toBe(0)
  return (JSON.parse(r.stdout) as never[])[0]!
}

const FORK_BOMB = `
import os, time, errno
pids = []
err = None
for i in range(3500):
    try:
        p = os.fork()
    except OSError as e:
        err = errno.errorcode.get(e.errno, str(e.errno))
        break
    if p == 0:
        os.execv('/bin/sleep', ['sleep', '60'])
    pids.append(p)
print(len(pids), err, flush=True)
time.sleep(float(os.environ.get('HOLD', '0')))
for p in pids:
    os.kill(p, 9)
`

describe('limits: one sandbox cannot take the host', () => {
  const names: string[] = []
  let cfg: string
  beforeAll(() => {
    cfg = configWith({ nproc: 1024 })
  })
  afterAll(async () => {
    if (names.length) await cli(['sandbox', 'delete', ...names])
  })

  const create = async (env: Record<string, string> = {}, extra: string[] = []) => {
    const name = uniqueName('lim')
    const r = await cli(['sandbox', 'create', '--name', name, '--detach', ...extra], { env })
    expect(r.code, r.stderr).toBe(0)
    names.push(name)
    return name
  }

  it('fork 3,500 processes: refused (EAGAIN) past RLIMIT_NPROC, counted per sandbox', async () => {
    const a = await create({ XDG_CONFIG_HOME: cfg })
    const b = await create({ XDG_CONFIG_HOME: cfg })
    // A holds its processes while B forks: the count is per sandbox (its own user namespace), so
    // A at its limit neither stops B nor the user's own processes on the host.
    const holding = cli(['sandbox', 'exec', '-n', a, '--env', 'HOLD=8', '--', 'python3', '-c', FORK_BOMB], { timeoutMs: 120_000 })
    await new Promise(r => setTimeout(r, 3000))
    const rb = await cli(['sandbox', 'exec', '-n', b, '--', 'python3', '-c', FORK_BOMB], { timeoutMs: 120_000 })
    const ra = await holding
    for (const [r, who] of [[ra, 'A'], [rb, 'B']] as const) {
      expect(r.code, `${who}: ${r.stderr}`).toBe(0)
      const [count, err] = r.stdout.trim().split(' ')
      expect(err, `${who} forked ${count} without an error`).toBe('EAGAIN')
      expect(Number(count)).toBeGreaterThan(900)
      expect(Number(count)).toBeLessThan(1024)
    }
    const ulimit = await cli(['sandbox', 'exec', '-n', a, '--', 'sh', '-c', 'cat /proc/self/limits | grep "Max processes"'])
    expect(ulimit.stdout).toMatch(/Max processes\s+1024\s+1024/)
  }, 240_000)

  it('the default is 4096 processes; /tmp 1 GiB, /var/tmp 256 MiB, /run 64 MiB; log capped (podman inspect)', async () => {
    const name = await create()
    const info = await inspectAgent(name)
    expect(info.HostConfig.Ulimits.find(u => u.Name === 'RLIMIT_NPROC')?.Soft).toBe(4096)
    const df = await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', 'df -B1 --output=target,size /tmp /var/tmp /run | tail -n +2'])
    const sizes = Object.fromEntries(df.stdout.trim().split('\n').map(l => l.trim().split(/\s+/) as [string, string]))
    expect(Number(sizes['/tmp'])).toBe(1024 ** 3)
    expect(Number(sizes['/var/tmp'])).toBe(256 * 1024 ** 2)
    expect(Number(sizes['/run'])).toBe(64 * 1024 ** 2)
    expect(info.HostConfig.LogConfig.Type).toBe('k8s-file')
  })

  it('write 2 GiB to /tmp: ENOSPC at 1 GiB inside, the host is untouched', async () => {
    const name = names[names.length - 1]!
    const r = await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', 'dd if=/dev/zero of=/tmp/fill bs=1M count=2048 2>&1; echo "exit=$?"; du -B1 /tmp/fill | cut -f1; rm -f /tmp/fill'], { timeoutMs: 120_000 })
    expect(r.stdout).toMatch(/No space left on device/)
    expect(r.stdout).toMatch(/exit=1/)
    const written = Number(r.stdout.trim().split('\n').at(-1))
    expect(written).toBeLessThanOrEqual(1024 ** 3)
    // The same for /var/tmp and /run (smaller bounds).
    const v = await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', 'dd if=/dev/zero of=/var/tmp/fill bs=1M count=512 2>&1; echo "exit=$?"; rm -f /var/tmp/fill'])
    expect(v.stdout).toMatch(/No space left on device[\s\S]*exit=1/)
  }, 180_000)

  it('log flood: 40 MB on the agent\'s stdout leaves a log file of at most log_max_size', async () => {
    const flood = configWith({ log_max_size: '1Mi' })
    const name = uniqueName('lim')
    const r = await cli(['sandbox', 'create', '--name', name, '--detach', '--', 'sh', '-c', 'head -c 40000000 /dev/zero | tr "\\0" x | fold -w 120; touch /tmp/flood-done; sleep 600'], { env: { XDG_CONFIG_HOME: flood } })
    expect(r.code, r.stderr).toBe(0)
    names.push(name)
    const info = await inspectAgent(name)
    const path = info.HostConfig.LogConfig.Path!
    expect(path).toBeTruthy()
    // Sample the log's size while the flood runs, until the writer says it is through. The file is
    // in podman's storage, which only the user namespace may stat.
    const logSize = async () => Number((await podman(['unshare', 'stat', '-c', '%s', path])).stdout.trim() || '0')
    const deadline = Date.now() + 90_000
    let max = 0
    for (;;) {
      max = Math.max(max, await logSize())
      const done = await cli(['sandbox', 'exec', '-n', name, '--', 'test', '-e', '/tmp/flood-done'])
      if (done.code === 0) break
      expect(Date.now() < deadline, 'the flood did not finish in 90 s').toBe(true)
      await new Promise(r => setTimeout(r, 300))
    }
    const size = await logSize()
    expect(size).toBeGreaterThan(0)
    expect(size).toBeLessThanOrEqual(1024 * 1024 + 64 * 1024)
    expect(max).toBeLessThanOrEqual(1024 * 1024 + 64 * 1024)
  }, 120_000)

  it('resources.pids on a host without the pids cgroup: refused in one line, nothing left behind', async () => {
    const enforced = existsSync('/sys/fs/cgroup/cgroup.controllers')
    const name = uniqueName('lim')
    const r = await cli(['sandbox', 'create', '--name', name, '--detach'], { env: { XDG_CONFIG_HOME: configWith({ pids: 512 }) } })
    if (enforced) {
      names.push(name)
      expect(r.code, r.stderr).toBe(0)
      const pids = await podman(['container', 'inspect', '--format', '{{.HostConfig.PidsLimit}}', `podshell.${name}.agent`])
      expect(pids.stdout.trim()).toBe('512')
    } else {
      expect(r.code).toBe(2)
      expect(r.stderr).toMatch(/resources\.pids needs cgroup v2/)
      expect(await podExists(name)).toBe(false)
      expect(existsSync(join(TEST_HOME, 'sandboxes', name))).toBe(false)
    }
  })
})

/** Every file under `dir` whose bytes contain `needle`. */
function filesContaining(dir: string, needle: string): string[] {
  const hits: string[] = []
  const walk = (d: string) => {
    let entries: string[]
    try {
      entries = readdirSync(d)
    } catch {
      return
    }
    for (const e of entries) {
      const p = join(d, e)
      try {
        const st = statSync(p)
        if (st.isDirectory()) walk(p)
        else if (st.isFile() && readFileSync(p).includes(needle)) hits.push(p)
      } catch {
        // unreadable or gone: not ours
      }
    }
  }
  walk(dir)
  return hits
}

describe('the stored description: no secret value, and restart re-renders with this release', () => {
  const SECRET = `envpass-${Math.random().toString(36).slice(2)}-value`
  let name: string
  afterAll(async () => {
    if (name) await cli(['sandbox', 'delete', name])
  })

  it('env_pass: the value reaches the agent but no file of the data dir (issue 12 item 4)', async () => {
    name = uniqueName('desc')
    const work = hostDir('desc')
    const spec = { version: 1, name, session_type: 'development', cwd: work, argv: ['sleep', 'infinity'], env: { PLAIN: 'configured' }, env_pass: ['MY_TOKEN'] }
    const r = await cli(['sandbox', 'create', '--spec', '-', '--detach'], { input: JSON.stringify(spec), env: { MY_TOKEN: SECRET } })
    expect(r.code, r.stderr).toBe(0)
    const inside = await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', 'echo "$MY_TOKEN $PLAIN"'])
    expect(inside.stdout.trim()).toBe(`${SECRET} configured`)
    expect(filesContaining(TEST_HOME, SECRET)).toEqual([])
    const desc = JSON.parse(readFileSync(join(TEST_HOME, 'sandboxes', name, 'agent.json'), 'utf8')) as { callerEnv: string[]; env: Record<string, string> }
    expect(desc.callerEnv).toEqual(['MY_TOKEN'])
    expect(desc.env.PLAIN).toBe('configured')
  })

  it('restart: env_pass values come from the restarting environment; a missing one is named in a warning', async () => {
    let r = await cli(['sandbox', 'restart', name], { env: { MY_TOKEN: SECRET } })
    expect(r.code, r.stderr).toBe(0)
    expect((await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', 'echo "$MY_TOKEN"'])).stdout.trim()).toBe(SECRET)
    r = await cli(['sandbox', 'restart', name], { env: { MY_TOKEN: undefined } })
    expect(r.code, r.stderr).toBe(0)
    expect(r.stderr).toMatch(/env_pass variable MY_TOKEN not set in this environment/)
    expect((await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', 'echo "[${MY_TOKEN-unset}] $PLAIN"'])).stdout.trim()).toBe('[unset] configured')
    expect(filesContaining(TEST_HOME, SECRET)).toEqual([])
  })

  it('a sandbox whose agent.json has the OLD shape (argv + env values) gets the new flags on restart', async () => {
    const file = join(TEST_HOME, 'sandboxes', name, 'agent.json')
    const now = JSON.parse(readFileSync(file, 'utf8')) as { home: string; uid: number; gid: number; seccomp: string; workdir: string; image: string; main: string[] }
    const home = join(TEST_HOME, 'sandboxes', name, 'home')
    // What the previous release wrote (src/sandbox/runtime.ts before the typed spec): its argv,
    // with /tmp unbounded, no RLIMIT_NPROC, no log cap, and env values in plain text.
    const legacy = {
      flags: [
        '--pod', `podshell.${name}`, '--name', `podshell.${name}.agent`, '--label', `io.podshell.sandbox=${name}`, '--label', 'io.podshell.role=agent',
        '--http-proxy=false', '--user', `${now.uid}:${now.gid}`, '--init', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges',
        '--security-opt', `seccomp=${now.seccomp}`, '--read-only', '--read-only-tmpfs', '--tmpfs', '/tmp:rw,nosuid,nodev,mode=1777', '--ulimit', 'core=0:0',
        '--mount', `type=bind,source=${home},destination=${now.home}`,
        '--mount', `type=bind,source=${now.workdir},destination=${now.workdir}`,
        '--workdir', now.workdir,
        '--env', `HOME=${now.home}`, '--env', `PODSHELL_SANDBOX=${name}`, '--env', 'HTTP_PROXY=http://127.0.0.1:3128', '--env', 'MY_TOKEN',
      ],
      env: { MY_TOKEN: SECRET },
      image: now.image,
      main: now.main,
      providers: [],
    }
    writeFileSync(file, JSON.stringify(legacy) + '\n')
    // Re-create the agent container the way the old release did, so the "before" is real.
    await podman(['rm', '-f', `podshell.${name}.agent`])
    const oldFlags = [...legacy.flags]
    oldFlags.splice(oldFlags.lastIndexOf('MY_TOKEN') - 1, 2)
    const old = await podman(['create', ...oldFlags, legacy.image, ...legacy.main])
    expect(old.code, old.stderr).toBe(0)
    let info = await inspectAgent(name)
    // Podman's rootless default: the caller's own RLIMIT_NPROC (the host's pid_max here), not 4096.
    expect(info.HostConfig.Ulimits.find(u => u.Name === 'RLIMIT_NPROC')?.Soft).not.toBe(4096)

    const r = await cli(['sandbox', 'restart', name], { env: { MY_TOKEN: SECRET } })
    expect(r.code, r.stderr).toBe(0)
    info = await inspectAgent(name)
    expect(info.HostConfig.Ulimits.find(u => u.Name === 'RLIMIT_NPROC')?.Soft).toBe(4096)
    expect(info.HostConfig.LogConfig.Type).toBe('k8s-file')
    const df = await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', 'df -B1 --output=size /tmp | tail -1'])
    expect(Number(df.stdout.trim())).toBe(1024 ** 3)
    // The file is in the new shape now: no argv, no value.
    const after = readFileSync(file, 'utf8')
    expect(after).not.toContain(SECRET)
    expect(after).not.toContain('--cap-drop')
    expect(JSON.parse(after)).toMatchObject({ version: 2, callerEnv: ['MY_TOKEN'] })
    expect((await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', 'echo "$MY_TOKEN"'])).stdout.trim()).toBe(SECRET)
  }, 120_000)
})
