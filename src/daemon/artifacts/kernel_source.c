/* SPDX-License-Identifier: MIT */
/*
 * The source of a kernel build: Debian's linux-source-<v> package carries
 * usr/src/linux-source-<v>.tar.xz (the patched tree) and its changelog.
 * The tarball is unpacked here with libarchive, strictly: one top-level
 * directory (stripped), directories, regular files (their execute bits
 * kept) and symlinks that stay inside the tree; anything else, a path that
 * climbs, a duplicate, or more than KSRC_MAX_ENTRIES / KSRC_MAX_BYTES
 * refuses the archive. Every file is created through openat2() with
 * RESOLVE_BENEATH below the tree's root, so no symlink the tree made
 * earlier can lead a write out of it.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "archive_path.h"
#include "artifacts.h"
#include "debian.h"
#include "fsutil.h"
#include "kernel_build.h"
#include "macro.h"
#include "strbuf.h"

#define KSRC_MAX_ENTRIES 400000
#define KSRC_MAX_BYTES (8ull << 30)

static void archive_read_freep(struct archive **a) {
        if (*a)
                archive_read_free(*a);
}

/* rel (relative, normalised) below root, never leaving it. */
static int open_beneath(int root, const char *rel, int flags, mode_t mode) {
        struct open_how how = { .flags = (uint64_t) (flags | O_CLOEXEC), .mode = mode,
                                .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS };
        int fd = (int) syscall(SYS_openat2, root, rel, &how, sizeof(how));
        return fd < 0 ? -errno : fd;
}

/* dir's missing components, each made below root (an archive need not
 * list a file's directories before it). */
static int make_dirs(int root, const char *dir) {
        _cleanup_free_ char *path = xstrdup(dir);
        for (char *c = path;; c++) {
                if (*c != '/' && *c != '\0')
                        continue;
                char was = *c;
                *c = '\0'; /* path: the directory to make now */
                char *slash = strrchr(path, '/');
                if (slash)
                        *slash = '\0';
                _cleanup_close_ int fd = open_beneath(root, slash ? path : ".", O_PATH | O_DIRECTORY, 0);
                int r = fd < 0 ? fd : mkdirat(fd, slash ? slash + 1 : path, 0755) < 0 && errno != EEXIST ? -errno : 0;
                if (slash)
                        *slash = '/';
                *c = was;
                if (r < 0 || was == '\0')
                        return r;
        }
}

/* The directory an entry goes into (O_PATH) and its last component. */
static int open_parent(int root, const char *rel, const char **ret_base) {
        const char *slash = strrchr(rel, '/');
        *ret_base = slash ? slash + 1 : rel;
        if (!slash)
                return open_beneath(root, ".", O_PATH | O_DIRECTORY, 0);
        _cleanup_free_ char *dir = xstrndup(rel, (size_t) (slash - rel));
        int fd = open_beneath(root, dir, O_PATH | O_DIRECTORY, 0);
        if (fd == -ENOENT && make_dirs(root, dir) == 0)
                fd = open_beneath(root, dir, O_PATH | O_DIRECTORY, 0);
        return fd;
}

static int write_data(struct archive *a, int fd, uint64_t *total) {
        char buf[65536];
        for (;;) {
                la_ssize_t n = archive_read_data(a, buf, sizeof(buf));
                if (n < 0)
                        return -EBADMSG;
                if (n == 0)
                        return 0;
                *total += (uint64_t) n;
                if (*total > KSRC_MAX_BYTES)
                        return -EFBIG;
                int r = write_all(fd, buf, (size_t) n);
                if (r < 0)
                        return r;
        }
}

/* One entry, rel already stripped of the top directory. */
static int unpack_entry(struct archive *a, struct archive_entry *e, int root, const char *rel, uint64_t *total,
                        struct op_error *err) {
        const char *base, *target = archive_entry_symlink(e);
        mode_t type = archive_entry_filetype(e);
        if (archive_entry_hardlink(e))
                return op_fail(err, -EPERM, "'%s' is a hard link", rel);
        if (type == AE_IFLNK && (!target || !archive_symlink_is_safe(rel, target)))
                return op_fail(err, -EPERM, "symlink '%s' leaves the tree ('%s')", rel, target ? target : "");
        if (type != AE_IFDIR && type != AE_IFREG && type != AE_IFLNK)
                return op_fail(err, -EPERM, "'%s' is a device, fifo or socket", rel);
        _cleanup_close_ int dir = open_parent(root, rel, &base);
        if (dir < 0)
                return op_fail(err, dir, "'%s': its directory: %s", rel, strerror(-dir));
        if (type == AE_IFDIR) {
                struct stat st;
                if (mkdirat(dir, base, 0755) < 0 && !(errno == EEXIST && fstatat(dir, base, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                                                       S_ISDIR(st.st_mode)))
                        return op_fail(err, -errno, "'%s': %s", rel, strerror(errno));
                return 0;
        }
        if (type == AE_IFLNK)
                return symlinkat(target, dir, base) < 0 ? op_fail(err, -errno, "'%s': %s", rel, strerror(errno)) : 0;
        mode_t mode = archive_entry_perm(e) & 0111 ? 0755 : 0644;
        _cleanup_close_ int fd = openat(dir, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0)
                return op_fail(err, -errno, "'%s': %s", rel, strerror(errno));
        int r = write_data(a, fd, total);
        if (r == -EFBIG)
                return op_fail(err, r, "the source is larger than %llu GiB", KSRC_MAX_BYTES >> 30);
        return r < 0 ? op_fail(err, r, "'%s': %s", rel, r == -EBADMSG ? archive_error_string(a) : strerror(-r)) : 0;
}

/* The entry's path below top/ ("" for top itself), or NULL (refused). */
static char *strip_top(const char *path, const char *top, struct op_error *err) {
        _cleanup_free_ char *norm = NULL;
        size_t n = strlen(top);
        if (!path || archive_path_normalize(path, &norm) < 0) {
                op_fail(err, -EPERM, "unsafe entry path '%s'", path ? path : "(null)");
                return NULL;
        }
        if (strncmp(norm, top, n) != 0 || (norm[n] != '/' && norm[n] != '\0')) {
                op_fail(err, -EPERM, "'%s' is not below %s/", norm, top);
                return NULL;
        }
        return xstrdup(norm[n] ? norm + n + 1 : "");
}

static int unpack_all(struct archive *a, int root, const char *top, uint64_t size, const struct progress *p,
                      struct op_error *err) {
        struct archive_entry *e;
        uint64_t total = 0;
        size_t n = 0;
        int r;
        while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
                if (++n > KSRC_MAX_ENTRIES)
                        return op_fail(err, -EFBIG, "more than %d entries", KSRC_MAX_ENTRIES);
                _cleanup_free_ char *rel = strip_top(archive_entry_pathname(e), top, err);
                if (!rel)
                        return -EPERM;
                if (*rel && (r = unpack_entry(a, e, root, rel, &total, err)) < 0)
                        return r;
                if (n % 2048 == 0) {
                        if (progress_cancelled(p))
                                return op_fail(err, -ECANCELED, "kernel build cancelled");
                        progress_bytes(p, "unpack", (uint64_t) archive_filter_bytes(a, -1), size);
                }
        }
        if (r != ARCHIVE_EOF)
                return op_fail(err, -EBADMSG, "%s", archive_error_string(a));
        progress_bytes(p, "unpack", size, size);
        return n > 1 ? 0 : op_fail(err, -EBADMSG, "an empty source tree");
}

int kernel_source_unpack(const char *tarball, const char *top, const char *dest, const struct progress *p,
                         struct op_error *err) {
        _cleanup_(archive_read_freep) struct archive *a = archive_read_new();
        struct stat st;
        if (mkdir(dest, 0755) < 0)
                return op_fail(err, -errno, "cannot create %s: %s", dest, strerror(errno));
        _cleanup_close_ int root = open(dest, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root < 0 || stat(tarball, &st) < 0)
                return op_fail(err, -errno, "%s: %s", root < 0 ? dest : tarball, strerror(errno));
        archive_read_support_filter_xz(a);
        archive_read_support_format_tar(a);
        if (archive_read_open_filename(a, tarball, 1 << 20) != ARCHIVE_OK)
                return op_fail(err, -EBADMSG, "%s: %s", tarball, archive_error_string(a));
        int r = unpack_all(a, root, top, (uint64_t) st.st_size, p, err);
        return r < 0 ? op_prefix(err, "unpacking %s", tarball) : 0;
}

int kernel_source_date(const char *changelog_gz, int64_t *ret_epoch, struct op_error *err) {
        _cleanup_free_ char *gz = NULL, *text = NULL;
        size_t len, tlen;
        int r = read_file(changelog_gz, 16u << 20, &gz, &len);
        if (r < 0)
                return op_fail(err, r, "reading %s: %s", changelog_gz, strerror(-r));
        if ((r = decompress_buffer(gz, len, 64u << 20, &text, &tlen, err)) < 0)
                return op_prefix(err, "%s", changelog_gz);
        r = debian_changelog_date(text, tlen, ret_epoch);
        return r < 0 ? op_fail(err, r, "%s: no dated entry (' -- Name <mail>  Day, DD Mon YYYY hh:mm:ss +zone')",
                                changelog_gz)
                     : 0;
}
