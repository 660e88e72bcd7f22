import { isAbsolute } from 'node:path'
import { connect } from 'node:net'
import { dataDir, gatewayControlSocket } from '../config/paths.js'
import { cachedRuntime } from '../podman/runtime-cache.js'
import { spawnInteractive } from '../podman/interactive.js'
import { execSession, PODMAN_EXEC_FAILURE_CODES } from '../sandbox/exec-session.js'
import { execThroughServer } from '../sandbox/exec-server.js'
import { readLastUsed, writeLastUsed } from '../sandbox/state.js'
import { SANDBOX_NAME_RE, ENV_KEY_RE } from '../util/patterns.js'
import { diskPaused, sentinelHeld, watcherMissing } from '../watch/paths.js'

/**
 * `podshell sandbox exec` without loading the CLI framework, zod or execa: DevAIFlow runs the
 * agent's commands through it, and each one should cost little more than `podman exec`.
 *
 * It handles only the plain form — `sandbox|sb exec [-n NAME] [--workdir DIR] [--timeout S]
 * [--tty|--no-tty] [--no-login-shell] [--env K=V]... -- CMD...` — with the same validation rules as the full command
 * (src/util/patterns.ts). Anything else (an unknown flag, an invalid value, help, no `--`, no cached
 * OCI-runtime probe) returns undefined and the full CLI handles it, with its one-line errors.
 * Failures that podman reports are explained by the full runtime, loaded only then.
 */
export async function fastExec(argv: readonly string[]): Promise<number | undefined> {
  const a = argv.slice(2)
  if (!(a[0] === 'sandbox' || a[0] === 'sb') || a[1] !== 'exec') return undefined
  let name: string | undefined
  let workdir: string | undefined
  let timeout = 0
  let tty: boolean | undefined
  const env: [string, string][] = []
  let i = 2
  for (; i < a.length; i++) {
    const f = a[i]!
    if (f === '--') break
    const v = a[i + 1]
    if ((f === '-n' || f === '--name') && v !== undefined) {
      name = v
      i++
    } else if (f === '--workdir' && v !== undefined) {
      workdir = v
      i++
    } else if (f === '--timeout' && v !== undefined && /^\d{1,9}$/.test(v)) {
      timeout = Number(v)
      i++
    } else if (f === '--env' && v !== undefined) {
      const eq = v.indexOf('=')
      if (eq <= 0) return undefined
      env.push([v.slice(0, eq), v.slice(eq + 1)])
      i++
    } else if (f === '--no-login-shell') {
      // podshell's exec never goes through a login shell; the flag (OpenShell ≥ v0.0.111) changes nothing
    } else if (f === '--tty') tty = true
    else if (f === '--no-tty') tty = false
    else return undefined
  }
  const command = a.slice(i + 1)
  if (a[i] !== '--' || command.length === 0) return undefined
  if (name !== undefined && !SANDBOX_NAME_RE.test(name)) return undefined
  if (workdir !== undefined && (!isAbsolute(workdir) || /[\0\n\r:,]/.test(workdir) || workdir.split('/').includes('..') || workdir.length > 4096)) return undefined
  for (const [k, v] of env) if (!ENV_KEY_RE.test(k) || v.includes('\0') || Buffer.byteLength(v) > 128 * 1024) return undefined
  if (command.some(c => c.includes('\0'))) return undefined
  const rt = cachedRuntime(process.env)
  if (!rt) return undefined

  const data = dataDir(process.env)
  // A stopped or killed gateway is brought back by the next command (the full path does that);
  // here only a connect to its control socket (~1 ms) tells whether it is there.
  const gw = await gatewayPing(gatewayControlSocket(data))
  if (!gw) return undefined
  if (name === undefined) {
    name = readLastUsed(data)
    if (!name) return undefined
    process.stderr.write(`→ Using sandbox '${name}' (last used)\n`)
  }
  // The gateway lost this sandbox's credential values (it restarted): the full path reads them back.
  if (gw.credentialsMissing?.includes(name)) return undefined
  // No host-executed-file watcher running: the full path rescans and restarts it first.
  if (watcherMissing(data, name)) return undefined
  // Paused by the disk guard: the full path says so in one line.
  if (diskPaused(data, name)) return undefined
  // Held stopped by the mount sentinel: likewise.
  if (sentinelHeld(data, name)) return undefined
  const useTty = tty ?? Boolean(process.stdin.isTTY && process.stdout.isTTY)
  writeLastUsed(data, name)
  // The sandbox's exec server when it answers (src/sandbox/exec-server.ts); podman exec otherwise.
  const served = await execThroughServer(data, name, rt.bin, ['--runtime', rt.runtime], { command, tty: useTty, workdir, env: Object.fromEntries(env), timeoutSeconds: timeout }, process)
  if (served !== undefined) return served
  const session = execSession({ name, command, tty: useTty, workdir, env: Object.fromEntries(env), timeoutSeconds: timeout })
  const code = await spawnInteractive(rt.bin, ['--runtime', rt.runtime, ...session.args], { ...session.options, signals: process })
  if (PODMAN_EXEC_FAILURE_CODES.has(code)) {
    // Podman's own failure (sandbox gone or stopped)? The full runtime says which, in one line.
    const { explainExecFailure } = await import('./program.js')
    return explainExecFailure(name, code)
  }
  return code
}

/** One ping on the control socket (~1 ms): undefined when the gateway does not answer. */
function gatewayPing(socket: string): Promise<{ credentialsMissing?: string[] } | undefined> {
  return new Promise(resolve => {
    const c = connect(socket)
    let buf = ''
    const done = (v: { credentialsMissing?: string[] } | undefined) => {
      c.destroy()
      resolve(v)
    }
    c.setEncoding('utf8')
    c.once('connect', () => c.write('{"id":1,"op":"ping"}\n'))
    c.on('data', (d: string) => {
      buf += d
      const nl = buf.indexOf('\n')
      if (nl === -1) return buf.length > 65536 ? done(undefined) : undefined
      try {
        const r = JSON.parse(buf.slice(0, nl)) as { ok?: boolean; credentialsMissing?: unknown }
        done(r.ok === true ? { credentialsMissing: Array.isArray(r.credentialsMissing) ? (r.credentialsMissing as unknown[]).filter((x): x is string => typeof x === 'string') : [] } : undefined)
      } catch {
        done(undefined)
      }
    })
    c.once('error', () => done(undefined))
    c.setTimeout(500, () => done(undefined))
  })
}
