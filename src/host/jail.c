/* SPDX-License-Identifier: MIT */
/* Firecracker's jailer: the chroot, the argv, a detached start (jail.h). */
#include "jail.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fsutil.h"
#include "strbuf.h"

void host_jail_done(struct host_jail *j) {
        free(j->jailer);
        free(j->exec_file);
        free(j->chroot_base);
        *j = (struct host_jail) { 0 };
}

static const char *base_name(const char *p) {
        return strrchr(p, '/') ? strrchr(p, '/') + 1 : p;
}

char *jail_root(const struct host_jail *j, const char *id) {
        return xasprintf("%s/%s/banger-%s/root", j->chroot_base, base_name(j->exec_file), id);
}

char **jail_argv(const struct host_jail *j, const char *id, char *const *cgroups) {
        size_t nc = 0;
        while (cgroups && cgroups[nc])
                nc++;
        char **v = xcalloc(17 + 2 * nc, sizeof(char *));
        size_t k = 0;
        v[k++] = xstrdup(j->jailer);
        v[k++] = xstrdup("--id");
        v[k++] = xasprintf("banger-%s", id);
        v[k++] = xstrdup("--exec-file");
        v[k++] = xstrdup(j->exec_file);
        v[k++] = xstrdup("--uid");
        v[k++] = xasprintf("%u", (unsigned) j->uid);
        v[k++] = xstrdup("--gid");
        v[k++] = xasprintf("%u", (unsigned) j->gid);
        v[k++] = xstrdup("--chroot-base-dir");
        v[k++] = xstrdup(j->chroot_base);
        v[k++] = xstrdup("--cgroup-version");
        v[k++] = xstrdup("2");
        for (size_t i = 0; i < nc; i++) {
                v[k++] = xstrdup("--cgroup");
                v[k++] = xstrdup(cgroups[i]);
        }
        v[k++] = xstrdup("--");
        v[k++] = xstrdup("--api-sock");
        v[k++] = xstrdup("/api.sock");
        v[k] = NULL;
        return v;
}

static bool has_word(const char *line, const char *word) {
        size_t n = strlen(word);
        for (const char *p = line; p && *p;) {
                p += strspn(p, " \t\n");
                size_t m = strcspn(p, " \t\n");
                if (m == n && strncmp(p, word, n) == 0)
                        return true;
                p += m;
        }
        return false;
}

char **jail_cgroup_limits(const char *controllers, int vcpu, int memory_mib) {
        char **v = xcalloc(3, sizeof(char *));
        size_t k = 0;
        if (controllers && has_word(controllers, "memory") && memory_mib > 0)
                v[k++] = xasprintf("memory.max=%llu", ((unsigned long long) memory_mib + 128) << 20);
        if (controllers && has_word(controllers, "cpu") && vcpu > 0)
                v[k++] = xasprintf("cpu.max=%d 100000", vcpu * 100000);
        return v;
}

char *jail_cgroup2_controllers(void) {
        _cleanup_free_ char *mounts = NULL;
        size_t len;
        if (read_file("/proc/mounts", 1u << 20, &mounts, &len) < 0)
                return NULL;
        for (char *save = NULL, *l = strtok_r(mounts, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                char dir[PATH_MAX], type[64];
                if (sscanf(l, "%*s %4095s %63s", dir, type) != 2 || strcmp(type, "cgroup2") != 0)
                        continue;
                _cleanup_free_ char *cf = path_join(dir, "cgroup.controllers"), *text = NULL;
                return read_file(cf, 4096, &text, &len) == 0 ? TAKE_PTR(text) : NULL;
        }
        return NULL;
}

/* mkdir -p of root: the levels above it 0711 (the daemon, as the jail's
 * user, reaches the sockets inside; nobody lists the jails), root 0700. */
static int make_root(const char *root, struct op_error *e) {
        _cleanup_free_ char *parent = xstrdup(root);
        *strrchr(parent, '/') = '\0';
        if (mkdir_p(parent, 0711) < 0 || (mkdir(root, 0700) < 0 && errno != EEXIST))
                return op_fail(e, -errno, "cannot create %s: %s", root, strerror(errno));
        return 0;
}

/* root opened, and it is root: reached through no symlink (its real path is
 * the one asked for), a directory. */
static int open_root(const char *root, int *ret_fd, struct op_error *e) {
        _cleanup_close_ int fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return op_fail(e, -errno, "cannot open %s: %s", root, strerror(errno));
        char buf[PATH_MAX];
        _cleanup_free_ char *self = xasprintf("/proc/self/fd/%d", fd);
        ssize_t n = readlink(self, buf, sizeof(buf) - 1);
        if (n <= 0 || (buf[n] = '\0', strcmp(buf, root) != 0))
                return op_fail(e, -ELOOP, "%s is reached through a symlink (it is %s)", root, n > 0 ? buf : "?");
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static bool name_ok(const char *n) {
        return n && *n && !strchr(n, '/') && strcmp(n, ".") != 0 && strcmp(n, "..") != 0;
}

int jail_prepare(const struct host_jail *j, const char *root, const int *fds, const char *const *names, size_t n,
                 struct op_error *e) {
        _cleanup_close_ int dfd = -1;
        int rc = make_root(root, e);
        if (rc == 0)
                rc = open_root(root, &dfd, e);
        for (size_t i = 0; rc == 0 && i < n; i++) {
                struct stat st;
                if (!name_ok(names[i]) || strcmp(names[i], base_name(j->exec_file)) == 0)
                        return op_fail(e, -EINVAL, "'%s': no name to put in the jail", strempty(names[i]));
                if (fstat(fds[i], &st) < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)))
                        return op_fail(e, -EINVAL, "%s: not a regular file or a block device", names[i]);
                (void) unlinkat(dfd, names[i], 0); /* a previous boot's */
                _cleanup_free_ char *via = xasprintf("/proc/self/fd/%d", fds[i]);
                /* the very file opened (never a path looked up again): a hard
                 * link; a block device (a device-mapper root) cannot be one: a node */
                if (S_ISBLK(st.st_mode) ? mknodat(dfd, names[i], S_IFBLK | 0600, st.st_rdev) < 0
                                        : linkat(AT_FDCWD, via, dfd, names[i], AT_SYMLINK_FOLLOW) < 0)
                        return op_fail(e, -errno, "cannot put %s into the jail %s: %s", names[i], root,
                                       strerror(errno));
                /* files only this VM has become the jail user's; shared ones
                 * (the kernel) only need to be readable by it */
                if ((S_ISBLK(st.st_mode) || st.st_nlink == 1) && (st.st_uid != j->uid || st.st_gid != j->gid) &&
                    fchownat(dfd, names[i], j->uid, j->gid, AT_SYMLINK_NOFOLLOW) < 0)
                        return op_fail(e, -errno, "cannot give %s to %u:%u: %s", names[i], (unsigned) j->uid,
                                       (unsigned) j->gid, strerror(errno));
        }
        /* the chroot itself belongs to the jail user: Firecracker binds its sockets there */
        if (rc == 0 && fchown(dfd, j->uid, j->gid) < 0 && errno != EPERM)
                rc = op_fail(e, -errno, "cannot give %s to %u:%u: %s", root, (unsigned) j->uid, (unsigned) j->gid,
                             strerror(errno));
        return rc;
}

/* The jails of VM id (any exec name) under chroot_base, and the cgroup the
 * jailer made for it (cgroup v2: <exec name>/<jail id>; only when empty). */
int jail_remove(const char *chroot_base, const char *id) {
        _cleanup_(closedirp) DIR *d = opendir(chroot_base);
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        _cleanup_free_ char *jid = xasprintf("banger-%s", id);
        int rc = 0, n = 0;
        for (struct dirent *de; (de = readdir(d));) {
                if (de->d_name[0] == '.' || strchr(de->d_name, '/'))
                        continue;
                _cleanup_free_ char *exec_dir = path_join(chroot_base, de->d_name);
                _cleanup_free_ char *dir = path_join(exec_dir, jid);
                struct stat st;
                if (lstat(exec_dir, &st) < 0 || !S_ISDIR(st.st_mode) || lstat(dir, &st) < 0)
                        continue;
                int r = rm_rf(dir); /* never through a link, never across a mount */
                if (r < 0)
                        rc = r;
                else
                        n++;
                (void) rmdir(exec_dir); /* the last jail of that exec name */
                _cleanup_free_ char *cg = xasprintf("/sys/fs/cgroup/%s/%s", de->d_name, jid);
                (void) rmdir(cg);
        }
        return rc < 0 ? rc : n;
}

int jail_list(const char *chroot_base, char ***ret_ids) {
        *ret_ids = NULL;
        _cleanup_(closedirp) DIR *d = opendir(chroot_base);
        if (!d && errno == ENOENT)
                *ret_ids = xcalloc(1, sizeof(char *)); /* none */
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        size_t n = 0;
        char **ids = xcalloc(1, sizeof(char *));
        for (struct dirent *de; (de = readdir(d));) {
                if (de->d_name[0] == '.')
                        continue;
                _cleanup_free_ char *exec_dir = path_join(chroot_base, de->d_name);
                _cleanup_(closedirp) DIR *x = opendir(exec_dir); /* (a link is no directory of ours: skipped below) */
                struct stat st;
                if (!x || lstat(exec_dir, &st) < 0 || !S_ISDIR(st.st_mode))
                        continue;
                for (struct dirent *je; (je = readdir(x));)
                        if (strncmp(je->d_name, "banger-", 7) == 0 && je->d_name[7]) {
                                ids = xrealloc(ids, (n + 2) * sizeof(char *));
                                ids[n++] = xstrdup(je->d_name + 7);
                                ids[n] = NULL;
                        }
        }
        *ret_ids = ids;
        return (int) n;
}

int jail_spawn(char *const *argv, int log_fd, pid_t *ret_pid, struct op_error *e) {
        int p[2];
        _cleanup_close_ int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (nul < 0 || pipe2(p, O_CLOEXEC) < 0)
                return op_fail(e, -errno, "cannot start %s: %s", argv[0], strerror(errno));
        pid_t mid = fork();
        if (mid < 0) {
                int err = errno;
                close(p[0]);
                close(p[1]);
                return op_fail(e, -err, "cannot start %s: %s", argv[0], strerror(err));
        }
        if (mid == 0) { /* a session of its own; its child is the jailer, then Firecracker */
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                if (setsid() < 0)
                        _exit(126);
                pid_t g = fork();
                if (g == 0) {
                        if (dup2(nul, 0) < 0 || dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0)
                                _exit(126);
                        execv(argv[0], argv);
                        _exit(127);
                }
                ssize_t w = write(p[1], &g, sizeof(g));
                _exit(g > 0 && w == (ssize_t) sizeof(g) ? 0 : 126);
        }
        close(p[1]);
        pid_t g = -1;
        ssize_t n;
        do
                n = read(p[0], &g, sizeof(g));
        while (n < 0 && errno == EINTR);
        close(p[0]);
        int st = 0;
        while (waitpid(mid, &st, 0) < 0 && errno == EINTR)
                ;
        if (n != (ssize_t) sizeof(g) || g <= 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
                return op_fail(e, -ECHILD, "cannot start %s", argv[0]);
        *ret_pid = g;
        return 0;
}
