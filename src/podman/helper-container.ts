import { HARDENING } from './container-spec.js'

/**
 * Short-lived helper containers podshell runs for one answer on stdout (today: reading provider
 * secrets back, src/credentials/secrets.ts). Typed here and rendered to podman argv here only, with
 * the same HARDENING as every other podshell container and no network.
 */

/** A podman secret handed to a container as an environment variable (`--secret NAME,type=env,target=VAR`). */
export interface SecretEnv {
  /** The podman secret's name. */
  secret: string
  /** The environment variable it becomes inside the container. */
  target: string
}

export interface HelperContainerSpec {
  image: string
  /** The program run instead of the image's entrypoint. */
  entrypoint: string
  /** Its arguments. */
  args: readonly string[]
  /** Secrets the helper reads from its environment. */
  secretEnv: readonly SecretEnv[]
}

/** `--secret` flags for secrets delivered as environment variables. */
export function secretEnvArgs(secrets: readonly SecretEnv[]): string[] {
  return secrets.flatMap(s => ['--secret', `${s.secret},type=env,target=${s.target}`])
}

/** `podman run --rm …` for a helper container: no network, the one hardening baseline. */
export function helperRunArgs(h: HelperContainerSpec): string[] {
  return ['run', '--rm', '--network=none', ...HARDENING, '--entrypoint', h.entrypoint, ...secretEnvArgs(h.secretEnv), h.image, ...h.args]
}
