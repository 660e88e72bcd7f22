import { Command, CommanderError } from 'commander'
import { isPodshellError } from '../errors.js'
import { trace } from '../util/trace.js'
import { CliContext } from './context.js'
import { register as registerSandbox, registerGc } from './sandbox.js'
import { createHooks } from './create-hooks.js'
import { register as registerImage } from './image.js'
import { register as registerDoctor } from './doctor.js'
import { register as registerGateway } from './gateway.js'
import { register as registerLogs } from './logs.js'
import { register as registerProvider } from './provider.js'
import { registerPolicyValidate } from './policy.js'
import { register as registerSchema } from './schema.js'
import { registerPolicyTemplate } from './template.js'
import { registerLivePolicy } from './policy-live.js'
import { register as registerStatus } from './status.js'
import { register as registerCompletions } from './completions.js'

/**
 * podshell's CLI root. Each area registers its commands; this file only wires them and turns every
 * failure into one line on stderr with a non-zero exit code.
 */
export function buildProgram(ctx: CliContext): Command {
  const program = new Command('podshell')
    .description('Podman-native, rootless sandboxes for AI coding agents (OpenShell-compatible CLI and policies)')
    .version(VERSION, '-V, --version')
    .showSuggestionAfterError(true)
    .configureOutput({ writeErr: s => process.stderr.write(s) })
    .exitOverride()
  registerSandbox(program, ctx, createHooks)
  const policy = program.command('policy').alias('pol').description('validate, inspect and change sandbox policies')
  registerPolicyValidate(policy, ctx)
  registerLivePolicy(policy, ctx)
  registerPolicyTemplate(policy, ctx)
  registerSchema(program, ctx)
  registerProvider(program, ctx)
  registerImage(program, ctx)
  registerGc(program, ctx)
  registerDoctor(program, ctx)
  registerGateway(program, ctx)
  registerLogs(program, ctx)
  registerStatus(program, ctx)
  registerCompletions(program, ctx)
  return program
}

const VERSION = '0.1.0'

export async function main(argv: string[] = process.argv): Promise<void> {
  trace('cli loaded')
  const ctx = new CliContext()
  const program = buildProgram(ctx)
  try {
    await program.parseAsync(argv)
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version exit 0; usage errors (unknown flag, missing argument) were printed by commander.
      process.exitCode = e.exitCode === 0 ? 0 : 2
      return
    }
    if (isPodshellError(e)) {
      process.stderr.write(`podshell: ${e.oneLine()}\n`)
      process.exitCode = e.exitCode
      return
    }
    const msg = e instanceof Error ? e.message : String(e)
    process.stderr.write(`podshell: internal error: ${msg.split('\n')[0]}\n`)
    process.exitCode = 1
  }
}


/** For the fast exec path: explain a podman-side exec failure in one line; returns the exit code. */
export async function explainExecFailure(name: string, code: number): Promise<number> {
  try {
    const { openRuntime } = await import('./runtime.js')
    await (await openRuntime(new CliContext())).explainExecFailure(name)
    return code
  } catch (e) {
    if (isPodshellError(e)) {
      process.stderr.write(`podshell: ${e.oneLine()}\n`)
      return e.exitCode
    }
    return code
  }
}
