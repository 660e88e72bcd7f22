/**
 * Worker-thread entry: serves ONE sandbox moved off the gateway's main loop (src/gateway/fairness.ts).
 * Lowers this thread's priority first, then builds a follower Gateway for the sandbox from the
 * data dir (the same loaders the main thread uses) and takes over its socket by rename.
 */
import { parentPort, workerData, isMainThread } from 'node:worker_threads'
import { setPriority } from 'node:os'
import { Gateway } from './server.js'
import { ForwardedAudit, type FromWorker, type SandboxWorkerData, type ToWorker } from './fairness.js'

if (!isMainThread && parentPort && (workerData as SandboxWorkerData | undefined)?.kind === 'podshell-sandbox-worker') {
  const port = parentPort
  const data = workerData as SandboxWorkerData
  const post = (m: FromWorker) => port.postMessage(m)
  const log = (line: string) => post({ type: 'log', line })
  const audit = new ForwardedAudit(post)
  // setpriority(PRIO_PROCESS, 0) changes the calling thread only on Linux (a ratchet: an
  // unprivileged thread cannot raise it back; this thread ends when the sandbox moves back).
  // Lowered once the code is loaded and the policy compiled, right before the thread takes the
  // socket: started at nice 19 on a busy machine, the thread took seconds to load (measured,
  // bench/fairness.mjs), all of them with the sandbox still flooding the main loop.
  const lower = () => {
    try {
      setPriority(0, data.nice)
    } catch (e) {
      log(`cannot lower the worker's priority for ${data.name}: ${(e as Error).message}`)
    }
  }
  const gw = new Gateway({
    dataDir: data.dataDir,
    limits: data.limits,
    audit: data.audit,
    tls: data.tls,
    rescanIntervalMs: 0,
    testHooks: data.testHooks,
    follower: { auditSink: () => audit, values: data.values },
    log: l => log(l.replace(/^\S+ /, '')),
  })
  let timer: NodeJS.Timeout | undefined
  const report = () => {
    const s = gw.followerStats(data.name)
    if (s) post({ type: 'stats', ...s })
  }
  port.on('message', (m: ToWorker) => {
    if (m.type === 'control') {
      void gw.handleControl(m.line).then(reply => post({ type: 'reply', id: m.id, reply }))
    } else if (m.type === 'drain') {
      void gw.drainFollower(data.name).then(async () => {
        await gw.stop()
        audit.flush()
        post({ type: 'drained' })
        process.exit(0)
      })
    } else if (m.type === 'stop') {
      void gw.stop().finally(() => {
        audit.flush()
        process.exit(0)
      })
    }
  })
  gw.startFollower(data.name, lower).then(
    () => {
      post({ type: 'ready' })
      timer = setInterval(report, 250)
      timer.unref()
    },
    (e: Error) => {
      audit.flush()
      post({ type: 'failed', error: e.message })
      process.exit(1)
    },
  )
}
