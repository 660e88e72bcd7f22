import { closeSync, lstatSync, mkdirSync, openSync, realpathSync, unlinkSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { PodshellError } from '../errors.js'
import { normalizePath } from '../util/validate.js'
import type { MountSpec } from './types.js'

/**
 * Unix sockets in mounted trees (issue 9, finding 7).
 *
 * The sandbox's network namespace holds only loopback, but a pathname unix socket is reached
 * through the FILESYSTEM: a project mounted even read-only that contains a dev database's socket
 * (`.devenv/state/postgres/.s.PGSQL.5432`), a Docker/Podman socket or an ssh/gpg agent socket lets
 * the agent talk to that host service (connect(2) needs write permission on the socket inode, not a
 * writable mount). The deny-all network policy does not see it.
 *
 * Chosen: mask every socket file found in the mounted trees at start by binding an empty,
 * read-only regular file over it. connect() then gets ECONNREFUSED (the path is not a socket) and a
 * write EROFS; measured on this host (rootless Podman 4.3.1 + runc): without the mask, connect()
 * reaches the host's server. Sockets are found by the same bounded scan that finds `.ai-read-deny`
 * markers (sensitive.ts scanTree: the directory entry type, no extra syscall).
 *
 * Sockets that appear AFTER start (a host editor, language server, ssh-agent or a Podman API socket
 * created in the repo later) cannot be masked: a running container's mounts cannot be changed, and
 * a bind from inside the pod's mount namespace would race the host process. They are closed by
 * the KERNEL instead: the agent's seccomp profile (seccomp/default.json, scripts/gen-seccomp.mjs)
 * denies socket(AF_UNIX) with EPERM and socketpair(AF_UNIX, SOCK_DGRAM) (a datagram pair can
 * sendto() any path); stream/seqpacket socketpairs stay (child stdio, IPC among the agent's own
 * processes: a connected pair cannot connect() again, EISCONN). seccomp cannot read connect()'s
 * path, so this is all or nothing: a sandbox given a socket with `--allow-socket PATH` (spec
 * `allow_sockets`) runs under seccomp/unix-sockets.json, which allows AF_UNIX, and is then
 * protected only by the masks made at create (docs/security.md says so).
 *
 * Not chosen:
 *   - Landlock's LANDLOCK_ACCESS_FS_MAKE_SOCK restricts creating socket files, not connecting to
 *     existing ones; scoping pathname-socket connects (LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET covers
 *     abstract sockets only) is not in the kernel API;
 *   - the host watcher masking new sockets: not possible for a live mount without racing.
 */

const SECCOMP_DIR = fileURLToPath(new URL('../../seccomp/', import.meta.url))

/**
 * The seccomp profile for a sandbox: podshell's default profile denies AF_UNIX sockets; a sandbox
 * given host sockets on purpose (`allowed` not empty) gets its twin that allows them. A profile the
 * user or config chose is used as it is.
 */
export function seccompForSockets(profile: string, allowed: ReadonlySet<string>): string {
  if (allowed.size && profile === join(SECCOMP_DIR, 'default.json')) return join(SECCOMP_DIR, 'unix-sockets.json')
  return profile
}

/** Name of the empty read-only file bound over masked sockets, in podshell's data dir. */
export const EMPTY_MASK_FILE = 'empty-mask'

/** Normalises the `--allow-socket` / spec `allow_sockets` list (absolute paths, symlinks resolved). */
export function allowedSockets(paths: readonly string[] | undefined): Set<string> {
  const out = new Set<string>()
  for (const p of paths ?? []) {
    const n = normalizePath(p)
    out.add(n)
    try {
      out.add(realpathSync(n))
    } catch {
      // an allowed socket that does not exist yet is allowed by its name
    }
  }
  return out
}

/**
 * True when `path` is a unix socket the sandbox was not given: for the watcher, which masks or
 * reports sockets that appear in a mounted tree after start. Never throws (a vanished path is no
 * risk).
 */
export function isHostSocketRisk(path: string, allow: ReadonlySet<string> = new Set()): boolean {
  try {
    if (!lstatSync(path).isSocket()) return false
  } catch {
    return false
  }
  const n = normalizePath(path)
  return !allow.has(n)
}

/**
 * Splits the runtime's masks into directory masks (tmpfs) and socket masks (an empty read-only
 * file bound on top), dropping the allowed sockets. `dataDir` holds the empty file, created here
 * (0444) when missing. Returns the bind mounts to add and the remaining directory masks.
 */
export function socketMasks(
  masks: readonly string[],
  allow: ReadonlySet<string>,
  dataDir: string,
): { dirMasks: string[]; socketMounts: MountSpec[]; masked: string[] } {
  const dirMasks: string[] = []
  const masked: string[] = []
  for (const m of masks) {
    let sock: boolean
    try {
      sock = lstatSync(m).isSocket()
    } catch {
      sock = false
    }
    if (!sock) dirMasks.push(m)
    else if (!allow.has(m)) masked.push(m)
  }
  if (!masked.length) return { dirMasks, socketMounts: [], masked }
  const empty = join(dataDir, EMPTY_MASK_FILE)
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 })
    if (!existsEmptyFile(empty)) closeSync(openSync(empty, 'wx', 0o444))
  } catch (e) {
    // Fails closed: without the mask file the sockets would stay reachable.
    throw new PodshellError(`cannot create ${empty} to mask host sockets (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { hint: 'check the permissions of the podshell data dir', code: 'STATE' })
  }
  return { dirMasks, socketMounts: masked.map(target => ({ source: empty, target, mode: 'ro' })), masked }
}

/** An existing empty regular file (not a symlink: the data dir is the user's, but be exact). */
function existsEmptyFile(p: string): boolean {
  try {
    const st = lstatSync(p)
    if (st.isFile() && st.size === 0) return true
  } catch {
    return false
  }
  // Something else is there (a file with content, a symlink): replace it with an empty file.
  unlinkSync(p)
  return false
}

/**
 * True for a socket mask as socketMasks makes it (the empty file of this data dir, read-only). A
 * stored description is re-checked at restart; this one source lives in podshell's data dir, which
 * the sensitive-path rules refuse, and it exposes nothing (an empty read-only file).
 */
export function isSocketMaskMount(m: MountSpec, dataDir: string): boolean {
  return m.mode === 'ro' && m.source === join(dataDir, EMPTY_MASK_FILE)
}
