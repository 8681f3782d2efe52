/* SPDX-License-Identifier: MIT */
#include "session.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define BASE_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* A child's pipes hold a whole credit window (the kernel's 64 KiB made a
 * reader of stdin and the agent take turns 10 KiB at a time: a tar -x of
 * 98 MB took 8.4 s through the agent, 3.2 s with bigger pipes and reads) */
#define PIPE_SIZE ((int) FRAME_WINDOW)
#define OUT_HIGH (1u << 20) /* stop reading children while this much waits for the host */

struct chan {
        bool used, detached; /* detached: the host closed it; only the reap is left */
        uint32_t id;
        pid_t pid;
        bool pty;
        int in_fd;      /* the child's stdin (pipe, or a dup of the PTY master); -1 once closed */
        int out_fd[3];  /* [FRAME_STDOUT], [FRAME_STDERR]: read ends (PTY: the master); -1 once at EOF */
        uint32_t credit[3];
        uint8_t *in_buf; /* stdin not yet taken by the child, at most FRAME_WINDOW */
        size_t in_len;
        bool in_eof;     /* the host ended stdin: close once drained */
        bool reaped;
        int code, sig;
};

static struct chan chans[FRAME_MAX_CHANNELS];

static void send_error(uint32_t id, const char *msg) {
        out_frame(id, FRAME_ERROR, 0, msg, (uint32_t) strlen(msg));
}

static struct chan *find(uint32_t id) {
        for (int i = 0; i < FRAME_MAX_CHANNELS; i++)
                if (chans[i].used && !chans[i].detached && chans[i].id == id)
                        return &chans[i];
        return NULL;
}

int sess_count(void) {
        int n = 0;
        for (int i = 0; i < FRAME_MAX_CHANNELS; i++)
                n += chans[i].used;
        return n;
}

static void close_fd(int *fd) {
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

static void release(struct chan *c) {
        close_fd(&c->in_fd);
        close_fd(&c->out_fd[FRAME_STDOUT]);
        close_fd(&c->out_fd[FRAME_STDERR]);
        free(c->in_buf);
        *c = (struct chan) { .in_fd = -1, .out_fd = { -1, -1, -1 } };
}

/* Kills the process group (its leader may be reaped while others still
 * hold the output); the slot lives on until the child is reaped. */
static void detach(struct chan *c) {
        if (c->pid > 0 && (!c->reaped || c->out_fd[FRAME_STDOUT] >= 0 || c->out_fd[FRAME_STDERR] >= 0))
                kill(-c->pid, SIGKILL);
        close_fd(&c->in_fd);
        close_fd(&c->out_fd[FRAME_STDOUT]);
        close_fd(&c->out_fd[FRAME_STDERR]);
        c->detached = true;
        if (c->reaped)
                release(c);
}

void sess_reset(void) {
        for (int i = 0; i < FRAME_MAX_CHANNELS; i++)
                if (chans[i].used && !chans[i].detached)
                        detach(&chans[i]);
}

/* EXIT once the child is reaped and both output streams reached EOF. */
static void maybe_exit(struct chan *c) {
        if (!c->used || c->detached || !c->reaped || c->out_fd[FRAME_STDOUT] >= 0 || c->out_fd[FRAME_STDERR] >= 0)
                return;
        uint8_t p[8];
        frame_put_u32(p, (uint32_t) c->code);
        frame_put_u32(p + 4, (uint32_t) c->sig);
        out_frame(c->id, FRAME_EXIT, 0, p, 8);
        release(c);
}

static void stream_eof(struct chan *c, int s) {
        close_fd(&c->out_fd[s]);
        out_frame(c->id, FRAME_EOF, (uint8_t) s, NULL, 0);
}

/* Reads what the credit allows from one output stream. */
static void pump_out(struct chan *c, int s) {
        static uint8_t buf[FRAME_DATA_CHUNK];
        while (c->out_fd[s] >= 0 && c->credit[s] > 0 && out_pending() < OUT_HIGH) {
                size_t want = c->credit[s] < sizeof(buf) ? c->credit[s] : sizeof(buf);
                ssize_t k = read(c->out_fd[s], buf, want);
                if (k > 0) {
                        out_frame(c->id, FRAME_DATA, (uint8_t) s, buf, (uint32_t) k);
                        c->credit[s] -= (uint32_t) k;
                        continue;
                }
                if (k < 0 && errno == EINTR)
                        continue;
                /* a PTY whose child is gone: what is left was read */
                if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && !(c->pty && c->reaped))
                        return;
                stream_eof(c, s); /* 0, EIO (PTY slave closed), or another error */
        }
}

/* Writes buffered stdin to the child and gives the host its credit back. */
static void pump_in(struct chan *c) {
        size_t done = c->in_fd < 0 ? c->in_len : 0; /* the child closed its stdin: dropped, credited */
        while (c->in_fd >= 0 && done < c->in_len) {
                ssize_t k = write(c->in_fd, c->in_buf + done, c->in_len - done);
                if (k > 0) {
                        done += (size_t) k;
                        continue;
                }
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        break;
                /* the child closed its stdin: what it did not take is dropped */
                close_fd(&c->in_fd);
                done = c->in_len;
        }
        if (done) {
                memmove(c->in_buf, c->in_buf + done, c->in_len - done);
                c->in_len -= done;
                uint8_t p[4];
                frame_put_u32(p, (uint32_t) done);
                out_frame(c->id, FRAME_CREDIT, FRAME_STDIN, p, 4);
        }
        if (c->in_eof && c->in_len == 0 && !c->pty)
                close_fd(&c->in_fd);
}

/* ---- starting a child ------------------------------------------------------- */

static void mkdir_p(const char *path) {
        char tmp[4096];
        snprintf(tmp, sizeof(tmp), "%s", path);
        for (char *p = tmp + 1; *p; p++)
                if (*p == '/') {
                        *p = '\0';
                        mkdir(tmp, 0755);
                        *p = '/';
                }
        mkdir(tmp, 0755);
}

static bool overridden(const struct exec_spec *s, const char *name) {
        size_t n = strcspn(name, "=");
        for (size_t i = 0; i < s->envc; i++)
                if (strncmp(s->env[i], name, n) == 0 && s->env[i][n] == '=')
                        return true;
        return false;
}

/* In the child: never returns. Reports a failure before the exec as
 * {u32 stage, u32 errno} on fd 3. */
static void child(const struct exec_spec *s, int slave, int in, int out, int err, int st) {
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        /* every signal at its default: a command must not inherit what the
         * agent (or whatever started it) ignores, or `trap ... INT` in a shell
         * would be silently refused and SIGNAL frames would do nothing */
        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        signal(sig, SIG_DFL);
        setsid();
        if (slave >= 0) {
                ioctl(slave, TIOCSCTTY, 0);
                in = out = err = slave;
        }
        if (dup2(st, 3) < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
                _exit(127);
        fcntl(3, F_SETFD, FD_CLOEXEC);
        for (int fd = 4; fd < 1024; fd++)
                close(fd);
        uint32_t stage = 0;
        if (s->uid || s->gid) {
                stage = 1;
                if (setgroups(0, NULL) < 0 || setgid(s->gid) < 0 || setuid(s->uid) < 0)
                        goto fail;
        }
        const char *home = s->uid == 0 ? "/root" : "/";
        const char *dir = s->cwd ? s->cwd : home;
        if (s->kind == SPEC_KIND_TAR_IN)
                mkdir_p(dir);
        stage = 2;
        if (chdir(dir) < 0)
                goto fail;
        char *base[] = { "PATH=" BASE_PATH, NULL, s->uid == 0 ? "USER=root" : NULL, s->uid == 0 ? "LOGNAME=root" : NULL,
                         "LANG=C.UTF-8", s->pty ? "TERM=xterm-256color" : NULL };
        char homebuf[64];
        snprintf(homebuf, sizeof(homebuf), "HOME=%s", home);
        base[1] = homebuf;
        char **envp = calloc(s->envc + 8, sizeof(char *));
        size_t n = 0;
        for (size_t i = 0; envp && i < sizeof(base) / sizeof(base[0]); i++)
                if (base[i] && !overridden(s, base[i]))
                        envp[n++] = base[i];
        for (size_t i = 0; envp && i < s->envc; i++)
                envp[n++] = s->env[i];
        stage = 3;
        if (!envp)
                goto fail;
        const char *path = BASE_PATH;
        for (size_t i = 0; i < n; i++)
                if (strncmp(envp[i], "PATH=", 5) == 0)
                        path = envp[i] + 5;
        setenv("PATH", path, 1); /* execvpe searches the caller's PATH */
        char *tar_args[FRAME_MAX_ARGS + 8];
        char **argv = s->argv;
        if (s->kind != SPEC_KIND_EXEC) {
                size_t k = 0;
                tar_args[k++] = "tar";
                tar_args[k++] = s->kind == SPEC_KIND_TAR_IN ? "-x" : "-c";
                if (s->kind == SPEC_KIND_TAR_IN) { /* reads of 128 KiB, not 10 KiB: 2.6x faster under TCG */
                        tar_args[k++] = "-b";
                        tar_args[k++] = "256";
                }
                tar_args[k++] = "-f";
                tar_args[k++] = "-";
                if (s->kind == SPEC_KIND_TAR_OUT) {
                        tar_args[k++] = "--";
                        for (size_t i = 0; i < s->argc; i++)
                                tar_args[k++] = s->argv[i];
                        if (s->argc == 0)
                                tar_args[k++] = ".";
                }
                tar_args[k] = NULL;
                argv = tar_args;
        }
        stage = 4;
        execvpe(argv[0], argv, envp);
        if (errno == ENOENT && strcmp(argv[0], "bash") == 0) {
                /* an image without bash (busybox, alpine): its sh, with the same -lc */
                argv[0] = "sh";
                execvpe("/bin/sh", argv, envp);
        }
fail:;
        uint32_t rep[2] = { stage, (uint32_t) errno };
        ssize_t w = write(3, rep, sizeof(rep));
        (void) w;
        _exit(127);
}

static int nonblock(int fd) {
        return fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void start(uint32_t id, const struct exec_spec *s) {
        struct chan *c = NULL;
        char msg[512];
        for (int i = 0; i < FRAME_MAX_CHANNELS && !c; i++)
                if (!chans[i].used)
                        c = &chans[i];
        if (!c) {
                send_error(id, "too many execs on this VM at once");
                return;
        }
        int in[2] = { -1, -1 }, out[2] = { -1, -1 }, err[2] = { -1, -1 }, st[2] = { -1, -1 };
        int master = -1, slave = -1;
        bool ok = pipe2(st, O_CLOEXEC) == 0;
        if (ok && s->pty) {
                char name[128];
                master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
                ok = master >= 0 && grantpt(master) == 0 && unlockpt(master) == 0 &&
                     ptsname_r(master, name, sizeof(name)) == 0 &&
                     (slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) >= 0;
                if (ok && s->rows && s->cols) {
                        struct winsize ws = { .ws_row = s->rows, .ws_col = s->cols };
                        ioctl(master, TIOCSWINSZ, &ws);
                }
        } else if (ok)
                ok = pipe2(in, O_CLOEXEC) == 0 && pipe2(out, O_CLOEXEC) == 0 && pipe2(err, O_CLOEXEC) == 0;
        pid_t pid = ok ? fork() : -1;
        if (pid == 0)
                child(s, slave, in[0], out[1], err[1], st[1]);
        int en = errno;
        close_fd(&st[1]);
        close_fd(&slave);
        close_fd(&in[0]);
        close_fd(&out[1]);
        close_fd(&err[1]);
        uint32_t rep[2] = { 0, 0 };
        ssize_t k = 0;
        if (pid > 0)
                while ((k = read(st[0], rep, sizeof(rep))) < 0 && errno == EINTR)
                        ;
        close_fd(&st[0]);
        if (pid < 0 || k > 0) {
                static const char *stages[] = { "start", "switch user", "enter the directory", "build the environment",
                                                "run" };
                if (pid > 0)
                        waitpid(pid, NULL, 0);
                snprintf(msg, sizeof(msg), "cannot %s %s: %s", pid < 0 ? "start" : stages[rep[0] < 5 ? rep[0] : 0],
                         pid > 0 && rep[0] == 2 ? (s->cwd ? s->cwd : "the home directory")
                                                : (s->argc ? s->argv[0] : "tar"),
                         strerror(pid < 0 ? en : (int) rep[1]));
                close_fd(&master);
                close_fd(&in[1]);
                close_fd(&out[0]);
                close_fd(&err[0]);
                send_error(id, msg);
                return;
        }
        *c = (struct chan) { .used = true, .id = id, .pid = pid, .pty = s->pty, .in_fd = -1,
                             .out_fd = { -1, -1, -1 }, .credit = { 0, FRAME_WINDOW, FRAME_WINDOW } };
        c->in_buf = malloc(FRAME_WINDOW);
        if (s->pty) {
                c->in_fd = fcntl(master, F_DUPFD_CLOEXEC, 0);
                c->out_fd[FRAME_STDOUT] = master;
        } else {
                c->in_fd = in[1];
                c->out_fd[FRAME_STDOUT] = out[0];
                c->out_fd[FRAME_STDERR] = err[0];
        }
        for (int i = 0; i < 3; i++)
                if (c->out_fd[i] >= 0) {
                        nonblock(c->out_fd[i]);
                        if (!s->pty)
                                (void) fcntl(c->out_fd[i], F_SETPIPE_SZ, PIPE_SIZE);
                }
        if (c->in_fd >= 0) {
                nonblock(c->in_fd);
                if (!s->pty)
                        (void) fcntl(c->in_fd, F_SETPIPE_SZ, PIPE_SIZE);
        }
        uint8_t p[4];
        frame_put_u32(p, (uint32_t) pid);
        out_frame(id, FRAME_OPENED, 0, p, 4);
        if (s->pty) /* one stream on a PTY: stderr is stdout */
                out_frame(id, FRAME_EOF, FRAME_STDERR, NULL, 0);
        if (!c->in_buf) {
                send_error(id, "out of memory");
                detach(c);
        }
}

void sess_reap(void) {
        int status;
        pid_t pid;
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                for (int i = 0; i < FRAME_MAX_CHANNELS; i++) {
                        struct chan *c = &chans[i];
                        if (!c->used || c->pid != pid)
                                continue;
                        c->reaped = true;
                        c->code = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
                        c->sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
                        if (c->detached)
                                release(c);
                        else {
                                if (c->pty)
                                        pump_out(c, FRAME_STDOUT);
                                maybe_exit(c);
                        }
                        break;
                }
        }
}

/* ---- frames from the host -------------------------------------------------------- */

bool sess_on_frame(const struct frame *f) {
        struct chan *c = f->chan ? find(f->chan) : NULL;
        switch (f->type) {
        case FRAME_OPEN: {
                struct exec_spec s;
                const char *why;
                if (f->chan == 0 || c)
                        return false; /* channel 0 or one in use: the host is confused */
                if (exec_spec_parse(f->payload, f->len, &s, &why) < 0) {
                        send_error(f->chan, why);
                        return true;
                }
                start(f->chan, &s);
                exec_spec_free(&s);
                return true;
        }
        case FRAME_DATA:
                if (!c || f->stream != FRAME_STDIN)
                        return c == NULL; /* late data for a finished exec is dropped */
                if (c->in_eof || f->len > FRAME_WINDOW - c->in_len) {
                        /* over its credit, or after its end: this exec fails, not the others */
                        send_error(c->id, "stdin beyond its credit or after its end");
                        detach(c);
                        return true;
                }
                memcpy(c->in_buf + c->in_len, f->payload, f->len);
                c->in_len += f->len;
                pump_in(c);
                return true;
        case FRAME_EOF:
                if (c && f->stream == FRAME_STDIN) {
                        c->in_eof = true;
                        pump_in(c);
                }
                return true;
        case FRAME_CREDIT:
                if (c && f->stream != FRAME_STDIN) {
                        uint32_t add = frame_u32(f->payload);
                        if (add > FRAME_WINDOW || c->credit[f->stream] > FRAME_WINDOW - add)
                                return false; /* more back than was ever sent */
                        c->credit[f->stream] += add;
                        pump_out(c, f->stream);
                        maybe_exit(c);
                }
                return true;
        case FRAME_SIGNAL: {
                uint32_t sig = frame_u32(f->payload);
                if (c && sig >= 1 && sig < 65 && !c->reaped)
                        kill(-c->pid, (int) sig);
                return true;
        }
        case FRAME_RESIZE:
                if (c && c->pty && c->in_fd >= 0) {
                        struct winsize ws = { .ws_row = (unsigned short) (f->payload[0] | f->payload[1] << 8),
                                              .ws_col = (unsigned short) (f->payload[2] | f->payload[3] << 8) };
                        ioctl(c->in_fd, TIOCSWINSZ, &ws);
                }
                return true;
        case FRAME_CLOSE:
                if (c)
                        detach(c);
                return true;
        default:
                return false; /* CALL and BYE are main.c's; the rest are the agent's own */
        }
}

int sess_pollfds(struct pollfd *p, int max) {
        int n = 0;
        bool room = out_pending() < OUT_HIGH;
        for (int i = 0; i < FRAME_MAX_CHANNELS && n + 3 <= max; i++) {
                struct chan *c = &chans[i];
                if (!c->used || c->detached)
                        continue;
                for (int s = FRAME_STDOUT; s <= FRAME_STDERR; s++)
                        p[n++] = (struct pollfd) { .fd = c->out_fd[s] >= 0 && c->credit[s] && room ? c->out_fd[s] : -1,
                                                   .events = POLLIN };
                p[n++] = (struct pollfd) { .fd = c->in_fd >= 0 && c->in_len ? c->in_fd : -1, .events = POLLOUT };
        }
        return n;
}

void sess_after_poll(const struct pollfd *p, int n) {
        int k = 0;
        for (int i = 0; i < FRAME_MAX_CHANNELS && k + 3 <= n; i++) {
                struct chan *c = &chans[i];
                if (!c->used || c->detached)
                        continue;
                for (int s = FRAME_STDOUT; s <= FRAME_STDERR; s++, k++)
                        if (p[k].fd >= 0 && p[k].fd == c->out_fd[s] && p[k].revents)
                                pump_out(c, s);
                if (p[k].fd >= 0 && p[k].fd == c->in_fd && p[k].revents)
                        pump_in(c);
                k++;
                maybe_exit(c);
        }
}
