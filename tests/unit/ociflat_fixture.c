/* SPDX-License-Identifier: MIT */
/* The OCI flatten tests' helpers (ociflat_fixture.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <ext2fs/ext2fs.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ociflat_fixture.h"
#include "fsutil.h"
#include "proc_spawn.h"
#include "strbuf.h"

char dir[64];

int setup(void **s) {
        (void) s;
        snprintf(dir, sizeof(dir), "/tmp/banger-ociflat-XXXXXX");
        return mkdtemp(dir) ? 0 : -1;
}

int teardown(void **s) {
        (void) s;
        rm_rf(dir);
        return 0;
}

double now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* ---- layers ------------------------------------------------------------------------ */


void put(struct archive *a, const struct ent *en) {
        struct archive_entry *e = archive_entry_new();
        size_t len = en->len ? en->len : en->data ? strlen(en->data) : 0;
        archive_entry_set_pathname(e, en->path);
        archive_entry_set_filetype(e, en->type == HARDLINK ? AE_IFREG : en->type);
        archive_entry_set_perm(e, en->mode ? en->mode : en->type == AE_IFDIR ? 0755 : 0644);
        archive_entry_set_uid(e, en->uid);
        archive_entry_set_gid(e, en->gid);
        archive_entry_set_mtime(e, en->mtime ? en->mtime : 1700000000, 0);
        if (en->type == HARDLINK)
                archive_entry_set_hardlink(e, en->data);
        if (en->type == AE_IFLNK)
                archive_entry_set_symlink(e, en->data);
        if (en->type == AE_IFCHR || en->type == AE_IFBLK) {
                archive_entry_set_rdevmajor(e, en->major);
                archive_entry_set_rdevminor(e, en->minor);
        }
        if (en->xname)
                archive_entry_xattr_add_entry(e, en->xname, en->xval, en->xlen);
        archive_entry_set_size(e, en->type == AE_IFREG ? (la_int64_t) len : 0);
        int r = archive_write_header(a, e);
        if (r != ARCHIVE_OK)
                print_message("# %s: %s\n", en->path, archive_error_string(a));
        assert_true(r == ARCHIVE_OK || r == ARCHIVE_WARN); /* WARN: a name not in the locale's charset */
        if (en->type == AE_IFREG && len)
                assert_int_equal(archive_write_data(a, en->data, len), (la_ssize_t) len);
        archive_entry_free(e);
}

struct archive *layer_begin(const char *path, const char *filter) {
        struct archive *a = archive_write_new();
        archive_write_set_format_pax(a);
        if (filter && strcmp(filter, "gzip") == 0)
                archive_write_add_filter_gzip(a);
        else if (filter && strcmp(filter, "zstd") == 0)
                archive_write_add_filter_zstd(a);
        assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
        return a;
}

void layer_end(struct archive *a) {
        assert_int_equal(archive_write_close(a), ARCHIVE_OK);
        archive_write_free(a);
}

/* dir/name, a layer holding ents. */
char *layer(const char *name, const char *filter, const struct ent *ents, size_t n) {
        char *path = path_join(dir, name);
        struct archive *a = layer_begin(path, filter);
        for (size_t i = 0; i < n; i++)
                put(a, &ents[i]);
        layer_end(a);
        return path;
}

char *out_path(const char *name) {
        char *p = path_join(dir, name);
        unlink(p);
        return p;
}

bool exists(const char *p) {
        struct stat st;
        return lstat(p, &st) == 0;
}

void fill_random(char *buf, size_t len, uint64_t seed) {
        for (size_t i = 0; i < len; i++) {
                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                buf[i] = (char) (seed >> 56);
        }
}

/* ---- the image --------------------------------------------------------------------- */

void assert_fsck_clean(const char *img) {
        struct spawn_result r;
        struct spawn_opts o = { .capture_stdout = true, .capture_stderr = true };
        char *argv[] = { (char *) "e2fsck", (char *) "-fn", (char *) img, NULL };
        assert_int_equal(spawn_run(argv, &o, &r), 0);
        if (r.exit_code != 0)
                fail_msg("e2fsck -fn %s exit %d: %s%s", img, r.exit_code, r.out, r.err);
        spawn_result_done(&r);
}

ext2_filsys img_open(const char *img) {
        ext2_filsys fs = NULL;
        assert_int_equal(ext2fs_open(img, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs), 0);
        return fs;
}

/* The inode at path (not following a last symlink); 0 when there is none. */
ext2_ino_t img_stat(ext2_filsys fs, const char *path, struct ext2_inode_large *in) {
        ext2_ino_t ino = 0;
        if (ext2fs_namei(fs, EXT2_ROOT_INO, EXT2_ROOT_INO, path, &ino))
                return 0;
        memset(in, 0, sizeof(*in));
        assert_int_equal(ext2fs_read_inode_full(fs, ino, (struct ext2_inode *) in, sizeof(*in)), 0);
        return ino;
}

ext2_ino_t img_must(ext2_filsys fs, const char *path, struct ext2_inode_large *in) {
        ext2_ino_t ino = img_stat(fs, path, in);
        if (!ino)
                fail_msg("'%s' is not in the image", path);
        return ino;
}

uint32_t uid_of(const struct ext2_inode_large *in) {
        return in->i_uid | (uint32_t) in->osd2.linux2.l_i_uid_high << 16;
}

uint32_t gid_of(const struct ext2_inode_large *in) {
        return in->i_gid | (uint32_t) in->osd2.linux2.l_i_gid_high << 16;
}

/* len bytes of ino at off into buf; the count read. */
unsigned img_read(ext2_filsys fs, ext2_ino_t ino, uint64_t off, void *buf, unsigned len) {
        ext2_file_t file;
        unsigned got = 0;
        assert_int_equal(ext2fs_file_open(fs, ino, 0, &file), 0);
        assert_int_equal(ext2fs_file_llseek(file, off, EXT2_SEEK_SET, NULL), 0);
        assert_int_equal(ext2fs_file_read(file, buf, len, &got), 0);
        ext2fs_file_close(file);
        return got;
}

void assert_content(ext2_filsys fs, const char *path, const char *want) {
        struct ext2_inode_large in;
        char buf[256] = { 0 };
        ext2_ino_t ino = img_must(fs, path, &in);
        assert_int_equal(img_read(fs, ino, 0, buf, sizeof(buf) - 1), strlen(want));
        assert_string_equal(buf, want);
}

void assert_absent(ext2_filsys fs, const char *path) {
        struct ext2_inode_large in;
        if (img_stat(fs, path, &in))
                fail_msg("'%s' should not be in the image", path);
}

/* ---- flatten ----------------------------------------------------------------------- */

int flatten_mode;
unsigned early_runs, early_fallbacks;
long early_fail_at;
uint64_t early_tar_bytes;

/* The plain tars being "decompressed": src[i] whole, pos[i] what next gave of it. */
static struct drip {
        char **src;
        long calls;
        uint64_t *pos;
        char *piece; /* the last piece next gave */
} drip;

/* layer decompressed (any filter libarchive knows) into out; false: it cannot be. */
static bool plain_copy(const char *layer, const char *out, uint64_t *bytes) {
        struct archive *a = archive_read_new();
        struct archive_entry *e;
        archive_read_support_filter_all(a);
        archive_read_support_format_raw(a);
        archive_read_support_format_empty(a);
        FILE *fp = fopen(out, "wb");
        bool ok = fp && archive_read_open_filename(a, layer, 1 << 16) == ARCHIVE_OK;
        int hr = ok ? archive_read_next_header(a, &e) : ARCHIVE_FATAL;
        char buf[1 << 16];
        la_ssize_t n = 0;
        ok = ok && (hr == ARCHIVE_OK || hr == ARCHIVE_EOF);
        while (ok && hr == ARCHIVE_OK && (n = archive_read_data(a, buf, sizeof(buf))) > 0)
                ok = fwrite(buf, 1, (size_t) n, fp) == (size_t) n;
        ok = ok && n >= 0;
        archive_read_free(a);
        if (fp) {
                *bytes += (uint64_t) ftell(fp);
                ok = fclose(fp) == 0 && ok;
        }
        return ok;
}

/* oci_flatten_opts.next: a few KiB more of src[i] (what a stream gives). */
static ssize_t drip_next(void *ud, size_t i, const void **buf) {
        (void) ud;
        if (!buf)
                return 0;
        struct stat all;
        if (stat(drip.src[i], &all) < 0)
                return -errno;
        if (drip.pos[i] >= (uint64_t) all.st_size)
                return 0;
        if (early_fail_at && ++drip.calls >= early_fail_at)
                return -EIO;
        size_t len = (uint64_t) all.st_size - drip.pos[i] < 7919 ? (size_t) ((uint64_t) all.st_size - drip.pos[i]) : 7919;
        free(drip.piece);
        drip.piece = xmalloc(len);
        int in = open(drip.src[i], O_RDONLY);
        assert_true(in >= 0);
        assert_int_equal(pread(in, drip.piece, len, (off_t) drip.pos[i]), (ssize_t) len);
        close(in);
        drip.pos[i] += len;
        *buf = drip.piece;
        return (ssize_t) len;
}

static int flatten_early(char **layers, size_t n, const char *out, const struct oci_flatten_opts *o,
                         struct oci_flatten_stats *st, struct op_error *err) {
        uint64_t total = 0;
        bool ok = true;
        drip = (struct drip) { .src = xcalloc(n + 1, sizeof(char *)), .pos = xcalloc(n + 1, sizeof(uint64_t)) };
        for (size_t i = 0; i < n; i++) {
                drip.src[i] = xasprintf("%s.src", layers[i]);
                ok = ok && plain_copy(layers[i], drip.src[i], &total);
        }
        struct oci_flatten_opts eo = *o;
        eo.next = drip_next;
        eo.tar_bytes = early_tar_bytes ? early_tar_bytes : total;
        int r;
        if (!ok || !total) {
                r = oci_flatten((const char *const *) layers, n, out, o, st, err);
        } else {
                early_runs++;
                r = oci_flatten((const char *const *) layers, n, out, &eo, st, err);
        }
        if (ok && total && r == -EAGAIN) { /* as pull.c: again, the flatten decompressing the layers itself */
                early_fallbacks++;
                assert_false(exists(out));
                print_message("# early: %s\n", op_error_message(err));
                op_error_done(err);
                r = oci_flatten((const char *const *) layers, n, out, o, st, err);
        }
        for (size_t i = 0; i < n; i++) {
                unlink(drip.src[i]);
                free(drip.src[i]);
        }
        free(drip.src);
        free(drip.pos);
        free(drip.piece);
        return r;
}

int flatten(char **layers, size_t n, const char *out, const struct oci_flatten_opts *o,
                   struct oci_flatten_stats *st, struct op_error *err) {
        static const struct oci_flatten_opts none = { 0 };
        if (flatten_mode && !(o && (o->subtree || o->without)))
                return flatten_early(layers, n, out, o ? o : &none, st, err);
        return oci_flatten((const char *const *) layers, n, out, o, st, err);
}

/* Must fail with want (and a message holding frag) and leave nothing at out. */
void assert_refused(char **layers, size_t n, const struct oci_flatten_opts *o, int want, const char *frag) {
        char *out = out_path("refused.ext4");
        struct op_error err = OP_ERROR_INIT;
        int r = flatten(layers, n, out, o, NULL, &err);
        if (r != want || (frag && !strstr(op_error_message(&err), frag)))
                fail_msg("expected %d ('%s'), got %d: %s", want, frag ? frag : "", r, op_error_message(&err));
        assert_false(exists(out));
        print_message("# refused: %s\n", op_error_message(&err));
        op_error_done(&err);
        free(out);
}

void free_layers(char **layers, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(layers[i]);
}

/* buf as one gzip member appended to fd. */
void put_gzip_member(int fd, const char *buf, size_t len) {
        size_t cap = len + len / 2 + 4096, used = 0;
        char *gz = xmalloc(cap);
        struct archive *a = archive_write_new();
        struct archive_entry *e = archive_entry_new();
        archive_write_set_format_raw(a);
        archive_write_add_filter_gzip(a);
        archive_write_set_bytes_in_last_block(a, 1);
        assert_int_equal(archive_write_open_memory(a, gz, cap, &used), ARCHIVE_OK);
        archive_entry_set_pathname(e, "x");
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_size(e, (la_int64_t) len);
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        assert_int_equal(archive_write_data(a, buf, len), (la_ssize_t) len);
        layer_end(a);
        archive_entry_free(e);
        assert_int_equal(write_all(fd, gz, used), 0);
        free(gz);
}
