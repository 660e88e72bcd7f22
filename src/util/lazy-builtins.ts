import { createRequire } from 'node:module'

/**
 * Node builtins that the fast `sandbox exec` path (src/cli/fast-exec.ts) needs only on its rarer
 * branches, loaded on first use: node:child_process alone costs several ms of every exec's start
 * (it pulls in net, dgram and their streams), and the exec server path never spawns. Synchronous,
 * so callers keep their shape.
 */
const load = createRequire(import.meta.url)

export const childProcess = (): typeof import('node:child_process') => load('node:child_process') as typeof import('node:child_process')
