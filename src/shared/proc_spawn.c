/* SPDX-License-Identifier: MIT */
#include "proc_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <pthread.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "macro.h"
#include "strbuf.h"

extern char **environ;

static void posix_spawn_file_actions_destroyp(posix_spawn_file_actions_t **p) {
        if (*p)
                posix_spawn_file_actions_destroy(*p);
}

static void posix_spawnattr_destroyp(posix_spawnattr_t **p) {
        if (*p)
                posix_spawnattr_destroy(*p);
}

/*
 * A parent fd equal to its child fd would be a no-op dup2 that keeps
 * O_CLOEXEC set; posix_spawn (glibc) clears the flag in that case since 2.29,
 * so we rely on that documented behaviour.
 */
static int build_actions(const struct spawn_opts *o, const int cap_out[2], const int cap_err[2],
                         posix_spawn_file_actions_t *fa) {
        bool mapped[3] = { false, false, false };
        int maxfd = 2, r;

        for (size_t i = 0; i < o->n_fds; i++) {
                r = posix_spawn_file_actions_adddup2(fa, o->fds[i].parent_fd, o->fds[i].child_fd);
                if (r)
                        return -r;
                if (o->fds[i].child_fd < 3)
                        mapped[o->fds[i].child_fd] = true;
                if (o->fds[i].child_fd > maxfd)
                        maxfd = o->fds[i].child_fd;
        }
        if (cap_out[1] >= 0) {
                r = posix_spawn_file_actions_adddup2(fa, cap_out[1], STDOUT_FILENO);
                if (r)
                        return -r;
                mapped[1] = true;
        }
        if (cap_err[1] >= 0) {
                r = posix_spawn_file_actions_adddup2(fa, cap_err[1], STDERR_FILENO);
                if (r)
                        return -r;
                mapped[2] = true;
        }
        for (int fd = 0; fd < 3; fd++) {
                if (mapped[fd])
                        continue;
                r = posix_spawn_file_actions_addopen(fa, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0);
                if (r)
                        return -r;
        }
        r = posix_spawn_file_actions_addclosefrom_np(fa, maxfd + 1);
        if (r == 0 && o->cwd)
                r = posix_spawn_file_actions_addchdir_np(fa, o->cwd);
        return -r;
}

/* In the forked child (async-signal-safe calls only): the fds as
 * build_actions would set them, signals reset, then exec. */
_noreturn_ static void child_exec(const char *path, char *const argv[], const struct spawn_opts *o,
                                  const int cap_out[2], const int cap_err[2], pid_t parent) {
        int tmp[SPAWN_MAX_FDS], maxfd = 2;
        bool mapped[3] = { false, false, false };
        if (o->new_session)
                setsid();
        else if (o->new_pgroup)
                setpgid(0, 0);
        if (o->die_with_parent && (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent))
                _exit(127); /* the parent died before we could tie ourselves to it */
        /* first out of the way (a parent fd may be another's target), then in place */
        for (size_t i = 0; i < o->n_fds; i++)
                if ((tmp[i] = fcntl(o->fds[i].parent_fd, F_DUPFD_CLOEXEC, 64)) < 0)
                        _exit(127);
        for (size_t i = 0; i < o->n_fds; i++) {
                if (dup2(tmp[i], o->fds[i].child_fd) < 0)
                        _exit(127);
                if (o->fds[i].child_fd < 3)
                        mapped[o->fds[i].child_fd] = true;
                if (o->fds[i].child_fd > maxfd)
                        maxfd = o->fds[i].child_fd;
        }
        if ((cap_out[1] >= 0 && dup2(cap_out[1], STDOUT_FILENO) < 0) ||
            (cap_err[1] >= 0 && dup2(cap_err[1], STDERR_FILENO) < 0))
                _exit(127);
        mapped[1] |= cap_out[1] >= 0;
        mapped[2] |= cap_err[1] >= 0;
        for (int fd = 0; fd < 3; fd++) {
                if (mapped[fd])
                        continue;
                int n = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
                if (n < 0 || (n != fd && (dup2(n, fd) < 0 || close(n) < 0)))
                        _exit(127);
        }
        syscall(SYS_close_range, (unsigned) maxfd + 1, ~0U, 0);
        if (o->cwd && chdir(o->cwd) < 0)
                _exit(127);
        struct sigaction dfl = { .sa_handler = SIG_DFL };
        for (int sig = 1; sig < NSIG; sig++)
                (void) sigaction(sig, &dfl, NULL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(path, argv, o->envp ? o->envp : environ);
        _exit(127);
}

/* fork + exec for what posix_spawn cannot do (PR_SET_PDEATHSIG). */
static int spawn_fork(char *const argv[], const struct spawn_opts *o, const int cap_out[2], const int cap_err[2],
                      pid_t *ret_pid) {
        _cleanup_free_ char *path = NULL;
        if (o->n_fds > SPAWN_MAX_FDS)
                return -E2BIG;
        if (strchr(argv[0], '/'))
                path = xstrdup(argv[0]);
        else if (find_executable(argv[0], &path) < 0)
                return -ENOENT;
        pid_t parent = getpid();
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old); /* no handler runs in the child before exec */
        pid_t pid = fork();
        if (pid == 0)
                child_exec(path, argv, o, cap_out, cap_err, parent);
        int err = errno;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (pid < 0)
                return -err;
        *ret_pid = pid;
        return 0;
}

static int spawn_internal(char *const argv[], const struct spawn_opts *o, const int cap_out[2],
                          const int cap_err[2], pid_t *ret_pid) {
        posix_spawn_file_actions_t fa_storage, *fa = NULL;
        posix_spawnattr_t at_storage, *at = NULL;
        _cleanup_(posix_spawn_file_actions_destroyp) posix_spawn_file_actions_t *fa_guard = NULL;
        _cleanup_(posix_spawnattr_destroyp) posix_spawnattr_t *at_guard = NULL;
        sigset_t none, all;
        pid_t pid;
        int r;

        if (!argv || !argv[0])
                return -EINVAL;
        if (o->die_with_parent)
                return spawn_fork(argv, o, cap_out, cap_err, ret_pid);
        if (posix_spawn_file_actions_init(&fa_storage))
                return -ENOMEM;
        fa = fa_guard = &fa_storage;
        if (posix_spawnattr_init(&at_storage))
                return -ENOMEM;
        at = at_guard = &at_storage;

        r = build_actions(o, cap_out, cap_err, fa);
        if (r < 0)
                return r;

        /* The child starts with default signal handling and an empty mask,
         * whatever the daemon blocked for its signalfd. */
        sigemptyset(&none);
        sigfillset(&all);
        short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
        if (o->new_session)
                flags |= POSIX_SPAWN_SETSID;
        else if (o->new_pgroup) {
                flags |= POSIX_SPAWN_SETPGROUP;
                posix_spawnattr_setpgroup(at, 0);
        }
        posix_spawnattr_setflags(at, flags);
        posix_spawnattr_setsigmask(at, &none);
        posix_spawnattr_setsigdefault(at, &all);

        r = posix_spawnp(&pid, argv[0], fa, at, argv, o->envp ? o->envp : environ);
        if (r)
                return -r;
        *ret_pid = pid;
        return 0;
}

int spawn_start(char *const argv[], const struct spawn_opts *opts, pid_t *ret_pid) {
        static const struct spawn_opts none = { 0 };
        const int no[2] = { -1, -1 };

        return spawn_internal(argv, opts ? opts : &none, no, no, ret_pid);
}

int spawn_wait(pid_t pid) {
        int status;

        for (;;) {
                if (waitpid(pid, &status, 0) >= 0)
                        break;
                if (errno != EINTR)
                        return -errno;
        }
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        if (WIFSIGNALED(status))
                return 128 + WTERMSIG(status);
        return -EIO;
}

/* Signals the child, or its whole process group when it has one of its own. */
static void signal_child(const struct spawn_opts *o, pid_t pid, int pidfd, int sig) {
        if (o->new_pgroup && !o->new_session && pid > 0)
                kill(-pid, sig);
        else
                pidfd_send_signal(pidfd, sig, NULL, 0);
}

/*
 * Reads both pipes until EOF while the child runs; enforces max bytes per
 * stream, the timeout and cancellation. Without pipes it waits on the pidfd.
 */
static void pump(pid_t pid, int out_fd, int err_fd, int pidfd, const struct spawn_opts *o, struct strbuf *out,
                 struct strbuf *err, bool *ret_timed_out, bool *ret_cancelled) {
        size_t max = o->max_capture ? o->max_capture : 16u << 20;
        int64_t deadline = o->timeout_ms > 0 ? mono_ms_now() + o->timeout_ms : 0, kill_at = 0;
        int fds[2] = { out_fd, err_fd };
        struct strbuf *sinks[2] = { out, err };
        bool child_done = false;
        char buf[8192];

        for (;;) {
                struct pollfd p[3];
                int n = 0, idx[2] = { -1, -1 }, timeout = -1, pid_idx = -1;

                for (int i = 0; i < 2; i++)
                        if (fds[i] >= 0) {
                                idx[i] = n;
                                p[n++] = (struct pollfd) { .fd = fds[i], .events = POLLIN };
                        }
                if (n == 0 && (child_done || pidfd < 0))
                        break;
                /* After a kill, grandchildren may still hold the pipes: the
                 * child's exit ends the wait. */
                if (child_done && (*ret_cancelled || *ret_timed_out))
                        break;
                if (!child_done && pidfd >= 0) {
                        pid_idx = n;
                        p[n++] = (struct pollfd) { .fd = pidfd, .events = POLLIN };
                }
                if (o->cancel)
                        timeout = 250;
                if (deadline) {
                        int64_t left = deadline - mono_ms_now();
                        if (left <= 0) {
                                *ret_timed_out = true;
                                signal_child(o, pid, pidfd, SIGKILL);
                                deadline = 0;
                                continue;
                        }
                        if (timeout < 0 || left < timeout)
                                timeout = (int) left;
                }
                if (o->cancel && !*ret_cancelled && o->cancel(o->cancel_ud)) {
                        *ret_cancelled = true;
                        signal_child(o, pid, pidfd, SIGTERM);
                        kill_at = mono_ms_now() + (o->cancel_grace_ms > 0 ? o->cancel_grace_ms : 2000);
                }
                if (kill_at && mono_ms_now() >= kill_at) {
                        signal_child(o, pid, pidfd, SIGKILL);
                        kill_at = 0;
                }
                int r = poll(p, (nfds_t) n, timeout);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (pid_idx >= 0 && (p[pid_idx].revents & POLLIN)) {
                        child_done = true;
                        /* the group may outlive its leader after a kill */
                        if (*ret_cancelled || *ret_timed_out)
                                signal_child(o, pid, pidfd, SIGKILL);
                }
                for (int i = 0; i < 2; i++) {
                        if (idx[i] < 0 || !(p[idx[i]].revents & (POLLIN | POLLHUP | POLLERR)))
                                continue;
                        ssize_t k = read(fds[i], buf, sizeof(buf));
                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k <= 0) {
                                fds[i] = -1;
                                continue;
                        }
                        if (o->output)
                                o->output(o->output_ud, i + 1, buf, (size_t) k);
                        if (sinks[i]->len < max)
                                strbuf_add(sinks[i], buf,
                                           (size_t) k < max - sinks[i]->len ? (size_t) k : max - sinks[i]->len);
                }
        }
}

int spawn_run(char *const argv[], const struct spawn_opts *opts, struct spawn_result *ret) {
        static const struct spawn_opts none = { 0 };
        const struct spawn_opts *o = opts ? opts : &none;
        _cleanup_close_ int out_r = -1, out_w = -1, err_r = -1, err_w = -1, pidfd = -1;
        _cleanup_strbuf_ struct strbuf out = STRBUF_INIT, err = STRBUF_INIT;
        bool timed_out = false, cancelled = false;
        pid_t pid;
        int r, p[2];

        if (o->capture_stdout) {
                if (pipe2(p, O_CLOEXEC) < 0)
                        return -errno;
                out_r = p[0];
                out_w = p[1];
        }
        if (o->capture_stderr) {
                if (pipe2(p, O_CLOEXEC) < 0)
                        return -errno;
                err_r = p[0];
                err_w = p[1];
        }
        r = spawn_internal(argv, o, (int[]) { out_r, out_w }, (int[]) { err_r, err_w }, &pid);
        if (r < 0)
                return r;
        closep(&out_w);
        out_w = -1;
        closep(&err_w);
        err_w = -1;

        pidfd = (int) pidfd_open(pid, 0);
        if (out_r >= 0 || err_r >= 0 || o->timeout_ms > 0 || o->cancel)
                pump(pid, out_r, err_r, pidfd, o, &out, &err, &timed_out, &cancelled);
        r = spawn_wait(pid);
        if (r < 0)
                return r;
        *ret = (struct spawn_result) {
                .exit_code = r,
                .term_signal = r > 128 ? r - 128 : 0,
                .timed_out = timed_out,
                .cancelled = cancelled,
        };
        ret->out = strbuf_detach(&out, &ret->out_len);
        ret->err = strbuf_detach(&err, &ret->err_len);
        return 0;
}

void spawn_result_done(struct spawn_result *r) {
        if (!r)
                return;
        free(r->out);
        free(r->err);
        r->out = r->err = NULL;
}

int find_executable(const char *name, char **ret) {
        const char *path;

        if (!name || !*name)
                return -EINVAL;
        if (strchr(name, '/')) {
                if (access(name, X_OK) < 0)
                        return -errno;
                *ret = xstrdup(name);
                return 0;
        }
        path = getenv("PATH");
        if (!path)
                path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        while (*path) {
                size_t n = strcspn(path, ":");
                _cleanup_free_ char *cand = xasprintf("%.*s/%s", (int) n, n ? path : ".", name);
                struct stat st;

                if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0) {
                        *ret = TAKE_PTR(cand);
                        return 0;
                }
                path += n;
                if (*path == ':')
                        path++;
        }
        return -ENOENT;
}

int spawn_run_checked(char *const argv[], int timeout_ms, int max_ok_exit, const char *install_hint, char **ret_err) {
        struct spawn_result res = { 0 };
        struct spawn_opts o = { .capture_stdout = true, .capture_stderr = true, .timeout_ms = timeout_ms };
        int r = spawn_run(argv, &o, &res);

        if (r < 0) {
                *ret_err = xasprintf("cannot run %s: %s%s%s%s", argv[0], strerror(-r), install_hint ? " (" : "",
                                     install_hint ? install_hint : "", install_hint ? ")" : "");
                return r;
        }
        if (res.timed_out || res.exit_code < 0 || res.exit_code > max_ok_exit) {
                while (res.err_len && (res.err[res.err_len - 1] == '\n' || res.err[res.err_len - 1] == ' '))
                        res.err[--res.err_len] = '\0';
                *ret_err = xasprintf("%s failed (%s %d): %s", argv[0], res.timed_out ? "timed out, status" : "exit",
                                     res.exit_code, res.err_len ? res.err : res.out);
                r = res.timed_out ? -ETIMEDOUT : -EIO;
        }
        spawn_result_done(&res);
        return r;
}
