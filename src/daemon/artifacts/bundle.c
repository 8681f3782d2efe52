/* SPDX-License-Identifier: MIT */
#include "bundle.h"

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
#include "sha256.h"
#include "strbuf.h"

struct src {
        int fd;
        struct sha256 sha;
        uint64_t done, total;
        const struct progress *p;
        char buf[1 << 16];
};

static la_ssize_t src_read(struct archive *a, void *ud, const void **ret) {
        struct src *s = ud;
        (void) a;
        ssize_t n;
        do
                n = read(s->fd, s->buf, sizeof(s->buf));
        while (n < 0 && errno == EINTR);
        if (n > 0) {
                sha256_update(&s->sha, s->buf, (size_t) n);
                s->done += (uint64_t) n;
                if (s->p && s->p->bytes)
                        s->p->bytes(s->p->ud, "import", s->done, s->total);
        }
        *ret = s->buf;
        return n;
}

static bool all_zero(const char *b, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (b[i])
                        return false;
        return true;
}

/* Writes the entry's data, leaving holes for zero blocks (ext4 images are
 * mostly empty). */
static int write_sparse(struct archive *a, const char *path, char ret_sha[65], const struct progress *p,
                        char **ret_err) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        struct sha256 sha;
        char buf[1 << 16];
        off_t off = 0;

        if (fd < 0) {
                *ret_err = xasprintf("cannot create %s: %s", path, strerror(errno));
                return -errno;
        }
        if (sha256_init(&sha) < 0)
                return -ENOMEM;
        for (;;) {
                la_ssize_t n = archive_read_data(a, buf, sizeof(buf));
                if (n < 0) {
                        sha256_abort(&sha);
                        *ret_err = xasprintf("reading bundle: %s", archive_error_string(a));
                        return -EBADMSG;
                }
                if (n == 0)
                        break;
                if (progress_cancelled(p)) {
                        sha256_abort(&sha);
                        *ret_err = xstrdup("import cancelled");
                        return -ECANCELED;
                }
                sha256_update(&sha, buf, (size_t) n);
                if (!all_zero(buf, (size_t) n)) {
                        if (pwrite(fd, buf, (size_t) n, off) != n) {
                                sha256_abort(&sha);
                                *ret_err = xasprintf("writing %s: %s", path, strerror(errno));
                                return -EIO;
                        }
                }
                off += n;
        }
        if (ftruncate(fd, off) < 0 || fsync(fd) < 0) {
                sha256_abort(&sha);
                return -errno;
        }
        sha256_final_hex(&sha, ret_sha);
        return 0;
}

int bundle_read(const char *bundle_path, const char *dest_dir, const char *expect_sha256,
                const struct progress *p, struct image_manifest *ret_manifest, char **ret_err) {
        static const char *const allowed[] = { "manifest.json", "rootfs.ext4", "work-seed.ext4" };
        bool seen[3] = { false, false, false };
        char hashes[3][65] = { "", "", "" };
        _cleanup_free_ char *manifest = NULL;
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        struct src *s = xcalloc(1, sizeof(*s));
        struct stat st;
        int r = 0;

        s->fd = open(bundle_path, O_RDONLY | O_CLOEXEC);
        s->p = p;
        if (s->fd < 0 || fstat(s->fd, &st) < 0) {
                *ret_err = xasprintf("cannot open %s: %s", bundle_path, strerror(errno));
                r = -errno;
                goto out_early;
        }
        s->total = (uint64_t) st.st_size;
        sha256_init(&s->sha);
        archive_read_support_filter_zstd(a);
        archive_read_support_format_tar(a);
        if (archive_read_open(a, s, NULL, src_read, NULL) != ARCHIVE_OK) {
                *ret_err = xasprintf("%s is not a tar.zst bundle: %s", bundle_path, archive_error_string(a));
                r = -EBADMSG;
                goto out;
        }
        while (r == 0 && (r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
                _cleanup_free_ char *norm = NULL;
                const char *path = archive_entry_pathname(e);
                int idx = -1;
                r = 0;
                if (!path || archive_path_normalize(path, &norm) < 0) {
                        *ret_err = xasprintf("refusing bundle: unsafe entry path '%s'", path ? path : "");
                        r = -EPERM;
                        break;
                }
                for (int i = 0; i < 3; i++)
                        if (strcmp(norm, allowed[i]) == 0)
                                idx = i;
                if (idx < 0) {
                        *ret_err = xasprintf("refusing bundle: unexpected entry '%s' (only rootfs.ext4 and manifest.json)",
                                             norm);
                        r = -EPERM;
                } else if (seen[idx]) {
                        *ret_err = xasprintf("refusing bundle: '%s' appears twice", norm);
                        r = -EPERM;
                } else if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e)) {
                        *ret_err = xasprintf("refusing bundle: '%s' is not a regular file", norm);
                        r = -EPERM;
                }
                if (r < 0)
                        break;
                seen[idx] = true;
                if (idx == 0) {
                        struct strbuf sb = STRBUF_INIT;
                        char buf[8192];
                        la_ssize_t n;
                        while ((n = archive_read_data(a, buf, sizeof(buf))) > 0 && sb.len < (1u << 20))
                                strbuf_add(&sb, buf, (size_t) n);
                        manifest = strbuf_detach(&sb, NULL);
                        if (n < 0 || strlen(manifest) >= (1u << 20)) {
                                *ret_err = xstrdup("refusing bundle: manifest.json unreadable or larger than 1 MiB");
                                r = -EBADMSG;
                        }
                        continue;
                }
                _cleanup_free_ char *dst = path_join(dest_dir, norm);
                r = write_sparse(a, dst, hashes[idx], p, ret_err);
        }
        if (r == ARCHIVE_EOF)
                r = 0;
        else if (r > 0 || (r < 0 && !*ret_err)) {
                *ret_err = xasprintf("reading %s: %s", bundle_path, archive_error_string(a));
                r = -EBADMSG;
        }
        if (r == 0 && (!seen[0] || !seen[1])) {
                *ret_err = xstrdup("refusing bundle: it must contain rootfs.ext4 and manifest.json");
                r = -EBADMSG;
        }
        if (r == 0) {
                /* hash the whole file, also what follows the tar end marker */
                while (src_read(a, s, &(const void *) { NULL }) > 0)
                        ;
                char got[65];
                sha256_final_hex(&s->sha, got);
                if (expect_sha256 && strcmp(got, expect_sha256) != 0) {
                        *ret_err = xasprintf("bundle SHA256 mismatch (got %s, expected %s)", got, expect_sha256);
                        r = -EBADMSG;
                }
        } else
                sha256_abort(&s->sha);
        if (r == 0) {
                r = image_manifest_parse(manifest, strlen(manifest), ret_manifest, ret_err);
                if (r == 0 && ret_manifest->rootfs_sha256[0] && strcmp(ret_manifest->rootfs_sha256, hashes[1]) != 0) {
                        *ret_err = xstrdup("rootfs.ext4 does not match rootfs_sha256 in manifest.json");
                        image_manifest_done(ret_manifest);
                        r = -EBADMSG;
                }
                if (r == 0 && seen[2] && ret_manifest->work_seed_sha256[0] &&
                    strcmp(ret_manifest->work_seed_sha256, hashes[2]) != 0) {
                        *ret_err = xstrdup("work-seed.ext4 does not match work_seed_sha256 in manifest.json");
                        image_manifest_done(ret_manifest);
                        r = -EBADMSG;
                }
        }
        if (r == 0) {
                _cleanup_free_ char *mp = path_join(dest_dir, "manifest.json");
                r = write_file_atomic(mp, manifest, strlen(manifest), 0644);
        }
out:
        if (s->sha.md)
                sha256_abort(&s->sha);
out_early:
        archive_read_free(a);
        if (s->fd >= 0)
                close(s->fd);
        free(s);
        return r;
}

static int add_file(struct archive *a, const char *name, const char *src, const struct progress *p,
                    uint64_t *done, uint64_t total, char **ret_err) {
        _cleanup_close_ int fd = open(src, O_RDONLY | O_CLOEXEC);
        struct archive_entry *e;
        struct stat st;
        char buf[1 << 16];

        if (fd < 0 || fstat(fd, &st) < 0) {
                *ret_err = xasprintf("cannot read %s: %s", src, strerror(errno));
                return -errno;
        }
        e = archive_entry_new();
        archive_entry_set_pathname(e, name);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, st.st_size);
        archive_entry_set_mtime(e, 0, 0);
        int r = archive_write_header(a, e);
        archive_entry_free(e);
        if (r != ARCHIVE_OK) {
                *ret_err = xasprintf("writing %s: %s", name, archive_error_string(a));
                return -EIO;
        }
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                if (archive_write_data(a, buf, (size_t) n) != n) {
                        *ret_err = xasprintf("writing %s: %s", name, archive_error_string(a));
                        return -EIO;
                }
                *done += (uint64_t) n;
                if (p && p->bytes)
                        p->bytes(p->ud, "export", *done, total);
                if (progress_cancelled(p)) {
                        *ret_err = xstrdup("export cancelled");
                        return -ECANCELED;
                }
        }
        return 0;
}

int bundle_write(const char *out, const char *manifest_json, const char *rootfs, const char *work_seed,
                 const struct progress *p, char **ret_err) {
        _cleanup_free_ char *tmp = xasprintf("%s.tmp", out);
        struct archive *a = archive_write_new();
        struct archive_entry *e;
        struct stat st;
        uint64_t total = 0, done = 0;
        int r = 0;

        if (stat(rootfs, &st) == 0)
                total += (uint64_t) st.st_size;
        if (work_seed && stat(work_seed, &st) == 0)
                total += (uint64_t) st.st_size;
        archive_write_set_format_pax_restricted(a);
        archive_write_add_filter_zstd(a);
        archive_write_set_filter_option(a, "zstd", "compression-level", "6");
        if (archive_write_open_filename(a, tmp) != ARCHIVE_OK) {
                *ret_err = xasprintf("cannot create %s: %s", tmp, archive_error_string(a));
                archive_write_free(a);
                return -EIO;
        }
        e = archive_entry_new();
        archive_entry_set_pathname(e, "manifest.json");
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, (la_int64_t) strlen(manifest_json));
        if (archive_write_header(a, e) != ARCHIVE_OK ||
            archive_write_data(a, manifest_json, strlen(manifest_json)) != (la_ssize_t) strlen(manifest_json)) {
                *ret_err = xasprintf("writing manifest.json: %s", archive_error_string(a));
                r = -EIO;
        }
        archive_entry_free(e);
        if (r == 0)
                r = add_file(a, "rootfs.ext4", rootfs, p, &done, total, ret_err);
        if (r == 0 && work_seed)
                r = add_file(a, "work-seed.ext4", work_seed, p, &done, total, ret_err);
        if (archive_write_close(a) != ARCHIVE_OK && r == 0) {
                *ret_err = xasprintf("finishing %s: %s", tmp, archive_error_string(a));
                r = -EIO;
        }
        archive_write_free(a);
        if (r == 0 && rename(tmp, out) < 0) {
                *ret_err = xasprintf("cannot write %s: %s", out, strerror(errno));
                r = -errno;
        }
        if (r < 0)
                unlink(tmp);
        return r;
}
