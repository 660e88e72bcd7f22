/**
 * The TLS terminator's upstream agents (src/gateway/tls-terminate.ts): every pooled upstream
 * connection is read through a HeadFeed (http/head-feed.ts), so a large Content-Length response
 * body is relayed raw from fixed buffers instead of through Node's parser.
 */
import { Agent as HttpsAgent } from 'node:https'
import { Agent as HttpAgent } from 'node:http'
import type { Socket } from 'node:net'
import { HeadFeed } from './http/head-feed.js'

/**
 * Response bodies with a Content-Length of at least this many bytes are relayed raw (and their
 * upstream connection is not reused: one handshake per such download); shorter ones go through
 * Node's parser and keep the pooled connection.
 */
export const RAW_MIN = 1024 * 1024
/** Reads into 32 reused 16 KiB buffers (a TLS socket's `onread` delivers one record per callback). */
const FEED = { rawMin: RAW_MIN, readBuffers: 32, readBufferBytes: 16 * 1024 }
/** The feed of each pooled upstream connection, by the stream the Agent holds. */
export const FEEDS = new WeakMap<object, HeadFeed>()
type Connect = (this: HttpAgent, o: object) => Socket

/** A connection made by `create` (an Agent's own createConnection) whose reads go through a new HeadFeed. */
function feedConnection(create: Connect, agent: HttpAgent, o: object): Socket {
  const feed = new HeadFeed(FEED)
  const s = feed.bindStream(create.call(agent, { ...o, onread: feed.onread }), 'onread')
  FEEDS.set(s, feed)
  return s as Socket
}

/** Agents whose connections are the upstream socket read through a HeadFeed. */
export class FeedingHttpsAgent extends HttpsAgent {
  override createConnection(o: object): Socket {
    return feedConnection((HttpsAgent.prototype as unknown as { createConnection: Connect }).createConnection, this, o)
  }
}
export class FeedingHttpAgent extends HttpAgent {
  override createConnection(o: object): Socket {
    return feedConnection((HttpAgent.prototype as unknown as { createConnection: Connect }).createConnection, this, o)
  }
}
