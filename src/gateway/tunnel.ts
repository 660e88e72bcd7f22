/**
 * Byte tunnels of the sandbox proxy (CONNECT, and ws:// after the upstream's 101): connecting to a
 * checked address list, and wiring the two sockets together with idle timeouts and an optional
 * gate on the client's first bytes (the ClientHello check of CONNECT tunnels).
 */
import { connect as netConnect, type Socket } from 'node:net'
import type { Transform } from 'node:stream'
import type { IpAddress } from './address.js'
import { relayInto, type ReadRelay } from './proxy-io.js'

export type Dialed = { socket: Socket; ip: string; arm: () => void }

/** What decides on a tunnel's first client bytes: wait for more, let them through, or close. */
export type TunnelGate = (first: Buffer) => 'wait' | 'pass' | 'refuse'

/**
 * Connects to the first reachable address of a checked list (at most four tried). Never resolves again.
 *
 * With `sink` (tunnels), the upstream socket relays what it reads straight into `sink` through
 * two reusable buffers (`onread`): libuv reads up to RELAY_BUFFER bytes per syscall into a buffer
 * that is handed to `sink.write()` without a copy; reading pauses while both buffers are in
 * flight (that is the backpressure). Measured against `upstream.pipe(client)` this cuts the
 * gateway's CPU per downloaded byte by about half (bench/gateway.mjs). Nothing is written to
 * the sink before `arm()` (the "200 Connection Established" must come first). A ReadRelay instead
 * of a socket reads into the relay's own buffers (a forwarded response: http/head-feed.ts).
 */
export async function dial(addrs: IpAddress[], port: number, connectTimeoutMs: number, sink?: Socket | ReadRelay): Promise<Dialed> {
  let lastErr: Error | undefined
  for (const a of addrs.slice(0, 4)) {
    try {
      return await new Promise((resolve, reject) => {
        const relay = sink === undefined ? undefined : 'onread' in sink ? sink : relayInto(sink)
        const s = netConnect({ host: a.text, port, family: a.family, noDelay: true, ...(relay ? { onread: relay.onread } : {}) })
        relay?.bind(s)
        const t = setTimeout(() => {
          s.destroy()
          reject(new Error(`connect to ${a.text}:${port} timed out`))
        }, connectTimeoutMs)
        s.once('connect', () => {
          clearTimeout(t)
          s.removeAllListeners('error')
          resolve({ socket: s, ip: a.text, arm: relay ? () => relay.arm() : () => undefined })
        })
        s.once('error', e => {
          clearTimeout(t)
          reject(e)
        })
      })
    } catch (e) {
      lastErr = e as Error
    }
  }
  throw lastErr ?? new Error('no address to connect to')
}

/**
 * Wires a tunnel's two sockets; `arm` (from a relaying dial) starts upstream→client, otherwise
 * pipe() does. `done` runs once either side errs or idles, the client closes, or the upstream
 * has closed and everything it sent has been written to the client (it must destroy both sockets).
 */
export function pipeTunnel(
  sockets: { client: Socket; upstream: Socket },
  opts: { idleTimeoutMs: number; done: () => void },
  head: Buffer,
  greeting: string | Buffer | undefined,
  arm?: () => void,
  gate?: TunnelGate,
  clientFilter?: Transform,
): void {
  const { client, upstream } = sockets
  const done = opts.done
  upstream.on('error', done)
  client.on('error', done)
  // An upstream that closed cleanly (its FIN came) must not cut what is still queued for the
  // client: up to two relay buffers (or pipe()'s buffer) can be in flight when its 'close' comes
  // right behind its 'end'. The client is ended and torn down once its last byte has been handed
  // to the kernel ('finish'); destroying it at once cancelled those writes (a truncated download).
  upstream.on('close', () => {
    if (upstream.errored !== null || client.destroyed) return done()
    client.end()
    if (client.writableFinished) done()
    else client.once('finish', done)
  })
  client.on('close', done)
  if (opts.idleTimeoutMs > 0) {
    upstream.setTimeout(opts.idleTimeoutMs, done)
    client.setTimeout(opts.idleTimeoutMs, done)
  }
  client.setNoDelay(true)
  if (greeting !== undefined) client.write(greeting)
  if (clientFilter !== undefined) {
    // websocket_credential_rewrite (src/gateway/http/websocket-rewrite.ts): client bytes pass the filter.
    clientFilter.pipe(upstream)
    if (head.length > 0) clientFilter.write(head)
    client.pipe(clientFilter)
  } else if (gate === undefined) {
    if (head.length > 0) upstream.write(head)
    client.pipe(upstream)
  } else {
    // The client's first bytes are held (at most MAX_HELLO_BYTES) until the gate decides; the
    // upstream's side flows meanwhile (server-first protocols are not stalled).
    let held = head
    const decide = (): boolean => {
      if (held.length === 0) return false
      const v = gate(held)
      if (v === 'wait') return false
      client.off('data', onData)
      if (v === 'refuse') {
        done()
        return true
      }
      upstream.write(held)
      client.pipe(upstream)
      return true
    }
    const onData = (d: Buffer) => {
      held = held.length === 0 ? d : Buffer.concat([held, d])
      decide()
    }
    if (!decide()) {
      client.on('data', onData)
      client.resume()
    }
  }
  if (arm) {
    upstream.on('end', () => client.end())
    arm()
  } else {
    upstream.pipe(client)
  }
}
