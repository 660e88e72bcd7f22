import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { chmodSync, existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { spawn, type ChildProcess } from 'node:child_process'
import { execa } from 'execa'
import { CLI, podman, hostDir, uniqueName, podExists, testEnv } from '../helpers/cli.js'
import { recordFigures, sleep } from '../helpers/attack.js'

/**
 * podshell's state dir on a filesystem that refuses writes: permission denied (a directory the
 * user cannot write), read-only (EROFS) and full (ENOSPC). podshell must stop with ONE clear line
 * and leave nothing half-written (temp file + rename), nothing half-made in Podman.
 *
 * Read-only and full filesystems are made without root: the CLI runs inside `unshare -rm` (a user
 * and mount namespace of the test user) where a 1 MiB tmpfs (filled up) or a read-only bind is
 * mounted over its data dir. Podman itself cannot run inside that namespace, so the CLI's podman
 * (PODSHELL_PODMAN) is a wrapper calling the podman REMOTE client, which talks to a
 * `podman system service` the test runs outside: every podman operation is real, on the test
 * user's real Podman.
 */

declare module 'vitest' {
  interface TaskMeta {
    observed?: string
  }
}

let service: ChildProcess | undefined
let sock = ''
let wrapper = ''
const figures: Record<string, unknown> = {}

beforeAll(async () => {
  const dir = hostDir('podman-remote')
  sock = join(process.env.XDG_RUNTIME_DIR ?? dir, `podshell-fault-${process.pid}.sock`)
  rmSync(sock, { force: true })
  service = spawn('podman', ['--runtime', 'runc', 'system', 'service', '--time=0', `unix://${sock}`], { stdio: 'ignore' })
  for (let i = 0; i < 100 && !existsSync(sock); i++) await sleep(100)
  expect(existsSync(sock), 'podman system service did not start').toBe(true)
  wrapper = join(dir, 'podman')
  // podshell passes --runtime on every call; the service was started with the runtime instead.
  writeFileSync(wrapper, `#!/bin/bash\na=()\nwhile [ $# -gt 0 ]; do if [ "$1" = --runtime ]; then shift 2; continue; fi; a+=("$1"); shift; done\nexec podman --remote --url unix://${sock} "\${a[@]}"\n`, { mode: 0o755 })
})

afterAll(async () => {
  service?.kill('SIGTERM')
  rmSync(sock, { force: true })
  recordFigures('faults', 'state_dir', figures)
})

/**
 * Runs `setup` then the podshell CLI then `after` in one `unshare -rm` shell; returns the CLI's
 * exit code and stderr, and what `after` printed (the namespace's view of the data dir).
 */
async function inNamespace(data: string, setup: string, args: string[], after: string, env: Record<string, string> = {}): Promise<{ code: number; stderr: string; after: string }> {
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`
  const script = [
    'set -e',
    setup,
    'set +e',
    `${q(process.execPath)} ${q(CLI)} ${args.map(q).join(' ')} 2>/tmp/podshell-fault-stderr-$$ >/dev/null; code=$?`,
    'echo "@@CODE $code"',
    'echo "@@STDERR"; cat /tmp/podshell-fault-stderr-$$; rm -f /tmp/podshell-fault-stderr-$$',
    'echo "@@AFTER"',
    after,
  ].join('\n')
  const r = await execa('unshare', ['-rm', 'bash', '-c', script], {
    reject: false,
    env: { ...testEnv(), PODSHELL_HOME: data, PODSHELL_PODMAN: wrapper, XDG_CACHE_HOME: join(data, '..', 'cache'), ...env },
    extendEnv: false,
    timeout: 120_000,
  })
  const out = r.stdout
  const code = Number(/@@CODE (\d+)/.exec(out)?.[1] ?? -1)
  const stderr = out.slice(out.indexOf('@@STDERR') + 9, out.indexOf('@@AFTER')).trim()
  if (code === -1) throw new Error(`namespace run failed: ${r.stderr}\n${out}`)
  return { code, stderr, after: out.slice(out.indexOf('@@AFTER') + 8).trim() }
}

/** What must hold after a refused command: one line, nothing of the sandbox in Podman or in the data dir. */
async function nothingLeft(name: string, r: { code: number; stderr: string; after: string }): Promise<void> {
  expect(r.code).not.toBe(0)
  const lines = r.stderr.split('\n').filter(l => l.trim())
  // One error line; the only other lines allowed are warnings (the gc that runs first reports
  // what it could not clean on the same filesystem).
  expect(lines.filter(l => l.startsWith('podshell: ')), r.stderr).toHaveLength(1)
  expect(lines.filter(l => !l.startsWith('podshell: ') && !l.startsWith('warning: ')), r.stderr).toEqual([])
  expect(await podExists(name)).toBe(false)
  expect((await podman(['ps', '-a', '--filter', `label=io.podshell.sandbox=${name}`, '-q'])).stdout.trim()).toBe('')
  expect(r.after).not.toMatch(/\.tmp\b/)
  expect(r.after).not.toContain(`sandboxes/${name}`)
}

const LIST = 'find "$PODSHELL_HOME" -mindepth 1 | sed "s#^$PODSHELL_HOME/##" | sort; echo "last-used=[$(cat "$PODSHELL_HOME/last-used" 2>/dev/null)]"'

describe('the state dir refuses writes', () => {
  it('sandbox create with a data dir the user cannot write (mode 0555) → one line (EACCES), nothing made', async ({ task }) => {
    const data = hostDir('state-ro')
    chmodSync(data, 0o555)
    const name = uniqueName('eacces')
    try {
      const r = await execa(process.execPath, [CLI, 'sandbox', 'create', '--name', name, '--detach'], { reject: false, env: testEnv({ PODSHELL_HOME: data }), extendEnv: false })
      const res = { code: r.exitCode ?? -1, stderr: String(r.stderr), after: readdirSync(data).join('\n') }
      task.meta.observed = res.stderr.trim()
      await nothingLeft(name, res)
      expect(res.stderr.split('\n').find(l => l.startsWith('podshell: '))).toMatch(/EACCES|permission denied/i)
      expect(readdirSync(data)).toEqual([])
      figures.eacces = res.stderr.trim()
    } finally {
      chmodSync(data, 0o755)
    }
  })

  it('sandbox create with the data dir on a read-only filesystem (EROFS) → one line, nothing made, existing state untouched', async ({ task }) => {
    const data = hostDir('state-erofs')
    writeFileSync(join(data, 'last-used'), 'previous-box\n')
    const name = uniqueName('erofs')
    const r = await inNamespace(data, `mount --bind "$PODSHELL_HOME" "$PODSHELL_HOME" && mount -o remount,bind,ro "$PODSHELL_HOME"`, ['sandbox', 'create', '--name', name, '--detach'], LIST)
    task.meta.observed = r.stderr
    await nothingLeft(name, r)
    expect(r.stderr.split('\n').find(l => l.startsWith('podshell: ')), 'the error must name the read-only filesystem').toMatch(/EROFS|read-only/i)
    expect(r.after).toContain('last-used=[previous-box]')
    figures.erofs = r.stderr
  })

  it('sandbox create with the data dir on a full filesystem (1 MiB tmpfs, filled) → one line (ENOSPC), nothing made, last-used not truncated', async ({ task }) => {
    const data = hostDir('state-full')
    const name = uniqueName('enospc')
    const fill = `mount -t tmpfs -o size=1m tmpfs "$PODSHELL_HOME" && printf 'previous-box\\n' > "$PODSHELL_HOME/last-used" && (dd if=/dev/zero of="$PODSHELL_HOME/filler" bs=4k 2>/dev/null || true)`
    const r = await inNamespace(data, fill, ['sandbox', 'create', '--name', name, '--detach'], `df -k "$PODSHELL_HOME" | tail -1; ${LIST}`)
    task.meta.observed = r.stderr
    await nothingLeft(name, r)
    expect(r.stderr.split('\n').find(l => l.startsWith('podshell: '))).toMatch(/ENOSPC|full/i)
    expect(r.after).toContain('last-used=[previous-box]')
    figures.enospc_create = r.stderr
  })

  it('provider create on a full filesystem → one line; neither the metadata file nor the podman secret is left behind', async ({ task }) => {
    const data = hostDir('state-full-prov')
    const p = `full-${process.pid.toString(36)}`
    const fill = `mount -t tmpfs -o size=1m tmpfs "$PODSHELL_HOME" && (dd if=/dev/zero of="$PODSHELL_HOME/filler" bs=4k 2>/dev/null || true)`
    const r = await inNamespace(data, fill, ['provider', 'create', '--name', p, '--type', 'github', '--credential', 'GITHUB_TOKEN'], LIST, { GITHUB_TOKEN: 'value-that-must-not-be-kept' })
    task.meta.observed = r.stderr
    expect(r.code).not.toBe(0)
    expect(r.stderr.split('\n').filter(l => l.trim())).toHaveLength(1)
    expect(r.stderr).toMatch(/ENOSPC|full/i)
    expect(r.after).not.toMatch(new RegExp(`providers/${p}`))
    expect(r.after).not.toMatch(/\.tmp\b/)
    const secret = await podman(['secret', 'inspect', `podshell.provider.${p}.GITHUB_TOKEN`])
    expect(secret.code, 'the podman secret was left behind').not.toBe(0)
    figures.enospc_provider = r.stderr
  })
})
