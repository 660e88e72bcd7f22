import { z } from 'zod'
import { PATTERN_RE } from './patterns.js'

/**
 * `host_exec_files` in config.yaml / enterprise.yaml: more host-executed file patterns for the
 * watcher (added to src/watch/rules.ts's list; both files' lists apply, an enterprise cannot be
 * narrowed by a user).
 */
export const HostExecFilesSchema = z
  .array(
    z
      .string()
      .max(256)
      .regex(PATTERN_RE, 'must be a relative path like .vscode/tasks.json (segments of letters, digits, ._-*)')
      .refine(p => !p.split('/').some(s => s === '..' || s === '.'), 'must not contain "." or ".." segments')
      .describe('a relative path pattern matched at any depth; `*` within a segment'),
  )
  .max(256)
  .describe('More files the host-executed-file watcher quarantines when the agent creates or changes them (added to the built-in list: .git, .envrc, editor task files, hook configs …)')
