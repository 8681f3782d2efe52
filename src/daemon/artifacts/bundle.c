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
                        struct op_error *err) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        struct sha256 sha;
        char buf[1 << 16];
        off_t off = 0;

        if (fd < 0) {
                return op_fail(err, -errno, "cannot create %s: %s", path, strerror(errno));
        }
        if (sha256_init(&sha) < 0)
                return -ENOMEM;
        for (;;) {
                la_ssize_t n = archive_read_data(a, buf, sizeof(buf));
                if (n < 0) {
                        sha256_abort(&sha);
                        return op_fail(err, -EBADMSG, "reading bundle: %s", archive_error_string(a));
                }
                if (n == 0)
                        break;
                if (progress_cancelled(p)) {
                        sha256_abort(&sha);
                        return op_fail(err, -ECANCELED, "import cancelled");
                }
                sha256_update(&sha, buf, (size_t) n);
                if (!all_zero(buf, (size_t) n)) {
                        if (pwrite(fd, buf, (size_t) n, off) != n) {
                                sha256_abort(&sha);
                                return op_fail(err, -EIO, "writing %s: %s", path, strerror(errno));
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

/* What a bundle read has seen so far. */
struct bundle_in {
        struct archive *a;
        const char *dest_dir;
        const struct progress *p;
        bool seen[3];    /* manifest.json, rootfs.ext4, work-seed.ext4 */
        char hashes[3][65];
        char *manifest;  /* owned */
};

static const char *const bundle_entries[] = { "manifest.json", "rootfs.ext4", "work-seed.ext4" };

/* Which of the three entries e is (the only ones allowed), once. */
static int entry_index(struct bundle_in *b, struct archive_entry *e, struct op_error *err) {
        _cleanup_free_ char *norm = NULL;
        const char *path = archive_entry_pathname(e);
        if (!path || archive_path_normalize(path, &norm) < 0)
                return op_fail(err, -EPERM, "refusing bundle: unsafe entry path '%s'", path ? path : "");
        for (int i = 0; i < 3; i++)
                if (strcmp(norm, bundle_entries[i]) == 0) {
                        if (b->seen[i])
                                return op_fail(err, -EPERM, "refusing bundle: '%s' appears twice", norm);
                        if (archive_entry_filetype(e) != AE_IFREG || archive_entry_hardlink(e))
                                return op_fail(err, -EPERM, "refusing bundle: '%s' is not a regular file", norm);
                        b->seen[i] = true;
                        return i;
                }
        return op_fail(err, -EPERM, "refusing bundle: unexpected entry '%s' (only rootfs.ext4 and manifest.json)", norm);
}

static int read_manifest(struct bundle_in *b, struct op_error *err) {
        struct strbuf sb = STRBUF_INIT;
        char buf[8192];
        la_ssize_t n;
        while ((n = archive_read_data(b->a, buf, sizeof(buf))) > 0 && sb.len < (1u << 20))
                strbuf_add(&sb, buf, (size_t) n);
        b->manifest = strbuf_detach(&sb, NULL);
        if (n < 0 || strlen(b->manifest) >= (1u << 20))
                return op_fail(err, -EBADMSG, "refusing bundle: manifest.json unreadable or larger than 1 MiB");
        return 0;
}

static int read_entries(struct bundle_in *b, const char *bundle_path, struct op_error *err) {
        struct archive_entry *e;
        int r;
        while ((r = archive_read_next_header(b->a, &e)) == ARCHIVE_OK) {
                int idx = entry_index(b, e, err);
                if (idx < 0)
                        return idx;
                if (idx == 0)
                        r = read_manifest(b, err);
                else {
                        _cleanup_free_ char *dst = path_join(b->dest_dir, bundle_entries[idx]);
                        r = write_sparse(b->a, dst, b->hashes[idx], b->p, err);
                }
                if (r < 0)
                        return r;
        }
        if (r != ARCHIVE_EOF)
                return op_fail(err, -EBADMSG, "reading %s: %s", bundle_path, archive_error_string(b->a));
        if (!b->seen[0] || !b->seen[1])
                return op_fail(err, -EBADMSG, "refusing bundle: it must contain rootfs.ext4 and manifest.json");
        return 0;
}

/* The manifest parsed, and the files checked against the hashes it names. */
static int check_manifest(struct bundle_in *b, struct image_manifest *ret, struct op_error *err) {
        _cleanup_free_ char *msg = NULL;
        int r = image_manifest_parse(b->manifest, strlen(b->manifest), ret, &msg);
        if (r < 0)
                return op_fail(err, r, "%s", msg);
        if (ret->rootfs_sha256[0] && strcmp(ret->rootfs_sha256, b->hashes[1]) != 0)
                r = op_fail(err, -EBADMSG, "rootfs.ext4 does not match rootfs_sha256 in manifest.json");
        else if (b->seen[2] && ret->work_seed_sha256[0] && strcmp(ret->work_seed_sha256, b->hashes[2]) != 0)
                r = op_fail(err, -EBADMSG, "work-seed.ext4 does not match work_seed_sha256 in manifest.json");
        if (r < 0) {
                image_manifest_done(ret);
                return r;
        }
        _cleanup_free_ char *mp = path_join(b->dest_dir, "manifest.json");
        return write_file_atomic(mp, b->manifest, strlen(b->manifest), 0644);
}

int bundle_read(const char *bundle_path, const char *dest_dir, const char *expect_sha256,
                const struct progress *p, struct image_manifest *ret_manifest, struct op_error *err) {
        struct bundle_in b = { .a = archive_read_new(), .dest_dir = dest_dir, .p = p };
        struct src *s = xcalloc(1, sizeof(*s));
        struct stat st;
        int r;

        s->fd = open(bundle_path, O_RDONLY | O_CLOEXEC);
        s->p = p;
        if (s->fd < 0 || fstat(s->fd, &st) < 0) {
                r = op_fail(err, -errno, "cannot open %s: %s", bundle_path, strerror(errno));
                goto out;
        }
        s->total = (uint64_t) st.st_size;
        sha256_init(&s->sha);
        archive_read_support_filter_zstd(b.a);
        archive_read_support_format_tar(b.a);
        if (archive_read_open(b.a, s, NULL, src_read, NULL) != ARCHIVE_OK)
                r = op_fail(err, -EBADMSG, "%s is not a tar.zst bundle: %s", bundle_path, archive_error_string(b.a));
        else
                r = read_entries(&b, bundle_path, err);
        if (r == 0) {
                /* hash the whole file, also what follows the tar end marker */
                while (src_read(b.a, s, &(const void *) { NULL }) > 0)
                        ;
                char got[65];
                sha256_final_hex(&s->sha, got);
                if (expect_sha256 && strcmp(got, expect_sha256) != 0)
                        r = op_fail(err, -EBADMSG, "bundle SHA256 mismatch (got %s, expected %s)", got, expect_sha256);
        }
        if (r == 0)
                r = check_manifest(&b, ret_manifest, err);
out:
        if (s->sha.md)
                sha256_abort(&s->sha);
        archive_read_free(b.a);
        if (s->fd >= 0)
                close(s->fd);
        free(s);
        free(b.manifest);
        return r;
}

static int add_file(struct archive *a, const char *name, const char *src, const struct progress *p,
                    uint64_t *done, uint64_t total, struct op_error *err) {
        _cleanup_close_ int fd = open(src, O_RDONLY | O_CLOEXEC);
        struct archive_entry *e;
        struct stat st;
        char buf[1 << 16];

        if (fd < 0 || fstat(fd, &st) < 0) {
                return op_fail(err, -errno, "cannot read %s: %s", src, strerror(errno));
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
                return op_fail(err, -EIO, "writing %s: %s", name, archive_error_string(a));
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
                        return op_fail(err, -EIO, "writing %s: %s", name, archive_error_string(a));
                }
                *done += (uint64_t) n;
                if (p && p->bytes)
                        p->bytes(p->ud, "export", *done, total);
                if (progress_cancelled(p)) {
                        return op_fail(err, -ECANCELED, "export cancelled");
                }
        }
        return 0;
}

int bundle_write(const char *out, const char *manifest_json, const char *rootfs, const char *work_seed,
                 const struct progress *p, struct op_error *err) {
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
                op_fail(err, -EIO, "cannot create %s: %s", tmp, archive_error_string(a));
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
                r = op_fail(err, -EIO, "writing manifest.json: %s", archive_error_string(a));
        }
        archive_entry_free(e);
        if (r == 0)
                r = add_file(a, "rootfs.ext4", rootfs, p, &done, total, err);
        if (r == 0 && work_seed)
                r = add_file(a, "work-seed.ext4", work_seed, p, &done, total, err);
        if (archive_write_close(a) != ARCHIVE_OK && r == 0) {
                r = op_fail(err, -EIO, "finishing %s: %s", tmp, archive_error_string(a));
        }
        archive_write_free(a);
        if (r == 0 && rename(tmp, out) < 0) {
                r = op_fail(err, -errno, "cannot write %s: %s", out, strerror(errno));
        }
        if (r < 0)
                unlink(tmp);
        return r;
}
