/**
 * Per-sandbox admission: at most `maxInFlight` requests/upgrades of one sandbox are being served
 * (resolved, dialled, forwarded) at a time; up to `maxQueued` more wait in FIFO order; beyond that
 * a request is refused at once (503, logged by the caller). Each sandbox has its own SandboxProxy
 * and so its own Admission: one sandbox's flood fills its own queue, never another's.
 */
export class Admission {
  private active = 0
  private readonly waiting: (() => void)[] = []
  constructor(
    readonly maxInFlight: number,
    readonly maxQueued: number,
  ) {}

  get inFlight(): number {
    return this.active
  }

  get queued(): number {
    return this.waiting.length
  }

  /** The audit reason (and 503 detail) of a request refused because the queue is full. */
  get refusal(): string {
    return `too many concurrent requests from this sandbox (${this.maxInFlight} in flight, ${this.maxQueued} queued); retry later`
  }

  /**
   * Resolves to a release function once a slot is free, or to undefined at once when the queue is
   * full. The release function is idempotent. A waiter whose client went away gets its slot and
   * releases it at once (the caller checks), so a dead waiter never holds a slot.
   */
  acquire(): Promise<(() => void) | undefined> {
    const release = () => {
      let done = false
      return () => {
        if (done) return
        done = true
        const next = this.waiting.shift()
        if (next) next()
        else this.active--
      }
    }
    if (this.active < this.maxInFlight) {
      this.active++
      return Promise.resolve(release())
    }
    if (this.waiting.length >= this.maxQueued) return Promise.resolve(undefined)
    // The slot passes straight from the releasing request to this one (active stays the same).
    return new Promise(resolve => this.waiting.push(() => resolve(release())))
  }
}
