/* SPDX-License-Identifier: MIT */
#include "deb.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive_path.h"
#include "fsutil.h"
#include "macro.h"
#include "strbuf.h"

static void archive_read_freep(struct archive **a) {
        if (*a)
                archive_read_free(*a);
}

/* The inner tar reads its bytes from the current member of the outer ar. */
struct inner_src {
        struct archive *outer;
        char buf[65536];
};

static la_ssize_t inner_read(struct archive *a, void *ud, const void **ret) {
        struct inner_src *s = ud;
        (void) a;
        la_ssize_t n = archive_read_data(s->outer, s->buf, sizeof(s->buf));
        *ret = s->buf;
        return n;
}

static int write_entry(struct archive *a, const char *path, struct op_error *err) {
        _cleanup_free_ char *dir = xstrdup(path);
        char *slash = strrchr(dir, '/');
        char buf[65536];
        int r;

        if (slash) {
                *slash = '\0';
                r = mkdir_p(dir, 0755);
                if (r < 0) {
                        return op_fail(err, r, "cannot create %s: %s", dir, strerror(-r));
                }
        }
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0) {
                return op_fail(err, -errno, "cannot create %s: %s", path, strerror(errno));
        }
        for (;;) {
                la_ssize_t n = archive_read_data(a, buf, sizeof(buf));
                if (n < 0) {
                        return op_fail(err, -EIO, "reading archive: %s", archive_error_string(a));
                }
                if (n == 0)
                        break;
                r = write_all(fd, buf, (size_t) n);
                if (r < 0) {
                        return op_fail(err, r, "writing %s: %s", path, strerror(-r));
                }
        }
        return 0;
}

static int check_entry(struct archive_entry *e, const char *norm, struct op_error *err) {
        mode_t type = archive_entry_filetype(e);
        const char *hl = archive_entry_hardlink(e);

        if (hl) {
                _cleanup_free_ char *n = NULL;
                if (archive_path_normalize(hl, &n) < 0) {
                        return op_fail(err, -EPERM, "hard link '%s' points outside the archive ('%s')", norm, hl);
                }
                return 0;
        }
        if (type == AE_IFLNK) {
                const char *t = archive_entry_symlink(e);
                if (!t || !archive_symlink_is_safe(norm, t)) {
                        return op_fail(err, -EPERM, "symlink '%s' escapes the tree ('%s')", norm, t ? t : "");
                }
                return 0;
        }
        if (type != AE_IFREG && type != AE_IFDIR) {
                return op_fail(err, -EPERM, "entry '%s' is a device, fifo or socket", norm);
        }
        return 0;
}

static int extract_data(struct archive *outer, const char *dest_dir, deb_want_fn want, void *ud, int *written,
                        struct op_error *err) {
        _cleanup_(archive_read_freep) struct archive *in = archive_read_new();
        _cleanup_free_ struct inner_src *src = xcalloc(1, sizeof(*src));
        struct archive_entry *e;
        int r;

        src->outer = outer;
        archive_read_support_filter_all(in);
        archive_read_support_format_tar(in);
        if (archive_read_open(in, src, NULL, inner_read, NULL) != ARCHIVE_OK) {
                return op_fail(err, -EBADMSG, "data.tar: %s", archive_error_string(in));
        }
        while ((r = archive_read_next_header(in, &e)) == ARCHIVE_OK) {
                _cleanup_free_ char *norm = NULL;
                const char *p = archive_entry_pathname(e);
                if (!p || archive_path_normalize(p, &norm) < 0) {
                        return op_fail(err, -EPERM, "refusing archive: unsafe entry path '%s'", p ? p : "(null)");
                }
                r = check_entry(e, norm, err);
                if (r < 0)
                        return r;
                _cleanup_free_ char *rel = *norm ? want(norm, ud) : NULL;
                if (!rel)
                        continue;
                if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e)) {
                        return op_fail(err, -EPERM, "entry '%s' is not a regular file", norm);
                }
                _cleanup_free_ char *dst = path_join(dest_dir, rel);
                r = write_entry(in, dst, err);
                if (r < 0)
                        return r;
                (*written)++;
        }
        if (r != ARCHIVE_EOF) {
                return op_fail(err, -EBADMSG, "data.tar: %s", archive_error_string(in));
        }
        return 0;
}

int deb_extract(const char *deb_path, const char *dest_dir, deb_want_fn want, void *ud, int *ret_written,
                struct op_error *err) {
        _cleanup_(archive_read_freep) struct archive *a = archive_read_new();
        struct archive_entry *e;
        bool found = false;
        int r;

        *ret_written = 0;
        archive_read_support_format_ar(a);
        if (archive_read_open_filename(a, deb_path, 65536) != ARCHIVE_OK) {
                return op_fail(err, -EBADMSG, "%s: %s", deb_path, archive_error_string(a));
        }
        while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
                const char *name = archive_entry_pathname(e);
                if (!name || strncmp(name, "data.tar", 8) != 0)
                        continue;
                found = true;
                r = extract_data(a, dest_dir, want, ud, ret_written, err);
                if (r < 0)
                        return r;
                break;
        }
        if (!found)
                return op_error_is_set(err) ? -EBADMSG
                                            : op_fail(err, -EBADMSG, "%s is not a .deb (no data.tar member)", deb_path);
        return 0;
}
