import { readFileSync, existsSync, rmSync, readdirSync, writeFileSync, renameSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { gatewaySandboxDir, gatewaySandboxesDir, sandboxDir, sandboxesDir, lastUsedFile } from '../config/paths.js'
import { writeFileAtomic, mkdirp, fsError } from '../util/fs.js'
import { SANDBOX_NAME_RE } from '../util/patterns.js'
import { creatorAlive, selfCreatorId } from '../util/process.js'

/**
 * Per-sandbox state on disk that Podman cannot hold: policy revisions, the egress socket dir, audit
 * logs, the agent's home, and a phase hint while a stop/start/delete is in flight. Podman labels stay
 * the source of truth for *whether* a sandbox exists; a state dir without a pod is an orphan that gc
 * removes.
 */
export type PhaseHint = 'stopping' | 'stopped' | 'starting' | 'deleting'

const HINT = 'phase-hint'

export function readPhaseHint(data: string, name: string): PhaseHint | undefined {
  try {
    const v = readFileSync(join(sandboxDir(data, name), HINT), 'utf8').trim()
    return (['stopping', 'stopped', 'starting', 'deleting'] as const).find(h => h === v)
  } catch {
    return undefined
  }
}

export function writePhaseHint(data: string, name: string, hint: PhaseHint | undefined): void {
  const p = join(sandboxDir(data, name), HINT)
  if (hint === undefined) rmSync(p, { force: true })
  else writeFileAtomic(p, hint + '\n')
}

export function removeStateDir(data: string, name: string): void {
  if (!SANDBOX_NAME_RE.test(name)) return // never rm -r a path built from an unvalidated name
  try {
    rmSync(sandboxDir(data, name), { recursive: true, force: true })
    // Then the gateway's view of it (policy, socket dir, audit): the gateway stops serving it.
    rmSync(gatewaySandboxDir(data, name), { recursive: true, force: true })
  } catch (e) {
    throw fsError(`cannot remove the state of sandbox ${name}`, e)
  }
}

/** Names with state: a state dir, or only a gateway view left by a crash between the two removals. */
export function listStateDirs(data: string): string[] {
  const names = new Set<string>()
  for (const dir of [sandboxesDir(data), gatewaySandboxesDir(data)]) {
    try {
      for (const n of readdirSync(dir)) if (SANDBOX_NAME_RE.test(n)) names.add(n)
    } catch {
      // none yet
    }
  }
  return [...names]
}

export function stateDirExists(data: string, name: string): boolean {
  return existsSync(sandboxDir(data, name))
}

export function ensureDir(path: string, mode = 0o700): void {
  mkdirp(path, mode)
}

/** The last-used sandbox, as OpenShell keeps per gateway: used when a command gets no name. */
export function readLastUsed(data: string): string | undefined {
  try {
    const v = readFileSync(lastUsedFile(data), 'utf8').trim()
    return SANDBOX_NAME_RE.test(v) ? v : undefined
  } catch {
    return undefined
  }
}

export function writeLastUsed(data: string, name: string): void {
  try {
    // Most calls (an agent's exec after exec) name the sandbox already recorded: a read, not a
    // write + fsync + rename, on the `sandbox exec` path.
    if (readLastUsed(data) === name) return
    writeFileAtomic(lastUsedFile(data), name + '\n')
  } catch {
    // Remembering the last-used name is a convenience; failing to is not an error.
  }
}

/**
 * An operation in flight on a sandbox (create, delete) is marked by a `creator` file holding the
 * process's identity; it is removed when the operation finishes. A marker whose process is gone
 * means the operation was interrupted (kill -9) and gc must finish the job.
 */
const operationFile = (data: string, name: string) => join(sandboxDir(data, name), 'creator')

/** Marks an operation in flight, by this process or (`owner`, from creatorIdOf) a child it spawned. */
export function markOperation(data: string, name: string, owner: string = selfCreatorId()): void {
  writeFileAtomic(operationFile(data, name), owner + '\n')
}

/**
 * Hands a sandbox's operation marker to another process (`owner`, from creatorIdOf: a child this
 * one spawned), only while the state dir exists: unlike markOperation it never re-creates a state
 * dir that the new owner removed meanwhile (a detached teardown can finish before its parent gets
 * here on a loaded machine). Throws when the dir is gone or unwritable; the old marker then stays.
 */
export function handOverOperation(data: string, name: string, owner: string): void {
  const tmp = join(sandboxDir(data, name), `.creator.${randomBytes(6).toString('hex')}.tmp`)
  try {
    writeFileSync(tmp, owner + '\n', { mode: 0o600, flag: 'wx' }) // ENOENT once the dir is gone
    renameSync(tmp, operationFile(data, name))
  } catch (e) {
    rmSync(tmp, { force: true })
    throw fsError(`cannot hand over the operation marker of sandbox ${name}`, e)
  }
}

export function finishOperation(data: string, name: string): void {
  rmSync(operationFile(data, name), { force: true })
}

export function operationState(data: string, name: string): 'none' | 'running' | 'interrupted' {
  let id: string
  try {
    id = readFileSync(operationFile(data, name), 'utf8').trim()
  } catch {
    return 'none'
  }
  return creatorAlive(id) ? 'running' : 'interrupted'
}
