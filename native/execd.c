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
 * Frame: type (1 byte), payload length (4 bytes, big endian, <= 1 MiB), payload.
 *   client: R request (NUL-terminated strings: tty, rows, cols, cwd, argc, argv..., env K=V...)
 *           I stdin data, E stdin EOF, S signal (1 byte), W window size (rows u16, cols u16),
 *           K end the whole session (1 byte signal: every process whose session is the exec's)
 *   server: O stdout, X stderr, Z exit status (4 bytes; 128+n after signal n)
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

static int out_fd = -1;
static int client_gone = 0;
static void send_frame(char type, const void *data, uint32_t len) {
  if (client_gone) return;
  unsigned char h[5] = {(unsigned char)type, len >> 24, len >> 16, len >> 8, len};
  if (write_all(out_fd, h, 5) < 0 || (len && write_all(out_fd, data, len) < 0)) client_gone = 1;
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

/* One frame from the client; -1 on EOF, error or an oversized frame. */
static int read_frame(int fd, char *type, char **data, uint32_t *len) {
  unsigned char h[5];
  if (read_full(fd, h, 5) < 0) return -1;
  uint32_t n = ((uint32_t)h[1] << 24) | ((uint32_t)h[2] << 16) | ((uint32_t)h[3] << 8) | h[4];
  if (n > MAX_FRAME) return -1;
  char *b = malloc(n + 1);
  if (!b) return -1;
  if (n && read_full(fd, b, n) < 0) {
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

/* Every process whose session is `sid` (the exec's root is a session leader), then its group. */
static void kill_session(pid_t sid, int sig) {
  DIR *d = opendir("/proc");
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      char *end;
      long pid = strtol(e->d_name, &end, 10);
      if (*end || pid <= 1) continue;
      char path[64], buf[512];
      snprintf(path, sizeof path, "/proc/%ld/stat", pid);
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      ssize_t n = read(fd, buf, sizeof buf - 1);
      close(fd);
      if (n <= 0) continue;
      buf[n] = 0;
      char *p = strrchr(buf, ')');
      if (!p) continue;
      char state;
      int ppid, pgrp, session;
      if (sscanf(p + 1, " %c %d %d %d", &state, &ppid, &pgrp, &session) == 4 && session == sid) kill((pid_t)pid, sig);
    }
    closedir(d);
  }
  kill(-sid, sig);
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
    if (strncmp(environ[i], "PODSHELL_EXECD=", 15) == 0) overridden = 1;
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
  pid_t pid = fork();
  if (pid < 0) _exit(1);
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
          kill(-pid, d[0]);
        } else if (t == 'K' && n == 1 && d[0] > 0 && d[0] < 65) {
          kill_session(pid, d[0]);
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
      if (waitpid(pid, &status, WNOHANG) == pid) exited = 1;
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
  setsid();
  signal(SIGCHLD, SIG_IGN); /* sessions are reaped by the kernel */
  signal(SIGHUP, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);
  char line[4096];
  size_t have = 0;
  for (;;) {
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
