#!/usr/bin/env node
// Generates seccomp/default.json, the profile every podshell agent container runs under, from
// Podman's default profile (seccomp/base/containers-common.json, vendored verbatim from
// containers/common pkg/seccomp/seccomp.json; see seccomp/README.md for the pinned commit) plus
// podshell's additions below.
//
//   node scripts/gen-seccomp.mjs           writes seccomp/default.json
//   node scripts/gen-seccomp.mjs --check   exits 1 if seccomp/default.json is not what this script produces
//
// The profile format is the one Podman reads for `--security-opt seccomp=FILE` (containers/common
// `Seccomp` type). Go's JSON decoder ignores unknown keys, so this script only emits keys that type
// has: a misspelt key would silently drop a rule.
//
// Rules are written so that no two rules for the same syscall with DIFFERENT actions can match the
// same call: libseccomp's behaviour for overlapping rules with conflicting actions is not something
// to rely on, and an unconditional rule for a syscall overrides every conditional one. Every
// conditional syscall below (clone, unshare, socket, socketpair, personality) therefore has its
// base rules removed and is rewritten as a set of disjoint rules. Anything a rule set leaves
// uncovered falls to the profile's default action (ENOSYS), i.e. it fails closed.
//
// Each rule also carries at most one comparison per argument index: runc turns several comparisons
// on the same index into separate OR-ed rules, so `a != 1 && a != 2` on one index would become
// `a != 1 || a != 2` (always true). Sets of values are written as one rule per value instead.
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'

const EPERM = 1
const ENOSYS = 38
const EPROTONOSUPPORT = 93
const EAFNOSUPPORT = 97
const EOPNOTSUPP = 95

/** Namespace-creating clone/unshare flags (linux/sched.h). */
export const CLONE_NS_FLAGS = {
  CLONE_NEWNS: 0x00020000,
  CLONE_NEWCGROUP: 0x02000000,
  CLONE_NEWUTS: 0x04000000,
  CLONE_NEWIPC: 0x08000000,
  CLONE_NEWUSER: 0x10000000,
  CLONE_NEWPID: 0x20000000,
  CLONE_NEWNET: 0x40000000,
}
/** unshare(2) only: for clone(2) the low byte is the exit signal, so 0x80 means SIGxxx there. */
export const CLONE_NEWTIME = 0x00000080

/** Address families an agent may open sockets in (linux/socket.h). */
export const ALLOWED_FAMILIES = { AF_UNIX: 1, AF_INET: 2, AF_INET6: 10 }
export const AF_NETLINK = 16
/**
 * Netlink protocols allowed: NETLINK_ROUTE (0) is what `ip`, glibc's getaddrinfo(AI_ADDRCONFIG)
 * and if_nameindex use; NETLINK_SOCK_DIAG (4) is what `ss` uses. Both only show the sandbox's own
 * network namespace (lo only under --network none) and changing anything in it needs
 * CAP_NET_ADMIN, which the agent does not have. Every other netlink protocol (audit, netfilter,
 * xfrm, generic, uevent, ...) is kernel attack surface an agent has no use for.
 */
export const ALLOWED_NETLINK = { NETLINK_ROUTE: 0, NETLINK_SOCK_DIAG: 4 }
/** Families denied with EPERM (named in podshell's threat model), not EAFNOSUPPORT. */
export const EPERM_FAMILIES = { AF_PACKET: 17, AF_VSOCK: 40 }
/** Highest family number the rules enumerate one by one; anything above is one GT rule. */
export const AF_MAX_ENUMERATED = 45 // AF_MCTP; AF_MAX is 46 on Linux 6.x

/** socketpair(AF_UNIX) types allowed without --allow-socket: connected pairs that cannot address anyone else. */
export const SOCKETPAIR_TYPES = { SOCK_STREAM: 1, SOCK_SEQPACKET: 5 }
export const SOCK_DGRAM = 2
export const SOCK_TYPE_MASK = 0xf

/** Syscalls denied outright with EPERM, whatever capabilities the container has. */
export const DENY_EPERM = {
  'reading or writing another process': ['ptrace', 'process_vm_readv', 'process_vm_writev', 'pidfd_getfd'],
  'kernel attack surface an agent never needs': ['bpf', 'perf_event_open', 'userfaultfd', 'io_uring_setup', 'io_uring_enter', 'io_uring_register'],
  'kernel keyrings (shared per user across containers)': ['keyctl', 'add_key', 'request_key'],
  'mounts, old and new API': [
    'mount', 'umount', 'umount2', 'pivot_root',
    'open_tree', 'move_mount', 'fsopen', 'fsconfig', 'fsmount', 'fspick', 'mount_setattr',
  ],
  'joining other namespaces': ['setns'],
  'loading kernels and modules': ['kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'delete_module'],
  '32-bit socket multiplexer: would bypass the socket family rules (32-bit ABIs are also not in the architecture list)': ['socketcall'],
}

/** personality(2) values allowed: PER_LINUX, UNAME26, and the 0xffffffff query. */
export const ALLOWED_PERSONALITY = { PER_LINUX: 0x0, UNAME26: 0x20000, QUERY: 0xffffffff }

/** Syscalls whose base rules are dropped and replaced by the rules below. */
const REWRITTEN = ['clone', 'clone3', 'unshare', 'socket', 'socketpair', 'personality', 'fallocate']

const eq = (index, value) => ({ index, value, valueTwo: 0, op: 'SCMP_CMP_EQ' })
const gt = (index, value) => ({ index, value, valueTwo: 0, op: 'SCMP_CMP_GT' })
const masked = (index, mask, expect) => ({ index, value: mask, valueTwo: expect, op: 'SCMP_CMP_MASKED_EQ' })
const rule = (names, action, args, comment, extra = {}) => ({
  names,
  action,
  args,
  comment,
  includes: extra.includes ?? {},
  excludes: extra.excludes ?? {},
  ...(extra.errnoRet !== undefined ? { errnoRet: extra.errnoRet } : {}),
})

/** clone/unshare: allow when no namespace flag is set; EPERM (what an unprivileged caller gets) for each flag. */
function namespaceRules(name, flags, argIndex, arches) {
  const mask = Object.values(flags).reduce((a, b) => a | b, 0) >>> 0
  const extra = arches === 'include-s390'
    ? { includes: { arches: ['s390', 's390x'] } }
    : arches === 'exclude-s390' ? { excludes: { arches: ['s390', 's390x'] } } : {}
  const out = [
    rule([name], 'SCMP_ACT_ALLOW', [masked(argIndex, mask, 0)], `${name} without namespace flags`, extra),
  ]
  for (const [flag, bit] of Object.entries(flags)) {
    out.push(rule([name], 'SCMP_ACT_ERRNO', [masked(argIndex, bit, bit)],
      `${name} with ${flag}: new namespaces (above all user namespaces) hand a process capabilities over a fresh kernel surface`,
      { ...extra, errnoRet: EPERM }))
  }
  return out
}

export function podshellRules(o = { unixSockets: false }) {
  const rules = []
  for (const [why, names] of Object.entries(DENY_EPERM)) {
    rules.push(rule(names, 'SCMP_ACT_ERRNO', [], `podshell: ${why}`, { errnoRet: EPERM }))
  }
  // clone(2): flags are argument 0, except on s390/s390x where they are argument 1.
  rules.push(...namespaceRules('clone', CLONE_NS_FLAGS, 0, 'exclude-s390'))
  rules.push(...namespaceRules('clone', CLONE_NS_FLAGS, 1, 'include-s390'))
  rules.push(...namespaceRules('unshare', { ...CLONE_NS_FLAGS, CLONE_NEWTIME }, 0, 'all'))
  // clone3 passes its flags in a struct seccomp cannot read: ENOSYS makes glibc fall back to clone(2),
  // whose flags the rules above can check.
  rules.push(rule(['clone3'], 'SCMP_ACT_ERRNO', [], 'podshell: clone3 flags are unreadable to seccomp; ENOSYS makes libc fall back to clone', { errnoRet: ENOSYS }))
  // fallocate(2) reserves any amount of disk in ONE call, faster than the disk guard's statfs tick
  // (src/watch/disk-guard.ts) can see: the home and read-write mounts are the host's own disk.
  // EOPNOTSUPP is what a filesystem without it returns, so posix_fallocate() falls back to writing
  // the blocks (at disk speed, which the guard bounds) and tools that probe it carry on.
  rules.push(rule(['fallocate'], 'SCMP_ACT_ERRNO', [], 'podshell: fallocate reserves any amount of the host disk at once; EOPNOTSUPP makes libc write the blocks instead', { errnoRet: EOPNOTSUPP }))

  // socket(2): allowlist of families; everything else is denied as the kernel would deny an
  // unsupported family, so programs degrade gracefully.
  for (const [fam, v] of Object.entries(ALLOWED_FAMILIES)) {
    if (fam === 'AF_UNIX' && !o.unixSockets) continue
    rules.push(rule(['socket'], 'SCMP_ACT_ALLOW', [eq(0, v)], `socket(${fam})`))
  }
  if (!o.unixSockets) {
    // Host unix sockets (issue 9 finding 7): seccomp cannot read connect()'s path, but without an
    // AF_UNIX socket there is nothing to connect() with. Pathname sockets are reached through the
    // filesystem, so a socket a host process creates in a mounted tree AFTER start (masking only
    // covers the ones there at create) would otherwise be reachable. socketpair(AF_UNIX) stays
    // (child stdio, IPC between the agent's own processes); its datagram form is denied below.
    rules.push(rule(['socket'], 'SCMP_ACT_ERRNO', [eq(0, ALLOWED_FAMILIES.AF_UNIX)], 'podshell: socket(AF_UNIX): would reach host unix sockets in mounted trees (allow with --allow-socket)', { errnoRet: EPERM }))
  }
  for (const [proto, p] of Object.entries(ALLOWED_NETLINK)) {
    rules.push(rule(['socket'], 'SCMP_ACT_ALLOW', [eq(0, AF_NETLINK), eq(2, p)], `socket(AF_NETLINK, ${proto})`))
  }
  const allowedNl = Object.values(ALLOWED_NETLINK)
  const maxNl = Math.max(...allowedNl)
  for (let p = 0; p < maxNl; p++) {
    if (allowedNl.includes(p)) continue
    rules.push(rule(['socket'], 'SCMP_ACT_ERRNO', [eq(0, AF_NETLINK), eq(2, p)], `socket(AF_NETLINK, ${p}): netlink protocol not allowed`, { errnoRet: EPROTONOSUPPORT }))
  }
  rules.push(rule(['socket'], 'SCMP_ACT_ERRNO', [eq(0, AF_NETLINK), gt(2, maxNl)], `socket(AF_NETLINK, >${maxNl}): netlink protocols other than route and sock_diag (audit, netfilter, xfrm, generic, uevent, ...)`, { errnoRet: EPROTONOSUPPORT }))
  for (const [fam, v] of Object.entries(EPERM_FAMILIES)) {
    rules.push(rule(['socket'], 'SCMP_ACT_ERRNO', [eq(0, v)], `podshell: socket(${fam}) ${fam === 'AF_PACKET' ? 'sniffs and forges raw frames' : 'talks to the host or hypervisor outside the network namespace'}`, { errnoRet: EPERM }))
  }
  const special = new Set([...Object.values(ALLOWED_FAMILIES), AF_NETLINK, ...Object.values(EPERM_FAMILIES)])
  const other = []
  for (let f = 0; f <= AF_MAX_ENUMERATED; f++) if (!special.has(f)) other.push(f)
  for (const f of other) {
    rules.push(rule(['socket'], 'SCMP_ACT_ERRNO', [eq(0, f)], `socket(family ${f}): address family not allowed`, { errnoRet: EAFNOSUPPORT }))
  }
  rules.push(rule(['socket'], 'SCMP_ACT_ERRNO', [gt(0, AF_MAX_ENUMERATED)], `socket(family >${AF_MAX_ENUMERATED}): address family not allowed`, { errnoRet: EAFNOSUPPORT }))

  // socketpair(2): only AF_UNIX makes sense (and AF_TIPC would otherwise be reachable here).
  if (o.unixSockets) {
    rules.push(rule(['socketpair'], 'SCMP_ACT_ALLOW', [eq(0, ALLOWED_FAMILIES.AF_UNIX)], 'socketpair(AF_UNIX)'))
  } else {
    // A connected stream/seqpacket pair cannot connect() again (EISCONN) and ignores sendto()'s
    // address; a DATAGRAM one can be connect()ed or sendto() any pathname socket, so it is denied.
    // The type's low 4 bits are the type (SOCK_NONBLOCK/SOCK_CLOEXEC are flags above them).
    for (const [type, t] of Object.entries(SOCKETPAIR_TYPES)) {
      rules.push(rule(['socketpair'], 'SCMP_ACT_ALLOW', [eq(0, ALLOWED_FAMILIES.AF_UNIX), masked(1, SOCK_TYPE_MASK, t)], `socketpair(AF_UNIX, ${type})`))
    }
    rules.push(rule(['socketpair'], 'SCMP_ACT_ERRNO', [eq(0, ALLOWED_FAMILIES.AF_UNIX), masked(1, SOCK_TYPE_MASK, SOCK_DGRAM)], 'podshell: socketpair(AF_UNIX, SOCK_DGRAM): a datagram socket can sendto() host unix sockets', { errnoRet: EPERM }))
  }
  rules.push(rule(['socketpair'], 'SCMP_ACT_ERRNO', [eq(0, 0)], 'socketpair(family 0)', { errnoRet: EAFNOSUPPORT }))
  rules.push(rule(['socketpair'], 'SCMP_ACT_ERRNO', [gt(0, ALLOWED_FAMILIES.AF_UNIX)], 'socketpair: families other than AF_UNIX', { errnoRet: EAFNOSUPPORT }))

  // personality(2): the base profile's list minus PER_LINUX32 (8) and UNAME26|PER_LINUX32: with no
  // 32-bit ABI in the architecture list a 32-bit personality only makes uname lie about the machine.
  for (const [name, v] of Object.entries(ALLOWED_PERSONALITY)) {
    rules.push(rule(['personality'], 'SCMP_ACT_ALLOW', [eq(0, v)], `personality(${name})`))
  }
  return rules
}

/**
 * Native 64-bit ABIs only: the base profile maps x86_64 to x86 + x32, aarch64 to arm, s390x to s390
 * and mips64 to o32 + n32. A 32-bit ABI has its own syscall table (on x86, socket calls go through
 * socketcall(2)), so allowing it would need every rule above written twice. With only the native ABI
 * listed, any 32-bit syscall (`int 0x80` from a 64-bit process, or a 32-bit binary) fails.
 */
function nativeArchMap(base) {
  const n32 = new Set(['SCMP_ARCH_MIPS64N32', 'SCMP_ARCH_MIPSEL64N32'])
  return base.archMap
    .filter(a => !n32.has(a.architecture))
    .map(a => ({ architecture: a.architecture, subArchitectures: [] }))
}

/**
 * `unixSockets: false` (default.json, every sandbox without --allow-socket): socket(AF_UNIX) and
 * datagram socketpairs denied. `true` (unix-sockets.json, a sandbox given a host socket on purpose):
 * AF_UNIX allowed as before; the sockets found at create are still masked.
 */
export function generate(base, o = { unixSockets: false }) {
  const denied = new Set([...Object.values(DENY_EPERM).flat(), ...REWRITTEN])
  const syscalls = []
  for (const r of base.syscalls) {
    const names = r.names.filter(n => !denied.has(n))
    if (names.length === 0) continue
    syscalls.push({ ...r, names })
  }
  syscalls.push(...podshellRules(o))
  return {
    defaultAction: base.defaultAction,
    defaultErrnoRet: base.defaultErrnoRet,
    defaultErrno: base.defaultErrno,
    archMap: nativeArchMap(base),
    syscalls,
  }
}

export function render(profile) {
  return JSON.stringify(profile, null, 2) + '\n'
}

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
export const BASE_PATH = join(root, 'seccomp', 'base', 'containers-common.json')
export const OUT_PATH = join(root, 'seccomp', 'default.json')
export const UNIX_OUT_PATH = join(root, 'seccomp', 'unix-sockets.json')

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const base = JSON.parse(readFileSync(BASE_PATH, 'utf8'))
  for (const [out, unixSockets] of [[OUT_PATH, false], [UNIX_OUT_PATH, true]]) {
    const text = render(generate(base, { unixSockets }))
    if (process.argv.includes('--check')) {
      const current = readFileSync(out, 'utf8')
      if (current !== text) {
        process.stderr.write(`${out} is stale: run node scripts/gen-seccomp.mjs\n`)
        process.exit(1)
      }
    } else {
      writeFileSync(out, text)
      process.stderr.write(`wrote ${out}\n`)
    }
  }
}
