/**
 * How an environment variable reaches a container: `--env NAME` with the value in podman's own
 * environment (podman copies it), or `--env NAME=VALUE` in argv.
 *
 * By name is the default: argv is world-readable in /proc/<pid>/cmdline for as long as podman runs,
 * while /proc/<pid>/environ is readable by the owner only — a token passed from DevAIFlow's
 * environment must not show up in another local user's `ps`. Variables that podman, conmon or the
 * OCI runtime read themselves (PATH decides which conmon/runc runs, XDG_RUNTIME_DIR and the
 * CONTAINERS_* files decide which storage and config podman uses, the proxy variables, locale …)
 * must not be put into podman's environment, so those — configuration, not secrets — go in argv.
 */
const PODMAN_READS = /^(PATH|HOME|TMPDIR|TERM|LANG|LANGUAGE|LC_[A-Z_]+|TZ|USER|LOGNAME|SHELL|XDG_[A-Z_]+|CONTAINERS?_[A-Z_]+|STORAGE_[A-Z_]+|REGISTRY_[A-Z_]+|DOCKER_[A-Z_]+|BUILDAH_[A-Z_]+|PODMAN_[A-Z_]+|LD_[A-Z_]+|NOTIFY_SOCKET|DBUS_[A-Z_]+|SSL_CERT_(FILE|DIR)|GO[A-Z]+|_CONTAINERS_[A-Z_]+|http_proxy|https_proxy|HTTP_PROXY|HTTPS_PROXY|ALL_PROXY|all_proxy|NO_PROXY|no_proxy|NODE_USE_ENV_PROXY|PODSHELL_[A-Z_]+)$/

export function envArgs(env: Readonly<Record<string, string>>): { args: string[]; podmanEnv: Record<string, string> } {
  const args: string[] = []
  const podmanEnv: Record<string, string> = {}
  for (const [k, v] of Object.entries(env)) {
    if (PODMAN_READS.test(k)) args.push('--env', `${k}=${v}`)
    else {
      args.push('--env', k)
      podmanEnv[k] = v
    }
  }
  return { args, podmanEnv }
}
