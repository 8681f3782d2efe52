/* SPDX-License-Identifier: MIT */
/*
 * A Debian image build as one privileged operation of a fixed shape:
 * mmdebstrap (root mode as root) into a private work dir, banger's guest
 * files on top, /root moved aside, `mkfs.ext4 -d` of both into files made
 * new in the caller's directory, the work dir removed (unmounting what a
 * killed apt left). Root never follows a path the owner could change: the
 * trees are in a root-only directory, the outputs are reached through the
 * directory fd the checks opened. What a killed builder leaves is swept
 * at the next start (debian_sweep_work).
 */
#include "debianbuild.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "hostinfo.h"
#include "log.h"
#include "macro.h"
#include "parse.h"
#include "proc_spawn.h"
#include "procscan.h"
#include "rpc.h"
#include "strbuf.h"
#include "sysops.h"

/* Guest files every banger image gets. */
static const char sshd_dropin[] =
        "# banger: key-only root login; per-VM host keys come from banger\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "UseDNS no\n"
        "HostKey /etc/ssh/ssh_host_ed25519_key\n";

static const char agent_unit[] =
        "[Unit]\n"
        "Description=banger guest agent\n"
        "After=local-fs.target\n"
        "\n"
        "[Service]\n"
        "ExecStart=/usr/local/bin/banger-agent\n"
        "Restart=always\n"
        "RestartSec=1\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n";

uint64_t debian_ext4_size_for(uint64_t bytes, uint64_t floor) {
        uint64_t s = bytes + bytes / 3 + (96ULL << 20);
        s = (s + (64ULL << 20) - 1) & ~((64ULL << 20) - 1);
        return s < floor ? floor : s;
}

static int write_at(const char *root, const char *rel, const char *data, unsigned mode, struct op_error *e) {
        _cleanup_free_ char *p = path_join(root, rel);
        _cleanup_free_ char *dir = xstrdup(p);
        *strrchr(dir, '/') = '\0';
        int r = mkdir_p(dir, 0755);
        if (r == 0)
                r = write_file_atomic(p, data, strlen(data), mode);
        return r < 0 ? op_fail(e, r, "writing %s: %s", p, strerror(-r)) : 0;
}

/* Daemons that have a socket unit start on first use, not at boot: dockerd
 * and containerd take tens of seconds to start under TCG, and a unit that is
 * still starting holds multi-user.target (and every boot and warm-start
 * template) back. `docker` reaches /run/docker.sock, and systemd starts
 * docker.service (and with it containerd.service) then. */
static void socket_activate_only(const char *root) {
        static const char *const units[][2] = { { "docker.socket", "docker.service" },
                                                { "docker.socket", "containerd.service" } };
        for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                _cleanup_free_ char *sock = xasprintf("%s/etc/systemd/system/sockets.target.wants/%s", root, units[i][0]);
                _cleanup_free_ char *svc = xasprintf("%s/etc/systemd/system/multi-user.target.wants/%s", root, units[i][1]);
                struct stat st;
                if (lstat(sock, &st) == 0)
                        unlink(svc);
        }
}

static int enable_agent_unit(const char *root, struct op_error *e) {
        int r = write_at(root, "etc/systemd/system/banger-agent.service", agent_unit, 0644, e);
        if (r < 0)
                return r;
        _cleanup_free_ char *wants = path_join(root, "etc/systemd/system/multi-user.target.wants");
        if (mkdir_p(wants, 0755) < 0)
                return op_fail(e, -errno, "cannot create %s: %s", wants, strerror(errno));
        _cleanup_free_ char *link = path_join(wants, "banger-agent.service");
        unlink(link);
        if (symlink("/etc/systemd/system/banger-agent.service", link) < 0)
                return op_fail(e, -errno, "enabling banger-agent.service: %s", strerror(errno));
        /* systemd makes a machine-id on first boot when the file is empty */
        return write_at(root, "etc/machine-id", "", 0444, e);
}

int debian_customize(const char *root, const char *init_mode, const char *agent_bin, struct op_error *e) {
        static const char *const host_keys[] = { "ssh_host_rsa_key", "ssh_host_ecdsa_key", "ssh_host_ed25519_key" };
        int r;
        /* Host keys made at package install would be shared by every VM. */
        for (size_t i = 0; i < ELEMENTSOF(host_keys); i++) {
                _cleanup_free_ char *k = xasprintf("%s/etc/ssh/%s", root, host_keys[i]), *kp = xasprintf("%s.pub", k);
                unlink(k);
                unlink(kp);
        }
        if ((r = write_at(root, "etc/ssh/sshd_config.d/99-banger.conf", sshd_dropin, 0644, e)) < 0 ||
            (r = write_at(root, "etc/hostname", "banger\n", 0644, e)) < 0 ||
            (r = write_at(root, "etc/hosts", "127.0.0.1 localhost\n::1 localhost\n", 0644, e)) < 0 ||
            (r = write_at(root, "etc/fstab", "# root and /root are mounted by banger-init\n", 0644, e)) < 0)
                return r;
        _cleanup_free_ char *bin_dir = path_join(root, "usr/local/bin"), *agent = path_join(bin_dir, "banger-agent");
        if (mkdir_p(bin_dir, 0755) < 0)
                return op_fail(e, -errno, "cannot create %s: %s", bin_dir, strerror(errno));
        if ((r = copy_file_sparse(agent_bin, agent, 0755)) < 0)
                return op_fail(e, r, "installing %s: %s", agent_bin, strerror(-r));
        if (strcmp(init_mode, "systemd") != 0)
                return 0;
        socket_activate_only(root);
        return enable_agent_unit(root, e);
}

/* A new file in the output directory, the owner's from the start. */
static int out_create(const struct debian_build_req *q, const char *name, mode_t mode, int *ret_fd,
                      struct op_error *e) {
        int fd = openat(q->out_fd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0)
                return errno == EEXIST ? op_fail_as(e, RPC_UNAUTHORIZED, -EPERM, "the output directory already has %s",
                                                    name)
                                       : op_fail(e, -errno, "cannot create %s: %s", name, strerror(errno));
        if (fchown(fd, q->owner_uid, q->owner_gid) < 0) {
                int r = -errno;
                close(fd);
                (void) unlinkat(q->out_fd, name, 0);
                return op_fail(e, r, "cannot hand %s to its owner: %s", name, strerror(-r));
        }
        *ret_fd = fd;
        return 0;
}

static const char *const out_names[] = { "build.log", "rootfs.ext4", "work-seed.ext4" };
enum { OUT_LOG, OUT_ROOTFS, OUT_SEED, _OUT_MAX };

static void out_unlink(const struct debian_build_req *q, size_t from) {
        for (size_t i = from; i < _OUT_MAX; i++)
                (void) unlinkat(q->out_fd, out_names[i], 0);
}

/* All three made new before anything runs: one already there is refused. */
static int out_create_all(const struct debian_build_req *q, int fds[static _OUT_MAX], struct op_error *e) {
        for (size_t i = 0; i < _OUT_MAX; i++) {
                int r = out_create(q, out_names[i], i == OUT_LOG ? 0600 : 0644, &fds[i], e);
                if (r < 0) {
                        for (size_t k = 0; k < i; k++) {
                                close(fds[k]);
                                fds[k] = -1;
                                (void) unlinkat(q->out_fd, out_names[k], 0);
                        }
                        return r;
                }
        }
        return 0;
}

static int make_images(const char *tree, const char *seed_dir, const int fds[static _OUT_MAX], uint64_t *ret_size,
                       struct op_error *e) {
        _cleanup_free_ char *root_home = path_join(tree, "root");
        /* in a VM the work disk is mounted on /root */
        if (rename(root_home, seed_dir) < 0 || mkdir(root_home, 0700) < 0)
                return op_fail(e, -errno, "moving /root to the work seed: %s", strerror(errno));
        *ret_size = debian_ext4_size_for(dir_size(tree, true), 256ULL << 20);
        int r = sys_mkfs_ext4_from_dir(tree, "banger-root", *ret_size, fds[OUT_ROOTFS], e);
        if (r == 0)
                r = sys_mkfs_ext4_from_dir(seed_dir, "banger-seed",
                                           debian_ext4_size_for(dir_size(seed_dir, true), 32ULL << 20),
                                           fds[OUT_SEED], e);
        if (r == 0 && (fsync(fds[OUT_ROOTFS]) < 0 || fsync(fds[OUT_SEED]) < 0))
                r = op_fail(e, -errno, "writing the images: %s", strerror(errno));
        return r;
}

/* A process of a dead build: chrooted or working in it, or naming it. */
static bool kill_if_inside(pid_t pid, char *const *argv, int argc, void *ud) {
        const char *work = ud;
        _cleanup_free_ char *root = proc_link(pid, "root"), *cwd = proc_link(pid, "cwd");
        bool inside = path_below(root, work) || path_below(cwd, work);
        for (int i = 0; i < argc && !inside; i++)
                inside = strstr(argv[i], work) != NULL;
        if (inside)
                kill(pid, SIGKILL);
        return false;
}

/* GNU rm and find walk with openat and never follow a symlink swapped in
 * while they run (the unshare work dir's tmp/ is world-writable: another
 * user may plant entries there). */
static void run_quiet(char **argv) {
        _cleanup_free_ char *why = NULL;
        (void) spawn_run_checked(argv, 2 * 60 * 1000, 1, NULL, &why);
}

/* Not root: the work dir goes with rm as ourselves, then what mmdebstrap's
 * namespace left (owned by subordinate ids) through its --unshare-helper
 * as the namespace's root, then the rest. */
static void remove_work(const char *work) {
        struct stat st;
        if (geteuid() == 0) {
                (void) sys_umount_below(work);
                (void) rm_rf(work);
                return;
        }
        _cleanup_free_ char *tmp = path_join(work, "tmp");
        char *rm[] = { (char *) "rm", (char *) "-rf", (char *) "--one-file-system", (char *) "--", (char *) work, NULL };
        char *ns[] = { (char *) "mmdebstrap", (char *) "--unshare-helper", (char *) "find", tmp, (char *) "-xdev",
                       (char *) "-mindepth", (char *) "1", (char *) "-delete", NULL };
        run_quiet(rm);
        if (lstat(work, &st) < 0)
                return;
        run_quiet(ns);
        run_quiet(rm);
        if (lstat(work, &st) == 0)
                log_warn("%s could not be removed whole (entries of another user in its tmp/?)", work);
}

static int make_work(const char *base, char **ret, struct op_error *e) {
        _cleanup_free_ char *work = xasprintf("%s/" DEBIAN_WORK_PREFIX "XXXXXX", base);
        if (!mkdtemp(work))
                return op_fail(e, -errno, "cannot make a build directory in %s: %s", base, strerror(errno));
        _cleanup_free_ char *pidf = path_join(work, "builder.pid"), *pid = xasprintf("%d\n", (int) getpid());
        int r = write_file_atomic(pidf, pid, strlen(pid), 0600);
        if (r < 0) {
                remove_work(work);
                return op_fail(e, r, "cannot write %s: %s", pidf, strerror(-r));
        }
        *ret = TAKE_PTR(work);
        return 0;
}

static int build_in(const struct debian_build_req *q, const char *work, const int fds[static _OUT_MAX],
                    bool (*cancelled)(void *ud), void *cancel_ud, uint64_t *ret_size, struct op_error *e) {
        _cleanup_free_ char *tree = path_join(work, "tree"), *seed_dir = path_join(work, "seed");
        struct mmdebstrap_req m = { .suite = q->suite, .mirror = q->mirror, .packages = q->packages, .dir = tree,
                                    .tar_fd = -1, .log_fd = fds[OUT_LOG] };
        int r = sys_mmdebstrap(&m, cancelled, cancel_ud, e);
        if (r == 0)
                r = debian_customize(tree, q->init_mode, q->agent_bin, e);
        if (r == 0 && cancelled && cancelled(cancel_ud))
                r = op_fail(e, -ECANCELED, "image build cancelled");
        if (r == 0)
                r = make_images(tree, seed_dir, fds, ret_size, e);
        return r;
}

int debian_build(const struct debian_build_req *q, bool (*cancelled)(void *ud), void *cancel_ud,
                 uint64_t *ret_rootfs_size, struct op_error *e) {
        _cleanup_free_ char *work = NULL;
        int fds[_OUT_MAX] = { -1, -1, -1 };
        uint64_t size = 0;
        int r = out_create_all(q, fds, e);
        if (r < 0)
                return r;
        if ((r = make_work(q->work_base, &work, e)) == 0) {
                r = build_in(q, work, fds, cancelled, cancel_ud, &size, e);
                remove_work(work);
        }
        for (size_t i = 0; i < _OUT_MAX; i++)
                close(fds[i]);
        if (r < 0) {
                out_unlink(q, work ? OUT_ROOTFS : OUT_LOG); /* the log of a build that ran stays */
                return r;
        }
        *ret_rootfs_size = size;
        return 0;
}

/* A builder that still runs (ours included: the sweep of a daemon without
 * root runs beside its builds), or a work dir too young to have its pid
 * file yet. */
static bool builder_alive(const char *work, const struct stat *st) {
        _cleanup_free_ char *pidf = path_join(work, "builder.pid"), *text = NULL;
        size_t len;
        int64_t pid;
        if (read_file_nofollow(pidf, 32, &text, &len) < 0)
                return time(NULL) - st->st_mtime < 60;
        text[strcspn(text, "\n")] = '\0';
        if (parse_int_range(text, 2, INT32_MAX, &pid) < 0)
                return false;
        return pid == getpid() || proc_alive((pid_t) pid);
}

int debian_sweep_work(const char *work_base) {
        _cleanup_(closedirp) DIR *d = opendir(work_base);
        struct dirent *de;
        int n = 0;
        if (!d)
                return 0;
        while ((de = readdir(d))) {
                struct stat st;
                _cleanup_free_ char *w = path_join(work_base, de->d_name);
                if (strncmp(de->d_name, DEBIAN_WORK_PREFIX, strlen(DEBIAN_WORK_PREFIX)) != 0 ||
                    lstat(w, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 022) ||
                    builder_alive(w, &st))
                        continue;
                /* mmdebstrap died with its builder; what it started may still run there */
                proc_scan(PROC_ANY_UID, kill_if_inside, w);
                remove_work(w);
                n++;
        }
        return n;
}

/* ---- unshare mode: a build without root ------------------------------------------- */

int debian_unshare_check(struct op_error *e) {
        _cleanup_free_ char *what = NULL, *how = NULL;
        if (hostinfo_unshare_ready(&what, &how))
                return 0;
        return op_fail_as(e, RPC_UNAUTHORIZED, -EPERM,
                          "building a Debian image without root uses mmdebstrap's unshare mode, which needs %s (%s); "
                          "or import a bundle (`banger image pull FILE.tar.zst`, written by `banger image export` "
                          "elsewhere) or pull a container image (`banger image pull docker.io/library/debian:bookworm`)",
                          what, how);
}

#define HOOK_ENV "BANGER_CUSTOMIZE_HOOK"

bool debian_is_customize_hook(void) {
        return getenv(HOOK_ENV) && getenv("MMDEBSTRAP_HOOK");
}

int debian_customize_hook_main(int argc, char **argv) {
        const char *mode = getenv("BANGER_INIT_MODE"), *agent = getenv("BANGER_AGENT");
        struct op_error e = { 0 };
        if (argc != 2 || !mode || !agent || (strcmp(mode, "fast") != 0 && strcmp(mode, "systemd") != 0)) {
                fprintf(stderr, "banger: the customize hook takes the tree, BANGER_INIT_MODE and BANGER_AGENT\n");
                return 2;
        }
        if (debian_customize(argv[1], mode, agent, &e) < 0) {
                fprintf(stderr, "banger: customizing the image: %s\n", e.msg ? e.msg : strerror(-e.err));
                op_error_done(&e);
                return 1;
        }
        return 0;
}

/* Ours, with TMPDIR and the hook's variables set (any inherited ones dropped). */
static char **hook_env(const char *work, const struct debian_build_req *q) {
        extern char **environ;
        size_t n = 0, k = 0;
        for (char **v = environ; *v; v++)
                n++;
        char **env = xcalloc(n + 5, sizeof(char *));
        for (char **v = environ; *v; v++)
                if (strncmp(*v, "TMPDIR=", 7) != 0 && strncmp(*v, "BANGER_", 7) != 0)
                        env[k++] = xstrdup(*v);
        env[k++] = xasprintf("TMPDIR=%s/tmp", work);
        env[k++] = xstrdup(HOOK_ENV "=1");
        env[k++] = xasprintf("BANGER_INIT_MODE=%s", q->init_mode);
        env[k++] = xasprintf("BANGER_AGENT=%s/bin/banger-agent", work);
        return env;
}

static void env_free(char **env) {
        for (char **v = env; v && *v; v++)
                free(*v);
        free(env);
}

/* work reachable by the namespace's root: bin/ with the hook (this program)
 * and the agent, tmp/ for mmdebstrap's tree. */
static int stage_work(const char *work, const char *agent_bin, struct op_error *e) {
        _cleanup_free_ char *tmp = path_join(work, "tmp"), *bin = path_join(work, "bin");
        _cleanup_free_ char *hook = path_join(bin, "banger-hook"), *agent = path_join(bin, "banger-agent");
        int r;
        if (chmod(work, 0755) < 0 || mkdir(tmp, 0700) < 0 || chmod(tmp, 01777) < 0 || mkdir(bin, 0700) < 0 ||
            chmod(bin, 0755) < 0)
                return op_fail(e, -errno, "preparing %s: %s", work, strerror(errno));
        /* (the daemon's umask is 077: the modes are set, not asked for) */
        if ((r = copy_file_sparse("/proc/self/exe", hook, 0755)) < 0 || (r = chmod(hook, 0755) < 0 ? -errno : 0) < 0)
                return op_fail(e, r, "copying the customize hook into %s: %s", bin, strerror(-r));
        if ((r = copy_file_sparse(agent_bin, agent, 0644)) < 0 || (r = chmod(agent, 0644) < 0 ? -errno : 0) < 0)
                return op_fail(e, r, "copying %s into %s: %s", agent_bin, bin, strerror(-r));
        return 0;
}

static int unshare_in(const struct debian_build_req *q, const char *work, int tar_fd, int log_fd,
                      bool (*cancelled)(void *ud), void *cancel_ud, struct op_error *e) {
        int r = stage_work(work, q->agent_bin, e);
        if (r < 0)
                return r;
        _cleanup_free_ char *hook = xasprintf("%s/bin/banger-hook", work);
        char **env = hook_env(work, q);
        struct mmdebstrap_req m = { .suite = q->suite, .mirror = q->mirror, .packages = q->packages, .tar_fd = tar_fd,
                                    .customize_hook = hook, .envp = env, .log_fd = log_fd };
        r = sys_mmdebstrap(&m, cancelled, cancel_ud, e);
        env_free(env);
        return r;
}

int debian_build_tar(const struct debian_build_req *q, bool (*cancelled)(void *ud), void *cancel_ud,
                     struct op_error *e) {
        _cleanup_free_ char *work = NULL;
        int log_fd = -1, tar_fd = -1;
        int r = debian_unshare_check(e);
        if (r < 0 || (r = out_create(q, "build.log", 0600, &log_fd, e)) < 0)
                return r;
        if ((r = out_create(q, DEBIAN_TAR, 0600, &tar_fd, e)) < 0) {
                close(log_fd);
                (void) unlinkat(q->out_fd, "build.log", 0);
                return r;
        }
        if ((r = make_work(q->work_base, &work, e)) == 0) {
                r = unshare_in(q, work, tar_fd, log_fd, cancelled, cancel_ud, e);
                remove_work(work);
        }
        close(log_fd);
        close(tar_fd);
        if (r < 0) {
                (void) unlinkat(q->out_fd, DEBIAN_TAR, 0);
                if (!work)
                        (void) unlinkat(q->out_fd, "build.log", 0);
        }
        return r;
}
