import type { Env } from '../config/paths.js'
import { table } from '../cli/output.js'
import { evaluate, type DoctorReport } from './checks.js'
import { gatherFacts } from './facts.js'

export type { DoctorReport, Check, CheckStatus } from './checks.js'
export type { DoctorFacts } from './facts.js'
export { evaluate } from './checks.js'
export { gatherFacts } from './facts.js'

/** Gathers this host's facts (in parallel) and evaluates them. */
export async function runDoctor(env: Env): Promise<DoctorReport> {
  return evaluate(await gatherFacts(env))
}

/** The table `podshell doctor` prints: one row per check, then the fixes of what is not ok. */
export function renderReport(r: DoctorReport): string {
  const rows = r.checks.map(c => [c.name, c.status.toUpperCase(), c.detail.replace(/\s*\n\s*/g, ' ')])
  let out = table(['CHECK', 'STATUS', 'DETAIL'], rows)
  const todo = r.checks.filter(c => c.status !== 'ok' && c.fix)
  if (todo.length) {
    out += '\n'
    for (const c of todo) out += `${c.status === 'fail' ? 'FAIL' : 'WARN'} ${c.name}: ${c.fix!.replace(/\n/g, '\\n')}\n`
  }
  const fails = r.checks.filter(c => c.status === 'fail').length
  const warns = r.checks.filter(c => c.status === 'warn').length
  const parts = [fails ? `${fails} failed` : '', warns ? `${warns} warning${warns > 1 ? 's' : ''}` : ''].filter(Boolean)
  out += `\n${r.ok ? 'podshell can run on this host' : 'podshell cannot run on this host'}${parts.length ? ` (${parts.join(', ')})` : ''}\n`
  return out
}
