import { Command, Option } from 'commander'
import { runDoctor, renderReport } from '../doctor/doctor.js'
import { CliContext } from './context.js'
import { parseOutputFormat, serialize } from './output.js'

/**
 * `podshell doctor` (alias `dr`): checks this host for what rootless podshell needs and says how to
 * fix what is missing. Exit code 0 when podshell can run (no check failed), 1 otherwise.
 */
export function register(program: Command, ctx: CliContext): Command {
  return program
    .command('doctor')
    .alias('dr')
    .description('check the host: podman, rootless setup, runtime, storage, network, seccomp, cgroups, images')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (flags: { output: string }) => {
      const format = parseOutputFormat(flags.output, ['table', 'json'])
      const report = await runDoctor(ctx.env)
      ctx.out.stdout(format === 'json' ? serialize(report, 'json') : renderReport(report))
      if (!report.ok) process.exitCode = 1
    })
}
