import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { mkdirSync, mkdtempSync, writeFileSync, existsSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, statfsSync } from 'node:fs'
import { join } from 'node:path'
import { tmpdir } from 'node:os'
import { stringify } from 'yaml'
import { cli, podman, uniqueName, podExists, TEST_HOME } from '../helpers/cli.js'
import { expectLogged } from '../helpers/attack.js'

/**
 * Issue 9 finding 11 (one sandbox starving the host), performed for real in rootless sandboxes.
 * Before: RLIMIT_NPROC inside was the host's pid_max (32,768: 3,000 processes started without
 * resistance), /tmp, /run and /var/tmp were 12 GiB tmpfs each, and container logs unbounded.
 * The kernel refuses these (EAGAIN, ENOSPC) and conmon truncates the log: nothing reaches the
 * gateway, so there is no podshell log line to assert; `observed` records what the attack got.
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

  it('fork 3,500 processes: refused (EAGAIN) past RLIMIT_NPROC, counted per sandbox', async ({ task }) => {
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
    task.meta.observed = `A: ${ra.stdout.trim()} while holding, B: ${rb.stdout.trim()} (forks, then the error)`
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

  it('write 2 GiB to /tmp: ENOSPC at 1 GiB inside, the host is untouched', async ({ task }) => {
    const name = names[names.length - 1]!
    const r = await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', 'dd if=/dev/zero of=/tmp/fill bs=1M count=2048 2>&1; echo "exit=$?"; du -B1 /tmp/fill | cut -f1; rm -f /tmp/fill'], { timeoutMs: 120_000 })
    expect(r.stdout).toMatch(/No space left on device/)
    expect(r.stdout).toMatch(/exit=1/)
    const written = Number(r.stdout.trim().split('\n').at(-1))
    expect(written).toBeLessThanOrEqual(1024 ** 3)
    task.meta.observed = `dd: No space left on device after ${written} bytes`
    // The same for /var/tmp and /run (smaller bounds).
    const v = await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', 'dd if=/dev/zero of=/var/tmp/fill bs=1M count=512 2>&1; echo "exit=$?"; rm -f /var/tmp/fill'])
    expect(v.stdout).toMatch(/No space left on device[\s\S]*exit=1/)
  }, 180_000)

  it('log flood: 40 MB on the agent\'s stdout leaves a log file of at most log_max_size', async ({ task }) => {
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
    task.meta.observed = `log file at most ${max} bytes while 40 MB were written (log_max_size 1 MiB)`
  }, 120_000)

  it('fallocate 64 GiB in one call (faster than any tick): EOPNOTSUPP; posix_fallocate falls back to writing blocks, which the disk guard sees', async ({ task }) => {
    const name = names[0]!
    const r = await cli(['sandbox', 'exec', '-n', name, '--', 'sh', '-c', 'fallocate -l 64G "$HOME/huge" 2>&1; echo "exit=$?"; stat -c %b "$HOME/huge" 2>/dev/null || echo none; rm -f "$HOME/huge"'])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/Operation not supported/)
    expect(r.stdout).toMatch(/exit=1/)
    const blocks = r.stdout.trim().split('\n').at(-1)!
    expect(blocks === 'none' || Number(blocks) === 0, `blocks allocated: ${blocks}`).toBe(true)
    task.meta.observed = `fallocate: ${r.stdout.trim().split('\n')[0]}; nothing allocated`
  })

  it('fill the disk through the sandbox home: the disk guard pauses the agent before the host runs out, logs it, and resumes it once space is freed', async ({ task }) => {
    // The reserve is set just under today's free space, so the attack needs to write only a few
    // hundred MiB to reach it (the same path as filling a real disk, without filling this one).
    const free = () => {
      const s = statfsSync(TEST_HOME)
      return Number(s.bavail) * Number(s.bsize)
    }
    const MARGIN = 400 * 1024 ** 2
    const reserve = free() - MARGIN
    expect(reserve).toBeGreaterThan(1024 ** 3)
    const name = uniqueName('lim')
    const home = join(TEST_HOME, 'sandboxes', name, 'home')
    // 40 files of 16 MiB (640 MiB) written one after the other; each failure would stop the loop.
    const flood = 'i=0; while [ $i -lt 40 ]; do i=$((i+1)); head -c 16777216 /dev/zero > "$HOME/fill$i" || break; done; echo "finished $i" > "$HOME/done"; sleep 600'
    const r = await cli(['sandbox', 'create', '--name', name, '--detach', '--', 'sh', '-c', flood], { env: { XDG_CONFIG_HOME: configWith({ disk_reserve: String(reserve) }) } })
    expect(r.code, r.stderr).toBe(0)
    names.push(name)
    const paused = join(TEST_HOME, 'sandboxes', name, 'watch', 'disk-paused')
    const deadline = Date.now() + 60_000
    while (!existsSync(paused)) {
      expect(Date.now() < deadline, 'the disk guard did not pause the agent within 60 s').toBe(true)
      expect(existsSync(join(home, 'done')), 'the flood finished without being paused').toBe(false)
      await new Promise(res => setTimeout(res, 100))
    }
    // Every process of the agent's pid namespace is stopped (state T): the flood no longer writes.
    const pid = Number((await podman(['container', 'inspect', '--format', '{{.State.Pid}}', `podshell.${name}.agent`])).stdout.trim())
    const ns = readlinkSync(`/proc/${pid}/ns/pid`)
    const states = readdirSync('/proc')
      .filter(e => /^\d+$/.test(e))
      .flatMap(e => {
        try {
          return readlinkSync(`/proc/${e}/ns/pid`) === ns ? [readFileSync(`/proc/${e}/stat`, 'utf8').split(') ')[1]![0]!] : []
        } catch {
          return []
        }
      })
    expect(states.length).toBeGreaterThanOrEqual(2) // the init and the flood's shell at least
    expect(states.filter(st => st !== 'T' && st !== 't'), `process states ${states.join('')}`).toEqual([])
    const written = () => readdirSync(home).filter(f => f.startsWith('fill')).reduce((n, f) => n + statSync(join(home, f)).size, 0)
    const atPause = written()
    // The reserve held: the agent wrote at most one guard tick past the margin.
    expect(atPause).toBeGreaterThanOrEqual(MARGIN - 64 * 1024 ** 2)
    expect(atPause).toBeLessThan(MARGIN + 512 * 1024 ** 2)
    await expectLogged(name, /FINDING:CREATE \[HIGH\] PAUSED/, /disk_reserve/)
    // A command into the paused sandbox says why in one line.
    const ex = await cli(['sandbox', 'exec', '-n', name, '--', 'true'])
    expect(ex.code).toBe(1)
    expect(ex.stderr).toMatch(/paused by the disk guard: .*under the reserve/)
    // The user frees space: the agent resumes where it stopped, and no write of it failed.
    for (const f of readdirSync(home).filter(f => f.startsWith('fill'))) rmSync(join(home, f))
    const until = Date.now() + 60_000
    while (!existsSync(join(home, 'done'))) {
      expect(Date.now() < until, 'the agent did not resume and finish within 60 s of the space being freed').toBe(true)
      await new Promise(res => setTimeout(res, 200))
    }
    expect(readFileSync(join(home, 'done'), 'utf8').trim()).toBe('finished 40')
    expect(existsSync(paused)).toBe(false)
    await expectLogged(name, /FINDING:CLOSE \[INFO\] RESUMED/)
    task.meta.observed = `paused after ${Math.round(atPause / 1024 ** 2)} MiB (margin ${MARGIN / 1024 ** 2} MiB to the reserve), all ${states.length} processes stopped, exec refused; resumed after the host freed space and finished all 40 writes`
  }, 180_000)

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
