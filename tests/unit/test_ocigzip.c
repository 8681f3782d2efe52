/* SPDX-License-Identifier: MIT */
/* gzip layers: several members and damaged trailers through the flatten,
 * and layers decompressed while they are fetched (stream.c), which the
 * flatten then takes as they are. */
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
#include "artifacts/oci/stream.h"
#include "fsutil.h"
#include "proc_spawn.h"
#include "strbuf.h"


/* A tar in several gzip members (pigz, concatenated layers) is one layer;
 * a damaged CRC32 or ISIZE in a trailer refuses it. */
static void test_gzip_members(void **state) {
        (void) state;
        size_t n = 3 * MIB;
        char *rnd = xmalloc(n), *tar = NULL, *text = NULL;
        size_t tlen = 0, glen = 0;
        fill_random(rnd, n, 11);
        const struct ent ents[] = { { .path = "a", .type = AE_IFREG, .data = "a" },
                                    { .path = "r", .type = AE_IFREG, .data = rnd, .len = n },
                                    { .path = "z", .type = AE_IFREG, .data = "z" } };
        char *plain = layer("members.tar", NULL, ents, 3);
        assert_int_equal(read_file(plain, 64 * MIB, &tar, &tlen), 0);
        char *gz = path_join(dir, "members.tar.gz"), *out = out_path("members.ext4");
        int fd = open(gz, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        assert_true(fd >= 0);
        put_gzip_member(fd, tar, 1000); /* members need not end on a tar block */
        put_gzip_member(fd, tar + 1000, tlen / 2 - 1000);
        put_gzip_member(fd, tar + tlen / 2, tlen - tlen / 2);
        close(fd);
        struct oci_flatten_stats fst;
        struct op_error err = OP_ERROR_INIT;
        assert_int_equal(flatten(&gz, 1, out, NULL, &fst, &err), 0);
        assert_int_equal(fst.entries, 3);
        assert_fsck_clean(out);
        ext2_filsys fs = img_open(out);
        struct ext2_inode_large in;
        char *back = xmalloc(n);
        assert_int_equal(img_read(fs, img_must(fs, "r", &in), 0, back, (unsigned) n), n);
        assert_memory_equal(back, rnd, n);
        assert_content(fs, "z", "z");
        ext2fs_close_free(&fs);
        free(back);
        unlink(out);

        /* one member; then its trailer damaged: the CRC32, then the size
         * (igzip checks them; libarchive's gzip filter does not, where the
         * blob's digest is the only guard) */
        char *one = layer("one.tar.gz", "gzip", ents, 3);
        assert_int_equal(read_file(one, 64 * MIB, &text, &glen), 0);
        assert_true(glen > 8);
#ifdef HAVE_ISAL
        for (size_t at = glen - 8; at < glen; at += 4) {
                text[at] ^= 0x01;
                assert_int_equal(write_file_atomic(one, text, glen, 0644), 0);
                assert_refused(&one, 1, NULL, -EBADMSG, "truncated or damaged");
                text[at] ^= 0x01;
        }
#endif
        assert_int_equal(write_file_atomic(one, text, glen, 0644), 0);
        assert_int_equal(flatten(&one, 1, out, NULL, &fst, &err), 0);
        unlink(out);
        free(rnd);
        free(tar);
        free(text);
        free(plain);
        free(gz);
        free(one);
        free(out);
}

/* ---- layers decompressed while fetched (stream.h) ------------------------------------ */

/* fd: the "download" of the gzip data gz[0..len), in pieces, reported to s. */
static void feed(struct layer_stream *s, int fd, const char *gz, size_t from, size_t to) {
        for (size_t off = from; off < to;) {
                size_t n = to - off < 50000 ? to - off : 50000;
                assert_int_equal(write_all(fd, gz + off, n), 0);
                off += n;
                layer_stream_written(s, fd, off);
        }
}

static int new_file(const char *name) {
        char *p = out_path(name);
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600); /* as fetch's */
        assert_true(fd >= 0);
        free(p);
        return fd;
}

/* One download of data[0..len) into a new stream at out, then the writer's
 * word: end 1 (whole and verified), 0 (failed) or -1 (none). The join's
 * answer; a dropped stream leaves nothing at out. */
static bool one_try(const char *out, const char *data, size_t len, int end) {
        struct layer_stream *s = layer_stream_new(out);
        assert_non_null(s);
        int fd = new_file("try1");
        layer_stream_written(s, fd, 0);
        feed(s, fd, data, 0, len);
        if (end >= 0)
                layer_stream_end(s, end == 1);
        bool whole = layer_stream_join(s, NULL, NULL);
        close(fd);
        if (!whole)
                assert_false(exists(out));
        return whole;
}

/* The plain tar is the gzip data decompressed, kept only when the writer
 * says its blob is whole; any other turn drops it and leaves nothing. */
static void test_stream(void **state) {
        (void) state;
        size_t n = 3 * MIB, tlen = 0, glen = 0;
        char *rnd = xmalloc(n), *tar = NULL, *gzdata = NULL, *back = NULL;
        fill_random(rnd, n, 5);
        const struct ent ents[] = { { .path = "a", .type = AE_IFREG, .data = "a" },
                                    { .path = "r", .type = AE_IFREG, .data = rnd, .len = n } };
        char *plain = layer("s.tar", NULL, ents, 2), *gz = path_join(dir, "s.tar.gz"), *out = path_join(dir, "s.out");
        assert_int_equal(read_file(plain, 64 * MIB, &tar, &tlen), 0);
        int gfd = open(gz, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        put_gzip_member(gfd, tar, tlen);
        close(gfd);
        assert_int_equal(read_file(gz, 64 * MIB, &gzdata, &glen), 0);
#ifdef HAVE_ISAL
        /* whole: also when a first try opened its file and wrote nothing (a 401) */
        struct layer_stream *s = layer_stream_new(out);
        assert_non_null(s);
        assert_null(layer_stream_new(out)); /* the file is there: O_EXCL */
        int fd0 = new_file("try0"), fd = new_file("try1");
        layer_stream_written(s, fd0, 0);
        close(fd0);
        layer_stream_written(s, fd, 0);
        feed(s, fd, gzdata, 0, glen);
        layer_stream_end(s, true);
        assert_true(layer_stream_join(s, NULL, NULL));
        size_t blen = 0;
        assert_int_equal(read_file(out, 64 * MIB, &back, &blen), 0);
        assert_int_equal(blen, tlen);
        assert_memory_equal(back, tar, tlen);
        close(fd);
        unlink(out);

        /* a second try after data: dropped, even if it then goes well */
        s = layer_stream_new(out);
        fd = new_file("try1");
        layer_stream_written(s, fd, 0);
        feed(s, fd, gzdata, 0, glen / 2);
        close(fd);
        fd = new_file("try2");
        layer_stream_written(s, fd, 0);
        feed(s, fd, gzdata, 0, glen);
        layer_stream_end(s, true);
        assert_false(layer_stream_join(s, NULL, NULL));
        assert_false(exists(out));
        close(fd);

        /* the writer failed (a digest mismatch), or never said */
        assert_false(one_try(out, gzdata, glen, 0));
        assert_false(one_try(out, gzdata, glen, -1));

        /* not gzip (a plain or zstd layer): the flatten's to do */
        assert_false(one_try(out, tar, tlen, 1));

        /* damaged on the way (the digest would have caught it; the CRC does too) */
        gzdata[glen / 2] ^= 0x10;
        assert_false(one_try(out, gzdata, glen, 1));
        gzdata[glen / 2] ^= 0x10;
        assert_true(one_try(out, gzdata, glen, 1)); /* and the same bytes undamaged are kept */
        unlink(out);
#else
        assert_null(layer_stream_new(out));
        assert_false(exists(out));
#endif
        /* the flatten takes a plain tar it is given as it is */
        const struct ent other[] = { { .path = "b", .type = AE_IFREG, .data = "b" } };
        char *b = layer("other.tar", NULL, other, 1), *img = out_path("s.ext4");
        const char *const given[] = { b };
        struct oci_flatten_opts fo = { .plain = given };
        struct op_error err = OP_ERROR_INIT;
        assert_int_equal(flatten(&gz, 1, img, &fo, NULL, &err), 0);
        ext2_filsys fs = img_open(img);
        assert_content(fs, "b", "b");
        assert_absent(fs, "a");
        ext2fs_close_free(&fs);
        assert_true(exists(b)); /* the caller's to remove */
        unlink(img);
        free(rnd);
        free(tar);
        free(gzdata);
        free(back);
        free(plain);
        free(gz);
        free(out);
        free(b);
        free(img);
}

#ifdef HAVE_ISAL
static off_t file_size(const char *path) {
        struct stat st;
        return stat(path, &st) == 0 ? st.st_size : -1;
}

/* A stream fed the whole of data[0..len) and left without the writer's
 * word: the size of its plain tar once it stopped growing. */
static off_t held_size(struct layer_stream *s, int fd, const char *out, const char *data, size_t len) {
        layer_stream_written(s, fd, 0);
        feed(s, fd, data, 0, len);
        off_t size = file_size(out);
        for (int steady = 0, i = 0; steady < 3 && i < 200; i++) {
                usleep(100 * 1000);
                off_t was = size;
                size = file_size(out);
                steady = size == was ? steady + 1 : 0;
        }
        return size;
}
#endif

/* A gzip bomb in a blob not yet verified (a pull pinned by digest through a
 * hostile mirror): the stream stops well short of it and waits; the writer's
 * word lets it go on to the end, a join without it drops it. */
static void test_stream_bomb(void **state) {
        (void) state;
#ifdef HAVE_ISAL
        size_t n = 128 * MIB, glen = 0;
        char *zeros = xcalloc(1, n), *gzdata = NULL, *gz = path_join(dir, "bomb.gz"), *out = path_join(dir, "bomb.out");
        int gfd = open(gz, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        put_gzip_member(gfd, zeros, n);
        close(gfd);
        assert_int_equal(read_file(gz, 64 * MIB, &gzdata, &glen), 0);
        assert_true(glen < MIB);

        struct layer_stream *s = layer_stream_new(out);
        assert_non_null(s);
        int fd = new_file("bomb1");
        off_t held = held_size(s, fd, out, gzdata, glen);
        assert_true(held > 0 && held < 48 * (off_t) MIB);
        layer_stream_end(s, true);
        assert_true(layer_stream_join(s, NULL, NULL));
        assert_int_equal(file_size(out), (off_t) n);
        close(fd);
        unlink(out);

        s = layer_stream_new(out);
        assert_non_null(s);
        fd = new_file("bomb2");
        held = held_size(s, fd, out, gzdata, glen);
        assert_true(held > 0 && held < 48 * (off_t) MIB);
        assert_false(layer_stream_join(s, NULL, NULL)); /* waiting for a word that never came */
        assert_false(exists(out));
        close(fd);
        free(zeros);
        free(gzdata);
        free(gz);
        free(out);
#endif
}

#ifdef HAVE_ISAL
static int polls;
static bool cancel_after_3(void *ud) {
        (void) ud;
        return ++polls > 3;
}

static int follow_one(void *ud, size_t layer, uint64_t pos) {
        assert_int_equal(layer, 0);
        return layer_stream_wait(ud, pos, NULL, NULL);
}
#endif

/* A reader of the plain tar while it is written (layer_stream_wait): more
 * bytes, the end, a cancel, a dropped stream; and the flatten following a
 * stream that is still decompressing (the pull's early flatten). */
static void test_stream_wait(void **state) {
        (void) state;
#ifdef HAVE_ISAL
        size_t n = 8 * MIB, tlen = 0, glen = 0;
        char *rnd = xmalloc(n), *tar = NULL, *gzdata = NULL;
        fill_random(rnd, n, 9);
        const struct ent ents[] = { { .path = "d/", .type = AE_IFDIR },
                                    { .path = "d/r", .type = AE_IFREG, .data = rnd, .len = n },
                                    { .path = "d/s", .type = AE_IFLNK, .data = "r" } };
        char *plain = layer("w.tar", NULL, ents, ELEMENTSOF(ents)), *gz = path_join(dir, "w.tar.gz");
        char *out = path_join(dir, "w.out"), *img = out_path("w.ext4");
        assert_int_equal(read_file(plain, 64 * MIB, &tar, &tlen), 0);
        int gfd = open(gz, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        put_gzip_member(gfd, tar, tlen);
        close(gfd);
        assert_int_equal(read_file(gz, 64 * MIB, &gzdata, &glen), 0);

        /* half of the blob: some bytes, then nothing more to wait for but a cancel */
        struct layer_stream *s = layer_stream_new(out);
        assert_non_null(s);
        int fd = new_file("w1");
        layer_stream_written(s, fd, 0);
        feed(s, fd, gzdata, 0, glen / 2);
        assert_int_equal(layer_stream_wait(s, 0, NULL, NULL), 1);
        off_t have = file_size(out);
        int r;
        while ((r = layer_stream_wait(s, (uint64_t) have, cancel_after_3, NULL)) == 1) {
                have = file_size(out);
                polls = 0;
        }
        assert_int_equal(r, -ECANCELED);
        assert_true(have > 0 && (size_t) have < tlen);
        /* the rest, verified: more, then 0 at the end with all of it in the file */
        feed(s, fd, gzdata, glen / 2, glen);
        layer_stream_end(s, true);
        uint64_t pos = (uint64_t) have;
        while ((r = layer_stream_wait(s, pos, NULL, NULL)) == 1)
                pos = (uint64_t) file_size(out);
        assert_int_equal(r, 0);
        assert_int_equal(file_size(out), (off_t) tlen);
        assert_true(layer_stream_join(s, NULL, NULL));
        close(fd);
        unlink(out);

        /* dropped (the blob did not verify): negative, and the join removes it */
        s = layer_stream_new(out);
        fd = new_file("w2");
        layer_stream_written(s, fd, 0);
        feed(s, fd, gzdata, 0, glen / 2);
        layer_stream_end(s, false);
        while ((r = layer_stream_wait(s, (uint64_t) file_size(out), NULL, NULL)) == 1)
                ;
        assert_true(r < 0);
        assert_false(layer_stream_join(s, NULL, NULL));
        assert_false(exists(out));
        close(fd);

        /* the flatten beside a stream still decompressing */
        s = layer_stream_new(out);
        fd = new_file("w3");
        layer_stream_written(s, fd, 0);
        feed(s, fd, gzdata, 0, glen);
        layer_stream_end(s, true);
        const char *const given[] = { out };
        struct oci_flatten_opts fo = { .plain = given, .follow = follow_one, .ud = s, .tar_bytes = tlen };
        struct op_error err = OP_ERROR_INIT;
        struct ext2_inode_large in;
        char buf[4096];
        if (oci_flatten((const char *const *) &gz, 1, img, &fo, NULL, &err) < 0)
                fail_msg("%s", op_error_message(&err));
        assert_true(layer_stream_join(s, NULL, NULL));
        close(fd);
        ext2_filsys fs = img_open(img);
        ext2_ino_t ino = img_must(fs, "d/r", &in);
        assert_int_equal(EXT2_I_SIZE(&in), n);
        assert_int_equal(img_read(fs, ino, n / 2, buf, sizeof(buf)), sizeof(buf));
        assert_memory_equal(buf, rnd + n / 2, sizeof(buf));
        img_must(fs, "d/s", &in);
        assert_int_equal(in.i_mode & LINUX_S_IFMT, LINUX_S_IFLNK);
        ext2fs_close_free(&fs);
        assert_fsck_clean(img);
        unlink(img);
        unlink(out);
        free(rnd);
        free(tar);
        free(gzdata);
        free(plain);
        free(gz);
        free(out);
        free(img);
#endif
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_gzip_members),
                cmocka_unit_test(test_stream),
                cmocka_unit_test(test_stream_bomb),
                cmocka_unit_test(test_stream_wait),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
