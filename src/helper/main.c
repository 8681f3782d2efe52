/* SPDX-License-Identifier: MIT */
/*
 * bangerd-root: the root helper of a system install.
 *   bangerd-root --system [--install FILE] [--log-level L]
 *   bangerd-root --version
 *
 * Runs as root (systemd's bangerd-root.service, or a `start:` line of
 * `banger system install`). Reads the install file and the config (both
 * must be root's and not writable by anyone else), sweeps what dead builds
 * left, listens on <helper_runtime>/bangerd-root.sock (0600, the owner's;
 * its directory 0711 root) and serves one request per connection, each on
 * its own thread (at most HELPER_MAX_CONNS at once).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fsutil.h"
#include "helper.h"
#include "hostinfo.h"
#include "log.h"
#include "proc_spawn.h"
#include "rpc.h"
#include "strbuf.h"
#include "version.h"

#define HELPER_MAX_CONNS 32

static atomic_int active_conns;

static const char *env_get(const char *n) {
        return getenv(n);
}

/* Files root trusts: regular, root's, not writable by group or others, in
 * a directory that is root's and not writable by others either. */
static int trusted_file(const char *path, char **ret_err) {
        struct stat st, dst;
        _cleanup_free_ char *dir = xstrdup(path);
        char *slash = strrchr(dir, '/');
        if (path[0] != '/' || !slash)
                return *ret_err = xasprintf("%s: not an absolute path", path), -EINVAL;
        slash[slash == dir ? 1 : 0] = '\0';
        if (lstat(path, &st) < 0)
                return *ret_err = xasprintf("%s: %s", path, strerror(errno)), -errno;
        if (lstat(dir, &dst) < 0)
                return *ret_err = xasprintf("%s: %s", dir, strerror(errno)), -errno;
        if (!S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022))
                return *ret_err = xasprintf("%s must be a regular file of root's, not group/world-writable", path),
                       -EPERM;
        if (!S_ISDIR(dst.st_mode) || dst.st_uid != 0 || (dst.st_mode & 022))
                return *ret_err = xasprintf("%s must be root's and not group/world-writable", dir), -EPERM;
        return 0;
}

static int load_install(const char *file, struct install_info *ret, char **ret_err) {
        _cleanup_free_ char *text = NULL, *msg = NULL;
        size_t len;
        int r = trusted_file(file, ret_err);
        if (r < 0)
                return r;
        if ((r = read_file_nofollow(file, 64 * 1024, &text, &len)) < 0)
                return *ret_err = xasprintf("%s: %s", file, strerror(-r)), r;
        if ((r = install_parse(text, len, ret, &msg)) < 0)
                return *ret_err = xasprintf("%s: %s", file, msg), r;
        return 0;
}

/* Policy: the config's network, the install's directories and owner, the
 * installed banger-agent. */
static int make_policy(struct helper *h, char **ret_err) {
        struct layout l;
        struct config *cfg = NULL;
        int r;
        install_layout(&h->install, &l);
        if (access(l.config_file, F_OK) == 0 && (r = trusted_file(l.config_file, ret_err)) < 0) {
                layout_done(&l);
                return r;
        }
        if ((r = hostinfo_load_config(&l, &cfg, ret_err)) < 0) {
                layout_done(&l);
                return r;
        }
        const char *roots[] = { l.state_dir, l.cache_dir, l.runtime_dir, NULL };
        _cleanup_op_error_ struct op_error e = OP_ERROR_INIT;
        r = host_policy_init(&h->policy, cfg->bridge_name, cfg->bridge_ip, (int) cfg->cidr, roots, &e);
        /* Firecracker under its jailer, as the owner: decided here, from the
         * config root trusts (the daemon only asks) */
        _cleanup_free_ char *fc = NULL; /* (found, never run as root before hostinfo_jail checked it) */
        struct jail_plan jp = { 0 };
        if (find_executable(cfg->firecracker_bin, &fc) < 0)
                fc = NULL;
        hostinfo_jail(cfg->jailer_bin, fc, 0, &jp);
        h->policy.jail_base = path_join(l.state_dir, "jail");
        h->policy.jail_on = jp.mode == JAIL_ON;
        h->policy.jail_refused = jp.mode == JAIL_REFUSED;
        h->policy.jail_why = TAKE_PTR(jp.reason);
        if (h->policy.jail_on)
                h->policy.jail = (struct host_jail) { .jailer = TAKE_PTR(jp.jailer), .exec_file = TAKE_PTR(jp.exec_file),
                                                      .chroot_base = xstrdup(h->policy.jail_base),
                                                      .uid = h->install.owner_uid, .gid = h->install.owner_gid };
        if (jp.mode != JAIL_NONE)
                log_info("%s", h->policy.jail_why);
        jail_plan_done(&jp);
        config_free(cfg);
        layout_done(&l);
        if (r < 0)
                return *ret_err = xstrdup(op_error_message(&e)), r;
        h->policy.owner_uid = h->install.owner_uid;
        h->policy.owner_gid = h->install.owner_gid;
        _cleanup_free_ char *agent = xasprintf("%s/lib/banger/banger-agent", h->install.prefix), *why = NULL;
        if (trusted_file(agent, &why) == 0)
                h->policy.agent_bin = TAKE_PTR(agent);
        else
                log_warn("image builds are off: %s", why);
        return 0;
}

/* <helper_runtime> 0711 root; the socket 0600, the owner's. */
static int listen_socket(struct helper *h, char **ret_err) {
        struct stat st;
        if (mkdir_p(h->install.helper_runtime, 0711) < 0 || lstat(h->install.helper_runtime, &st) < 0)
                return *ret_err = xasprintf("%s: %s", h->install.helper_runtime, strerror(errno)), -errno;
        if (!S_ISDIR(st.st_mode) || st.st_uid != 0)
                return *ret_err = xasprintf("%s is not a directory of root's", h->install.helper_runtime), -EPERM;
        if (chmod(h->install.helper_runtime, 0711) < 0)
                return *ret_err = xasprintf("chmod %s: %s", h->install.helper_runtime, strerror(errno)), -errno;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(h->socket_path) >= sizeof(sa.sun_path))
                return *ret_err = xasprintf("socket path too long: %s", h->socket_path), -ENAMETOOLONG;
        memcpy(sa.sun_path, h->socket_path, strlen(h->socket_path) + 1);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        (void) unlink(h->socket_path);
        mode_t old = umask(0177);
        int r = fd < 0 ? -1 : bind(fd, (struct sockaddr *) &sa, sizeof(sa));
        umask(old);
        if (r < 0 || chown(h->socket_path, h->install.owner_uid, h->install.owner_gid) < 0 ||
            chmod(h->socket_path, 0600) < 0 || listen(fd, 64) < 0)
                return *ret_err = xasprintf("%s: %s", h->socket_path, strerror(errno)), -errno;
        h->listen_fd = TAKE_FD(fd);
        return 0;
}

static int write_pid(struct helper *h, char **ret_err) {
        _cleanup_free_ char *pid = xasprintf("%d\n", (int) getpid());
        int r = write_file_atomic(h->pid_path, pid, strlen(pid), 0644);
        return r < 0 ? (*ret_err = xasprintf("%s: %s", h->pid_path, strerror(-r)), r) : 0;
}

static int block_signals(struct helper *h, char **ret_err) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        sigaddset(&set, SIGPIPE);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        sigdelset(&set, SIGPIPE);
        h->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
        return h->signal_fd < 0 ? (*ret_err = xasprintf("signalfd: %s", strerror(errno)), -errno) : 0;
}

struct conn {
        struct helper *h;
        int fd;
};

static void *conn_thread(void *arg) {
        struct conn *c = arg;
        helper_serve_conn(c->h, c->fd);
        free(c);
        atomic_fetch_sub(&active_conns, 1);
        return NULL;
}

static void busy(int fd) {
        _cleanup_free_ char *line =
                rpc_response_encode_error(false, 0, RPC_OPERATION_FAILED, "the root helper is busy; try again", NULL);
        (void) rpc_write_line(fd, line);
        close(fd);
}

static void accept_one(struct helper *h) {
        int fd = accept4(h->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
                return;
        if (atomic_fetch_add(&active_conns, 1) >= HELPER_MAX_CONNS) {
                atomic_fetch_sub(&active_conns, 1);
                busy(fd);
                return;
        }
        struct conn *c = xcalloc(1, sizeof(*c));
        *c = (struct conn) { h, fd };
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, conn_thread, c) != 0) {
                atomic_fetch_sub(&active_conns, 1);
                busy(fd);
                free(c);
        }
        pthread_attr_destroy(&attr);
}

/* Builds in flight see helper_stopping, cancel, clean up and answer. */
static void drain(void) {
        atomic_store(&helper_stopping, true);
        for (int k = 0; k < 50 * 20 && atomic_load(&active_conns) > 0; k++)
                poll(NULL, 0, 50);
        if (atomic_load(&active_conns) > 0)
                log_warn("%d calls still in flight after 50 s; exiting anyway", atomic_load(&active_conns));
}

/* Until SIGTERM/SIGINT; then no new calls, and the ones in flight end. */
static void serve(struct helper *h) {
        for (;;) {
                struct pollfd p[2] = { { h->listen_fd, POLLIN, 0 }, { h->signal_fd, POLLIN, 0 } };
                if (poll(p, 2, -1) < 0 && errno != EINTR)
                        break;
                if (p[1].revents & POLLIN) {
                        struct signalfd_siginfo si;
                        if (read(h->signal_fd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo != SIGHUP) {
                                log_info("signal %u: stopping (%d calls in flight)", si.ssi_signo,
                                         atomic_load(&active_conns));
                                close(h->listen_fd);
                                h->listen_fd = -1;
                                (void) unlink(h->socket_path);
                                drain();
                                break;
                        }
                }
                if (p[0].revents & POLLIN)
                        accept_one(h);
        }
}

static void usage(FILE *f) {
        fputs("usage: bangerd-root --system [--install FILE] [--log-level LEVEL]\n"
              "       bangerd-root --version\n"
              "The root helper of a system install (banger system install); runs as root.\n",
              f);
}

static int parse_args(int argc, char **argv, const char **install_file, const char **level) {
        static const struct option longopts[] = {
                { "system", no_argument, NULL, 's' },     { "install", required_argument, NULL, 'i' },
                { "log-level", required_argument, NULL, 'l' }, { "version", no_argument, NULL, 'V' },
                { "help", no_argument, NULL, 'h' },       {},
        };
        bool system = false;
        int c;
        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
                switch (c) {
                case 's':
                        system = true;
                        break;
                case 'i':
                        *install_file = optarg;
                        break;
                case 'l':
                        if (log_level_from_string(optarg) < 0)
                                return fprintf(stderr, "bangerd-root: invalid log level '%s'\n", optarg), 2;
                        *level = optarg;
                        break;
                case 'V':
                        printf("bangerd-root v%s (commit %s, built %s)\n", banger_version(), banger_commit(),
                               banger_built_at());
                        return 0;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind < argc || !system) {
                usage(stderr);
                return 2;
        }
        return -1;
}

static int setup(struct helper *h, const char *file, char **err) {
        int r;
        if ((r = load_install(file, &h->install, err)) < 0 || (r = make_policy(h, err)) < 0)
                return r;
        h->socket_path = install_helper_socket(&h->install);
        h->pid_path = path_join(h->install.helper_runtime, "bangerd-root.pid");
        int swept = hostop_sweep_builds(&h->policy);
        if (swept > 0)
                log_info("removed %d work dir(s) of builds whose builder died", swept);
        if ((r = block_signals(h, err)) < 0 || (r = listen_socket(h, err)) < 0 || (r = write_pid(h, err)) < 0)
                return r;
        return 0;
}

int main(int argc, char **argv) {
        const char *file = NULL, *level = "info";
        int r = parse_args(argc, argv, &file, &level);
        if (r >= 0)
                return r;
        if (geteuid() != 0) {
                fprintf(stderr, "bangerd-root: must run as root (it is the root helper of a system install)\n");
                return 1;
        }
        if (!file)
                file = install_file_path(env_get);
        if (chdir("/") < 0) {
                /* not fatal */
        }
        umask(022);
        log_setup(STDERR_FILENO, (enum log_level) log_level_from_string(level), false);
        struct helper h = { .listen_fd = -1, .signal_fd = -1 };
        _cleanup_free_ char *err = NULL;
        if (setup(&h, file, &err) < 0) {
                fprintf(stderr, "bangerd-root: %s\n", err);
                return 1;
        }
        log_info("bangerd-root %s serving %s for %s (uid %u); bridge %s %s/%d", banger_version(), h.socket_path,
                 h.install.owner_user, (unsigned) h.install.owner_uid, h.policy.bridge, h.policy.bridge_ip,
                 h.policy.prefix);
        serve(&h);
        (void) unlink(h.socket_path);
        (void) unlink(h.pid_path);
        host_policy_done(&h.policy);
        install_info_done(&h.install);
        free(h.socket_path);
        free(h.pid_path);
        return 0;
}
