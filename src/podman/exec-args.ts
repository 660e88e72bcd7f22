/**
 * `podman exec` argv for the SSH path (src/sandbox/sshd.ts): kept here so every podman argv is
 * built under src/podman/.
 */

/** The environment variables podman passes by name into the sshd exec (values never on a command line). */
export const SSHD_ENV_HOST_KEY = 'PODSHELL_SSHD_HOST_KEY'
export const SSHD_ENV_AUTHORIZED_KEY = 'PODSHELL_SSHD_AUTHORIZED_KEY'

/**
 * `podman exec -i --env NAME… CONTAINER sh -c SCRIPT`: stdin/stdout stay the caller's (the SSH
 * connection). `--env NAME` without a value makes podman copy NAME from its own environment.
 * No `--user`, no `--privileged`, no extra capabilities: the exec runs as the container's user
 * with the container's seccomp profile and capabilities.
 */
export function sshdExecArgs(container: string, script: string): string[] {
  return ['exec', '-i', '--env', SSHD_ENV_HOST_KEY, '--env', SSHD_ENV_AUTHORIZED_KEY, container, 'sh', '-c', script]
}

/** The variable that carries a sandbox's exec key from podman's environment to its exec server. */
export const EXECD_KEY_ENV = 'PODSHELL_EXECD_KEY'

/**
 * `podman exec -d --env PODSHELL_EXECD_KEY CONTAINER SERVER DIR`: starts a sandbox's exec server
 * (native/execd.c) as an ordinary exec: the container's user, capabilities, seccomp profile and
 * environment, nothing more. The key's value comes from podman's own environment (never argv).
 */
export function execServerStartArgs(container: string, server: string, dir: string): string[] {
  return ['exec', '-d', '--env', EXECD_KEY_ENV, container, server, dir]
}

/** `podman exec CONTAINER id -un`: the name the agent's uid has in the container's passwd. */
export function agentUserNameArgs(container: string): string[] {
  return ['exec', container, 'id', '-un']
}

/**
 * `podman cp CONTAINER:PATH -`: podman writes a tar of PATH (resolved inside the container's root,
 * mounts included) to stdout; `PATH/.` gives a directory's contents. The archive is made by podman,
 * not by anything in the container (sandbox download's data path).
 */
export function copyOutArgs(container: string, path: string): string[] {
  if (!path.startsWith('/')) throw new Error('copyOutArgs needs an absolute path inside the container')
  return ['cp', `${container}:${path}`, '-']
}
