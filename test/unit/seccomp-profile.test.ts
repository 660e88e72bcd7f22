import { describe, expect, it } from 'vitest'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
// @ts-expect-error: plain .mjs script without type declarations
import { generate, render, DENY_EPERM, CLONE_NS_FLAGS, CLONE_NEWTIME } from '../../scripts/gen-seccomp.mjs'

/**
 * The shipped profile (seccomp/default.json) checked as data: what each syscall gets on x86_64 for a
 * process without capabilities (the agent runs with --cap-drop ALL). A small evaluator applies the
 * rules the way containers/common + libseccomp do: rules filtered by arch and caps, comparisons in a
 * rule AND-ed, 64-bit unsigned values.
 */
interface Arg { index: number; value: number; valueTwo: number; op: string }
interface Rule {
  names: string[]
  action: string
  args: Arg[] | null
  errnoRet?: number
  includes: { arches?: string[]; caps?: string[] }
  excludes: { arches?: string[]; caps?: string[] }
  comment?: string
}
interface Profile {
  defaultAction: string
  defaultErrnoRet: number
  archMap: { architecture: string; subArchitectures: string[] }[]
  syscalls: Rule[]
}

const root = fileURLToPath(new URL('../../', import.meta.url))
const text = readFileSync(`${root}seccomp/default.json`, 'utf8')
const profile = JSON.parse(text) as Profile
const unixText = readFileSync(`${root}seccomp/unix-sockets.json`, 'utf8')
const unixProfile = JSON.parse(unixText) as Profile

const EPERM = 1
const ENOSYS = 38
const EPROTONOSUPPORT = 93
const EAFNOSUPPORT = 97

function applies(r: Rule, arch = 'amd64'): boolean {
  if (r.includes.arches?.length && !r.includes.arches.includes(arch)) return false
  if (r.excludes.arches?.includes(arch)) return false
  if (r.includes.caps?.length) return false // no capabilities in the agent container
  return true
}

function cmp(a: Arg, values: bigint[]): boolean {
  const x = values[a.index] ?? 0n
  const v = BigInt(a.value)
  const v2 = BigInt(a.valueTwo)
  switch (a.op) {
    case 'SCMP_CMP_EQ': return x === v
    case 'SCMP_CMP_NE': return x !== v
    case 'SCMP_CMP_GT': return x > v
    case 'SCMP_CMP_GE': return x >= v
    case 'SCMP_CMP_LT': return x < v
    case 'SCMP_CMP_LE': return x <= v
    case 'SCMP_CMP_MASKED_EQ': return (x & v) === v2
    default: throw new Error(`unknown op ${a.op}`)
  }
}

type Outcome = { action: 'allow' } | { action: 'errno'; errno: number }

function matching(name: string, args: (number | bigint)[], arch = 'amd64', p = profile): Outcome[] {
  const values = args.map(a => BigInt.asUintN(64, BigInt(a)))
  return p.syscalls
    .filter(r => r.names.includes(name) && applies(r, arch) && (r.args ?? []).every(a => cmp(a, values)))
    .map(r => (r.action === 'SCMP_ACT_ALLOW' ? { action: 'allow' as const } : { action: 'errno' as const, errno: r.errnoRet ?? profile.defaultErrnoRet }))
}

/** The one outcome of a call; fails when rules with different outcomes overlap. */
function outcome(name: string, args: (number | bigint)[] = [], arch = 'amd64', p = profile): Outcome {
  const m = matching(name, args, arch, p)
  const distinct = new Set(m.map(o => JSON.stringify(o)))
  if (distinct.size > 1) throw new Error(`${name}(${args.join(', ')}): conflicting rules ${[...distinct].join(' / ')}`)
  return m[0] ?? { action: 'errno', errno: profile.defaultErrnoRet }
}

const allow: Outcome = { action: 'allow' }
const errno = (e: number): Outcome => ({ action: 'errno', errno: e })

describe('seccomp profile: shape', () => {
  it('is exactly what scripts/gen-seccomp.mjs generates from the vendored base (regenerable)', () => {
    const base = JSON.parse(readFileSync(`${root}seccomp/base/containers-common.json`, 'utf8'))
    expect(render(generate(base))).toBe(text)
    expect(render(generate(base, { unixSockets: true }))).toBe(unixText)
  })

  it('denies everything not listed with ENOSYS (fails closed)', () => {
    expect(profile.defaultAction).toBe('SCMP_ACT_ERRNO')
    expect(profile.defaultErrnoRet).toBe(ENOSYS)
    expect(outcome('made_up_syscall')).toEqual(errno(ENOSYS))
  })

  it('lists only native 64-bit ABIs: no x86/x32/arm/s390/mips o32 or n32 sub-architectures', () => {
    const arches = profile.archMap.map(a => a.architecture)
    expect(arches).toContain('SCMP_ARCH_X86_64')
    expect(arches).toContain('SCMP_ARCH_AARCH64')
    for (const a of profile.archMap) expect(a.subArchitectures).toEqual([])
    for (const bad of ['SCMP_ARCH_X86', 'SCMP_ARCH_X32', 'SCMP_ARCH_ARM', 'SCMP_ARCH_S390', 'SCMP_ARCH_MIPS64N32', 'SCMP_ARCH_MIPSEL64N32']) {
      expect(arches).not.toContain(bad)
    }
  })

  it('uses only keys containers/common reads (a misspelt key would silently drop a rule)', () => {
    expect(Object.keys(profile).sort()).toEqual(['archMap', 'defaultAction', 'defaultErrno', 'defaultErrnoRet', 'syscalls'])
    const ruleKeys = new Set(['names', 'action', 'args', 'comment', 'includes', 'excludes', 'errnoRet', 'errno'])
    for (const r of profile.syscalls) {
      for (const k of Object.keys(r)) expect(ruleKeys.has(k), `rule key ${k}`).toBe(true)
      for (const k of [...Object.keys(r.includes), ...Object.keys(r.excludes)]) expect(['arches', 'caps', 'minKernel']).toContain(k)
      for (const a of r.args ?? []) expect(Object.keys(a).sort()).toEqual(['index', 'op', 'value', 'valueTwo'])
    }
  })

  it('never compares the same argument twice in one rule (runc would OR the comparisons)', () => {
    for (const r of profile.syscalls) {
      const idx = (r.args ?? []).map(a => a.index)
      expect(new Set(idx).size, `${r.names.join(',')} ${JSON.stringify(r.args)}`).toBe(idx.length)
    }
  })

  it('has no unconditional rule next to conditional rules for the same syscall (the unconditional one would win)', () => {
    const byName = new Map<string, { cond: number; uncond: number }>()
    for (const r of profile.syscalls) {
      if (!applies(r)) continue
      for (const n of r.names) {
        const e = byName.get(n) ?? { cond: 0, uncond: 0 }
        if (r.args?.length) e.cond++
        else e.uncond++
        byName.set(n, e)
      }
    }
    for (const [n, e] of byName) if (e.cond > 0) expect(e.uncond, n).toBe(0)
  })
})

describe('seccomp profile: denials (x86_64, no capabilities)', () => {
  const denied = Object.values(DENY_EPERM as Record<string, string[]>).flat()

  it.each([
    'ptrace', 'process_vm_readv', 'process_vm_writev', 'pidfd_getfd', 'bpf', 'perf_event_open', 'userfaultfd',
    'keyctl', 'add_key', 'request_key', 'io_uring_setup', 'io_uring_enter', 'io_uring_register',
    'mount', 'umount', 'umount2', 'pivot_root', 'open_tree', 'move_mount', 'fsopen', 'fsconfig', 'fsmount',
    'fspick', 'mount_setattr', 'setns', 'kexec_load', 'kexec_file_load', 'init_module', 'finit_module',
    'delete_module', 'socketcall',
  ])('%s fails with EPERM', name => {
    expect(denied).toContain(name)
    expect(outcome(name, [0, 0, 0])).toEqual(errno(EPERM))
  })

  it('denied syscalls are in no ALLOW rule, whatever capabilities a container is given', () => {
    for (const r of profile.syscalls) {
      if (r.action !== 'SCMP_ACT_ALLOW') continue
      for (const n of denied) expect(r.names, `${n} allowed by ${JSON.stringify(r.includes)}`).not.toContain(n)
    }
  })

  it('clone creating a user namespace (or any namespace) fails with EPERM; plain fork and threads are allowed', () => {
    const SIGCHLD = 17
    const threadFlags = 0x3d0f00 // CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
    expect(outcome('clone', [SIGCHLD])).toEqual(allow)
    expect(outcome('clone', [threadFlags])).toEqual(allow)
    expect(outcome('clone', [CLONE_NS_FLAGS.CLONE_NEWUSER | SIGCHLD])).toEqual(errno(EPERM))
    for (const bit of Object.values(CLONE_NS_FLAGS as Record<string, number>)) {
      expect(outcome('clone', [bit | SIGCHLD])).toEqual(errno(EPERM))
    }
    expect(outcome('clone', [CLONE_NS_FLAGS.CLONE_NEWUSER | CLONE_NS_FLAGS.CLONE_NEWNET | CLONE_NS_FLAGS.CLONE_NEWNS])).toEqual(errno(EPERM))
    // CLONE_NEWTIME's bit is the exit-signal byte for clone(2): 0x80 | SIGCHLD is still a fork.
    expect(outcome('clone', [0x80])).toEqual(allow)
  })

  it('on s390x the clone flags are argument 1', () => {
    expect(outcome('clone', [0, CLONE_NS_FLAGS.CLONE_NEWUSER], 's390x')).toEqual(errno(EPERM))
    expect(outcome('clone', [CLONE_NS_FLAGS.CLONE_NEWUSER, 0], 's390x')).toEqual(allow)
  })

  it('clone3 returns ENOSYS so libc falls back to clone, whose flags are checked', () => {
    expect(outcome('clone3', [0, 0])).toEqual(errno(ENOSYS))
  })

  it('unshare with any namespace flag (incl. CLONE_NEWTIME) fails with EPERM; unshare(CLONE_FILES) is allowed', () => {
    expect(outcome('unshare', [0x400])).toEqual(allow)
    expect(outcome('unshare', [CLONE_NS_FLAGS.CLONE_NEWUSER])).toEqual(errno(EPERM))
    expect(outcome('unshare', [CLONE_NEWTIME])).toEqual(errno(EPERM))
    for (const bit of Object.values(CLONE_NS_FLAGS as Record<string, number>)) expect(outcome('unshare', [bit])).toEqual(errno(EPERM))
  })

  it('socket: AF_PACKET and AF_VSOCK fail with EPERM, other unlisted families with EAFNOSUPPORT', () => {
    expect(outcome('socket', [17, 3, 0])).toEqual(errno(EPERM))
    expect(outcome('socket', [40, 1, 0])).toEqual(errno(EPERM))
    for (const f of [0, 3, 4, 5, 9, 11, 15, 29, 31, 38, 44, 45, 46, 100, 0xffffffff]) {
      expect(outcome('socket', [f, 1, 0]), `family ${f}`).toEqual(errno(EAFNOSUPPORT))
    }
  })

  it('socket: AF_INET, AF_INET6 are allowed; high bits in the family register do not sneak past', () => {
    for (const f of [2, 10]) expect(outcome('socket', [f, 1, 0])).toEqual(allow)
    // The kernel reads an int: 2 | 1<<32 would be AF_INET to it, so seccomp must not allow it by a rule for 2.
    expect(outcome('socket', [2n | (1n << 32n), 1, 0])).toEqual(errno(EAFNOSUPPORT))
    expect(outcome('socket', [17n | (1n << 32n), 3, 0]).action).toBe('errno')
  })

  it('socket: netlink only for NETLINK_ROUTE (ip, getaddrinfo) and NETLINK_SOCK_DIAG (ss)', () => {
    expect(outcome('socket', [16, 3, 0])).toEqual(allow)
    expect(outcome('socket', [16, 3, 4])).toEqual(allow)
    for (const p of [1, 2, 3, 5, 6, 9, 12, 15, 16, 31, 1000]) {
      expect(outcome('socket', [16, 3, p]), `netlink protocol ${p}`).toEqual(errno(EPROTONOSUPPORT))
    }
  })

  it('socketpair only for AF_UNIX', () => {
    expect(outcome('socketpair', [1, 1, 0])).toEqual(allow)
    expect(outcome('socketpair', [0, 1, 0])).toEqual(errno(EAFNOSUPPORT))
    expect(outcome('socketpair', [30, 1, 0])).toEqual(errno(EAFNOSUPPORT))
  })

  it('fallocate: EOPNOTSUPP in every mode (one call would reserve the host disk faster than the disk guard sees)', () => {
    for (const mode of [0, 1, 3, 0x10]) expect(outcome('fallocate', [3, mode, 0, 1 << 30])).toEqual(errno(95))
  })

  // Host unix sockets that appear in a mounted tree after start (issue 9 finding 7): no AF_UNIX
  // socket to connect() with, and no datagram pair that could sendto() a path.
  const SOCK_NONBLOCK = 0o4000
  const SOCK_CLOEXEC = 0o2000000
  it('default profile: socket(AF_UNIX) is EPERM for every type and flag; socketpair(AF_UNIX) only stream/seqpacket', () => {
    for (const t of [1, 2, 5, 1 | SOCK_CLOEXEC, 2 | SOCK_NONBLOCK | SOCK_CLOEXEC]) expect(outcome('socket', [1, t, 0]), `type ${t}`).toEqual(errno(EPERM))
    expect(outcome('socket', [1n | (1n << 32n), 1, 0]).action).toBe('errno')
    for (const t of [1, 5, 1 | SOCK_CLOEXEC, 5 | SOCK_NONBLOCK | SOCK_CLOEXEC]) expect(outcome('socketpair', [1, t, 0]), `type ${t}`).toEqual(allow)
    for (const t of [2, 2 | SOCK_CLOEXEC, 2 | SOCK_NONBLOCK]) expect(outcome('socketpair', [1, t, 0]), `type ${t}`).toEqual(errno(EPERM))
    expect(outcome('socketpair', [1, 3, 0]).action).toBe('errno') // SOCK_RAW: not covered, fails closed
  })

  it('unix-sockets profile (a sandbox given --allow-socket): AF_UNIX allowed as before, the rest identical', () => {
    expect(outcome('socket', [1, 1, 0], 'amd64', unixProfile)).toEqual(allow)
    expect(outcome('socketpair', [1, 2, 0], 'amd64', unixProfile)).toEqual(allow)
    for (const [n, a] of [['socket', [17, 3, 0]], ['socket', [16, 3, 9]], ['socket', [38, 5, 0]], ['ptrace', [0]], ['unshare', [0x10000000]], ['socketpair', [30, 1, 0]]] as const) {
      expect(outcome(n, [...a], 'amd64', unixProfile), n).toEqual(outcome(n, [...a]))
    }
  })

  it('personality: no PER_LINUX32 (8) nor ADDR_NO_RANDOMIZE; PER_LINUX, UNAME26 and the query stay allowed', () => {
    expect(outcome('personality', [0])).toEqual(allow)
    expect(outcome('personality', [0x20000])).toEqual(allow)
    expect(outcome('personality', [0xffffffff])).toEqual(allow)
    expect(outcome('personality', [8]).action).toBe('errno')
    expect(outcome('personality', [0x20008]).action).toBe('errno')
    expect(outcome('personality', [0x40000]).action).toBe('errno')
  })

  it('keeps what ordinary programs need', () => {
    for (const n of ['read', 'write', 'openat', 'execve', 'mmap', 'futex', 'epoll_wait', 'connect', 'bind', 'listen', 'accept4', 'wait4', 'pipe2', 'getdents64', 'statx', 'rseq']) {
      expect(outcome(n, [0, 0, 0]), n).toEqual(allow)
    }
  })
})

describe('seccomp profile: generator', () => {
  it('removes denied syscalls from the base even where the base allowed them with a capability', () => {
    const base = {
      defaultAction: 'SCMP_ACT_ERRNO',
      defaultErrnoRet: 38,
      archMap: [{ architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86', 'SCMP_ARCH_X32'] }],
      syscalls: [
        { names: ['read', 'ptrace', 'clone'], action: 'SCMP_ACT_ALLOW', args: [], comment: '', includes: {}, excludes: {} },
        { names: ['bpf'], action: 'SCMP_ACT_ALLOW', args: [], comment: '', includes: { caps: ['CAP_BPF'] }, excludes: {} },
      ],
    }
    const out = generate(base) as Profile
    const allowed = out.syscalls.filter(r => r.action === 'SCMP_ACT_ALLOW' && !r.args?.length).flatMap(r => r.names)
    expect(allowed).toContain('read')
    expect(allowed).not.toContain('ptrace')
    expect(allowed).not.toContain('clone')
    expect(out.syscalls.some(r => r.action === 'SCMP_ACT_ALLOW' && r.names.includes('bpf'))).toBe(false)
    expect(out.archMap).toEqual([{ architecture: 'SCMP_ARCH_X86_64', subArchitectures: [] }])
  })
})
