/**
 * CLI side of the gateway's control socket (`<data>/gateway/control.sock`).
 *
 * Protocol: JSON lines. The client writes one request object `{"id":1,"op":"reload","sandbox":"x"}`
 * and reads one reply line `{"id":1,"ok":true,...}` (or `{"id":1,"ok":false,"error":"..."}`).
 * Ops: ping, reload(sandbox), remove(sandbox), stats.
 *
 * Every call has a short deadline: a dead or wedged gateway is reported as a PodshellError
 * (GATEWAY_DOWN / GATEWAY_TIMEOUT), never waited on. The socket lives in the data dir, which only
 * the user and the gateway container can reach, so the channel needs no further authentication.
 */
import { connect } from 'node:net'
import { gatewayControlSocket } from '../config/paths.js'
import { PodshellError } from '../errors.js'

export type ReloadStatus = 'LOADED' | 'FAILED' | 'NO_POLICY'

export interface ReloadResult {
  /** LOADED: the newest revision is in force; FAILED: it did not load (the previous one stays); NO_POLICY: none stored (deny all). */
  status: ReloadStatus
  /** Version now in force (LOADED) or the one that failed (FAILED). */
  version?: number
  error?: string
  /** Time the gateway took to load and swap the policy, ms. */
  loadMs?: number
}

export interface PingResult {
  version: string
  /** The data-dir layout this gateway serves (src/gateway/layout.ts); absent from older gateways. */
  layout?: number
  pid: number
  uptimeMs: number
  sandboxes: number
  /** Served sandboxes with a placeholder whose real value the gateway does not hold (issue 12). */
  credentialsMissing?: string[]
}

export interface SandboxStats {
  name: string
  socket: string
  /** Open client connections (keep-alive HTTP and CONNECT tunnels). */
  connections: number
  /** Requests decided since the gateway started. */
  allowed: number
  denied: number
  /** Version of the policy in force, or null (deny all). */
  policyVersion: number | null
  /** Audit lines that could not be written. */
  auditDropped: number
}

export interface StatsResult {
  pid: number
  uptimeMs: number
  memory: { rss: number; heapUsed: number; external: number }
  connections: number
  sandboxes: SandboxStats[]
}

export interface GatewayClientOptions {
  /** Socket path (default: <data>/gateway/control.sock). */
  socket?: string
  /** Per-call deadline, ms (default 3000; reload loads a policy, still milliseconds). */
  timeoutMs?: number
}

export class GatewayClient {
  readonly socket: string
  private readonly timeoutMs: number
  private seq = 0

  constructor(dataDir: string, opts: GatewayClientOptions = {}) {
    this.socket = opts.socket ?? gatewayControlSocket(dataDir)
    this.timeoutMs = opts.timeoutMs ?? 3000
  }

  async ping(timeoutMs?: number): Promise<PingResult> {
    return (await this.call({ op: 'ping' }, timeoutMs)) as unknown as PingResult
  }

  /** Asks the gateway to serve `name` (creating its socket if needed) and load its newest policy revision. */
  async reload(name: string, timeoutMs?: number): Promise<ReloadResult> {
    return (await this.call({ op: 'reload', sandbox: name }, timeoutMs)) as unknown as ReloadResult
  }

  /** Closes `name`'s socket and its open connections. */
  async remove(name: string, timeoutMs?: number): Promise<{ removed: boolean }> {
    return (await this.call({ op: 'remove', sandbox: name }, timeoutMs)) as unknown as { removed: boolean }
  }

  async stats(timeoutMs?: number): Promise<StatsResult> {
    return (await this.call({ op: 'stats' }, timeoutMs)) as unknown as StatsResult
  }

  /** One request, one reply line. */
  call(req: Record<string, unknown>, timeoutMs = this.timeoutMs): Promise<Record<string, unknown>> {
    const id = ++this.seq
    return new Promise((resolve, reject) => {
      let buf = ''
      let done = false
      const sock = connect(this.socket)
      const finish = (err: Error | undefined, value?: Record<string, unknown>) => {
        if (done) return
        done = true
        clearTimeout(timer)
        sock.destroy()
        if (err) reject(err)
        else resolve(value!)
      }
      const timer = setTimeout(() => {
        finish(new PodshellError(`the gateway did not answer ${String(req.op)} within ${timeoutMs} ms`, {
          hint: '`podshell gateway status` shows its state; `podshell gateway stop && podshell gateway start` restarts it',
          code: 'GATEWAY_TIMEOUT',
        }))
      }, timeoutMs)
      sock.setEncoding('utf8')
      sock.on('connect', () => sock.write(JSON.stringify({ id, ...req }) + '\n'))
      sock.on('data', (chunk: string) => {
        buf += chunk
        const nl = buf.indexOf('\n')
        if (nl === -1) {
          if (buf.length > 1024 * 1024) finish(new PodshellError('the gateway sent an oversized reply', { code: 'GATEWAY_PROTOCOL' }))
          return
        }
        let msg: Record<string, unknown>
        try {
          msg = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>
        } catch {
          return finish(new PodshellError('the gateway sent an invalid reply', { code: 'GATEWAY_PROTOCOL' }))
        }
        if (msg.ok === false) {
          return finish(new PodshellError(`gateway ${String(req.op)} failed: ${typeof msg.error === 'string' ? msg.error : msg.error == null ? 'unknown error' : JSON.stringify(msg.error)}`, { code: 'GATEWAY_ERROR' }))
        }
        const { id: _id, ok: _ok, ...rest } = msg
        void _id
        void _ok
        finish(undefined, rest)
      })
      sock.on('error', (e: NodeJS.ErrnoException) => {
        const down = e.code === 'ENOENT' || e.code === 'ECONNREFUSED' || e.code === 'ENOTSOCK'
        finish(new PodshellError(down ? 'the podshell gateway is not running' : `cannot reach the podshell gateway (${e.code ?? e.message})`, {
          hint: 'run `podshell gateway start` (any podshell sandbox command also starts it)',
          code: 'GATEWAY_DOWN',
          cause: e,
        }))
      })
      sock.on('close', () => finish(new PodshellError('the gateway closed the control connection without answering', { code: 'GATEWAY_DOWN' })))
    })
  }
}
