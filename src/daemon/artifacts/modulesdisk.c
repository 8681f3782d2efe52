/* SPDX-License-Identifier: MIT */
/*
 * depmod writes modules.dep(.bin), modules.alias(.bin), ... so that modprobe
 * in the guest resolves names and dependencies; the guest images need not
 * carry kmod's depmod run at boot, and the disk stays read-only. The disk is
 * built without a journal (it is never written in a guest) and with root
 * owning its top directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "macro.h"
#include "modulesdisk.h"
#include "proc_spawn.h"
#include "strbuf.h"

bool modules_release_valid(const char *release) {
        size_t n = release ? strlen(release) : 0;
        if (n == 0 || n > 128 || release[0] == '.' || release[0] == '-')
                return false;
        return strspn(release, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-") == n;
}

static int run(char *const argv[], const char *hint, struct op_error *err) {
        _cleanup_free_ char *msg = NULL;
        return op_take_msg(err, spawn_run_checked(argv, 10 * 60 * 1000, 0, hint, &msg), &msg);
}

/* Apparent size plus room for ext4's metadata (inodes, directories, bitmaps). */
static uint64_t disk_size_for(uint64_t tree_bytes) {
        uint64_t s = tree_bytes + tree_bytes / 4 + (16u << 20);
        return (s + (1u << 20) - 1) & ~(uint64_t) ((1u << 20) - 1);
}

int modules_disk_build(const char *modroot, const char *release, const char *out, struct op_error *err) {
        if (!modules_release_valid(release))
                return op_fail(err, -EINVAL, "invalid module tree release '%s'", release ? release : "");
        _cleanup_free_ char *lib = path_join(modroot, "lib/modules"), *tree = path_join(lib, release);
        struct stat st;
        if (lstat(tree, &st) < 0 || !S_ISDIR(st.st_mode))
                return op_fail(err, -ENOENT, "no module tree %s", tree);
        uint64_t bytes = dir_size(tree, false);
        if (bytes > MODULES_TREE_MAX)
                return op_fail(err, -EFBIG, "the module tree is implausibly large (%llu MiB)",
                               (unsigned long long) (bytes >> 20));
        char *depmod[] = { (char *) "depmod", (char *) "-b", (char *) modroot, (char *) release, NULL };
        int r = run(depmod, "apt-get install kmod", err);
        if (r < 0)
                return op_prefix(err, "indexing the modules");
        _cleanup_free_ char *size = xasprintf("%lluk", (unsigned long long) (disk_size_for(dir_size(tree, false)) >> 10));
        _cleanup_close_ int fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return op_fail(err, -errno, "cannot create %s: %s", out, strerror(errno));
        char *mkfs[] = { (char *) "mkfs.ext4", (char *) "-q", (char *) "-F", (char *) "-L", (char *) MODULES_DISK_LABEL,
                         (char *) "-O", (char *) "^has_journal", (char *) "-m", (char *) "0", (char *) "-i",
                         (char *) "8192", (char *) "-E", (char *) "root_owner=0:0", (char *) "-d", tree,
                         (char *) out, size, NULL };
        r = run(mkfs, "apt-get install e2fsprogs", err);
        if (r < 0) {
                unlink(out);
                return op_prefix(err, "building the modules disk");
        }
        return 0;
}
