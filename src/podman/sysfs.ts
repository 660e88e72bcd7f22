import { readdirSync, realpathSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { compareVersion } from './podman.js'

/**
 * Hides the host's network interfaces from the agent's /sys under Podman 5.
 *
 * A container that joins a pod with its own user namespace (the sandbox pod: `--userns keep-id`,
 * `--network none`) cannot get a fresh sysfs from Podman 5: podman bind-mounts the host's /sys
 * instead (measured with 5.4.2: `ls /sys/class/net` in the agent listed the host's eth0, ifb0,
 * ifb1, lo and the test veth; `ip link` and /proc/net/dev showed only lo). Podman 4.3 mounts a
 * fresh sysfs of the pod's network namespace (only lo). sysfs is per network namespace only in its
 * net class, so what leaks is the host's interfaces: names, MAC addresses, counters, link state.
 * Network isolation itself is unaffected (the pod's namespace has only lo).
 *
 * Each directory that lists interfaces is covered with an empty tmpfs of mode 000 (the same mask
 * as `.ai-read-deny` paths): /sys/class/net, /sys/devices/virtual/net and the `net` dir of every
 * physical device, found from this host's /sys/class/net links (podshell sees the same sysfs the
 * container gets). Not passed to Podman 4, whose sysfs is the sandbox's own.
 */
export function sysfsNetMasks(podmanVersion: string, sys = '/sys'): string[] {
  if (compareVersion(podmanVersion, [5, 0]) < 0) return []
  let devices: string[]
  try {
    devices = readdirSync(join(sys, 'class', 'net')).map(n => realpathSync(join(sys, 'class', 'net', n)))
  } catch {
    devices = [] // no sysfs to read (not Linux): nothing of the host's to hide
  }
  return sysfsNetMaskArgs(devices)
}

/** The mask mounts for interface paths (realpaths under /sys/devices). Pure. */
export function sysfsNetMaskArgs(devicePaths: readonly string[]): string[] {
  const dirs = new Set(['/sys/class/net', '/sys/devices/virtual/net'])
  for (const p of devicePaths) {
    const dir = dirname(p)
    // Only plain sysfs paths: a ',' would end the --mount value; anything else is not an interface dir.
    if (/^\/sys\/devices\/[\w.:/-]+\/net$/.test(dir) && !dir.includes('..')) dirs.add(dir)
  }
  return [...dirs].sort().flatMap(d => ['--mount', `type=tmpfs,destination=${d},ro=true,tmpfs-mode=000,notmpcopyup`])
}
