
/**
 * Names. A sandbox name is a DNS-1123 label of at most 63 characters (OpenShell's sandbox-name
 * limit). Podman objects derive from it with "." separators, which a DNS label cannot contain, so
 * no two sandboxes' objects can collide ("a-agent" vs "a" + "-agent").
 */
export const podName = (name: string) => `podshell.${name}`
export const agentContainer = (name: string) => `podshell.${name}.agent`
export const bridgeContainer = (name: string) => `podshell.${name}.bridge`
export const infraContainer = (name: string) => `podshell.${name}.infra`

/** Label keys (the source of truth for lifecycle). */
export const L = {
  sandbox: 'io.podshell.sandbox',
  id: 'io.podshell.id',
  created: 'io.podshell.created',
  role: 'io.podshell.role',
  image: 'io.podshell.image',
  workdir: 'io.podshell.workdir',
  mounts: 'io.podshell.mounts',
  providers: 'io.podshell.providers',
  sessionType: 'io.podshell.session-type',
  creator: 'io.podshell.creator',
  command: 'io.podshell.command',
  keep: 'io.podshell.keep',
  /** On the agent container: `command` (the user's command is its main process) or `idle`. */
  main: 'io.podshell.main',
  userPrefix: 'io.podshell.label.',
} as const
