/**
 * Per-sandbox admission: at most `maxInFlight` requests/upgrades of one sandbox are being served
 * (resolved, dialled, forwarded) at a time; up to `maxQueued` more wait in FIFO order; beyond that
 * a request is refused at once (503, logged by the caller). Each sandbox has its own SandboxProxy
 * and so its own Admission: one sandbox's flood fills its own queue, never another's.
 */
export class Admission {
  private active = 0
  private readonly waiting: (() => void)[] = []
  /**
   * `contention` (one per gateway, shared by every sandbox's Admission): while ANOTHER sandbox has
   * sent a request within its window, this sandbox serves at most `contendedInFlight` at a time
   * (its queue absorbs the rest); alone, it gets `maxInFlight`. One event loop serves every
   * sandbox, so a sandbox's share of the loop follows the number of its requests in progress.
   */
  constructor(
    readonly maxInFlight: number,
    readonly maxQueued: number,
    private readonly contention?: Contention,
    readonly contendedInFlight = maxInFlight,
  ) {}

  /** Slots this sandbox may use now. */
  get cap(): number {
    return this.contention?.othersActive(this) ? Math.min(this.maxInFlight, this.contendedInFlight) : this.maxInFlight
  }

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
        const cap = this.cap
        // The slot passes straight to the next waiter (active stays the same) unless the cap fell.
        const next = this.active <= cap ? this.waiting.shift() : undefined
        if (next) next()
        else this.active--
        // The cap rose (the other sandboxes went quiet): admit waiters up to it.
        while (this.waiting.length && this.active < cap) {
          this.active++
          this.waiting.shift()!()
        }
      }
    }
    this.contention?.touch(this)
    if (this.active < this.cap) {
      this.active++
      return Promise.resolve(release())
    }
    if (this.waiting.length >= this.maxQueued) return Promise.resolve(undefined)
    return new Promise(resolve => this.waiting.push(() => resolve(release())))
  }
}

/**
 * Which sandboxes sent a request recently (one per gateway). Entries older than `windowMs` are
 * dropped as they are seen; the map holds at most one entry per sandbox.
 */
export class Contention {
  private readonly last = new Map<Admission, number>()
  constructor(
    readonly windowMs = 1000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  touch(a: Admission): void {
    this.last.set(a, this.now())
  }

  /** True when a sandbox other than `a` sent a request within the window. */
  othersActive(a: Admission): boolean {
    const t = this.now()
    for (const [o, at] of this.last) {
      if (t - at > this.windowMs) this.last.delete(o)
      else if (o !== a) return true
    }
    return false
  }

  /** Forgets a sandbox (its proxy closed). */
  forget(a: Admission): void {
    this.last.delete(a)
  }
}
