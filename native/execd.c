/*
 * podshell-execd: the exec server of a sandbox (docs/architecture.md, "Exec server").
 *
 * Started inside the agent container with `podman exec -d` (so it has exactly the restrictions of
 * any `podman exec` there: user, capabilities, seccomp, cgroup, namespaces, environment). It never
 * creates a socket (seccomp denies AF_UNIX there): it talks to the host through FIFOs in DIR, a
 * per-sandbox directory of the host's state dir bind-mounted read-write.
 *
 *   DIR/req          requests: one line "<32 hex id>\n" per session (atomic, < PIPE_BUF)
 *   DIR/<id>.i       client -> session frames   (created by the session, unlinked once both ends are open)
 *   DIR/<id>.o       session -> client frames
 *
 * Frame: type (1 byte), payload length (4 bytes, big endian, <= 1 MiB), payload, tag (16 bytes).
 *   tag: HMAC-SHA256(key, direction ('c' client->server, 's' server->client) | seq (u64 BE, per
 *   direction, from 0) | id (32 hex) | server nonce (16 bytes) | type | length | payload), first 16
 *   bytes. The key is the sandbox's (host: sandboxes/NAME/execd.key, never mounted), given to the
 *   server in PODSHELL_EXECD_KEY by `podman exec -e`. The first frame of a session is the server's
 *   H (payload: its nonce, from getrandom): the client sends nothing before that tag checks out.
 *
 * Why a tag: the agent shares this process's uid and sees DIR, so it can read the request FIFO,
 * open a session's FIFOs or put its own in their place. What it cannot do is read the key: the
 * binary is mounted execute-only (mode 0111), so the kernel makes this process non-dumpable at
 * execve (no /proc/PID/environ, mem or fd for the agent; ptrace is denied by seccomp anyway), and
 * the sessions inherit that. Without the key it cannot pass for the server (no valid H, output or
 * exit status), cannot inject into a session (its frames fail the tag: the session ends), and
 * cannot replay one (nonce and sequence numbers). It can still stop the channel working (kill the
 * server, steal request lines): the client then falls back to `podman exec`, before anything ran.
 *   client: R request (NUL-terminated strings: tty, rows, cols, cwd, argc, argv..., env K=V...)
 *           I stdin data, E stdin EOF, S signal (1 byte; to every process the exec started),
 *           W window size (rows u16, cols u16),
 *           K end the exec (1 byte: grace seconds): TERM to every process it started (this
 *             session process is their child subreaper, so a setsid'd or double-forked child is
 *             still found), KILL after the grace; the exit status is sent once all are gone
 *   server: H hello (16 bytes nonce), O stdout, X stderr, Z exit status (4 bytes; 128+n after signal n)
 *
 * Everything here runs as the agent: nothing it does needs more than the agent already has.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define MAX_FRAME (1u << 20)
extern char **environ;

static const char *dir;
static int chld_pipe[2] = {-1, -1};

static int write_all(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd pf = {fd, POLLOUT, 0};
        poll(&pf, 1, -1);
        continue;
      }
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* SHA-256 (FIPS 180-4) and HMAC (RFC 2104): small, no library. */
typedef struct {
  uint32_t h[8];
  uint64_t len;
  unsigned char buf[64];
  size_t n;
} sha256_ctx;
static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
static void sha256_block(sha256_ctx *c, const unsigned char *p) {
  uint32_t w[64], a, b, d, e, f, g, h, cc, t1, t2;
  for (int i = 0; i < 16; i++) w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
  for (int i = 16; i < 64; i++) {
    uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3), s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  a = c->h[0], b = c->h[1], cc = c->h[2], d = c->h[3], e = c->h[4], f = c->h[5], g = c->h[6], h = c->h[7];
  for (int i = 0; i < 64; i++) {
    t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
    t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & cc) ^ (b & cc));
    h = g, g = f, f = e, e = d + t1, d = cc, cc = b, b = a, a = t1 + t2;
  }
  c->h[0] += a, c->h[1] += b, c->h[2] += cc, c->h[3] += d, c->h[4] += e, c->h[5] += f, c->h[6] += g, c->h[7] += h;
}
static void sha256_init(sha256_ctx *c) {
  static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(c->h, iv, sizeof iv);
  c->len = 0, c->n = 0;
}
static void sha256_update(sha256_ctx *c, const void *data, size_t n) {
  const unsigned char *p = data;
  c->len += n;
  while (n) {
    size_t k = 64 - c->n < n ? 64 - c->n : n;
    memcpy(c->buf + c->n, p, k);
    c->n += k, p += k, n -= k;
    if (c->n == 64) sha256_block(c, c->buf), c->n = 0;
  }
}
static void sha256_final(sha256_ctx *c, unsigned char out[32]) {
  uint64_t bits = c->len * 8;
  unsigned char pad = 0x80, z = 0, l[8];
  sha256_update(c, &pad, 1);
  while (c->n != 56) sha256_update(c, &z, 1);
  for (int i = 0; i < 8; i++) l[i] = (unsigned char)(bits >> (56 - 8 * i));
  sha256_update(c, l, 8);
  for (int i = 0; i < 8; i++) out[4 * i] = (unsigned char)(c->h[i] >> 24), out[4 * i + 1] = (unsigned char)(c->h[i] >> 16), out[4 * i + 2] = (unsigned char)(c->h[i] >> 8), out[4 * i + 3] = (unsigned char)c->h[i];
}

#define TAG_LEN 16
static sha256_ctx mac_inner, mac_outer; /* the key's padded states, set once */
static char session_id[33];
static unsigned char nonce[16];
static uint64_t seq_out, seq_in;

static int set_key(const char *hex) {
  unsigned char key[64] = {0}, pad[64];
  size_t n = strlen(hex);
  if (n != 64) return -1;
  for (size_t i = 0; i < 32; i++) {
    unsigned v;
    if (sscanf(hex + 2 * i, "%2x", &v) != 1) return -1;
    key[i] = (unsigned char)v;
  }
  for (int i = 0; i < 64; i++) pad[i] = key[i] ^ 0x36;
  sha256_init(&mac_inner), sha256_update(&mac_inner, pad, 64);
  for (int i = 0; i < 64; i++) pad[i] = key[i] ^ 0x5c;
  sha256_init(&mac_outer), sha256_update(&mac_outer, pad, 64);
  memset(key, 0, sizeof key), memset(pad, 0, sizeof pad);
  return 0;
}

static void frame_tag(char dir, uint64_t seq, char type, const void *data, uint32_t len, unsigned char tag[TAG_LEN]) {
  sha256_ctx c = mac_inner;
  unsigned char s8[8], h5[5] = {(unsigned char)type, len >> 24, len >> 16, len >> 8, len}, ih[32], full[32];
  for (int i = 0; i < 8; i++) s8[i] = (unsigned char)(seq >> (56 - 8 * i));
  sha256_update(&c, &dir, 1);
  sha256_update(&c, s8, 8);
  sha256_update(&c, session_id, 32);
  sha256_update(&c, nonce, 16);
  sha256_update(&c, h5, 5);
  sha256_update(&c, data, len);
  sha256_final(&c, ih);
  c = mac_outer;
  sha256_update(&c, ih, 32);
  sha256_final(&c, full);
  memcpy(tag, full, TAG_LEN);
}

static int out_fd = -1;
static int client_gone = 0;
static void send_frame(char type, const void *data, uint32_t len) {
  if (client_gone) return;
  unsigned char h[5] = {(unsigned char)type, len >> 24, len >> 16, len >> 8, len}, tag[TAG_LEN];
  frame_tag('s', seq_out++, type, data, len, tag);
  if (write_all(out_fd, h, 5) < 0 || (len && write_all(out_fd, data, len) < 0) || write_all(out_fd, tag, TAG_LEN) < 0) client_gone = 1;
}

static int read_full(int fd, void *buf, size_t n) {
  char *p = buf;
  while (n) {
    ssize_t r = read(fd, p, n);
    if (r == 0) return -1;
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd pf = {fd, POLLIN, 0};
        poll(&pf, 1, -1);
        continue;
      }
      return -1;
    }
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

/* One frame from the client; -1 on EOF, error, an oversized frame or a tag that does not check. */
static int read_frame(int fd, char *type, char **data, uint32_t *len) {
  unsigned char h[5], tag[TAG_LEN], want[TAG_LEN];
  if (read_full(fd, h, 5) < 0) return -1;
  uint32_t n = ((uint32_t)h[1] << 24) | ((uint32_t)h[2] << 16) | ((uint32_t)h[3] << 8) | h[4];
  if (n > MAX_FRAME) return -1;
  char *b = malloc(n + 1);
  if (!b) return -1;
  if ((n && read_full(fd, b, n) < 0) || read_full(fd, tag, TAG_LEN) < 0) {
    free(b);
    return -1;
  }
  frame_tag('c', seq_in++, (char)h[0], b, n, want);
  unsigned char diff = 0;
  for (int i = 0; i < TAG_LEN; i++) diff |= tag[i] ^ want[i];
  if (diff) {
    free(b);
    return -1;
  }
  b[n] = 0;
  *type = (char)h[0];
  *data = b;
  *len = n;
  return 0;
}

static void on_chld(int s) {
  (void)s;
  int e = errno;
  if (write(chld_pipe[1], "c", 1) < 0) {
  }
  errno = e;
}

/*
 * Every descendant of this session process (it is a child subreaper, so orphans of the exec stay
 * below it: a setsid child or one that dropped its environment is still found).
 */
static int kill_tree(int sig) {
  static pid_t pids[65536], ppids[65536];
  int n = 0, killed = 0;
  DIR *d = opendir("/proc");
  if (!d) return 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < 65536) {
    char *end;
    long pid = strtol(e->d_name, &end, 10);
    if (*end || pid <= 1) continue;
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t r = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (r <= 0) continue;
    buf[r] = 0;
    char *p = strrchr(buf, ')');
    char state;
    int ppid;
    if (!p || sscanf(p + 1, " %c %d", &state, &ppid) != 2 || state == 'Z') continue;
    pids[n] = (pid_t)pid, ppids[n] = (pid_t)ppid, n++;
  }
  closedir(d);
  /* Descendants of getpid(): repeated passes over the parent links (trees are shallow). */
  static char mark[65536];
  memset(mark, 0, (size_t)n);
  pid_t self = getpid();
  for (int changed = 1; changed;) {
    changed = 0;
    for (int i = 0; i < n; i++) {
      if (mark[i]) continue;
      int hit = ppids[i] == self;
      for (int j = 0; !hit && j < n; j++)
        if (mark[j] && pids[j] == ppids[i]) hit = 1;
      if (hit) mark[i] = 1, changed = 1;
    }
  }
  for (int i = 0; i < n; i++)
    if (mark[i] && kill(pids[i], sig) == 0) killed++;
  return killed;
}

static pid_t root_pid = -1;
static int root_status = 0, root_exited = 0;
/* Reaps every child that ended (orphans of the exec are this process's children: subreaper). */
static void reap(void) {
  int st;
  pid_t w;
  while ((w = waitpid(-1, &st, WNOHANG)) > 0)
    if (w == root_pid) root_status = st, root_exited = 1;
}

/* TERM to every descendant, up to `grace` seconds for them to go, then KILL (issue 9). */
static void terminate_tree(int grace) {
  kill_tree(SIGTERM);
  for (int i = 0; i < grace * 20; i++) {
    reap();
    if (kill_tree(0) == 0) break;
    usleep(50000);
  }
  kill_tree(SIGKILL);
  /* Until the last one is gone (KILL cannot be ignored; a process in D state takes a moment). */
  for (int i = 0; i < 200; i++) {
    reap();
    if (kill_tree(0) == 0 && root_exited) return;
    kill_tree(SIGKILL);
    usleep(10000);
  }
}

static int valid_id(const char *s) {
  size_t n = strlen(s);
  if (n != 32) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
  return 1;
}

static void session(const char *id) {
  signal(SIGCHLD, SIG_DFL);
  signal(SIGPIPE, SIG_IGN);
  alarm(10); /* a client that never opens its end does not keep this process */
  char ipath[4096], opath[4096];
  snprintf(ipath, sizeof ipath, "%s/%s.i", dir, id);
  snprintf(opath, sizeof opath, "%s/%s.o", dir, id);
  if (mkfifo(ipath, 0600) < 0) _exit(1);
  int in_fd = open(ipath, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
  if (in_fd < 0 || mkfifo(opath, 0600) < 0) {
    unlink(ipath);
    _exit(1);
  }
  out_fd = open(opath, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
  unlink(ipath);
  unlink(opath);
  if (out_fd < 0) _exit(1);
  memcpy(session_id, id, 32);
  if (getrandom(nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce) _exit(1);
  send_frame('H', nonce, sizeof nonce);

  char type, *req;
  uint32_t rlen;
  if (read_frame(in_fd, &type, &req, &rlen) < 0 || type != 'R') _exit(1);
  alarm(0);
  /* Parse the request's NUL-terminated strings. */
  char *fields[65536];
  size_t nf = 0;
  for (uint32_t off = 0; off < rlen && nf < 65535;) {
    fields[nf++] = req + off;
    off += (uint32_t)strlen(req + off) + 1;
  }
  if (nf < 6) _exit(1);
  int tty = strcmp(fields[0], "1") == 0;
  unsigned short rows = (unsigned short)atoi(fields[1]), cols = (unsigned short)atoi(fields[2]);
  const char *cwd = fields[3];
  long argc = strtol(fields[4], NULL, 10);
  if (argc < 1 || (size_t)argc > nf - 5) _exit(1);
  char **argv = calloc((size_t)argc + 1, sizeof *argv);
  for (long i = 0; i < argc; i++) argv[i] = fields[5 + i];
  /* The environment: the container's (this process's), then the request's, like `podman exec -e`. */
  size_t ne = 0;
  while (environ[ne]) ne++;
  size_t nextra = nf - 5 - (size_t)argc;
  char **envp = calloc(ne + nextra + 2, sizeof *envp);
  size_t k = 0;
  for (size_t i = 0; i < ne; i++) {
    const char *eq = strchr(environ[i], '=');
    size_t kl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
    int overridden = 0;
    for (size_t j = 0; j < nextra; j++) {
      const char *x = fields[5 + argc + j];
      if (strncmp(x, environ[i], kl) == 0 && x[kl] == '=') overridden = 1;
    }
    if (strncmp(environ[i], "PODSHELL_EXECD", 14) == 0) overridden = 1;
    if (!overridden) envp[k++] = environ[i];
  }
  int has_term = 0;
  for (size_t j = 0; j < nextra; j++) envp[k++] = fields[5 + argc + j];
  for (size_t i = 0; i < k; i++)
    if (strncmp(envp[i], "TERM=", 5) == 0) has_term = 1;
  if (tty && !has_term) envp[k++] = "TERM=xterm";
  envp[k] = NULL;

  int master = -1, pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1}, errp[2];
  char *slave = NULL;
  if (tty) {
    master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) < 0 || unlockpt(master) < 0 || !(slave = ptsname(master))) {
      const char *m = "podshell-execd: cannot allocate a terminal\n";
      send_frame('X', m, (uint32_t)strlen(m));
      unsigned char c4[4] = {0, 0, 0, 126};
      send_frame('Z', c4, 4);
      _exit(0);
    }
    struct winsize ws = {rows ? rows : 24, cols ? cols : 80, 0, 0};
    ioctl(master, TIOCSWINSZ, &ws);
  } else if (pipe2(pin, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0 || pipe2(perr, O_CLOEXEC) < 0) {
    _exit(1);
  }
  if (pipe2(errp, O_CLOEXEC) < 0 || pipe2(chld_pipe, O_CLOEXEC | O_NONBLOCK) < 0) _exit(1);
  signal(SIGCHLD, on_chld);
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  pid_t pid = fork();
  if (pid < 0) _exit(1);
  root_pid = pid;
  if (pid == 0) {
    setsid();
    if (tty) {
      int s = open(slave, O_RDWR);
      if (s < 0) _exit(126);
      ioctl(s, TIOCSCTTY, 0);
      dup2(s, 0), dup2(s, 1), dup2(s, 2);
      if (s > 2) close(s);
    } else {
      dup2(pin[0], 0), dup2(pout[1], 1), dup2(perr[1], 2);
    }
    for (int s = 1; s < 32; s++) signal(s, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int stage = 0;
    if (*cwd && chdir(cwd) < 0) stage = 1;
    if (!stage) execvpe(argv[0], argv, envp);
    int e[2] = {stage, errno};
    if (write(errp[1], e, sizeof e) < 0) {
    }
    _exit(127);
  }
  close(errp[1]);
  int e[2];
  ssize_t got = read(errp[0], e, sizeof e);
  close(errp[0]);
  if (got == (ssize_t)sizeof e) {
    char m[8192];
    if (e[0] == 1)
      snprintf(m, sizeof m, "Error: workdir %s: %s\n", cwd, strerror(e[1]));
    else
      snprintf(m, sizeof m, "Error: %s: %s\n", argv[0], e[1] == ENOENT ? "executable file not found in $PATH" : strerror(e[1]));
    send_frame('X', m, (uint32_t)strlen(m));
  }
  int in_w = tty ? master : pin[1];
  int o_r = tty ? master : pout[0];
  int e_r = tty ? -1 : perr[0];
  if (!tty) close(pin[0]), close(pout[1]), close(perr[1]);
  fcntl(o_r, F_SETFL, O_NONBLOCK);
  if (e_r >= 0) fcntl(e_r, F_SETFL, O_NONBLOCK);
  int status = 0, exited = 0;
  char buf[65536];
  while (!exited) {
    struct pollfd p[4] = {{chld_pipe[0], POLLIN, 0}, {client_gone ? -1 : in_fd, POLLIN, 0}, {o_r, POLLIN, 0}, {e_r, POLLIN, 0}};
    if (poll(p, 4, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (p[2].revents) {
      ssize_t n = read(o_r, buf, sizeof buf);
      if (n > 0) send_frame('O', buf, (uint32_t)n);
      else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) o_r = -1;
    }
    if (p[3].revents) {
      ssize_t n = read(e_r, buf, sizeof buf);
      if (n > 0) send_frame('X', buf, (uint32_t)n);
      else if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) e_r = -1;
    }
    if (p[1].revents) {
      char t, *d;
      uint32_t n;
      if (read_frame(in_fd, &t, &d, &n) < 0) {
        /* The client went away: hang up the exec, as a closed terminal would. */
        client_gone = 1;
        kill(-pid, SIGHUP);
        if (in_w >= 0 && !tty) close(in_w), in_w = -1;
      } else {
        if (t == 'I' && in_w >= 0) {
          if (write_all(in_w, d, n) < 0 && !tty) close(in_w), in_w = -1;
        } else if (t == 'E' && in_w >= 0) {
          if (tty) write_all(in_w, "\x04", 1);
          else close(in_w), in_w = -1;
        } else if (t == 'S' && n == 1 && d[0] > 0 && d[0] < 65) {
          /* Every process the exec started, as the podman exec path signals the exec's whole
           * session and descendants (src/sandbox/signals.ts). */
          kill_tree(d[0]);
        } else if (t == 'K' && n == 1 && d[0] >= 0 && d[0] <= 30) {
          /* The exit status is sent only after every process of the exec is gone. */
          terminate_tree(d[0]);
          if (root_exited) status = root_status, exited = 1;
        } else if (t == 'W' && n == 4 && tty) {
          unsigned char *u = (unsigned char *)d;
          struct winsize ws = {(unsigned short)(u[0] << 8 | u[1]), (unsigned short)(u[2] << 8 | u[3]), 0, 0};
          ioctl(master, TIOCSWINSZ, &ws);
        }
        free(d);
      }
    }
    if (p[0].revents) {
      char c;
      while (read(chld_pipe[0], &c, 1) > 0) {
      }
      reap();
      if (root_exited) status = root_status, exited = 1;
    }
  }
  /* Drain what the exec wrote before it ended. */
  for (int fd_i = 0; fd_i < 2; fd_i++) {
    int fd = fd_i ? e_r : o_r;
    if (fd < 0) continue;
    for (;;) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) break;
      send_frame(fd_i ? 'X' : 'O', buf, (uint32_t)n);
    }
  }
  uint32_t code = WIFEXITED(status) ? (uint32_t)WEXITSTATUS(status) : WIFSIGNALED(status) ? 128u + (uint32_t)WTERMSIG(status) : 1u;
  if (got == (ssize_t)sizeof e) code = e[0] == 1 ? 126 : e[1] == ENOENT ? 127 : 126;
  unsigned char c4[4] = {code >> 24, code >> 16, code >> 8, code};
  send_frame('Z', c4, 4);
  _exit(0);
}

int main(int argc, char **argv) {
  if (argc != 2 || argv[1][0] != '/') {
    fprintf(stderr, "usage: podshell-execd DIR\n");
    return 2;
  }
  dir = argv[1];
  /* The key: from the environment podman exec gave, then out of it (the exec's environment is
   * built from this process's). */
  const char *key = getenv("PODSHELL_EXECD_KEY");
  if (!key || set_key(key) < 0) {
    fprintf(stderr, "podshell-execd: PODSHELL_EXECD_KEY is not 64 hex digits\n");
    return 2;
  }
  memset((char *)key, 0, strlen(key));
  unsetenv("PODSHELL_EXECD_KEY");
  char path[4096];
  snprintf(path, sizeof path, "%s/lock", dir);
  int lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (lock < 0 || flock(lock, LOCK_EX | LOCK_NB) < 0) return 0; /* one server per sandbox */
  snprintf(path, sizeof path, "%s/req", dir);
  unlink(path);
  if (mkfifo(path, 0600) < 0) return 1;
  /* Read-write: the FIFO never reports EOF when a client closes it. */
  int req = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
  if (req < 0) return 1;
  int nul = open("/dev/null", O_RDWR);
  if (nul >= 0) dup2(nul, 0), dup2(nul, 1), dup2(nul, 2);
  if (nul > 2) close(nul);
  setsid();
  signal(SIGCHLD, SIG_IGN); /* sessions are reaped by the kernel */
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  struct stat mine;
  if (fstat(req, &mine) < 0) return 1;
  char line[4096];
  size_t have = 0;
  for (;;) {
    /* DIR/req replaced or removed (the agent can): this server can no longer be reached, so it
     * ends and gives up the lock; the next client starts a new one. */
    struct pollfd pf = {req, POLLIN, 0};
    int pr = poll(&pf, 1, 1000);
    if (pr < 0 && errno != EINTR) return 1;
    if (pr <= 0) {
      struct stat now;
      if (lstat(path, &now) < 0 || now.st_ino != mine.st_ino || now.st_dev != mine.st_dev) return 0;
      continue;
    }
    ssize_t n = read(req, line + have, sizeof line - 1 - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 1;
    have += (size_t)n;
    line[have] = 0;
    char *start = line, *nl;
    while ((nl = memchr(start, '\n', have - (size_t)(start - line)))) {
      *nl = 0;
      if (valid_id(start)) {
        pid_t p = fork();
        if (p == 0) {
          close(req);
          close(lock);
          session(start);
        }
      }
      start = nl + 1;
    }
    have -= (size_t)(start - line);
    memmove(line, start, have);
    if (have >= sizeof line - 1) have = 0; /* garbage without a newline: dropped */
  }
}
