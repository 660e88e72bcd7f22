import type { Podman } from '../podman/podman.js'
import type { SignalSource } from '../podman/interactive.js'
import type { LoadOptions } from '../config/enterprise.js'
import type { Env } from '../config/paths.js'

// The runtime's contracts with its caller and with the other components (src/sandbox/runtime.ts).

/** What the agent container gets for TLS inspection (one call site; see src/tls/trust.ts). */
export interface SandboxTrustArgs {
  readonly mounts: readonly { readonly source: string; readonly target: string }[]
  readonly env: Readonly<Record<string, string>>
}

/**
 * What the lifecycle needs from the other components. Wired in default-deps.ts; a value, so two
 * runtimes in one process (tests, a library user) never share hidden state.
 */
export interface SandboxDeps {
  /** Builds the default images when missing (saying so on stderr). */
  ensureImages(podman: Podman, which: ('sandbox' | 'gateway')[], say: (msg: string) => void): Promise<{ gatewayReplaced: boolean }>
  /** Starts the per-user gateway if it is not answering. */
  ensureGateway(podman: Podman, say: (msg: string) => void): Promise<void>
  /** Asks the gateway to (re)load a sandbox: creates its socket and loads its newest policy. */
  registerWithGateway(name: string): Promise<{ status: string; error?: string }>
  /** Closes a sandbox's socket in the gateway. */
  unregisterFromGateway(name: string): Promise<void>
  /** Whether the gateway answers on its control socket. */
  gatewayAlive(): Promise<boolean>
  /** Validates the policy text (or the restrictive default) and stores it as revision 1. */
  storeInitialPolicy(name: string, policyText: string | undefined, source: string): { warnings: string[] }
  /** Podman secret args for the attached providers; writes providers.json (no values). */
  prepareCredentials(podman: Podman, name: string, providers: string[], mode?: 'placeholder' | 'env'): Promise<{ secretArgs: string[]; variables: { provider: string; name: string }[] }>
  removeCredentials(podman: Podman, name: string): Promise<void>
  gcCredentials(podman: Podman, live: Set<string>): Promise<void>
  /** Whether an interrupted provider change left something for gcCredentials (no podman call). */
  credentialsNeedGc(): boolean
  /** Appends a lifecycle event to the sandbox's audit log. */
  audit(name: string, event: string, detail?: Record<string, unknown>): void
  /** Path of the default seccomp profile. */
  seccompProfile: string
  /** TLS trust for the agent (src/tls/): writes the sandbox's CA bundle; read-only mounts + variables. */
  prepareTrust(name: string): Promise<SandboxTrustArgs>
}

export interface RuntimeOptions {
  podman: Podman
  dataDir: string
  env: Env
  deps: SandboxDeps
  /** Progress/notes (stderr). */
  say: (msg: string) => void
  /**
   * Where interrupts come from: the CLI passes its `process`; a library caller passes its own
   * emitter or nothing (then no signal is handled: the runtime installs no process handlers).
   * SIGINT/SIGTERM during create's provisioning remove the half-made sandbox; during a foreground
   * command they are passed on to it.
   */
  signals?: SignalSource
  /** Where the user/enterprise configuration is read from (tests); default: the usual files. */
  configLoad?: LoadOptions
}
