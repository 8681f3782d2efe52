/* SPDX-License-Identifier: MIT */
/*
 * banger system install | status | restart | uninstall: the system install.
 *
 * An install is: the binaries in <prefix>/bin (banger, bangerd,
 * bangerd-root) and <prefix>/lib/banger (banger-agent, banger-init), root's;
 * the man pages in <prefix>/share/man (banger.1, banger-config.5, bangerd.8);
 * /etc/banger/install.toml saying who owns it and where things live; and
 * two services, the root helper (bangerd-root, as root) and the daemon
 * (bangerd, as the owner). With systemd as PID 1 they are units in
 * /etc/systemd/system, enabled and started by `install`. Otherwise
 * (`manager = "direct"`) `install` prints the two `start:` command lines
 * and the admin runs them; `restart` and `uninstall` then stop them through
 * their pids (the daemon's from ping, the helper's pidfile, checked against
 * its binary) and `restart` starts them again detached. `--root DIR` puts a
 * whole install below DIR (tests, side-by-side installs); it is always direct.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "fsutil.h"
#include "jsonx.h"
#include "macro.h"
#include "proc_spawn.h"
#include "rpc_methods.h"
#include "strbuf.h"
#include "system.h"
#include "version.h"

#define START_TIMEOUT_MS 20000
#define STOP_TIMEOUT_MS 15000

static const char *const bin_names[] = { "banger", "bangerd", "bangerd-root" };
static const char *const lib_names[] = { "banger-agent", "banger-init" };

static int need_root(struct cli_ctx *ctx, const char *what) {
        if (geteuid() == 0)
                return 0;
        return cli_fail(ctx, -EPERM, "%s needs root: sudo banger system %s", what, what);
}

char *system_bin(const struct install_info *i, const char *name) {
        return xasprintf("%s/bin/%s", i->prefix, name);
}

char *system_helper_log(const struct install_info *i) {
        /* root's own directory: never a log root appends to in the owner's */
        return path_join(i->helper_runtime, "bangerd-root.log");
}

/* ---- services ------------------------------------------------------------- */

static int systemctl(struct cli_ctx *ctx, char *const argv[]) {
        _cleanup_free_ char *msg = NULL;
        int r = spawn_run_checked(argv, 120000, 0, "systemd", &msg);
        return r < 0 ? cli_fail(ctx, r, "%s", msg ? msg : "systemctl failed") : 0;
}

/* Connects to a unix socket: 0 when something accepts. */
int system_probe_socket(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        return 0;
}

/* The helper's pid from its pidfile, when that pid still runs our binary. */
pid_t system_helper_pid(const struct install_info *i) {
        _cleanup_free_ char *pidf = path_join(i->helper_runtime, "bangerd-root.pid"), *text = NULL;
        _cleanup_free_ char *bin = system_bin(i, "bangerd-root");
        size_t len;
        if (read_file_nofollow(pidf, 32, &text, &len) < 0)
                return 0;
        pid_t pid = (pid_t) atoi(text);
        char exe[4096];
        _cleanup_free_ char *link = xasprintf("/proc/%d/exe", (int) pid);
        ssize_t n = pid > 1 ? readlink(link, exe, sizeof(exe) - 1) : -1;
        if (n <= 0)
                return 0;
        exe[n] = '\0';
        /* an updated binary shows as "<path> (deleted)" */
        return strncmp(exe, bin, strlen(bin)) == 0 ? pid : 0;
}

static int wait_gone(pid_t pid, int timeout_ms) {
        int fd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (fd < 0)
                return errno == ESRCH ? 0 : -errno;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, timeout_ms);
        close(fd);
        return r > 0 ? 0 : -ETIMEDOUT;
}

static int wait_socket(const char *path, pid_t pid, int timeout_ms) {
        int64_t deadline = mono_ms_now() + timeout_ms;
        while (mono_ms_now() < deadline) {
                if (system_probe_socket(path) == 0)
                        return 0;
                if (pid > 0 && waitpid(pid, NULL, WNOHANG) == pid)
                        return -ECHILD; /* it exited */
                poll(NULL, 0, 50);
        }
        return -ETIMEDOUT;
}

/* Starts argv detached (own session), output to log (NULL: /dev/null),
 * and waits for its socket. */
static int start_detached(struct cli_ctx *ctx, char *const argv[], const char *log, const char *sock) {
        _cleanup_close_ int out = log ? open(log, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600)
                                      : open("/dev/null", O_WRONLY | O_CLOEXEC);
        _cleanup_close_ int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (out < 0 || in < 0)
                return cli_fail(ctx, -errno, "%s: %s", log ? log : "/dev/null", strerror(errno));
        struct spawn_fd_map map[] = { { 0, in }, { 1, out }, { 2, out } };
        struct spawn_opts o = { .fds = map, .n_fds = ELEMENTSOF(map), .new_session = true };
        pid_t pid;
        int r = spawn_start(argv, &o, &pid);
        if (r < 0)
                return cli_fail(ctx, r, "cannot start %s: %s", argv[0], strerror(-r));
        r = wait_socket(sock, pid, START_TIMEOUT_MS);
        if (r == -ECHILD)
                return cli_fail(ctx, -EIO, "%s exited at start (see %s)", argv[0], log ? log : "its log");
        if (r < 0)
                return cli_fail(ctx, r, "%s does not answer on %s after %d s", argv[0], sock, START_TIMEOUT_MS / 1000);
        return 0;
}

static int start_direct(struct cli_ctx *ctx, const struct install_info *i, const char *file) {
        _cleanup_free_ char *helper = system_bin(i, "bangerd-root"), *daemon = system_bin(i, "bangerd");
        _cleanup_free_ char *hsock = install_helper_socket(i), *hlog = system_helper_log(i);
        _cleanup_free_ char *dsock = path_join(i->runtime_dir, "bangerd.sock");
        char *hargv[] = { helper, (char *) "--system", (char *) "--install", (char *) file, NULL };
        char *dargv[] = { daemon, (char *) "--system", (char *) "--install", (char *) file, NULL };
        int r;
        if (system_probe_socket(hsock) != 0) {
                if (mkdir_p(i->helper_runtime, 0711) < 0)
                        return cli_fail(ctx, -errno, "%s: %s", i->helper_runtime, strerror(errno));
                if ((r = start_detached(ctx, hargv, hlog, hsock)) < 0)
                        return r;
        }
        if (system_probe_socket(dsock) != 0 && (r = start_detached(ctx, dargv, NULL, dsock)) < 0)
                return r;
        return 0;
}

static int stop_daemon(struct cli_ctx *ctx, const struct install_info *i) {
        if (install_uses_systemd(i)) {
                char *argv[] = { (char *) "systemctl", (char *) "stop", (char *) "bangerd.service", NULL };
                return systemctl(ctx, argv);
        }
        int r = cli_try_connect(ctx) == 0 ? cli_stop_daemon(ctx) : 0;
        cli_disconnect(ctx);
        return r;
}

static int stop_helper(struct cli_ctx *ctx, const struct install_info *i) {
        pid_t pid = system_helper_pid(i);
        if (pid > 0) {
                kill(pid, SIGTERM);
                if (wait_gone(pid, STOP_TIMEOUT_MS) < 0)
                        return cli_fail(ctx, -ETIMEDOUT, "bangerd-root (pid %d) did not stop", (int) pid);
        }
        return 0;
}

/* The daemon first (it asks the helper to tidy up as it goes), then the helper. */
static int stop_direct(struct cli_ctx *ctx, const struct install_info *i) {
        int r = stop_daemon(ctx, i);
        return r < 0 ? r : stop_helper(ctx, i);
}

static int start_services(struct cli_ctx *ctx, const struct install_info *i, const char *file) {
        if (!install_uses_systemd(i))
                return start_direct(ctx, i, file);
        char *reload[] = { (char *) "systemctl", (char *) "daemon-reload", NULL };
        char *enable[] = { (char *) "systemctl", (char *) "enable", (char *) "--now", (char *) "bangerd-root.service",
                           (char *) "bangerd.service", NULL };
        int r;
        if ((r = systemctl(ctx, reload)) < 0 || (r = systemctl(ctx, enable)) < 0)
                return r;
        _cleanup_free_ char *dsock = path_join(i->runtime_dir, "bangerd.sock");
        if (wait_socket(dsock, 0, START_TIMEOUT_MS) < 0)
                return cli_fail(ctx, -ETIMEDOUT, "bangerd.service does not answer on %s (journalctl -u bangerd)",
                                dsock);
        return 0;
}

static int stop_services(struct cli_ctx *ctx, const struct install_info *i) {
        if (!install_uses_systemd(i))
                return stop_direct(ctx, i);
        char *argv[] = { (char *) "systemctl", (char *) "stop", (char *) "bangerd.service",
                         (char *) "bangerd-root.service", NULL };
        return systemctl(ctx, argv);
}

static int disable_services(struct cli_ctx *ctx, const struct install_info *i) {
        if (!install_uses_systemd(i))
                return stop_helper(ctx, i);
        char *argv[] = { (char *) "systemctl", (char *) "disable", (char *) "--now", (char *) "bangerd.service",
                         (char *) "bangerd-root.service", NULL };
        return systemctl(ctx, argv);
}

/* ---- install ------------------------------------------------------------------ */

static int copy_binary(struct cli_ctx *ctx, const char *from, const char *to) {
        _cleanup_free_ char *tmp = xasprintf("%s.new.%d", to, (int) getpid());
        int r = copy_file_sparse(from, tmp, 0755);
        if (r == 0 && (chown(tmp, 0, 0) < 0 || chmod(tmp, 0755) < 0))
                r = -errno;
        if (r == 0 && rename(tmp, to) < 0)
                r = -errno;
        if (r < 0) {
                unlink(tmp);
                return cli_fail(ctx, r, "installing %s as %s: %s", from, to, strerror(-r));
        }
        return 0;
}

/* Where this banger's companions are: next to it (a build dir, an
 * unpacked release), or under <dir>/../lib/banger (an install). */
static char *companion(const char *self_dir, const char *name) {
        /* the guest programs may be built elsewhere ($BANGER_AGENT, $BANGER_INIT) */
        const char *env = strcmp(name, "banger-agent") == 0 ? getenv("BANGER_AGENT")
                          : strcmp(name, "banger-init") == 0 ? getenv("BANGER_INIT")
                                                             : NULL;
        if (env && env[0] == '/' && access(env, X_OK) == 0)
                return xstrdup(env);
        const char *const subdirs[] = { "", "/../lib/banger" };
        for (size_t k = 0; k < ELEMENTSOF(subdirs); k++) {
                char *p = xasprintf("%s%s/%s", self_dir, subdirs[k], name);
                if (access(p, X_OK) == 0)
                        return p;
                free(p);
        }
        return NULL;
}

int system_copy_binaries(struct cli_ctx *ctx, const char *from_dir, const struct install_info *i) {
        _cleanup_free_ char *bin = path_join(i->prefix, "bin"), *lib = path_join(i->prefix, "lib/banger");
        if (mkdir_p(bin, 0755) < 0 || mkdir_p(lib, 0755) < 0)
                return cli_fail(ctx, -errno, "cannot create %s and %s: %s", bin, lib, strerror(errno));
        for (size_t k = 0; k < ELEMENTSOF(bin_names) + ELEMENTSOF(lib_names); k++) {
                bool is_bin = k < ELEMENTSOF(bin_names);
                const char *name = is_bin ? bin_names[k] : lib_names[k - ELEMENTSOF(bin_names)];
                _cleanup_free_ char *src = companion(from_dir, name);
                _cleanup_free_ char *dst = path_join(is_bin ? bin : lib, name);
                if (!src)
                        return cli_fail(ctx, -ENOENT, "%s is not next to banger in %s (build it first)", name, from_dir);
                int r = strcmp(src, dst) == 0 ? 0 : copy_binary(ctx, src, dst);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The three pages, as the installed banger renders them (`banger __man N`),
 * so that an update's pages are the new version's. */
static const struct {
        const char *section, *name;
} man_pages[] = { { "1", "banger.1" }, { "5", "banger-config.5" }, { "8", "bangerd.8" } };

int system_write_man_pages(struct cli_ctx *ctx, const struct install_info *i) {
        _cleanup_free_ char *banger = system_bin(i, "banger");
        for (size_t k = 0; k < ELEMENTSOF(man_pages); k++) {
                _cleanup_free_ char *dir = xasprintf("%s/share/man/man%s", i->prefix, man_pages[k].section);
                _cleanup_free_ char *dst = path_join(dir, man_pages[k].name);
                char *argv[] = { banger, (char *) "__man", (char *) man_pages[k].section, NULL };
                struct spawn_opts o = { .capture_stdout = true, .capture_stderr = true, .timeout_ms = 30000 };
                struct spawn_result res = { 0 };
                int r = spawn_run(argv, &o, &res);
                if (r == 0 && (res.exit_code != 0 || res.out_len == 0))
                        r = -EIO;
                if (r == 0)
                        r = mkdir_p(dir, 0755) < 0 ? -errno : 0;
                if (r == 0)
                        r = write_file_atomic(dst, res.out, res.out_len, 0644);
                spawn_result_done(&res);
                if (r < 0)
                        return cli_fail(ctx, r, "installing the man page %s: %s", dst, strerror(-r));
        }
        return 0;
}

static char *self_dir(void) {
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n <= 0)
                return NULL;
        self[n] = '\0';
        *strrchr(self, '/') = '\0';
        return xstrdup(self);
}

static char *etc_path(const char *root, const char *rel) {
        const char *r = root && strcmp(root, "/") != 0 ? root : "";
        return xasprintf("%s%s", r, rel);
}

int system_write_install(struct cli_ctx *ctx, const struct install_info *i, const char *file) {
        _cleanup_free_ char *text = install_format(i), *dir = xstrdup(file);
        *strrchr(dir, '/') = '\0';
        int r = mkdir_p(dir, 0755);
        if (r == 0)
                r = write_file_atomic(file, text, strlen(text), 0644);
        return r < 0 ? cli_fail(ctx, r, "writing %s: %s", file, strerror(-r)) : 0;
}

static int write_units(struct cli_ctx *ctx, const struct install_info *i, const char *file, const char *unit_dir) {
        _cleanup_free_ char *daemon = system_unit_daemon(i, file), *helper = system_unit_helper(i, file);
        _cleanup_free_ char *dp = path_join(unit_dir, "bangerd.service"), *hp = path_join(unit_dir, "bangerd-root.service");
        int r = mkdir_p(unit_dir, 0755);
        if (r == 0)
                r = write_file_atomic(hp, helper, strlen(helper), 0644);
        if (r == 0)
                r = write_file_atomic(dp, daemon, strlen(daemon), 0644);
        return r < 0 ? cli_fail(ctx, r, "writing units in %s: %s", unit_dir, strerror(-r)) : 0;
}

static int owner_of(struct cli_ctx *ctx, const char *name, struct install_info *i) {
        if (!name || !*name)
                return cli_fail(ctx, -EINVAL, "whose install is it? --owner USER (the user who will run banger)");
        struct passwd *pw = getpwnam(name);
        if (!pw)
                return cli_fail(ctx, -ENOENT, "no user '%s'", name);
        if (pw->pw_uid == 0)
                return cli_fail(ctx, -EINVAL, "the owner must not be root (as root, banger runs without an install)");
        i->owner_user = xstrdup(pw->pw_name);
        i->owner_uid = pw->pw_uid;
        i->owner_gid = pw->pw_gid;
        i->owner_home = xstrdup(pw->pw_dir && pw->pw_dir[0] == '/' ? pw->pw_dir : "/nonexistent");
        return 0;
}

/* An install of someone else's is not silently taken over. */
static int check_existing(struct cli_ctx *ctx, const char *file, const struct install_info *i, bool force) {
        _cleanup_free_ char *text = NULL, *msg = NULL;
        struct install_info old = { 0 };
        size_t len;
        if (read_file_nofollow(file, 64 * 1024, &text, &len) < 0 || install_parse(text, len, &old, &msg) < 0)
                return 0;
        int r = 0;
        if (old.owner_uid != i->owner_uid && !force)
                r = cli_fail(ctx, -EEXIST, "banger is installed for %s already (sudo banger system uninstall, or --force)",
                             old.owner_user);
        install_info_done(&old);
        return r;
}

bool system_owner_in_kvm_group(const struct install_info *i) {
        struct stat st;
        if (stat("/dev/kvm", &st) < 0)
                return true; /* no KVM: nothing to be missing from */
        gid_t groups[256];
        int n = ELEMENTSOF(groups);
        if (getgrouplist(i->owner_user, i->owner_gid, groups, &n) < 0)
                return false;
        for (int k = 0; k < n; k++)
                if (groups[k] == st.st_gid)
                        return true;
        return false;
}

static void warn_kvm(const struct install_info *i) {
        if (!system_owner_in_kvm_group(i))
                fprintf(stderr, "banger: warning: %s is not in /dev/kvm's group: VMs will use TCG (slow). "
                                "Fix: sudo usermod -aG kvm %s, then sudo banger system restart\n",
                        i->owner_user, i->owner_user);
}

static int prepare(struct cli_ctx *ctx, struct cli_args *a, const char *root, struct install_info *i) {
        const char *owner = cli_flag(a, "owner");
        int r;
        install_defaults(root, i);
        if ((r = owner_of(ctx, owner ? owner : getenv("SUDO_USER"), i)) < 0)
                return r;
        bool systemd = strcmp(root, "/") == 0 && access("/run/systemd/system", F_OK) == 0;
        i->manager = xstrdup(systemd ? "systemd" : "direct");
        i->version = xstrdup(banger_version());
        i->commit = xstrdup(banger_commit());
        i->built_at = xstrdup(banger_built_at());
        i->installed_at = now_rfc3339();
        return 0;
}

/* The directories the units would make (StateDirectory= and friends): the
 * owner's, 0700; the helper's runtime dir root's, 0711. */
static int make_dirs(struct cli_ctx *ctx, const struct install_info *i) {
        const char *const own[] = { i->state_dir, i->cache_dir, i->runtime_dir };
        for (size_t k = 0; k <= ELEMENTSOF(own); k++) {
                const char *d = k < ELEMENTSOF(own) ? own[k] : i->helper_runtime;
                _cleanup_free_ char *parent = xstrdup(d);
                *strrchr(parent, '/') = '\0';
                struct stat st;
                if ((parent[0] && mkdir_p(parent, 0755) < 0) || (mkdir(d, 0700) < 0 && errno != EEXIST) ||
                    lstat(d, &st) < 0 || !S_ISDIR(st.st_mode))
                        return cli_fail(ctx, -errno ? -errno : -ENOTDIR, "cannot make %s: %s", d, strerror(errno));
                uid_t uid = k < ELEMENTSOF(own) ? i->owner_uid : 0;
                gid_t gid = k < ELEMENTSOF(own) ? i->owner_gid : 0;
                if (lchown(d, uid, gid) < 0 || chmod(d, k < ELEMENTSOF(own) ? 0700 : 0711) < 0)
                        return cli_fail(ctx, -errno, "cannot set the owner and mode of %s: %s", d, strerror(errno));
        }
        return 0;
}

static void print_installed(const struct install_info *i, const char *file, bool started) {
        printf("installed banger v%s for %s (%s)\n", i->version, i->owner_user, file);
        printf("  binaries  %s/bin, %s/lib/banger\n  state     %s\n  daemon    %s/bangerd.sock (%s)\n",
               i->prefix, i->prefix, i->state_dir, i->runtime_dir,
               install_uses_systemd(i) ? "bangerd.service + bangerd-root.service" : "started directly");
        if (!started) {
                printf("not started (%s); start them as root, helper first (the daemon becomes %s itself):\n",
                       install_uses_systemd(i) ? "--no-start" : "systemd is not running", i->owner_user);
                printf("start: %s/bin/bangerd-root --system --install %s\n", i->prefix, file);
                printf("start: %s/bin/bangerd --system --install %s\n", i->prefix, file);
        } else
                printf("now, as %s: banger vm run -- uname -a\n", i->owner_user);
}

int cmd_system_install(struct cli_ctx *ctx, struct cli_args *a) {
        const char *root = cli_flag(a, "root") ? cli_flag(a, "root") : "/";
        _cleanup_(install_info_done) struct install_info i = { 0 };
        _cleanup_free_ char *from = self_dir(), *file = NULL, *units = NULL;
        int r;
        if ((r = need_root(ctx, "install")) < 0)
                return r;
        if (root[0] != '/')
                return cli_fail(ctx, -EINVAL, "--root must be an absolute path");
        if ((r = prepare(ctx, a, root, &i)) < 0)
                return r;
        file = etc_path(root, "/etc/banger/install.toml");
        units = etc_path(root, "/etc/systemd/system");
        if ((r = check_existing(ctx, file, &i, cli_has(a, "force"))) < 0)
                return r;
        if (ctx->system && !ctx->socket_override && strcmp(file, system_install_file()) == 0 &&
            (r = stop_services(ctx, &ctx->install)) < 0) /* a reinstall: the old ones go first */
                return r;
        if ((r = system_copy_binaries(ctx, from, &i)) < 0 || (r = system_write_man_pages(ctx, &i)) < 0 ||
            (r = system_write_install(ctx, &i, file)) < 0 ||
            (r = write_units(ctx, &i, file, units)) < 0 || (r = make_dirs(ctx, &i)) < 0)
                return r;
        warn_kvm(&i);
        /* without systemd, starting is the admin's (the `start:` lines): a
         * daemon started from here would belong to this terminal's session */
        bool start = install_uses_systemd(&i) && !cli_has(a, "no-start");
        if (start) {
                install_layout(&i, &ctx->layout); /* talk to the new daemon */
                if ((r = start_services(ctx, &i, file)) < 0)
                        return r;
        }
        print_installed(&i, file, start);
        return 0;
}

/* ---- status, restart, uninstall -------------------------------------------------- */

static int need_install(struct cli_ctx *ctx) {
        if (ctx->install_error)
                return cli_fail(ctx, -EINVAL, "%s", ctx->install_error);
        if (!ctx->system)
                return cli_fail(ctx, -ENOENT, "banger is not installed system-wide (%s does not exist)",
                                system_install_file());
        return 0;
}

/* "srw------- uid 1000" for a socket, or why not. */
static json_t *socket_json(const char *path) {
        struct stat st;
        if (lstat(path, &st) < 0)
                return json_pack("{s:s, s:s}", "path", path, "error", strerror(errno));
        char mode[8];
        snprintf(mode, sizeof(mode), "%04o", (unsigned) (st.st_mode & 07777));
        return json_pack("{s:s, s:s, s:i, s:b}", "path", path, "mode", mode, "uid", (int) st.st_uid, "is_socket",
                         S_ISSOCK(st.st_mode));
}

/* VMs by state, when the daemon answers. */
static json_t *vm_counts(struct cli_ctx *ctx) {
        _cleanup_json_ json_t *res = NULL;
        size_t k;
        json_t *vm, *counts = json_object();
        if (cli_call(ctx, CLI_NO_AUTOSTART, RPC_METHOD_VM_LIST, NULL, &res) < 0)
                return counts;
        json_array_foreach(json_object_get(res, "vms"), k, vm) {
                const char *st = json_string_value(json_object_get(vm, "state"));
                json_t *n = json_object_get(counts, st ? st : "?");
                json_object_set_new(counts, st ? st : "?", json_integer(n ? json_integer_value(n) + 1 : 1));
        }
        return counts;
}

static json_t *status_json(struct cli_ctx *ctx) {
        const struct install_info *i = &ctx->install;
        _cleanup_free_ char *hsock = install_helper_socket(i);
        json_t *j = json_pack("{s:s, s:i, s:s, s:s, s:s, s:s, s:s}", "owner", i->owner_user, "owner_uid",
                              (int) i->owner_uid, "version", strempty(i->version), "commit", strempty(i->commit),
                              "manager", install_uses_systemd(i) ? "systemd" : "direct", "prefix", i->prefix,
                              "state_dir", i->state_dir);
        json_object_set_new(j, "helper", json_pack("{s:o, s:b, s:i}", "socket", socket_json(hsock), "answers",
                                                   system_probe_socket(hsock) == 0, "pid", (int) system_helper_pid(i)));
        _cleanup_json_ json_t *ping = NULL;
        bool up = cli_try_connect(ctx) == 0 && cli_call(ctx, CLI_NO_AUTOSTART, RPC_METHOD_PING, NULL, &ping) == 0;
        json_t *d = json_pack("{s:o, s:b}", "socket", socket_json(cli_socket_path(ctx)), "answers", up);
        if (up) {
                json_object_set(d, "version", json_object_get(ping, "version"));
                json_object_set(d, "commit", json_object_get(ping, "commit"));
                json_object_set(d, "pid", json_object_get(ping, "pid"));
                json_object_set_new(d, "vms", vm_counts(ctx));
        }
        json_object_set_new(j, "daemon", d);
        json_object_set_new(j, "cli", json_pack("{s:s, s:s}", "version", banger_version(), "commit", banger_commit()));
        return j;
}

static void print_service(const char *what, json_t *svc) {
        json_t *sock = json_object_get(svc, "socket");
        bool up = json_is_true(json_object_get(svc, "answers"));
        printf("%-12s %s", what, up ? "answers" : "DOES NOT ANSWER");
        if (json_integer_value(json_object_get(svc, "pid")) > 0)
                printf(", pid %lld", (long long) json_integer_value(json_object_get(svc, "pid")));
        if (json_object_get(svc, "version"))
                printf(", v%s (%s)", json_string_value(json_object_get(svc, "version")),
                       json_string_value(json_object_get(svc, "commit")));
        printf("\n%-12s %s", "  socket", json_string_value(json_object_get(sock, "path")));
        if (json_object_get(sock, "error"))
                printf(": %s\n", json_string_value(json_object_get(sock, "error")));
        else
                printf(" (mode %s, uid %lld)\n", json_string_value(json_object_get(sock, "mode")),
                       (long long) json_integer_value(json_object_get(sock, "uid")));
}

int cmd_system_status(struct cli_ctx *ctx, struct cli_args *a) {
        (void) a;
        int r = need_install(ctx);
        if (r < 0)
                return r;
        _cleanup_json_ json_t *j = status_json(ctx);
        json_t *h = json_object_get(j, "helper"), *d = json_object_get(j, "daemon");
        bool ok = json_is_true(json_object_get(h, "answers")) && json_is_true(json_object_get(d, "answers"));
        if (ctx->json) {
                cli_print_json(j);
                return ok ? 0 : 3;
        }
        const struct install_info *i = &ctx->install;
        printf("%-12s %s (uid %u)\n%-12s v%s (%s), installed %s\n%-12s %s\n%-12s %s\n", "owner", i->owner_user,
               (unsigned) i->owner_uid, "version", strempty(i->version), strempty(i->commit),
               strempty(i->installed_at), "services", install_uses_systemd(i) ? "systemd units" : "started directly",
               "state", i->state_dir);
        print_service("root helper", h);
        print_service("daemon", d);
        const char *key;
        json_t *n;
        printf("%-12s", "vms");
        json_object_foreach(json_object_get(d, "vms"), key, n)
                printf(" %lld %s", (long long) json_integer_value(n), key);
        printf("%s\n", json_object_size(json_object_get(d, "vms")) ? "" : " none");
        if (!ok)
                printf("fix: sudo banger system restart\n");
        return ok ? 0 : 3;
}

int system_restart_services(struct cli_ctx *ctx, const struct install_info *i, const char *file) {
        int r;
        if (install_uses_systemd(i)) {
                char *argv[] = { (char *) "systemctl", (char *) "restart", (char *) "bangerd-root.service",
                                 (char *) "bangerd.service", NULL };
                if ((r = systemctl(ctx, argv)) < 0)
                        return r;
                _cleanup_free_ char *dsock = path_join(i->runtime_dir, "bangerd.sock");
                r = wait_socket(dsock, 0, START_TIMEOUT_MS);
                return r < 0 ? cli_fail(ctx, r, "bangerd.service does not answer on %s after the restart", dsock) : 0;
        }
        if ((r = stop_direct(ctx, i)) < 0)
                return r;
        return start_direct(ctx, i, file);
}

int cmd_system_restart(struct cli_ctx *ctx, struct cli_args *a) {
        (void) a;
        int r;
        if ((r = need_root(ctx, "restart")) < 0 || (r = need_install(ctx)) < 0 ||
            (r = system_restart_services(ctx, &ctx->install, system_install_file())) < 0)
                return r;
        printf("restarted the root helper and bangerd (running VMs kept running)\n");
        return 0;
}

/* VMs still running are the owner's work: not stopped behind their back
 * unless asked (--force stops them). */
static int running_vms(struct cli_ctx *ctx, bool force) {
        _cleanup_json_ json_t *res = NULL;
        size_t k;
        json_t *vm;
        if (cli_try_connect(ctx) < 0)
                return 0;
        if (cli_call(ctx, CLI_NO_AUTOSTART, RPC_METHOD_VM_LIST, NULL, &res) < 0)
                return -EIO;
        _cleanup_strbuf_ struct strbuf names = STRBUF_INIT;
        json_array_foreach(json_object_get(res, "vms"), k, vm) {
                const char *st = json_string_value(json_object_get(vm, "state"));
                const char *name = json_string_value(json_object_get(vm, "name"));
                if (!st || strcmp(st, "stopped") == 0 || strcmp(st, "created") == 0 || !name)
                        continue;
                if (!force) {
                        strbuf_addf(&names, "%s%s", names.len ? ", " : "", name);
                        continue;
                }
                _cleanup_json_ json_t *p = json_pack("{s:s}", "vm", name), *out = NULL;
                printf("stopping %s\n", name);
                if (cli_call(ctx, CLI_NO_AUTOSTART, RPC_METHOD_VM_STOP, p, &out) < 0)
                        return -EIO;
        }
        if (names.len)
                return cli_fail(ctx, -EBUSY, "VMs are running (%s): stop them first, or --force stops them", names.buf);
        return 0;
}

/* The idle pool TAPs the daemon kept for fast starts go with it: through
 * the helper, which checks each is a banger TAP on the bridge. */
static void drop_pool_taps(const struct install_info *i) {
        _cleanup_free_ char *sock = install_helper_socket(i);
        struct if_nameindex *ifs = if_nameindex();
        for (struct if_nameindex *n = ifs; n && n->if_index; n++) {
                if (strncmp(n->if_name, "tap-pool-", 9) != 0)
                        continue;
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
                _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                        break;
                _cleanup_json_ json_t *p = json_pack("{s:s}", "tap", n->if_name);
                _cleanup_free_ char *req = rpc_request_encode(1, "priv.tap_delete", p);
                char buf[512];
                if (rpc_write_line(fd, req) == 0 && read(fd, buf, sizeof(buf)) < 0) {
                        /* the helper logs what it did */
                }
        }
        if (ifs)
                if_freenameindex(ifs);
}

static void remove_files(const struct install_info *i, const char *file) {
        const char *names[] = { "bin/banger", "bin/bangerd", "bin/bangerd-root", "lib/banger/banger-agent",
                                "lib/banger/banger-init" };
        for (size_t k = 0; k < ELEMENTSOF(names); k++) {
                _cleanup_free_ char *p = path_join(i->prefix, names[k]), *prev = xasprintf("%s.previous", p);
                (void) unlink(p);
                (void) unlink(prev);
        }
        _cleanup_free_ char *lib = path_join(i->prefix, "lib/banger");
        (void) rmdir(lib);
        for (size_t k = 0; k < ELEMENTSOF(man_pages); k++) {
                _cleanup_free_ char *page = xasprintf("%s/share/man/man%s/%s", i->prefix, man_pages[k].section,
                                                      man_pages[k].name);
                (void) unlink(page);
        }
        if (install_uses_systemd(i)) {
                (void) unlink("/etc/systemd/system/bangerd.service");
                (void) unlink("/etc/systemd/system/bangerd-root.service");
                char *reload[] = { (char *) "systemctl", (char *) "daemon-reload", NULL };
                _cleanup_free_ char *msg = NULL;
                (void) spawn_run_checked(reload, 60000, 0, "systemd", &msg);
        } else {
                /* a --root install keeps its units below its root */
                const char *cut = strstr(file, "/etc/banger/install.toml");
                for (size_t k = 0; cut && k < 2; k++) {
                        _cleanup_free_ char *unit = xasprintf("%.*s/etc/systemd/system/%s", (int) (cut - file), file,
                                                              k ? "bangerd.service" : "bangerd-root.service");
                        (void) unlink(unit);
                }
        }
        (void) unlink(file);
        _cleanup_free_ char *etc = xstrdup(file);
        *strrchr(etc, '/') = '\0';
        (void) rmdir(etc); /* when the config went too (--purge) or never was */
        (void) rm_rf(i->runtime_dir);
        (void) rm_rf(i->helper_runtime);
}

int cmd_system_uninstall(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_free_ char *file = xstrdup(system_install_file());
        bool purge = cli_has(a, "purge");
        int r;
        if ((r = need_root(ctx, "uninstall")) < 0 || (r = need_install(ctx)) < 0 ||
            (r = running_vms(ctx, cli_has(a, "force"))) < 0)
                return r;
        /* the daemon goes, then its idle pool TAPs (through the helper), then the helper */
        if ((r = stop_daemon(ctx, &ctx->install)) < 0)
                return r;
        drop_pool_taps(&ctx->install);
        if ((r = disable_services(ctx, &ctx->install)) < 0)
                return r;
        if (purge)
                (void) unlink(ctx->install.config_file);
        remove_files(&ctx->install, file);
        if (purge) {
                (void) rm_rf(ctx->install.state_dir);
                (void) rm_rf(ctx->install.cache_dir);
                printf("uninstalled banger and removed its state (%s, %s)\n", ctx->install.state_dir,
                       ctx->install.cache_dir);
        } else
                printf("uninstalled banger; VM disks, images and kernels stay in %s (--purge removes them)\n",
                       ctx->install.state_dir);
        return 0;
}

const char *system_install_file(void) {
        const char *p = getenv("BANGER_INSTALL_FILE");
        return p && p[0] == '/' ? p : INSTALL_FILE_DEFAULT;
}
