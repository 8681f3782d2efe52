/* SPDX-License-Identifier: MIT */
/*
 * Firecracker's jailer: it makes <chroot_base>/<exec name>/<id>/root, copies
 * Firecracker in, sets up cgroups, chroots, drops to uid:gid and execs
 * Firecracker with the arguments after "--" (in place: the pid banger
 * watches stays the VMM's). Everything the VMM opens has to be inside that
 * root: the VM's files are hard-linked in (the chroot is on the state dir's
 * filesystem) and owned by the jail's uid:gid; the sockets it binds there
 * are reached through symlinks at the run dir's usual (short) paths.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "fsutil.h"
#include "macro.h"
#include "strbuf.h"
#include "vmm.h"

char *fc_jail_root(const struct vm_jail *j, const char *bin, const char *id) {
        const char *base = strrchr(bin, '/') ? strrchr(bin, '/') + 1 : bin;
        return xasprintf("%s/%s/banger-%s/root", j->chroot_base, base, id);
}

char **fc_jail_argv(const struct vm_jail *j, const char *bin, const char *id, char *const *fc_args) {
        size_t n = 0;
        while (fc_args[n])
                n++;
        char **v = xmalloc((n + 16) * sizeof(char *));
        size_t k = 0;
        v[k++] = xstrdup(j->jailer_bin);
        v[k++] = xstrdup("--id");
        v[k++] = xstrdup(id);
        v[k++] = xstrdup("--exec-file");
        v[k++] = xstrdup(bin);
        v[k++] = xstrdup("--uid");
        v[k++] = xasprintf("%u", (unsigned) j->uid);
        v[k++] = xstrdup("--gid");
        v[k++] = xasprintf("%u", (unsigned) j->gid);
        v[k++] = xstrdup("--chroot-base-dir");
        v[k++] = xstrdup(j->chroot_base);
        v[k++] = xstrdup("--cgroup-version");
        v[k++] = xstrdup("2");
        v[k++] = xstrdup("--");
        for (size_t i = 0; i < n; i++)
                v[k++] = xstrdup(fc_args[i]);
        v[k] = NULL;
        return v;
}

/* mkdir -p of root, every level a real directory (never a symlink). */
static int make_root(const char *root, struct op_error *e) {
        if (mkdir_p(root, 0700) < 0)
                return op_fail(e, -errno, "cannot create %s: %s", root, strerror(errno));
        struct stat st;
        if (lstat(root, &st) < 0 || !S_ISDIR(st.st_mode))
                return op_fail(e, -ENOTDIR, "%s is not a directory", root);
        return 0;
}

int fc_jail_prepare(const struct vm_jail *j, const char *root, const char *const *files, size_t n, struct op_error *e) {
        int rc = make_root(root, e);
        _cleanup_close_ int dfd = rc == 0 ? open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
        if (rc == 0 && dfd < 0)
                return op_fail(e, -errno, "cannot open %s: %s", root, strerror(errno));
        for (size_t i = 0; rc == 0 && i < n; i++) {
                const char *base = strrchr(files[i], '/') ? strrchr(files[i], '/') + 1 : files[i];
                struct stat st;
                if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
                        return op_fail(e, -EINVAL, "%s: no file name to put in the jail", files[i]);
                errno = 0;
                int r = lstat(files[i], &st);
                /* a device-mapper root is reached by udev's link /dev/mapper/<name> -> ../dm-N */
                if (r == 0 && S_ISLNK(st.st_mode) && strncmp(files[i], "/dev/", 5) == 0 &&
                    ((r = stat(files[i], &st)) < 0 || !S_ISBLK(st.st_mode)))
                        return op_fail(e, -EINVAL, "%s: not a block device", files[i]);
                if (r < 0 || !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)))
                        return op_fail(e, -EINVAL, "%s: not a regular file or a block device (%s)", files[i],
                                       errno ? strerror(errno) : "a link or another special file");
                (void) unlinkat(dfd, base, 0); /* a previous boot's */
                /* a block device (a device-mapper root) cannot be hard-linked:
                 * a node of the same device, the jail user's alone */
                if (S_ISBLK(st.st_mode) ? mknodat(dfd, base, S_IFBLK | 0600, st.st_rdev) < 0
                                        : linkat(AT_FDCWD, files[i], dfd, base, 0) < 0)
                        return op_fail(e, -errno, "cannot put %s into the jail %s: %s", files[i], root,
                                       strerror(errno));
                /* files only this VM has become the jail user's; shared ones
                 * (the kernel) only need to be readable by it */
                if ((S_ISBLK(st.st_mode) || st.st_nlink == 1) && (st.st_uid != j->uid || st.st_gid != j->gid) &&
                    fchownat(dfd, base, j->uid, j->gid, AT_SYMLINK_NOFOLLOW) < 0)
                        return op_fail(e, -errno, "cannot give %s to %u:%u: %s", files[i], (unsigned) j->uid,
                                       (unsigned) j->gid, strerror(errno));
        }
        /* the chroot itself belongs to the jail user: Firecracker binds its sockets there */
        if (rc == 0 && fchown(dfd, j->uid, j->gid) < 0 && errno != EPERM)
                rc = op_fail(e, -errno, "cannot give %s to %u:%u: %s", root, (unsigned) j->uid, (unsigned) j->gid,
                             strerror(errno));
        return rc;
}

int fc_jail_socket_link(const char *target, const char *link, struct op_error *e) {
        (void) unlink(link);
        if (symlink(target, link) < 0)
                return op_fail(e, -errno, "cannot link %s to %s: %s", link, target, strerror(errno));
        return 0;
}

/* The jails of VM id (any exec name) under chroot_base, and the cgroup the
 * jailer made for it (cgroup v2: <exec name>/<jail id>; only when empty). */
int fc_jail_remove(const char *chroot_base, const char *id) {
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

int fc_jail_list(const char *chroot_base, char ***ret_ids) {
        *ret_ids = NULL;
        _cleanup_(closedirp) DIR *d = opendir(chroot_base);
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
