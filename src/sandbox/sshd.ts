import type { Podman } from '../podman/podman.js'
import { agentUserNameArgs, sshdExecArgs, SSHD_ENV_AUTHORIZED_KEY, SSHD_ENV_HOST_KEY } from '../podman/exec-args.js'
import { spawn } from 'node:child_process'
import { signalNumber } from '../podman/interactive.js'
import { agentContainer } from './naming.js'
import { readSshdKeys } from './ssh-keys.js'

/**
 * `sshd -i` inside a sandbox's agent container: the far end of the ProxyCommand that
 * `podshell sandbox ssh-config` writes. One sshd per SSH connection, started by `podman exec -i`
 * with ssh's stdin/stdout as the connection, gone when the connection ends. Nothing listens on a
 * port, on the host or in the sandbox, and the sandbox gets no network.
 *
 * What the agent gains: nothing. sshd runs as the agent's uid in the agent's container (same
 * seccomp profile, capabilities, namespaces, read-only root, egress proxy), so every session it
 * opens is a process the agent could have started itself; it reads its host key and the
 * authorised *public* key from a 0700 temp dir the agent could read too (the client's private key
 * stays on the host). The options below keep the server side from reaching back into the client:
 * no agent, X11 or stream-local forwarding, no tunnels, no remote (-R) listeners; local forwarding
 * (-L, what VS Code Remote-SSH uses to reach its server) connects from inside the sandbox's network
 * namespace, where only `lo` exists. `UsePAM no` and `StrictModes no`: a non-root sshd has neither
 * PAM's privileges nor root-owned files to check.
 */
export const SSHD_OPTIONS = [
  'PidFile none',
  'UsePAM no',
  'StrictModes no',
  'PermitRootLogin no',
  'PubkeyAuthentication yes',
  'PasswordAuthentication no',
  'KbdInteractiveAuthentication no',
  'HostbasedAuthentication no',
  'AuthenticationMethods publickey',
  'AllowAgentForwarding no',
  'AllowStreamLocalForwarding no',
  'AllowTcpForwarding local',
  'GatewayPorts no',
  'PermitTunnel no',
  'X11Forwarding no',
  'PermitUserEnvironment no',
  'PrintMotd no',
  'PrintLastLog no',
  'UseDNS no',
  'LogLevel ERROR',
  'Subsystem sftp internal-sftp',
] as const

/**
 * The shell run by `podman exec -i` (POSIX sh, no arguments). It writes the key material from the
 * two environment variables (podman passes them by name, so they are never on a command line)
 * into a fresh 0700 temp dir, drops them from the environment, and runs `sshd -i` with only its
 * own config (`-f`; the image's /etc/ssh/sshd_config is not read). The container's environment (the
 * egress proxy, CA bundles, provider credentials) is what `podman exec` gives every command; sshd
 * clears a session's environment, so it is handed on with SetEnv — through a FIFO, so no value
 * rests in a file (credentials never land in the sandbox's filesystem, docs/credentials.md), and
 * never on a command line (host users can read a container process's argv). The temp dir (and
 * a writer that sshd never read from) is removed when sshd exits.
 */
export function sshdScript(): string {
  const conf = SSHD_OPTIONS.map(o => `'${o}'`).join(' ')
  return String.raw`set -eu
umask 077
d=$(mktemp -d /tmp/podshell-sshd.XXXXXX)
trap 'rm -rf "$d"' EXIT
printf '%s\n' "$${SSHD_ENV_HOST_KEY}" > "$d/host_key"
printf '%s\n' "$${SSHD_ENV_AUTHORIZED_KEY}" > "$d/authorized_keys"
unset ${SSHD_ENV_HOST_KEY} ${SSHD_ENV_AUTHORIZED_KEY} PODSHELL_EXEC_ID
nl='
'
setenv=''
for k in $(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p'); do
  case "$k" in HOME|USER|LOGNAME|SHELL|PWD|OLDPWD|SHLVL|TERM|MAIL|_|d|k|v|nl|setenv) continue;; esac
  eval "v=\${$k-}"
  case "$v" in ''|*'"'*|*'\'*|*"$nl"*) continue;; esac
  setenv="$setenv \"$k=$v\""
done
mkfifo "$d/sshd_config"
{
  printf '%s\n' "HostKey $d/host_key" "AuthorizedKeysFile $d/authorized_keys" ${conf}
  [ -z "$setenv" ] || printf 'SetEnv%s\n' "$setenv"
} > "$d/sshd_config" &
w=$!
trap 'kill "$w" 2>/dev/null || true; rm -rf "$d"' EXIT
/usr/sbin/sshd -i -e -f "$d/sshd_config"`
}

/** Exit code of `podman exec` when podman itself failed (no such container; not running on Podman 5). */
const PODMAN_EXEC_FAILED = 125
const MAX_STDERR = 64 * 1024

/**
 * Runs one `sshd -i` session in the sandbox with this process's stdin/stdout as the connection
 * (the ProxyCommand side). No phase check first (it would cost two podman calls per connection):
 * when podman itself fails `podmanFailed` is set and its stderr is held back so the
 * caller can say why in one line; otherwise sshd's stderr (errors only) is passed on at the end.
 */
export async function runSshd(podman: Podman, dataDir: string, name: string, stderr: (s: string) => void): Promise<{ code: number; podmanFailed: boolean; stderr: string }> {
  const keys = readSshdKeys(dataDir, name)
  const { file, args } = podman.spawnArgs(sshdExecArgs(agentContainer(name), sshdScript()))
  const child = spawn(file, args, { stdio: ['inherit', 'inherit', 'pipe'], env: { ...process.env, [SSHD_ENV_HOST_KEY]: keys.hostKey, [SSHD_ENV_AUTHORIZED_KEY]: keys.authorizedKey } })
  let err = ''
  child.stderr.on('data', (d: Buffer) => {
    if (err.length < MAX_STDERR) err += d.toString('utf8').slice(0, MAX_STDERR - err.length)
  })
  const code = await new Promise<number>(resolve => {
    child.on('error', e => {
      err += e.message
      resolve(127)
    })
    child.on('close', (c, sig) => resolve(c ?? (sig ? 128 + signalNumber(sig) : 1)))
  })
  // podman 4.3 exits 255 ("Error: can only create exec sessions on running containers"), as sshd
  // does on its own errors: podman's are told apart by its `Error:` line.
  const podmanFailed = code === PODMAN_EXEC_FAILED || code === 127 || (code === 255 && /^Error: /m.test(err))
  if (!podmanFailed && err) stderr(err)
  return { code, podmanFailed, stderr: err }
}

const USER_NAME_RE = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,31}$/

/**
 * The login name sshd must be asked for: the name the agent's uid has in the container's passwd
 * (a non-root sshd serves only its own uid). Under `--userns=keep-id` podman adds an entry named
 * after the uid ("1000") unless the image already has one for it (the image's `agent`). Asked of
 * the running container; for one that is not running, the uid (podman's naming).
 */
export async function agentUserName(podman: Podman, name: string, running: boolean, uid = process.getuid?.() ?? 1000): Promise<string> {
  if (running) {
    const r = await podman.run(agentUserNameArgs(agentContainer(name)), { reject: false })
    const n = r.stdout.trim()
    if (r.exitCode === 0 && USER_NAME_RE.test(n)) return n
  }
  return String(uid)
}
