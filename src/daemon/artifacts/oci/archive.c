/* SPDX-License-Identifier: MIT */
#include "archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive_path.h"
#include "fsutil.h"
#include "strbuf.h"

#define UNPACK_MAX_BYTES (64ULL << 30)
#define UNPACK_MAX_ENTRIES 100000

/* dest/rel's parent directories exist (made 0700); the file is new (O_EXCL,
 * never through a symlink: the tree holds none). */
static int write_entry(struct archive *a, const char *dest, const char *rel, uint64_t *total, const struct progress *p,
                       struct op_error *e) {
        _cleanup_free_ char *path = path_join(dest, rel), *parent = xstrdup(path);
        *strrchr(parent, '/') = '\0';
        if (mkdir_p(parent, 0700) < 0)
                return op_fail(e, -errno, "cannot create %s: %s", parent, strerror(errno));
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return op_fail(e, errno == EEXIST ? -EINVAL : -errno, "%s: %s", rel,
                               errno == EEXIST ? "twice in the archive" : strerror(errno));
        char buf[1 << 16];
        la_ssize_t n;
        while ((n = archive_read_data(a, buf, sizeof(buf))) > 0) {
                *total += (uint64_t) n;
                if (*total > UNPACK_MAX_BYTES)
                        return op_fail(e, -EFBIG, "the archive unpacks to more than 64 GiB");
                if (progress_cancelled(p))
                        return op_fail(e, -ECANCELED, "cancelled");
                int r = write_all(fd, buf, (size_t) n);
                if (r < 0)
                        return op_fail(e, r, "writing %s: %s", path, strerror(-r));
        }
        return n < 0 ? op_fail(e, -EBADMSG, "reading %s: %s", rel, archive_error_string(a)) : 0;
}

static int unpack(struct archive *a, const char *file, const char *dest, const struct progress *p, struct op_error *e) {
        struct archive_entry *ent;
        uint64_t total = 0;
        int r, n = 0;
        while ((r = archive_read_next_header(a, &ent)) == ARCHIVE_OK) {
                _cleanup_free_ char *rel = NULL;
                const char *name = archive_entry_pathname(ent);
                mode_t type = archive_entry_filetype(ent);
                if (++n > UNPACK_MAX_ENTRIES)
                        return op_fail(e, -EFBIG, "%s: more than %d entries", file, UNPACK_MAX_ENTRIES);
                if (!name || archive_path_normalize(name, &rel) < 0)
                        return op_fail(e, -EINVAL, "%s: unsafe path '%s'", file, strempty(name));
                if (type == AE_IFDIR) {
                        _cleanup_free_ char *d = path_join(dest, rel);
                        if (*rel && mkdir_p(d, 0700) < 0)
                                return op_fail(e, -errno, "cannot create %s: %s", d, strerror(errno));
                        continue;
                }
                if (type == AE_IFLNK) /* docker's legacy <id>/layer.tar -> ../<digest>.tar: never made */
                        continue;
                if (type != AE_IFREG || archive_entry_hardlink(ent) || !*rel)
                        return op_fail(e, -EINVAL, "%s: '%s' is not a regular file or directory", file, name);
                int rc = write_entry(a, dest, rel, &total, p, e);
                if (rc < 0)
                        return rc;
        }
        return r == ARCHIVE_EOF ? 0 : op_fail(e, -EBADMSG, "%s: %s", file, archive_error_string(a));
}

int oci_archive_unpack(const char *file, const char *dest_dir, const struct progress *p, struct op_error *e) {
        struct archive *a = archive_read_new();
        if (!a)
                return op_fail(e, -ENOMEM, "archive_read_new failed");
        archive_read_support_format_tar(a);
        archive_read_support_filter_gzip(a);
        archive_read_support_filter_zstd(a);
        _cleanup_close_ int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        struct stat st;
        int rc;
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                rc = op_fail_as(e, RPC_BAD_REQUEST, -ENOENT, "%s is not a readable regular file", file);
        else if (archive_read_open_fd(a, fd, 1 << 16) != ARCHIVE_OK)
                rc = op_fail_as(e, RPC_BAD_REQUEST, -EINVAL, "%s: %s", file, archive_error_string(a));
        else
                rc = unpack(a, file, dest_dir, p, e);
        archive_read_free(a);
        if (rc == -EINVAL || rc == -EBADMSG || rc == -EFBIG)
                op_recode(e, RPC_BAD_REQUEST);
        return rc;
}
