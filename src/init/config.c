/* SPDX-License-Identifier: MIT */
/*
 * Applies the per-VM guest configuration: every regular file and directory
 * under /banger/root in the initramfs is copied to the same path in the new
 * root, with its mode and owner. Symlinks and special files are refused: the
 * host never sends them.
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "init.h"

static const char *g_src, *g_dst;
static int g_files, g_err;

static int copy_file(const char *from, const char *to, const struct stat *st) {
        char tmp[PATH_MAX];
        char buf[65536];
        int in, out, r = 0;

        if (snprintf(tmp, sizeof(tmp), "%s.banger-init.tmp", to) >= (int) sizeof(tmp))
                return -ENAMETOOLONG;
        in = open(from, O_RDONLY | O_CLOEXEC);
        if (in < 0)
                return -errno;
        out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (out < 0) {
                r = -errno;
                close(in);
                return r;
        }
        for (;;) {
                ssize_t n = read(in, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        if (n < 0)
                                r = -errno;
                        break;
                }
                if (write(out, buf, (size_t) n) != n) {
                        r = -EIO;
                        break;
                }
        }
        if (r == 0 && (fchown(out, st->st_uid, st->st_gid) < 0 || fchmod(out, st->st_mode & 07777) < 0))
                r = -errno;
        close(in);
        if (close(out) < 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, to) < 0)
                r = -errno;
        if (r < 0)
                unlink(tmp);
        return r;
}

static int visit(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        char target[PATH_MAX];
        const char *rel = path + strlen(g_src);
        (void) ftw;

        if (!*rel)
                return 0; /* the source root itself */
        if (snprintf(target, sizeof(target), "%s%s", g_dst, rel) >= (int) sizeof(target)) {
                g_err = -ENAMETOOLONG;
                return 1;
        }
        if (type == FTW_D) {
                if (mkdir(target, st->st_mode & 07777) < 0 && errno != EEXIST) {
                        g_err = -errno;
                        init_log("cannot create %s: %s", target, strerror(errno));
                        return 1;
                }
                return 0;
        }
        if (type != FTW_F || !S_ISREG(st->st_mode)) {
                init_log("refusing non-regular config entry %s", rel);
                g_err = -EINVAL;
                return 1;
        }
        int r = copy_file(path, target, st);
        if (r < 0) {
                init_log("cannot install %s: %s", target, strerror(-r));
                g_err = r;
                return 1;
        }
        g_files++;
        return 0;
}

int init_apply_config(const char *src_dir, const char *dst_root, int *ret_files) {
        struct stat st;

        *ret_files = 0;
        if (stat(src_dir, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        g_src = src_dir;
        g_dst = dst_root;
        g_files = g_err = 0;
        if (nftw(src_dir, visit, 16, FTW_PHYS) < 0 && !g_err)
                return -errno;
        *ret_files = g_files;
        return g_err;
}
