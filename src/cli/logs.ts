import { Command, Option } from 'commander'
import { z } from 'zod'
import { PodshellError } from '../errors.js'
import { check } from '../util/validate.js'
import { stateDirExists } from '../sandbox/state.js'
import { readLogs, followLogs, formatLogEntry, type LogSource, type LogLevel } from '../gateway/audit.js'
import { resolveName } from './sandbox.js'
import { CliContext, collect } from './context.js'

/**
 * `podshell logs [name]` (alias `lg`): a sandbox's audit trail as OpenShell prints it,
 * `[epoch.ms] [source ] [LEVEL] [target] message`.
 *
 * Sources: `gateway` — egress decisions and policy loads written by the gateway (NET, HTTP, CONFIG);
 * `sandbox` — lifecycle events written by the CLI (create, start, stop, delete). `all` (default).
 */
export interface LogsFlags {
  lines: string
  tail?: boolean
  since?: string
  source: string[]
  level?: string
}

export function register(program: Command, ctx: CliContext): Command {
  return program
    .command('logs')
    .alias('lg')
    .description("show a sandbox's audit log (egress decisions, policy loads, lifecycle)")
    .argument('[name]', 'sandbox name')
    .option('-n, --lines <n>', 'number of lines', '200')
    .option('--tail', 'keep printing new lines (Ctrl-C to stop)')
    .option('--since <duration>', 'only lines newer than this, e.g. 30s, 5m, 2h, 1d')
    .option('--source <source>', 'gateway, sandbox or all; repeatable', collect, [])
    .addOption(new Option('--level <level>', 'minimum level').choices(['error', 'warn', 'info', 'debug', 'trace']))
    .action(async (name: string | undefined, flags: LogsFlags) => {
      // No name: the last-used sandbox, said on stderr (as every name-taking command does).
      await logsAction(ctx, resolveName(name, ctx), flags)
    })
}

const linesSchema = z.string().regex(/^\d{1,7}$/, 'must be a non-negative integer').transform(Number)
const SOURCES = ['gateway', 'sandbox', 'all'] as const

/** Parses OpenShell-style durations: 30s, 5m, 2h, 1d, 500ms (a bare number is seconds). */
export function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(s.trim())
  if (!m) throw new PodshellError(`invalid duration ${JSON.stringify(s)}`, { hint: 'use e.g. 30s, 5m, 2h or 1d', exitCode: 2, code: 'INVALID_INPUT' })
  const n = Number(m[1])
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h' | 'd']
  return Math.round(n * unit)
}

/** The `logs` action for an already resolved sandbox name (wrap it to add last-used resolution). */
export async function logsAction(ctx: CliContext, name: string, flags: LogsFlags, signal?: AbortSignal): Promise<void> {
  const lines = check(linesSchema, flags.lines, '--lines')
  for (const s of flags.source) {
    if (!(SOURCES as readonly string[]).includes(s)) throw new PodshellError(`invalid --source ${JSON.stringify(s)}`, { hint: 'use gateway, sandbox or all', exitCode: 2, code: 'INVALID_INPUT' })
  }
  if (!stateDirExists(ctx.dataDir, name)) {
    throw new PodshellError(`sandbox ${name} not found`, { hint: '`podshell sandbox list` shows what exists', code: 'NOT_FOUND' })
  }
  const opts = {
    lines,
    source: flags.source as (LogSource | 'all')[],
    ...(flags.since ? { since: Date.now() - parseDuration(flags.since) } : {}),
    ...(flags.level ? { level: flags.level.toUpperCase() as LogLevel } : {}),
  }
  for (const e of readLogs(ctx.dataDir, name, opts)) ctx.out.stdout(formatLogEntry(e) + '\n')
  if (!flags.tail) return
  const ac = new AbortController()
  const stop = () => ac.abort()
  signal?.addEventListener('abort', stop, { once: true })
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  try {
    await followLogs(ctx.dataDir, name, opts, e => ctx.out.stdout(formatLogEntry(e) + '\n'), ac.signal)
  } finally {
    process.off('SIGINT', stop)
    process.off('SIGTERM', stop)
  }
}
