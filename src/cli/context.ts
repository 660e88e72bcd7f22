import { Podman } from '../podman/podman.js'
import { dataDir, type Env } from '../config/paths.js'
import { processOut, type Out } from './output.js'

/**
 * What every CLI command gets: the environment, where to print, and a lazily detected Podman.
 * Commands are thin: they parse flags, call library code with values from here, and print.
 */
export class CliContext {
  readonly env: Env
  readonly out: Out
  private podmanPromise: Promise<Podman> | undefined

  constructor(env: Env = process.env, out: Out = processOut) {
    this.env = env
    this.out = out
  }

  get dataDir(): string {
    return dataDir(this.env)
  }

  /** Detects podman on first use (a `policy validate` never needs it). */
  podman(): Promise<Podman> {
    this.podmanPromise ??= Podman.detect({ env: this.env })
    return this.podmanPromise
  }
}

/** Commander collects repeatable options with this. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value]
}
