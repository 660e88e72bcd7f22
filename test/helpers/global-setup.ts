import { execa } from 'execa'
import { CLI, testEnv } from './cli.js'

/**
 * Before the e2e files: rootless Podman must work for this (unprivileged) user, and the default
 * images must exist (CI builds them with `podshell image build all --offline` first; a developer's
 * machine gets them built here, which is a no-op when up to date). Leftover sandboxes of an
 * interrupted earlier run are deleted.
 */
export default async function setup(): Promise<void> {
  if (process.getuid?.() === 0) {
    throw new Error('e2e tests must run as an unprivileged user (they prove podshell works rootless); see .ci/run')
  }
  const env = testEnv()
  const build = await execa(process.execPath, [CLI, 'image', 'build', 'all', '--offline'], {
    env,
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
  })
  if (build.exitCode !== 0) throw new Error(`image build failed: ${build.stderr}`)
  await execa(process.execPath, [CLI, 'sandbox', 'delete', '--all'], { env, extendEnv: false, reject: false, stdin: 'ignore' })
}
