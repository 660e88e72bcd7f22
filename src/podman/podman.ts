import { execa, type Options as ExecaOptions } from 'execa'
import { findOnPath, binaryKey, readCache, runtimeCacheFile, type RuntimeChoice, type RuntimeCache } from './runtime-cache.js'
import { spawnInteractive, signalNumber, type InteractiveOptions } from './interactive.js'
import { mkdirSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { PodshellError } from '../errors.js'
import { cacheDir, type Env } from '../config/paths.js'
import { writeFileAtomic } from '../util/fs.js'
import { trace, tracing } from '../util/trace.js'

/**
 * The only code in podshell that spawns podman.
 *
 * Every call is an argument array handed to execa (never a shell string), so nothing a user types
 * (names, paths, labels, env values) can be parsed by a shell. Callers still validate their input
 * before calling, because podman itself parses `--flag`-looking arguments.
 *
 * A `Podman` is a value: binary path, version and the OCI runtime chosen for this host. The runtime
 * is passed as `--runtime` on every call, because on hybrid-cgroup hosts the default (crun 1.8)
 * fails every container while runc works.
 */
export { signalNumber, findOnPath, type RuntimeChoice }

export interface PodmanResult {
  stdout: string
  stderr: string
  exitCode: number
}

export interface RunOptions {
  /** Text fed to stdin (e.g. a secret value: never put one in argv). */
  input?: string
  /** Inherit the terminal (interactive sandboxes). */
  inherit?: boolean
  /** Do not throw on a non-zero exit. */
  reject?: boolean
  timeoutMs?: number
  /** Extra environment for podman itself (not for containers). */
  env?: Record<string, string>
  signal?: AbortSignal
}



const CANDIDATE_RUNTIMES = ['crun', 'runc']
export const MIN_PODMAN = [4, 3] as const

export class Podman {
  readonly bin: string
  readonly version: string
  readonly runtime: RuntimeChoice

  private constructor(bin: string, version: string, runtime: RuntimeChoice) {
    this.bin = bin
    this.version = version
    this.runtime = runtime
  }

  /**
   * Finds podman, checks its version and picks a working OCI runtime. The runtime probe runs once
   * per podman binary: the result is cached under podshell's cache dir keyed by the podman version
   * (and the binary's identity, so an upgrade re-probes without spawning podman on every call).
   */
  static async detect(opts: { env?: Env; bin?: string; noCache?: boolean } = {}): Promise<Podman> {
    const env = opts.env ?? process.env
    const bin = opts.bin ?? env.PODSHELL_PODMAN ?? findOnPath('podman', env)
    if (!bin) {
      throw new PodshellError('podman not found', {
        hint: 'install podman >= 4.3 (dnf install podman / apt-get install podman)',
        code: 'PODMAN_NOT_FOUND',
      })
    }
    const cacheFile = runtimeCacheFile(env)
    const key = binaryKey(bin)
    if (!opts.noCache && env.PODSHELL_RUNTIME === undefined) {
      const cached = readCache(cacheFile)
      if (cached && cached.key === key) return new Podman(bin, cached.version, cached)
    }
    const version = await podmanVersion(bin)
    checkVersion(version)
    let choice: RuntimeChoice
    if (env.PODSHELL_RUNTIME) {
      choice = { runtime: env.PODSHELL_RUNTIME, reason: 'set by PODSHELL_RUNTIME', failed: [] }
    } else {
      choice = await probeRuntimes(bin, env)
      try {
        writeFileAtomic(cacheFile, JSON.stringify({ ...choice, key, version } satisfies RuntimeCache))
      } catch {
        // A cache we cannot write only costs a probe next time.
      }
    }
    return new Podman(bin, version, choice)
  }

  /**
   * Whether resource limits (--pids-limit, --memory, --cpus) take effect for rootless containers:
   * only on the unified cgroup v2 hierarchy. On v1/hybrid hosts podman ignores them with a warning
   * printed into the user's terminal, so podshell does not pass them there (doctor reports it).
   */
  get rootlessLimits(): boolean {
    return existsSync('/sys/fs/cgroup/cgroup.controllers')
  }

  /** Global arguments that precede every subcommand. */
  globalArgs(): string[] {
    return ['--runtime', this.runtime.runtime]
  }

  /** Runs `podman <args>`; throws a PodshellError naming the subcommand unless `reject: false`. */
  async run(args: readonly string[], opts: RunOptions = {}): Promise<PodmanResult> {
    const full = [...this.globalArgs(), ...args]
    const stdio: Partial<ExecaOptions> = opts.inherit
      ? { stdio: 'inherit' }
      : opts.input !== undefined
        ? { input: opts.input }
        : { stdin: 'ignore' }
    const execOpts: ExecaOptions = {
      ...stdio,
      reject: false,
      timeout: opts.timeoutMs,
      env: opts.env,
      extendEnv: true,
      cancelSignal: opts.signal,
      stripFinalNewline: true,
    }
    const t0 = tracing ? performance.now() : 0
    const r = await execa(this.bin, full, execOpts)
    if (tracing) trace(`podman ${args.slice(0, 2).join(' ')} ${Math.round(performance.now() - t0)}ms`)
    const result: PodmanResult = {
      stdout: typeof r.stdout === 'string' ? r.stdout : '',
      stderr: typeof r.stderr === 'string' ? r.stderr : '',
      exitCode: r.exitCode ?? (r.signal ? 128 + signalNumber(r.signal) : 1),
    }
    if (r.timedOut) {
      throw new PodshellError(`podman ${args[0]} timed out after ${opts.timeoutMs} ms`, {
        hint: 'check `podman ps` for a stuck container; `podshell doctor` checks the host',
        code: 'PODMAN_TIMEOUT',
      })
    }
    if (result.exitCode !== 0) {
      const e = podmanError(args, result)
      // A broken podman state fails every call alike, and no caller could read that as an answer
      // (an `image exists` would say "missing"): it is raised here whatever `reject` says.
      if (opts.reject !== false || STATE_PROBLEMS.has(e.code)) throw e
    }
    return result
  }

  /** `podman <args>` whose stdout is JSON. */
  async json<T = unknown>(args: readonly string[], opts: RunOptions = {}): Promise<T> {
    const r = await this.run(args, opts)
    try {
      return JSON.parse(r.stdout || 'null') as T
    } catch (e) {
      throw new PodshellError(`podman ${args[0]} printed invalid JSON`, { hint: r.stdout.slice(0, 200), cause: e })
    }
  }

  /** Spawns podman with an inherited terminal and explicit stdio control (transparent child). */
  spawnArgs(args: readonly string[]): { file: string; args: string[] } {
    return { file: this.bin, args: [...this.globalArgs(), ...args] }
  }
}

/** Codes of podmanStateProblem(): the host's podman is broken, not the call. */
const STATE_PROBLEMS = new Set(['PODMAN_STALE_STATE', 'PODMAN_STORAGE_IDMAP'])

/**
 * Rootless podman keeps its user namespace alive through a "pause" process whose pid, and the
 * containers it believes are running, live under XDG_RUNTIME_DIR. When that directory outlives the
 * processes (no systemd-logind tmpfs, a killed session, a snapshotted or resumed machine), podman 4.x
 * cannot join any namespace and every command fails with "invalid internal status ... could not find
 * any running process". Nothing can be running then, so `podman system migrate` (podman's own fix)
 * only resets stale bookkeeping. podshell does not run it behind the user's back: it names it.
 */
export function podmanStateProblem(stderr: string): PodshellError | undefined {
  // Layers written under another subuid mapping (the range in /etc/subuid changed, or a pause
  // process from before the change wrote them) hold ids this user namespace does not map, so even
  // its root cannot open them. Only a storage reset recovers; podshell never deletes images itself.
  if (/openfdat \S*\/storage\/overlay\/\S*: permission denied|additionallayer: permission denied/.test(stderr)) {
    return new PodshellError('podman\'s storage holds layers this user namespace cannot read (written under another subuid/subgid range)', {
      hint: 'run `podman system reset` (removes all of this user\'s images and containers), then `podshell image build all`',
      code: 'PODMAN_STORAGE_IDMAP',
    })
  }
  if (!/invalid internal status|could not find any running process|cannot re-exec process to join the existing user namespace/i.test(stderr)) return undefined
  return new PodshellError('podman\'s rootless state is stale: its pause process is gone (a killed session, or a runtime dir that outlived a reboot)', {
    hint: 'run `podman system migrate` once (no container can be running in this state), then retry',
    code: 'PODMAN_STALE_STATE',
  })
}

/** The host pid of a running container's init process, or undefined (not running, not there). */
export async function containerPid(podman: Podman, container: string): Promise<number | undefined> {
  const r = await podman.run(['container', 'inspect', '--format', '{{.State.Pid}}', container], { reject: false, timeoutMs: 30_000 })
  const pid = Number(r.stdout.trim())
  return r.exitCode === 0 && Number.isInteger(pid) && pid > 0 ? pid : undefined
}

/**
 * Like containerPid, but says why there is no pid: `0` when the container exists and is not
 * running, or does not exist (nothing of it runs); undefined when podman failed otherwise (unknown:
 * ask again). For callers that must not mistake a podman hiccup for "not running".
 */
export async function containerPidOrStopped(podman: Podman, container: string): Promise<number | undefined> {
  const r = await podman.run(['container', 'inspect', '--format', '{{.State.Pid}}', container], { reject: false, timeoutMs: 30_000 })
  if (r.exitCode !== 0) return /no such (container|object)/i.test(r.stderr) ? 0 : undefined
  const pid = Number(r.stdout.trim())
  return Number.isInteger(pid) && pid >= 0 ? pid : undefined
}

/** First meaningful line of podman's stderr, prefixed by what we were doing. */
export function podmanError(args: readonly string[], r: PodmanResult): PodshellError {
  const line =
    r.stderr
      .split('\n')
      .map(l => l.trim())
      .filter(l => l && !/level=warning|is not a shared mount/.test(l))
      .pop() ?? `exit code ${r.exitCode}`
  const msg = line.replace(/^Error:\s*/, '')
  const stale = podmanStateProblem(r.stderr)
  if (stale) return stale
  let hint = 'run `podshell doctor` to check the host'
  if (/no such (pod|container)/i.test(msg)) hint = 'the sandbox is gone; `podshell sandbox list` shows what exists'
  else if (/image not known|manifest unknown|pull access denied|initializing source|short-name/i.test(msg))
    hint = 'the image is not available locally; build it with `podshell image build` or pass an existing one with --from'
  else if (/name is in use|already in use/i.test(msg)) hint = 'choose another --name or delete the existing sandbox'
  else if (/cgroups in hybrid mode/.test(msg)) hint = 'set PODSHELL_RUNTIME=runc (podshell doctor detects this)'
  return new PodshellError(`podman ${args[0]}${args[1] && !args[1].startsWith('-') ? ' ' + args[1] : ''} failed: ${msg}`, {
    hint,
    code: 'PODMAN_FAILED',
  })
}


async function podmanVersion(bin: string): Promise<string> {
  const r = await execa(bin, ['--version'], { reject: false, stdin: 'ignore' })
  const m = /version\s+(\d+\.\d+(?:\.\d+)?\S*)/.exec(String(r.stdout))
  if (r.exitCode !== 0 || !m) {
    throw new PodshellError(`cannot run ${bin} --version`, {
      hint: 'reinstall podman >= 4.3 (dnf install podman / apt-get install podman)',
      code: 'PODMAN_BROKEN',
    })
  }
  return m[1]!
}

export function compareVersion(v: string, min: readonly number[]): number {
  const parts = v.split(/[.-]/).map(x => parseInt(x, 10) || 0)
  for (let i = 0; i < min.length; i++) {
    const a = parts[i] ?? 0
    const b = min[i] ?? 0
    if (a !== b) return a - b
  }
  return 0
}

function checkVersion(version: string): void {
  if (compareVersion(version, MIN_PODMAN) < 0) {
    throw new PodshellError(`podman ${version} is too old`, {
      hint: `install podman >= ${MIN_PODMAN.join('.')} (dnf install podman / apt-get install podman)`,
      code: 'PODMAN_TOO_OLD',
    })
  }
}

/**
 * Probes each OCI runtime by creating a real container from an empty rootfs and running a command
 * that does not exist. A runtime that can set up namespaces, cgroups and mounts gets as far as
 * "executable not found" (podman exit 127); a broken one fails earlier (exit 126 with its own
 * error, e.g. crun 1.8's "cgroups in hybrid mode not supported"). No image is needed.
 */
export async function probeRuntimes(bin: string, env: Env): Promise<RuntimeChoice> {
  const rootfs = join(cacheDir(env), 'probe-rootfs')
  mkdirSync(rootfs, { recursive: true, mode: 0o700 })
  const failed: { runtime: string; error: string }[] = []
  for (const rt of CANDIDATE_RUNTIMES) {
    const r = await execa(
      bin,
      ['--runtime', rt, 'run', '--rm', '--network', 'none', '--rootfs', rootfs, '/podshell-runtime-probe'],
      { reject: false, stdin: 'ignore', timeout: 30_000 },
    )
    const err = String(r.stderr)
      .split('\n')
      .filter(l => l && !/level=warning/.test(l))
      .pop() ?? ''
    // Not a runtime problem: every runtime would fail the same way, and "install crun or runc"
    // would send the user the wrong way.
    const stale = podmanStateProblem(String(r.stderr))
    if (stale) throw stale
    if (r.exitCode === 127 || r.exitCode === 0) {
      const reason = failed.length
        ? `${failed.map(f => `${f.runtime} failed: ${f.error}`).join('; ')}; ${rt} works`
        : `${rt} works`
      return { runtime: rt, reason, failed }
    }
    failed.push({ runtime: rt, error: err.replace(/^Error:\s*(OCI runtime error:\s*)?/, '') || `exit ${r.exitCode}` })
  }
  throw new PodshellError('no working OCI runtime', {
    hint: `${failed.map(f => `${f.runtime}: ${f.error}`).join('; ')}; install crun or runc`,
    code: 'NO_RUNTIME',
  })
}




/** Runs podman as a transparent foreground child (see spawnInteractive). */
export function runInteractive(
  podman: Podman,
  args: readonly string[],
  opts: InteractiveOptions = {},
): Promise<number> {
  const { file, args: full } = podman.spawnArgs(args)
  return spawnInteractive(file, full, opts)
}
