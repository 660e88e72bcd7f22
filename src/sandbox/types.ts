/**
 * The resolved description of a sandbox to create. Every front end (CLI flags, the `--spec` JSON from
 * DevAIFlow, the library API) produces one of these; `createSandbox()` consumes it. All strings in
 * it have been validated (src/util/validate.ts) before podman sees them.
 */
export type MountMode = 'ro' | 'rw'

export interface MountSpec {
  /** Absolute host path. */
  source: string
  /** Absolute path inside; podshell's default is the same path as on the host. */
  target: string
  mode: MountMode
}

export type SessionType = 'investigation' | 'ticket_creation' | 'development'
export const SESSION_TYPES: readonly SessionType[] = ['investigation', 'ticket_creation', 'development']

export interface CreateOptions {
  /** DNS-1123 label ≤ 63 chars; generated when absent. */
  name?: string
  /** Image reference (`--from`); default: the podshell sandbox image. */
  image?: string
  /** Host directory mounted at the same path and used as the working directory. */
  workdir?: string
  /** Mode of the workdir mount (session types decide: investigation/ticket_creation → ro). */
  workdirMode?: MountMode
  mounts: MountSpec[]
  /** Explicit environment (`--env K=V`): configuration, stored with the sandbox's description. */
  env: Record<string, string>
  /**
   * Variables copied from the caller's environment (a spec's `env_pass`: tokens, API keys). Their
   * values reach podman through its own environment at create and are NEVER stored (not in
   * agent.json, labels or argv); `sandbox restart` reads them again from its own environment.
   */
  passEnv?: Record<string, string>
  /** User labels (`--label K=V`), stored as io.podshell.label.<k>. */
  labels: Record<string, string>
  detach: boolean
  /** Keep the sandbox after the foreground command exits (default true; `--no-keep` → false). */
  keep: boolean
  /** Allocate a TTY; undefined = when stdin is a TTY. */
  tty?: boolean
  /** CPU limit, OpenShell style ("500m", "2"). */
  cpu?: string
  /** Memory limit, OpenShell style ("4Gi", "512Mi"). */
  memory?: string
  /** pids cgroup limit (default: config resources.pids, else 4096 where enforced); cgroup v2 only. */
  pids?: number
  /** Foreground command; empty = interactive login shell. */
  command: string[]
  /** Policy source: a file path, already loaded by the front end into `policyText`. */
  policyFile?: string
  /** Policy YAML text (validated again by createSandbox). Absent = restrictive default (deny all egress). */
  policyText?: string
  /** Provider names to attach. */
  providers: string[]
  /**
   * How provider credentials reach the agent (issue 12): `placeholder` (default; the gateway swaps
   * the real value in on the provider's endpoints) or `env` (the real values as env vars).
   */
  credentialMode?: 'placeholder' | 'env'
  sessionType?: SessionType
  /** Permit mounting sensitive host paths (~/.ssh …) — only when enterprise config allows it. */
  allowSensitive?: boolean
  /** Seccomp profile path (default: seccomp/default.json of this package). */
  seccompProfile?: string
  /**
   * Paths to hide: the runtime mounts an empty, read-only tmpfs on each, AFTER the bind mounts that
   * contain it (so it lands on top). Used for `.ai-read-deny` trees (directories that exist: a
   * mount point the runtime has to create inside a bind mount ends up owned by a subordinate uid on
   * the host). Produced by src/sandbox/spec.ts; absent = none.
   */
  masks?: string[]
  /**
   * Empty writable tmpfs directories owned by the agent's uid, mounted BEFORE the bind mounts nested
   * in them: a parent the agent must be able to write in that is not under its home (e.g. a
   * CLAUDE_CONFIG_DIR outside $HOME, whose projects/ and settings.json are bind-mounted inside).
   */
  tmpfsDirs?: string[]
  /** Host unix sockets the sandbox may reach (`--allow-socket`); every other socket found in a mount is masked (sockets.ts). */
  allowSockets?: string[]
  /**
   * Called once the sandbox is up, before the foreground command runs: the agent container is
   * running (detached and kept sandboxes; with `keep: false` the command is the agent's main
   * process and starts right after). A throw fails the create, which removes what it made. The CLI
   * prints OpenShell's `Created sandbox:` header here and runs `--upload` and `--forward`.
   */
  onReady?: (name: string) => Promise<void>
  /**
   * A kept foreground command runs as an exec session in an idle sandbox instead of as its main
   * process (the CLI asks for it with `--upload`: the files must land in a running sandbox before
   * the command starts). Default: the command IS the main process (OpenShell ≥ v0.0.111).
   */
  commandAsExec?: boolean
}
