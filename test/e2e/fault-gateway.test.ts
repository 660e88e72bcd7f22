import { describe, it, expect, beforeAll, afterAll } from 'vitest'
import { cli, cliSpawn, podman } from '../helpers/cli.js'
import { createSandbox, deleteSandboxes, bash, curlProxy, gatewayName, Upstream, hostAddress, policyFile, recordFigures, sleep } from '../helpers/attack.js'

/**
 * Faults on the egress path of a LIVE sandbox: the gateway crashing or killed mid-transfer, the
 * bridge killed. What must hold: the in-flight transfer fails (no silent truncation reported as
 * success), nothing falls back to a direct route, the state is reported truthfully, and the SAME
 * sandbox (never re-created) gets its egress back.
 */

declare module 'vitest' {
  interface TaskMeta {
    observed?: string
  }
}

const H = hostAddress()
const BIG_MB = 4000
let up: Upstream
let name = ''

beforeAll(async () => {
  up = await Upstream.start()
  name = await createSandbox('fault', { policy: policyFile({ up: [{ host: H, port: up.port }] }) })
  expect((await curlProxy(name, up.url('/t/warm'))).status).toBe(200)
})

afterAll(async () => {
  await deleteSandboxes([name])
  await up?.close()
})

/** A command in the agent container straight through podman: what a process already running inside sees. */
function inAgent(args: string[]) {
  return podman(['exec', `podshell.${name}.agent`, ...args])
}

async function podId(n: string): Promise<string> {
  return (await podman(['pod', 'inspect', '--format', '{{.Id}}', `podshell.${n}`])).stdout.trim()
}

/** Starts a large download through the proxy inside the sandbox; resolves once bytes flow. */
async function startDownload(): Promise<{ done: Promise<{ size: number; code: number; exit: number }> }> {
  const before = up.bigBytes
  const child = cliSpawn(['sandbox', 'exec', '-n', name, '--', 'curl', '-sS', '-o', '/dev/null', '-w', '%{size_download} %{http_code}', '--max-time', '120', up.url(`/big?mb=${BIG_MB}`)])
  const deadline = Date.now() + 20_000
  while (up.bigBytes - before < 64 * 1024 * 1024) {
    if (Date.now() > deadline) throw new Error('the download did not start')
    await sleep(20)
  }
  return {
    done: child.then(r => {
      const [size, code] = String(r.stdout).trim().split(' ').map(Number)
      return { size: size ?? 0, code: code ?? 0, exit: r.exitCode ?? -1 }
    }),
  }
}

/** Polls until a request through the sandbox's proxy succeeds; returns the time it took. */
async function waitForEgress(timeoutMs: number): Promise<number> {
  const t0 = Date.now()
  for (;;) {
    const r = await curlProxy(name, up.url('/t/recovered'), { maxTime: 5 })
    if (r.status === 200) return Date.now() - t0
    if (Date.now() - t0 > timeoutMs) throw new Error(`no egress after ${timeoutMs} ms: ${r.status} ${r.stderr}`)
    await sleep(200)
  }
}

describe('the gateway dies during a transfer', () => {
  it('#27 kill -9 of the gateway process mid-download (a crash) → the download fails, no direct route, Podman restarts the gateway and the same sandbox has egress again', async ({ task }) => {
    const pod = await podId(name)
    const gw = await gatewayName()
    const dl = await startDownload()
    const pid = Number((await podman(['inspect', '--format', '{{.State.Pid}}', gw])).stdout.trim())
    expect(pid).toBeGreaterThan(1)
    const killedAt = Date.now()
    process.kill(pid, 'SIGKILL')
    const res = await dl.done
    const failMs = Date.now() - killedAt
    // The transfer did not complete, and curl says so.
    expect(res.size).toBeLessThan(BIG_MB * 1024 * 1024)
    expect(res.exit).not.toBe(0)
    // Meanwhile nothing goes direct.
    const direct = await bash(name, `exec 3<>/dev/tcp/${H}/${up.port}`)
    expect(direct.stderr).toMatch(/Network is unreachable/)
    // The restart policy brings the gateway back by itself; the same pod gets egress again.
    const recoverMs = await waitForEgress(60_000) + (Date.now() - killedAt)
    expect(await podId(name)).toBe(pod)
    const restarts = (await podman(['inspect', '--format', '{{.RestartCount}}', gw])).stdout.trim()
    task.meta.observed = `download stopped at ${(res.size / 1048576).toFixed(0)} MiB (curl exit ${res.exit}) ${failMs} ms after the kill; egress back ${recoverMs} ms after the kill (restart count ${restarts})`
    recordFigures('faults', 'gateway_crash', { download_mib_at_kill: Math.round(res.size / 1048576), curl_exit: res.exit, transfer_failed_ms: failMs, egress_back_ms: recoverMs, same_pod: true })
  })

  it('#27 the gateway container is killed (podman kill -s KILL: no automatic restart) → requests through the bridge fail closed and are reported down; the next podshell command brings it back for the same sandbox', async ({ task }) => {
    const pod = await podId(name)
    const gw = await gatewayName()
    const dl = await startDownload()
    const killedAt = Date.now()
    expect((await podman(['kill', '-s', 'KILL', gw])).code).toBe(0)
    const res = await dl.done
    expect(res.size).toBeLessThan(BIG_MB * 1024 * 1024)
    expect(res.exit).not.toBe(0)
    // While it is down, seen by a process already running inside (podman exec: no podshell command
    // runs, so nothing restarts the gateway): the bridge accepts but nothing answers (fail
    // closed), and nothing goes direct.
    const before = up.seen('/t/while-down').length
    const through = await inAgent(['curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', up.url('/t/while-down')])
    expect(through.stdout).not.toBe('200')
    expect(through.code).not.toBe(0)
    const direct = await inAgent(['bash', '-c', `exec 3<>/dev/tcp/${H}/${up.port}`])
    expect(direct.stderr).toMatch(/Network is unreachable/)
    expect(up.seen('/t/while-down').length).toBe(before)
    const info = JSON.parse((await cli(['sandbox', 'get', name, '-o', 'json'])).stdout) as { egress: string }
    expect(info.egress).toMatch(/^down/)
    // The next podshell command.
    const t0 = Date.now()
    const next = await cli(['sandbox', 'exec', '-n', name, '--', 'curl', '-sS', '--max-time', '10', up.url('/t/next-command')])
    const nextMs = Date.now() - t0
    task.meta.observed = `in flight: stopped at ${(res.size / 1048576).toFixed(0)} MiB (curl exit ${res.exit}); while down: curl exit ${through.code} (${through.stderr.trim()}), direct unreachable, get says "${info.egress}"; next command: ${next.stdout.trim() || next.stderr.trim()} after ${nextMs} ms`
    expect(next.stdout).toBe('upstream-ok')
    expect(await podId(name)).toBe(pod)
    const after = JSON.parse((await cli(['sandbox', 'get', name, '-o', 'json'])).stdout) as { egress: string }
    expect(after.egress).toBe('up')
    recordFigures('faults', 'gateway_kill', { download_mib_at_kill: Math.round(res.size / 1048576), curl_exit: res.exit, down_curl_exit: through.code, reported: info.egress, next_command_ms: nextMs, total_outage_ms: Date.now() - killedAt, same_pod: true })
  })
})

describe('the bridge dies', () => {
  it('#27 podman kill of the sandbox\'s bridge → no egress at all (no fallback), `sandbox get` reports egress down; restart brings it back', async ({ task }) => {
    const pod = await podId(name)
    expect((await podman(['kill', '-s', 'KILL', `podshell.${name}.bridge`])).code).toBe(0)
    await sleep(300)
    const through = await curlProxy(name, up.url('/t/bridge-down'), { maxTime: 5 })
    expect(through.status).not.toBe(200)
    expect(through.stderr + through.body).toMatch(/Failed to connect|Couldn't connect|refused/i)
    const direct = await bash(name, `exec 3<>/dev/tcp/${H}/${up.port}`)
    expect(direct.stderr).toMatch(/Network is unreachable/)
    expect(up.seen('/t/bridge-down')).toHaveLength(0)
    const info = JSON.parse((await cli(['sandbox', 'get', name, '-o', 'json'])).stdout) as { egress: string; phase: string }
    expect(info.egress).toMatch(/^down: bridge/)
    const t0 = Date.now()
    const r = await cli(['sandbox', 'restart', name])
    expect(r.code, r.stderr).toBe(0)
    const ms = await waitForEgress(30_000) + (Date.now() - t0)
    expect(await podId(name)).toBe(pod)
    task.meta.observed = `with the bridge dead: curl ${through.exit === 7 ? 'cannot connect to 127.0.0.1:3128' : `exit ${through.exit}`}, direct unreachable, get says "${info.egress}"; sandbox restart → egress in ${ms} ms`
    recordFigures('faults', 'bridge_kill', { reported: info.egress, restart_to_egress_ms: ms, same_pod: true })
  })
})
