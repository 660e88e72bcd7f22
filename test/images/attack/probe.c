/*
 * podshell-attack: kernel-level attacks an agent could try from inside a sandbox, one per
 * subcommand. Each makes the REAL system call (raw syscall(2) or `int $0x80`, never a libc wrapper
 * that could refuse on its own) and prints one line:
 *
 *   RESULT <attack> blocked <ERRNO-NAME>        the kernel (or seccomp) refused it
 *   RESULT <attack> blocked SIG<NAME>           the process making it was killed (seccomp kill)
 *   RESULT <attack> SUCCEEDED <detail>          it worked
 *
 * Exit status: 0 blocked, 3 succeeded, 2 usage error. The e2e tests run every attack twice: in a
 * podshell sandbox (must be blocked) and in a control container without podshell's hardening
 * (seccomp=unconfined), which shows the probe does detect success where the kernel alone allows it.
 *
 * Built statically on the test host (gcc -static -no-pie) by test/helpers/attack.ts and copied
 * into a test image FROM the podshell sandbox image; no code here runs on the host.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/ip_icmp.h>
#include <arpa/inet.h>

static const char *attack = "?";

static int blocked(int err) {
  const char *n = strerrorname_np(err);
  printf("RESULT %s blocked %s\n", attack, n ? n : "E?");
  return 0;
}

static int succeeded(const char *fmt, long v) {
  printf("RESULT %s SUCCEEDED ", attack);
  printf(fmt, v);
  printf("\n");
  return 3;
}

/* Result of a raw syscall return value: -1/errno → blocked, else succeeded. */
static int verdict(long r, const char *what) {
  if (r < 0) return blocked(errno);
  return succeeded(what, r);
}

/* A child that just waits, as a target for cross-process attacks. */
static volatile long target_word = 1;
static pid_t spawn_target(void) {
  pid_t p = fork();
  if (p == 0) {
    for (;;) pause();
  }
  usleep(20000);
  return p;
}
static void reap(pid_t p) {
  kill(p, SIGKILL);
  waitpid(p, NULL, 0);
}

/* Runs fn in a child; a child killed by a signal (seccomp's kill action, or the segv attack) is
   reported as "blocked SIG<NAME>". */
static int in_child(int (*fn)(void)) {
  fflush(stdout);
  pid_t p = fork();
  if (p == 0) {
    errno = 0;
    _exit(fn());
  }
  int st = 0;
  waitpid(p, &st, 0);
  if (WIFSIGNALED(st)) {
    const char *n = sigabbrev_np(WTERMSIG(st));
    printf("RESULT %s blocked SIG%s%s\n", attack, n ? n : "?", WCOREDUMP(st) ? " core-dumped" : "");
    return 0;
  }
  return WEXITSTATUS(st);
}

/* ---------------------------------------------------------------- process attacks */

static int a_ptrace_attach(void) {
  pid_t t = spawn_target();
  long r = syscall(SYS_ptrace, PTRACE_ATTACH, t, 0, 0);
  int e = errno;
  reap(t);
  errno = e;
  return verdict(r < 0 ? r : t, "attached to pid %ld");
}

static int a_ptrace_traceme(void) {
  fflush(stdout);
  pid_t p = fork();
  if (p == 0) {
    long r = syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0);
    _exit(r < 0 ? errno : 0);
  }
  int st;
  waitpid(p, &st, 0);
  int e = WEXITSTATUS(st);
  if (e) return blocked(e);
  return succeeded("child is traced (%ld)", 0);
}

static int a_process_vm_writev(void) {
  pid_t t = spawn_target();
  long v = 42;
  struct iovec local = {&v, sizeof v}, remote = {(void *)&target_word, sizeof v};
  long r = syscall(SYS_process_vm_writev, t, &local, 1, &remote, 1, 0);
  int e = errno;
  reap(t);
  errno = e;
  return verdict(r, "wrote %ld bytes into another process");
}

static int a_process_vm_readv(void) {
  pid_t t = spawn_target();
  long v = 0;
  struct iovec local = {&v, sizeof v}, remote = {(void *)&target_word, sizeof v};
  long r = syscall(SYS_process_vm_readv, t, &local, 1, &remote, 1, 0);
  int e = errno;
  reap(t);
  errno = e;
  return verdict(r, "read %ld bytes of another process");
}

static int a_pidfd_getfd(void) {
  pid_t t = spawn_target();
  long pfd = syscall(SYS_pidfd_open, t, 0);
  long r = pfd < 0 ? -1 : syscall(SYS_pidfd_getfd, pfd, 1, 0);
  int e = errno;
  reap(t);
  errno = e;
  return verdict(r, "stole fd %ld from another process");
}

/* ---------------------------------------------------------------- kernel surface */

static int a_io_uring_setup(void) {
  unsigned char params[256];
  memset(params, 0, sizeof params);
  return verdict(syscall(SYS_io_uring_setup, 8, params), "io_uring fd %ld");
}

static int a_bpf(void) {
  union bpf_attr a;
  memset(&a, 0, sizeof a);
  a.map_type = BPF_MAP_TYPE_ARRAY;
  a.key_size = 4;
  a.value_size = 4;
  a.max_entries = 1;
  return verdict(syscall(SYS_bpf, BPF_MAP_CREATE, &a, sizeof a), "bpf map fd %ld");
}

static int a_perf_event_open(void) {
  struct perf_event_attr a;
  memset(&a, 0, sizeof a);
  a.type = PERF_TYPE_SOFTWARE;
  a.size = sizeof a;
  a.config = PERF_COUNT_SW_CPU_CLOCK;
  a.exclude_kernel = 1;
  a.exclude_hv = 1;
  return verdict(syscall(SYS_perf_event_open, &a, 0, -1, -1, 0), "perf fd %ld");
}

static int a_userfaultfd(void) {
  /* UFFD_USER_MODE_ONLY (1): allowed to unprivileged users since 5.11 whatever the sysctl. */
  return verdict(syscall(SYS_userfaultfd, O_CLOEXEC | 1), "userfaultfd %ld");
}

static int a_keyctl(void) {
  return verdict(syscall(SYS_add_key, "user", "podshell-probe", "x", 1, -3 /* KEY_SPEC_SESSION_KEYRING */), "key serial %ld");
}

static int a_init_module(void) {
  static const char img[64];
  return verdict(syscall(SYS_init_module, img, sizeof img, ""), "init_module %ld");
}

static int a_iopl(void) {
  return verdict(syscall(SYS_iopl, 3), "iopl %ld");
}

static int a_open_by_handle_at(void) {
  /* The "shocker" escape: open a file by handle, bypassing the mount namespace's view. */
  struct {
    unsigned int handle_bytes;
    int handle_type;
    unsigned char f_handle[128];
  } h;
  memset(&h, 0, sizeof h);
  h.handle_bytes = 8;
  h.handle_type = 1; /* FILEID_INO32_GEN: inode 2 (a filesystem root) */
  h.f_handle[0] = 2;
  int dirfd = open("/", O_RDONLY | O_DIRECTORY);
  return verdict(syscall(SYS_open_by_handle_at, dirfd, &h, O_RDONLY), "opened fd %ld by handle");
}

/* ---------------------------------------------------------------- namespaces and mounts */

static int a_unshare(int flags) { return verdict(syscall(SYS_unshare, flags), "unshare returned %ld"); }
static int a_unshare_user(void) { return a_unshare(CLONE_NEWUSER); }
static int a_unshare_net(void) { return a_unshare(CLONE_NEWNET); }
static int a_unshare_mount(void) { return a_unshare(CLONE_NEWNS); }

static int a_clone_newuser(void) {
  fflush(stdout);
  long r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
  if (r == 0) _exit(0);
  if (r < 0) return blocked(errno);
  waitpid((pid_t)r, NULL, 0);
  return succeeded("child %ld in a new user namespace", r);
}

static int a_clone3_newuser(void) {
  struct clone_args ca;
  memset(&ca, 0, sizeof ca);
  ca.flags = CLONE_NEWUSER;
  ca.exit_signal = SIGCHLD;
  fflush(stdout);
  long r = syscall(SYS_clone3, &ca, sizeof ca);
  if (r == 0) _exit(0);
  if (r < 0) return blocked(errno);
  waitpid((pid_t)r, NULL, 0);
  return succeeded("child %ld in a new user namespace (clone3)", r);
}

static int a_setns(void) {
  int fd = open("/proc/self/ns/net", O_RDONLY);
  return verdict(syscall(SYS_setns, fd, CLONE_NEWNET), "setns %ld");
}

static const char *arg_path = "/tmp";

static int a_mount_tmpfs(void) { return verdict(syscall(SYS_mount, "none", arg_path, "tmpfs", 0, ""), "mounted tmpfs (%ld)"); }
static int a_mount_proc(void) { return verdict(syscall(SYS_mount, "proc", arg_path, "proc", 0, ""), "mounted proc (%ld)"); }
static int a_umount(void) { return verdict(syscall(SYS_umount2, arg_path, MNT_DETACH), "unmounted (%ld)"); }
static int a_chroot(void) { return verdict(syscall(SYS_chroot, arg_path), "chroot %ld"); }
static int a_setuid0(void) { return verdict(syscall(SYS_setuid, 0), "setuid(0) = %ld"); }

static int a_mknod(void) {
  return verdict(syscall(SYS_mknodat, AT_FDCWD, arg_path, S_IFCHR | 0666, makedev(1, 3)), "made a device node (%ld)");
}
static int a_mknod_block(void) {
  return verdict(syscall(SYS_mknodat, AT_FDCWD, arg_path, S_IFBLK | 0666, makedev(8, 0)), "made a block device node (%ld)");
}

/* ---------------------------------------------------------------- sockets */

static int a_socket(int family, int type, int proto) { return verdict(syscall(SYS_socket, family, type, proto), "socket fd %ld"); }
static int a_af_vsock(void) { return a_socket(40, SOCK_STREAM, 0); }
static int a_af_packet(void) { return a_socket(17, SOCK_RAW, htons(3 /* ETH_P_ALL */)); }
static int a_netlink_audit(void) { return a_socket(16, SOCK_RAW, 9); }
static int a_netlink_netfilter(void) { return a_socket(16, SOCK_RAW, 12); }
static int a_netlink_uevent(void) { return a_socket(16, SOCK_DGRAM, 15); }
static int a_netlink_xfrm(void) { return a_socket(16, SOCK_RAW, 6); }
static int a_af_alg(void) { return a_socket(38, SOCK_SEQPACKET, 0); }
static int a_af_bluetooth(void) { return a_socket(31, SOCK_RAW, 0); }
static int a_raw_icmp(void) { return a_socket(AF_INET, SOCK_RAW, IPPROTO_ICMP); }

/* ICMP echo to an address: a raw socket (needs CAP_NET_RAW) or a ping socket (ping_group_range). */
static const char *arg_ip = "192.0.2.1";
static int a_icmp_echo(void) {
  int fd = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
  if (fd < 0) fd = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
  if (fd < 0) return blocked(errno);
  struct icmphdr h;
  memset(&h, 0, sizeof h);
  h.type = ICMP_ECHO;
  h.un.echo.id = htons(1234);
  struct sockaddr_in to = {.sin_family = AF_INET};
  inet_pton(AF_INET, arg_ip, &to.sin_addr);
  long r = sendto(fd, &h, sizeof h, 0, (struct sockaddr *)&to, sizeof to);
  return verdict(r, "sent an ICMP echo (%ld bytes)");
}

/* ---------------------------------------------------------------- 32-bit and x32 ABIs */

/* int $0x80 from a 64-bit process enters the kernel's i386 syscall table. Arguments are 32-bit. */
static long int80(long nr, long a, long b, long c) {
  long r;
  __asm__ volatile("int $0x80" : "=a"(r) : "a"(nr), "b"(a), "c"(b), "d"(c) : "memory");
  return r;
}
static int r80(long r, const char *what) {
  if (r < 0 && r > -4096) return blocked((int)-r);
  return succeeded(what, r);
}
static int c_int80_getpid(void) { return r80(int80(20, 0, 0, 0), "i386 getpid = %ld"); }
static int c_int80_socket(void) { return r80(int80(359, AF_INET, SOCK_STREAM, 0), "i386 socket fd %ld"); }
static int c_int80_socket_vsock(void) { return r80(int80(359, 40, SOCK_STREAM, 0), "i386 AF_VSOCK socket fd %ld"); }
static uint32_t sc_args[3] = {40 /* AF_VSOCK */, SOCK_STREAM, 0};
static int c_int80_socketcall(void) { return r80(int80(102, 1 /* SYS_SOCKET */, (long)(uintptr_t)sc_args, 0), "i386 socketcall AF_VSOCK fd %ld"); }
static int c_int80_unshare(void) { return r80(int80(310, CLONE_NEWUSER, 0, 0), "i386 unshare(CLONE_NEWUSER) = %ld"); }
static int c_int80_ptrace(void) { return r80(int80(26, PTRACE_TRACEME, 0, 0), "i386 ptrace = %ld"); }
static int c_x32_socket(void) {
  long r = syscall(0x40000000 | 41, 40, SOCK_STREAM, 0);
  return verdict(r, "x32 AF_VSOCK socket fd %ld");
}
#define a_int80_getpid c_int80_getpid
#define a_int80_socket c_int80_socket
#define a_int80_socket_vsock c_int80_socket_vsock
#define a_int80_socketcall c_int80_socketcall
#define a_int80_unshare c_int80_unshare
#define a_int80_ptrace c_int80_ptrace
#define a_x32_socket c_x32_socket

/* ---------------------------------------------------------------- crash */

static int a_segv(void) {
  /* Leaves a core file in the cwd when core dumps are enabled (core_pattern "core"). */
  volatile int *p = (int *)16;
  *p = 1;
  return 1;
}

struct entry {
  const char *name;
  int (*fn)(void);
};
static const struct entry table[] = {
  {"ptrace_attach", a_ptrace_attach},
  {"ptrace_traceme", a_ptrace_traceme},
  {"process_vm_writev", a_process_vm_writev},
  {"process_vm_readv", a_process_vm_readv},
  {"pidfd_getfd", a_pidfd_getfd},
  {"io_uring_setup", a_io_uring_setup},
  {"bpf", a_bpf},
  {"perf_event_open", a_perf_event_open},
  {"userfaultfd", a_userfaultfd},
  {"keyctl", a_keyctl},
  {"init_module", a_init_module},
  {"iopl", a_iopl},
  {"open_by_handle_at", a_open_by_handle_at},
  {"unshare_user", a_unshare_user},
  {"unshare_net", a_unshare_net},
  {"unshare_mount", a_unshare_mount},
  {"clone_newuser", a_clone_newuser},
  {"clone3_newuser", a_clone3_newuser},
  {"setns", a_setns},
  {"mount_tmpfs", a_mount_tmpfs},
  {"mount_proc", a_mount_proc},
  {"umount", a_umount},
  {"chroot", a_chroot},
  {"setuid0", a_setuid0},
  {"mknod", a_mknod},
  {"mknod_block", a_mknod_block},
  {"af_vsock", a_af_vsock},
  {"af_packet", a_af_packet},
  {"netlink_audit", a_netlink_audit},
  {"netlink_netfilter", a_netlink_netfilter},
  {"netlink_uevent", a_netlink_uevent},
  {"netlink_xfrm", a_netlink_xfrm},
  {"af_alg", a_af_alg},
  {"af_bluetooth", a_af_bluetooth},
  {"raw_icmp", a_raw_icmp},
  {"icmp_echo", a_icmp_echo},
  {"int80_getpid", a_int80_getpid},
  {"int80_socket", a_int80_socket},
  {"int80_socket_vsock", a_int80_socket_vsock},
  {"int80_socketcall", a_int80_socketcall},
  {"int80_unshare", a_int80_unshare},
  {"int80_ptrace", a_int80_ptrace},
  {"x32_socket", a_x32_socket},
  {"segv", a_segv},
};

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2) {
    fprintf(stderr, "usage: podshell-attack ATTACK [PATH|IP]...\n");
    return 2;
  }
  int rc = 0;
  for (int i = 1; i < argc; i++) {
    /* "name=arg" passes a path (mount, mknod, chroot) or an IP (icmp_echo). */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", argv[i]);
    char *eq = strchr(buf, '=');
    if (eq) {
      *eq = 0;
      arg_path = strdup(eq + 1);
      arg_ip = arg_path;
    }
    const struct entry *e = NULL;
    for (size_t j = 0; j < sizeof table / sizeof table[0]; j++)
      if (strcmp(table[j].name, buf) == 0) e = &table[j];
    if (!e) {
      fprintf(stderr, "unknown attack %s\n", buf);
      return 2;
    }
    attack = e->name;
    /* Each attack in its own child: one that worked (a new namespace, a chroot) must not change
       the conditions of the next, and one that seccomp kills is reported, not fatal. */
    int r = in_child(e->fn);
    if (r > rc) rc = r;
  }
  return rc;
}
