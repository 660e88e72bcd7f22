import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { normalizePath } from '../util/validate.js'
import type { MountMode, SessionType } from './types.js'

/**
 * Which parts of Claude Code's `projects/` a session gets (issue 9, finding 3).
 *
 * `<claude_dir>/projects/` holds one directory per project the user ever ran Claude Code in:
 * conversation transcripts (`<session-id>.jsonl`: everything tools printed, secrets included) and
 * the auto-memory (`memory/MEMORY.md`), which Claude Code loads into that project's NEXT session,
 * on the host and unsandboxed. Mounting the whole of `projects/` read-write let an agent read every
 * other project's transcripts and plant a persistent prompt injection in another project's memory.
 *
 * Now a session gets only its own projects' directories — the cwd's, and for a multi-project
 * session each project's and the workspace's — read-write (the conversation file is written there
 * and daf finds it by that path on the host). The rest of `projects/` is not mounted: inside, the
 * parent is the sandbox's own home (or a scratch tmpfs), so other projects neither exist nor can be
 * written. In investigation and ticket_creation sessions the project's `memory/` is bound read-only
 * on top: a session that may not edit the code may not edit what the next session is told either.
 */

/**
 * Claude Code's directory name for a project path: every character that is not an ASCII letter or
 * digit becomes "-" (`/home/u/src/my_app.v2` → `-home-u-src-my-app-v2`).
 */
export function claudeProjectName(path: string): string {
  return normalizePath(path).replace(/[^A-Za-z0-9]/g, '-')
}

/**
 * DevAIFlow's `encode_project_path` ("/" and "_" become "-"; research/devaiflow.md §2.2). It equals
 * Claude's for the usual paths; where they differ (a "." in the path) daf's name is mounted too when
 * that directory exists, so daf's lookups keep working.
 */
export function dafProjectName(path: string): string {
  return normalizePath(path).replace(/[/_]/g, '-')
}

export interface ClaudeDataBind {
  path: string
  mode: MountMode
  what: string
}

/**
 * The binds for a session's projects under `<claudeDir>/projects`. Creates (as the user, 0700)
 * Claude's directory for each project and, where the memory must be read-only, its `memory/`, so
 * there is something to bind. Fails with the errno in the message; the caller turns it into a
 * one-line refusal.
 */
export function claudeDataBinds(claudeDir: string, projectPaths: readonly string[], type: SessionType): ClaudeDataBind[] {
  const projects = join(normalizePath(claudeDir), 'projects')
  const out: ClaudeDataBind[] = []
  const seen = new Set<string>()
  const memoryReadOnly = type !== 'development'
  for (const p of projectPaths) {
    const names = [...new Set([claudeProjectName(p), dafProjectName(p)])]
    names.forEach((name, i) => {
      const dir = join(projects, name)
      if (seen.has(dir)) return
      // Claude's own name is created; daf's variant is mounted only when it exists already.
      if (i > 0 && !existsSync(dir)) return
      seen.add(dir)
      mkdirSync(dir, { recursive: true, mode: 0o700 })
      out.push({ path: dir, mode: 'rw', what: `claude_config_dir (projects/${name})` })
      if (memoryReadOnly) {
        const memory = join(dir, 'memory')
        mkdirSync(memory, { recursive: true, mode: 0o700 })
        out.push({ path: memory, mode: 'ro', what: `claude_config_dir (projects/${name}/memory)` })
      }
    })
  }
  return out
}
