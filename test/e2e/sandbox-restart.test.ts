import { describe, it, expect, afterAll } from 'vitest'
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { cli, podman, uniqueName, hostDir, TEST_HOME } from '../helpers/cli.js'

/**
 * Issues 10 and 12: the agent container is stored as a description (no argv, no secret value) and
 * `sandbox restart` re-renders it with the running release, so a sandbox made by an older podshell
 * gets the new hardening and limits. Before: env_pass values sat in agent.json in plain text and a
 * restart replayed the old release's argv.
 */

async function inspectAgent(name: string): Promise<{ HostConfig: { Ulimits: { Name: string; Soft: number }[]; LogConfig: { Type: string } } }> {
  const r = await podman(['container', 'inspect', `podshell.${name}.agent`])
  expect(r.code, r.stderr).toBe(0)
  return (JSON.parse(r.stdout) as never[])[0]!
}

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
