/* SPDX-License-Identifier: MIT */
#include "initramfs.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "fsutil.h"
#include "macro.h"
#include "strbuf.h"

struct writer {
        struct archive *a;
        char **dirs; /* emitted so far */
        size_t n_dirs;
};

static bool dir_seen(struct writer *w, const char *d) {
        for (size_t i = 0; i < w->n_dirs; i++)
                if (strcmp(w->dirs[i], d) == 0)
                        return true;
        return false;
}

static int header(struct writer *w, const char *path, unsigned type, unsigned mode, size_t size, dev_t rdev) {
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, path);
        archive_entry_set_filetype(e, type);
        archive_entry_set_perm(e, mode & 07777);
        archive_entry_set_size(e, (la_int64_t) size);
        archive_entry_set_uid(e, 0);
        archive_entry_set_gid(e, 0);
        archive_entry_set_mtime(e, 0, 0);
        archive_entry_set_nlink(e, type == AE_IFDIR ? 2 : 1);
        if (rdev)
                archive_entry_set_rdev(e, rdev);
        int r = archive_write_header(w->a, e);
        archive_entry_free(e);
        return r == ARCHIVE_OK ? 0 : -EIO;
}

static int parents(struct writer *w, const char *path) {
        _cleanup_free_ char *p = xstrdup(path);

        for (char *s = strchr(p, '/'); s; s = strchr(s + 1, '/')) {
                *s = '\0';
                if (!dir_seen(w, p)) {
                        if (header(w, p, AE_IFDIR, 0755, 0, 0) < 0)
                                return -EIO;
                        w->dirs = xrealloc(w->dirs, (w->n_dirs + 1) * sizeof(char *));
                        w->dirs[w->n_dirs++] = xstrdup(p);
                }
                *s = '/';
        }
        return 0;
}

static int add(struct writer *w, const struct cpio_entry *e, struct op_error *err) {
        _cleanup_free_ char *data = NULL;
        const void *buf = e->data;
        size_t len = e->len;

        if (e->src_file) {
                int r = read_file(e->src_file, 512u << 20, &data, &len);
                if (r < 0) {
                        return op_fail(err, r, "cannot read %s: %s", e->src_file, strerror(-r));
                }
                buf = data;
        }
        if (parents(w, e->path) < 0 || header(w, e->path, AE_IFREG, e->mode, len, 0) < 0 ||
            (len && archive_write_data(w->a, buf, len) != (la_ssize_t) len)) {
                return op_fail(err, -EIO, "writing %s into the cpio: %s", e->path, archive_error_string(w->a));
        }
        return 0;
}

int cpio_write(const char *dest, const struct cpio_entry *entries, size_t n, bool with_console, struct op_error *err) {
        _cleanup_free_ char *tmp = xasprintf("%s.tmp", dest);
        struct writer w = { .a = archive_write_new() };
        int r = 0;

        archive_write_set_format_cpio_newc(w.a);
        archive_write_add_filter_none(w.a);
        archive_write_set_bytes_in_last_block(w.a, 1);
        /* 0600 whatever the umask: a VM's cpio carries its private host key */
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 || fchmod(fd, 0600) < 0 || archive_write_open_fd(w.a, fd) != ARCHIVE_OK) {
                op_fail(err, -EIO, "cannot create %s: %s", tmp, fd < 0 ? strerror(errno) : archive_error_string(w.a));
                archive_write_free(w.a);
                return -EIO;
        }
        if (with_console) {
                const char *d = "dev";
                w.dirs = xrealloc(w.dirs, sizeof(char *));
                w.dirs[w.n_dirs++] = xstrdup(d);
                if (header(&w, "dev", AE_IFDIR, 0755, 0, 0) < 0 ||
                    header(&w, "dev/console", AE_IFCHR, 0600, 0, makedev(5, 1)) < 0) {
                        r = op_fail(err, -EIO, "writing dev/console into the cpio failed");
                }
        }
        for (size_t i = 0; r == 0 && i < n; i++)
                r = add(&w, &entries[i], err);
        if (archive_write_close(w.a) != ARCHIVE_OK && r == 0) {
                r = op_fail(err, -EIO, "finishing %s: %s", tmp, archive_error_string(w.a));
        }
        archive_write_free(w.a);
        for (size_t i = 0; i < w.n_dirs; i++)
                free(w.dirs[i]);
        free(w.dirs);
        if (r == 0 && rename(tmp, dest) < 0) {
                r = op_fail(err, -errno, "cannot rename %s: %s", tmp, strerror(errno));
        }
        if (r < 0)
                unlink(tmp);
        return r;
}
