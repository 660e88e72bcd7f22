import { compareVersion, MIN_PODMAN } from '../podman/podman.js'
import { pickGatewayNetwork } from '../podman/network.js'
import type { DoctorFacts, SubIdRange } from './facts.js'

/**
 * What the facts mean. Pure: every status, detail and fix is decided here from a DoctorFacts value,
 * so tests cover hosts we do not have (cgroup v2, Fedora, root, no podman) with captured facts.
 *
 * fail = podshell cannot run sandboxes here; warn = it runs, with the limitation named in detail.
 */
export type CheckStatus = 'ok' | 'warn' | 'fail'

export interface Check {
  id: string
  name: string
  status: CheckStatus
  detail: string
  /** How to fix it (warn/fail). */
  fix?: string
}

export interface DoctorReport {
  /** True when no check failed: podshell can run. */
  ok: boolean
  has_podman: boolean
  has_docker: boolean
  has_openshell: boolean
  podman_version: string | null
  runtime: { name: string; reason: string; fallback: boolean; failed: { runtime: string; error: string }[] } | null
  /** podman's network backend (netavark or cni) and the helper the gateway runs with (src/podman/network.ts). */
  network: { backend: string | null; gateway_helper: 'pasta' | 'slirp4netns' | null }
  checks: Check[]
}

/** Rootless containers map 65536 ids (0-65535) into the user namespace; fewer breaks many images. */
export const MIN_SUBIDS = 65536

/**
 * The facts gathered by src/doctor/facts → the report, one check after another in the order
 * `podshell doctor` prints them. Long by design: a flat, pure list of independent checks (each a
 * few lines with its own fix text), so the printed order and the code order are the same.
 */
export function evaluate(f: DoctorFacts): DoctorReport {
  const checks: Check[] = []
  const add = (c: Check) => checks.push(c)
  const podmanOk = f.podman.ok
  const skipped = (id: string, name: string): Check => ({ id, name, status: 'warn', detail: 'not checked: podman is not usable', fix: 'fix the podman check first' })

  // podman present and new enough
  if (f.podman.ok) {
    add({ id: 'podman', name: 'podman', status: 'ok', detail: `podman ${f.podman.version} at ${f.podman.path}` })
  } else {
    add({
      id: 'podman',
      name: 'podman',
      status: 'fail',
      detail: f.podman.error,
      fix: f.podman.code === 'PODMAN_TOO_OLD' || f.podman.code === 'PODMAN_NOT_FOUND'
        ? `install podman >= ${MIN_PODMAN.join('.')} (dnf install podman / apt-get install podman)`
        : f.podman.code === 'PODMAN_STALE_STATE'
          ? 'run `podman system migrate` as this user (it resets the stale pause-process state), then `podshell doctor` again'
          : f.podman.code === 'PODMAN_STORAGE_IDMAP'
            ? 'run `podman system reset` as this user (removes its images and containers), then `podshell image build all`'
            : 'reinstall podman; `podman info` shows what is wrong',
    })
  }
  if (f.podman.ok && compareVersion(f.podman.version, MIN_PODMAN) < 0) {
    checks[checks.length - 1] = { id: 'podman', name: 'podman', status: 'fail', detail: `podman ${f.podman.version} is older than ${MIN_PODMAN.join('.')}`, fix: `install podman >= ${MIN_PODMAN.join('.')}` }
  }

  // rootless
  if (f.uid === 0 && f.platform === 'linux') {
    add({ id: 'rootless', name: 'rootless', status: 'fail', detail: 'running as root: podshell supports rootless Podman only (root in a sandbox would be root on the host)', fix: 'run podshell as your normal user' })
  } else if (f.info && !f.info.rootless) {
    add({ id: 'rootless', name: 'rootless', status: 'fail', detail: `podman reports a rootful setup for uid ${f.uid}`, fix: 'use the rootless podman of your user (unset CONTAINER_HOST / remote connections)' })
  } else {
    add({ id: 'rootless', name: 'rootless', status: 'ok', detail: `uid ${f.uid} (${f.user})` })
  }

  const vm = f.platform !== 'linux'
  const inVm = (id: string, name: string): Check => ({ id, name, status: 'ok', detail: `inside the podman machine (not checked from ${f.platform})` })

  // subordinate ids
  if (vm) add(inVm('subids', 'subuid/subgid'))
  else if (f.uid !== 0) add(subIdCheck(f))

  // OCI runtime, as the Podman class probe found it
  if (f.podman.ok) {
    const rt = f.podman.runtime
    add({
      id: 'runtime',
      name: 'OCI runtime',
      status: 'ok',
      detail: rt.failed.length ? `${rt.runtime}, fallback: ${rt.reason}` : `${rt.runtime} (${rt.reason})`,
    })
  } else if (f.podman.code === 'NO_RUNTIME') {
    add({ id: 'runtime', name: 'OCI runtime', status: 'fail', detail: f.podman.error, fix: 'install crun or runc (on cgroup v1/hybrid hosts crun < 1.9 fails: install runc)' })
  } else {
    add(skipped('runtime', 'OCI runtime'))
  }

  // storage driver
  if (f.info) {
    const d = f.info.graphDriver
    if (d === 'vfs') {
      add({
        id: 'storage',
        name: 'storage driver',
        status: 'warn',
        detail: 'vfs: every container copies its whole image (seconds per sandbox, GBs of disk)',
        fix: 'write ~/.config/containers/storage.conf with `[storage]\ndriver = "overlay"` then run `podman system reset` (deletes all containers and images of this user)',
      })
    } else {
      add({ id: 'storage', name: 'storage driver', status: 'ok', detail: `${d} (${f.info.graphRoot})` })
    }
  } else add(podmanOk ? { id: 'storage', name: 'storage driver', status: 'fail', detail: `podman info failed: ${f.infoError ?? 'unknown error'}`, fix: 'run `podman info` to see the error' } : skipped('storage', 'storage driver'))

  // network helpers (the gateway's egress; sandboxes themselves use --network none)
  add(networkCheck(f))

  // seccomp
  if (f.info) {
    if (!f.info.seccompEnabled) {
      add({ id: 'seccomp', name: 'seccomp', status: 'fail', detail: 'podman reports seccomp disabled: the agent would run without a syscall filter', fix: 'install a podman/runtime built with libseccomp (distribution packages are)' })
    } else if (!f.seccompProfile.ok) {
      add({ id: 'seccomp', name: 'seccomp', status: 'fail', detail: `profile ${f.seccompProfile.path}: ${f.seccompProfile.error ?? 'unreadable'}`, fix: 'reinstall podshell or point PODSHELL_SECCOMP_PROFILE at a valid profile' })
    } else {
      add({ id: 'seccomp', name: 'seccomp', status: 'ok', detail: `enabled; profile ${f.seccompProfile.path}` })
    }
  } else add(skipped('seccomp', 'seccomp'))

  // cgroups and rootless resource limits
  add(cgroupCheck(f))

  // XDG_RUNTIME_DIR
  add(vm ? inVm('xdg', 'XDG_RUNTIME_DIR') : xdgCheck(f))

  // images
  if (f.images) {
    const missing = f.images.filter(i => i.state === 'missing')
    const stale = f.images.filter(i => i.state === 'stale')
    if (missing.length) {
      add({ id: 'images', name: 'images', status: 'warn', detail: `not built yet: ${missing.map(i => i.ref).join(', ')} (built on first use)`, fix: 'podshell image build all (add --offline without a registry)' })
    } else if (stale.length) {
      add({ id: 'images', name: 'images', status: 'warn', detail: `${stale.map(i => i.ref).join(', ')} holds another podshell or node version (rebuilt on next use)`, fix: 'podshell image build gateway' })
    } else {
      add({ id: 'images', name: 'images', status: 'ok', detail: f.images.map(i => `${i.ref} ${i.id?.slice(0, 12) ?? ''}`.trim()).join(', ') })
    }
  } else if (podmanOk) {
    add({ id: 'images', name: 'images', status: 'warn', detail: `cannot check images: ${f.imagesError ?? 'unknown error'}`, fix: 'run `npm run build` if this is a source checkout, then `podshell image build all`' })
  } else add(skipped('images', 'images'))

  const rt = f.podman.ok ? f.podman.runtime : undefined
  return {
    ok: !checks.some(c => c.status === 'fail'),
    has_podman: Boolean(f.binaries.podman),
    has_docker: Boolean(f.binaries.docker),
    has_openshell: Boolean(f.binaries.openshell),
    podman_version: f.podman.ok ? f.podman.version : null,
    runtime: rt ? { name: rt.runtime, reason: rt.reason, fallback: rt.failed.length > 0, failed: rt.failed } : null,
    network: { backend: f.info?.networkBackend ?? null, gateway_helper: f.podman.ok ? gatewayPick(f).helper ?? null : null },
    checks,
  }
}

const total = (r: SubIdRange[]) => r.reduce((a, b) => a + b.count, 0)

function subIdCheck(f: DoctorFacts): Check {
  const u = total(f.subuid)
  const g = total(f.subgid)
  const fix = `as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ${f.user} (pick a range no other user has), then \`podman system migrate\``
  if (u === 0 || g === 0) {
    return { id: 'subids', name: 'subuid/subgid', status: 'fail', detail: `no ${u === 0 ? 'subuid' : 'subgid'} range for ${f.user} in /etc/sub${u === 0 ? 'uid' : 'gid'}${f.binaries.getsubids ? ' or getsubids' : ''}`, fix }
  }
  const src = f.subidSource === 'getsubids' ? 'getsubids' : '/etc/subuid, /etc/subgid'
  if (u < MIN_SUBIDS || g < MIN_SUBIDS) {
    return { id: 'subids', name: 'subuid/subgid', status: 'warn', detail: `${u} subuids, ${g} subgids (${src}): images with ids above ${Math.min(u, g)} fail to unpack`, fix }
  }
  return { id: 'subids', name: 'subuid/subgid', status: 'ok', detail: `${u} subuids, ${g} subgids (${src})` }
}

/** The gateway's helper as src/podman/network.ts picks it, from what podman info and the disk show. */
function gatewayPick(f: DoctorFacts) {
  const have = { pasta: Boolean(f.info?.pasta ?? f.binaries.pasta), slirp4netns: Boolean(f.info?.slirp4netns ?? f.binaries.slirp4netns) }
  return { have, ...pickGatewayNetwork(f.podman.ok ? f.podman.version : '0', have) }
}

function networkCheck(f: DoctorFacts): Check {
  const pick = gatewayPick(f)
  const found = (['pasta', 'slirp4netns'] as const).filter(h => pick.have[h])
  const name = 'network helpers'
  if (found.length === 0) {
    return { id: 'network', name, status: 'fail', detail: 'neither pasta nor slirp4netns found: the gateway container has no network for egress', fix: 'install passt (pasta) or slirp4netns' }
  }
  const backend = f.info?.networkBackend ? `; ${f.info.networkBackend} backend` : ''
  if (f.platform !== 'linux') return { id: 'network', name, status: 'ok', detail: `${found.join(', ')} (in the podman machine)${backend}` }
  if (f.podman.ok && !pick.helper) {
    return { id: 'network', name, status: 'fail', detail: `found ${found.join(', ')}, but ${pick.reason}`, fix: 'install slirp4netns (podman 4 uses it for rootless networking)' }
  }
  const uses = pick.helper ? `gateway uses ${pick.reason}` : `found ${found.join(', ')}`
  if (!f.tun.exists) {
    return { id: 'network', name, status: 'fail', detail: `${uses}, but /dev/net/tun does not exist`, fix: 'as root: modprobe tun (or mknod -m 666 /dev/net/tun c 10 200)' }
  }
  if (!f.tun.readWrite) {
    return { id: 'network', name, status: 'fail', detail: `${uses}, but /dev/net/tun is not readable and writable by this user (${f.tun.error ?? 'denied'}): the gateway cannot start`, fix: 'as root: chmod 666 /dev/net/tun (its usual mode)' }
  }
  return { id: 'network', name, status: 'ok', detail: `${pick.helper ? pick.reason : found.join(', ')}${backend}; found: ${found.join(', ')}; /dev/net/tun read-write` }
}

function cgroupCheck(f: DoctorFacts): Check {
  const name = 'cgroups / resource limits'
  const layout = f.cgroup.layout
  const limits = f.cgroup.limits
  const v2fix = 'delegate controllers to users: as root, write /etc/systemd/system/user@.service.d/delegate.conf with `[Service]\nDelegate=cpu cpuset io memory pids`, run `systemctl daemon-reload`, and log in again'
  const v1fix = 'boot with cgroup v2 only (kernel argument systemd.unified_cgroup_hierarchy=1); until then sandboxes run without --cpu/--memory limits'
  const desc = layout === 'v2' ? 'cgroup v2' : layout === 'hybrid' ? 'cgroup v1/v2 hybrid' : 'cgroup v1'
  const deleg = f.cgroup.delegated ? `; delegated: ${f.cgroup.delegated.join(' ') || 'none'}` : ''
  if (!limits) return { id: 'cgroups', name, status: 'warn', detail: `${desc}${deleg}; limits not tried (podman is not usable)`, fix: 'fix the podman check first' }
  if (limits.outcome === 'applied') {
    if (layout === 'v2') {
      const missing = ['cpu', 'memory', 'pids'].filter(c => f.cgroup.delegated && !f.cgroup.delegated.includes(c))
      if (missing.length) return { id: 'cgroups', name, status: 'warn', detail: `${desc}${deleg}: ${missing.join(', ')} not delegated, so those limits may not apply`, fix: v2fix }
    }
    return { id: 'cgroups', name, status: 'ok', detail: `${desc}${deleg}; rootless --memory/--cpus/--pids-limit work` }
  }
  if (limits.outcome === 'ignored') {
    return { id: 'cgroups', name, status: 'warn', detail: `${desc}: rootless resource limits are ignored (podman: ${limits.detail}); podshell refuses --cpu/--memory here`, fix: layout === 'v2' ? v2fix : v1fix }
  }
  return { id: 'cgroups', name, status: 'warn', detail: `${desc}${deleg}: a container with resource limits failed to start (${limits.detail}); --cpu/--memory will fail`, fix: layout === 'v2' ? v2fix : v1fix }
}

function xdgCheck(f: DoctorFacts): Check {
  const name = 'XDG_RUNTIME_DIR'
  const x = f.xdgRuntimeDir
  const fix = `log in through a session manager (systemd-logind creates /run/user/${f.uid}), or as root: mkdir -m 700 /run/user/${f.uid} && chown ${f.user} /run/user/${f.uid}, then export XDG_RUNTIME_DIR=/run/user/${f.uid}`
  if (!x.value) return { id: 'xdg', name, status: 'warn', detail: 'not set: podman falls back to a directory under /tmp, and its state may not match other sessions', fix }
  if (!x.exists) return { id: 'xdg', name, status: 'fail', detail: `${x.value} does not exist`, fix }
  if (!x.ownedByUser) return { id: 'xdg', name, status: 'fail', detail: `${x.value} is not owned by ${f.user}`, fix }
  if (x.mode !== undefined && (x.mode & 0o077) !== 0) return { id: 'xdg', name, status: 'warn', detail: `${x.value} is mode ${x.mode.toString(8)}: other users can reach podman's sockets in it`, fix: `chmod 700 ${x.value}` }
  return { id: 'xdg', name, status: 'ok', detail: x.value }
}
