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

/* A new stream fed data[0..len) by one try (*ret_fd), once its thread has
 * ended: with bytes after the gzip data, that is before the writer's word. */
static struct layer_stream *fed_to_end(struct layer_pool *p, const char *data, size_t len, int *ret_fd) {
        struct layer_stream *s = layer_stream_new(p);
        assert_non_null(s);
        *ret_fd = new_file("try1");
        layer_stream_written(s, *ret_fd, 0);
        feed(s, *ret_fd, data, 0, len);
        for (int i = 0; i < 500 && !layer_stream_finished(s); i++)
                usleep(10 * 1000);
        assert_true(layer_stream_finished(s));
        return s;
}

/* All of the stream's plain tar read (layer_stream_next) into *ret (the
 * caller's to free, with *ret_len); 0 when it was whole, else negative. */
static ssize_t drain(struct layer_stream *s, char **ret, size_t *ret_len, bool (*cancel)(void *ud)) {
        size_t len = 0, cap = MIB;
        char *all = xmalloc(cap);
        ssize_t r;
        const void *piece;
        while ((r = layer_stream_next(s, &piece, cancel, NULL)) > 0) {
                while (len + (size_t) r > cap)
                        all = xrealloc(all, cap *= 2);
                memcpy(all + len, piece, (size_t) r);
                len += (size_t) r;
        }
        *ret = all;
        *ret_len = len;
        return r;
}

/* One download of data[0..len) into a new stream, then the writer's word:
 * end 1 (whole and verified), 0 (failed) or -1 (none). The join's answer,
 * which a reader (for a word given) agrees with; what it read of a whole
 * one is want[0..want_len). */
static bool one_try(struct layer_pool *p, const char *data, size_t len, int end, const char *want, size_t want_len) {
        struct layer_stream *s = layer_stream_new(p);
        assert_non_null(s);
        int fd = new_file("try1");
        layer_stream_written(s, fd, 0);
        feed(s, fd, data, 0, len);
        ssize_t r = -1;
        char *back = NULL;
        size_t blen = 0;
        if (end >= 0) {
                layer_stream_end(s, end == 1);
                r = drain(s, &back, &blen, NULL);
        }
        bool whole = layer_stream_join(s, NULL, NULL);
        if (end >= 0)
                assert_int_equal(whole, r == 0);
        if (whole) {
                assert_int_equal(blen, want_len);
                assert_memory_equal(back, want, want_len);
        }
        free(back);
        close(fd);
        return whole;
}

/* The plain tar is the gzip data decompressed, whole only when the writer
 * says its blob is whole; any other turn ends it short. */
static void test_stream(void **state) {
        (void) state;
        size_t n = 3 * MIB, tlen = 0, glen = 0;
        char *rnd = xmalloc(n), *tar = NULL, *gzdata = NULL;
        fill_random(rnd, n, 5);
        const struct ent ents[] = { { .path = "a", .type = AE_IFREG, .data = "a" },
                                    { .path = "r", .type = AE_IFREG, .data = rnd, .len = n } };
        char *plain = layer("s.tar", NULL, ents, 2), *gz = path_join(dir, "s.tar.gz");
        assert_int_equal(read_file(plain, 64 * MIB, &tar, &tlen), 0);
        int gfd = open(gz, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        put_gzip_member(gfd, tar, tlen);
        close(gfd);
        assert_int_equal(read_file(gz, 64 * MIB, &gzdata, &glen), 0);
        struct layer_pool *p = layer_pool_new(64 * MIB);
#ifdef HAVE_ISAL
        /* whole: also when a first try opened its file and wrote nothing (a 401) */
        struct layer_stream *s = layer_stream_new(p);
        assert_non_null(s);
        int fd0 = new_file("try0"), fd = new_file("try1");
        layer_stream_written(s, fd0, 0);
        close(fd0);
        layer_stream_written(s, fd, 0);
        feed(s, fd, gzdata, 0, glen);
        layer_stream_end(s, true);
        char *back = NULL;
        size_t blen = 0;
        assert_int_equal(drain(s, &back, &blen, NULL), 0);
        assert_int_equal(blen, tlen);
        assert_memory_equal(back, tar, tlen);
        uint64_t size = 0;
        assert_int_equal(layer_stream_size(s, &size), 1);
        assert_int_equal(size, tlen);
        assert_true(layer_stream_join(s, NULL, NULL));
        free(back);
        close(fd);

        /* a second try after data: ended short, even if it then goes well */
        s = layer_stream_new(p);
        fd = new_file("try1");
        layer_stream_written(s, fd, 0);
        feed(s, fd, gzdata, 0, glen / 2);
        close(fd);
        fd = new_file("try2");
        layer_stream_written(s, fd, 0);
        feed(s, fd, gzdata, 0, glen);
        layer_stream_end(s, true);
        assert_true(drain(s, &back, &blen, NULL) < 0);
        free(back);
        assert_true(layer_stream_size(s, &size) < 0);
        assert_false(layer_stream_join(s, NULL, NULL));
        close(fd);

        /* bytes after the gzip data (padding): the thread ends before the
         * writer's word, and the word still makes it whole */
        char *padded = xmalloc(glen + 4096);
        memcpy(padded, gzdata, glen);
        memset(padded + glen, 0, 4096);
        s = fed_to_end(p, padded, glen + 4096, &fd);
        layer_stream_end(s, true);
        assert_int_equal(layer_stream_size(s, &size), 1);
        assert_int_equal(drain(s, &back, &blen, NULL), 0);
        assert_int_equal(blen, tlen);
        free(back);
        assert_true(layer_stream_join(s, NULL, NULL));
        close(fd);
        /* and a try after that (the first one's bytes were read): not whole */
        s = fed_to_end(p, padded, glen + 4096, &fd);
        layer_stream_written(s, fd, 0);
        layer_stream_end(s, true);
        assert_true(layer_stream_size(s, &size) < 0);
        assert_false(layer_stream_join(s, NULL, NULL));
        close(fd);
        free(padded);

        /* the writer failed (a digest mismatch), or never said */
        assert_false(one_try(p, gzdata, glen, 0, tar, tlen));
        assert_false(one_try(p, gzdata, glen, -1, tar, tlen));

        /* not gzip (a plain or zstd layer): the flatten's to do */
        assert_false(one_try(p, tar, tlen, 1, tar, tlen));

        /* damaged on the way (the digest would have caught it; the CRC does too) */
        gzdata[glen / 2] ^= 0x10;
        assert_false(one_try(p, gzdata, glen, 1, tar, tlen));
        gzdata[glen / 2] ^= 0x10;
        assert_true(one_try(p, gzdata, glen, 1, tar, tlen)); /* and the same bytes undamaged are whole */
#else
        assert_null(layer_stream_new(p));
#endif
        layer_pool_free(p);
        free(rnd);
        free(tar);
        free(gzdata);
        free(plain);
        free(gz);
}

#ifdef HAVE_ISAL
/* What s has inflated once that stopped growing. */
static uint64_t steady_size(struct layer_stream *s) {
        uint64_t size = 0, was;
        (void) layer_stream_size(s, &size);
        for (int steady = 0, i = 0; steady < 3 && i < 200; i++) {
                usleep(100 * 1000);
                was = size;
                (void) layer_stream_size(s, &size);
                steady = size == was ? steady + 1 : 0;
        }
        return size;
}

/* A stream fed the whole of data[0..len) and left without the writer's
 * word: what it inflated once it stopped. */
static uint64_t held_size(struct layer_stream *s, int fd, const char *data, size_t len) {
        layer_stream_written(s, fd, 0);
        feed(s, fd, data, 0, len);
        return steady_size(s);
}
#endif

/* A gzip bomb in a blob not yet verified (a pull pinned by digest through a
 * hostile mirror): the stream stops well short of it and waits; the writer's
 * word lets it go on to the end, a join without it ends it. A verified one
 * nobody reads stops at the pool's cap; read, it goes to its end in no more
 * memory; discarded, it goes to its end (the trailer checked) holding none. */
static void test_stream_bomb(void **state) {
        (void) state;
#ifdef HAVE_ISAL
        size_t n = 128 * MIB, glen = 0;
        char *zeros = xcalloc(1, n), *gzdata = NULL, *gz = path_join(dir, "bomb.gz"), *back = NULL;
        int gfd = open(gz, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        put_gzip_member(gfd, zeros, n);
        close(gfd);
        assert_int_equal(read_file(gz, 64 * MIB, &gzdata, &glen), 0);
        assert_true(glen < MIB);
        struct layer_pool *p = layer_pool_new(256 * MIB);

        struct layer_stream *s = layer_stream_new(p);
        assert_non_null(s);
        int fd = new_file("bomb1");
        uint64_t held = held_size(s, fd, gzdata, glen);
        assert_true(held > 0 && held < 48 * MIB);
        layer_stream_end(s, true);
        size_t blen = 0;
        assert_int_equal(drain(s, &back, &blen, NULL), 0);
        assert_int_equal(blen, n);
        free(back);
        assert_true(layer_stream_join(s, NULL, NULL));
        close(fd);

        s = layer_stream_new(p);
        assert_non_null(s);
        fd = new_file("bomb2");
        held = held_size(s, fd, gzdata, glen);
        assert_true(held > 0 && held < 48 * MIB);
        assert_false(layer_stream_join(s, NULL, NULL)); /* waiting for a word that never came */
        close(fd);
        layer_pool_free(p);

        /* verified, a pool of 4 MiB: unread, it stops there */
        p = layer_pool_new(4 * MIB);
        struct layer_stream *t = layer_stream_new(p);
        s = layer_stream_new(p);
        int tfd = new_file("bomb3"), sfd = new_file("bomb4");
        layer_stream_written(t, tfd, 0);
        feed(t, tfd, gzdata, 0, glen);
        layer_stream_end(t, true);
        layer_stream_written(s, sfd, 0);
        feed(s, sfd, gzdata, 0, glen);
        layer_stream_end(s, true);
        uint64_t ts = steady_size(t), ss = steady_size(s);
        assert_true(ts + ss <= 4 * MIB && ts + ss > 0);
        /* read, s goes past the pool's cap (its own cap bounds it); t does not */
        const void *piece;
        uint64_t got = 0;
        ssize_t r;
        while ((r = layer_stream_next(s, &piece, NULL, NULL)) > 0)
                got += (uint64_t) r;
        assert_int_equal(r, 0);
        assert_int_equal(got, n);
        assert_true(steady_size(t) <= 4 * MIB); /* s's chunks came back: t had more, up to the cap */
        /* discarded after a piece: t goes to its end holding nothing, and is whole */
        assert_true(layer_stream_next(t, &piece, NULL, NULL) > 0);
        layer_stream_discard(t);
        uint64_t tsize = 0;
        for (int i = 0; i < 300 && layer_stream_size(t, &tsize) == 0; i++)
                usleep(10 * 1000);
        assert_int_equal(layer_stream_size(t, &tsize), 1);
        assert_int_equal(tsize, n);
        assert_true(layer_stream_join(t, NULL, NULL));
        assert_true(layer_stream_join(s, NULL, NULL));
        layer_pool_free(p);
        close(tfd);
        close(sfd);
        free(zeros);
        free(gzdata);
        free(gz);
#endif
}

#ifdef HAVE_ISAL
static int polls;
static bool cancel_after_3(void *ud) {
        (void) ud;
        return ++polls > 3;
}

static ssize_t next_one(void *ud, size_t layer, const void **buf) {
        assert_int_equal(layer, 0);
        if (!buf) {
                layer_stream_discard(ud);
                return 0;
        }
        return layer_stream_next(ud, buf, NULL, NULL);
}
#endif

/* A reader of the plain tar while it is inflated (layer_stream_next): more
 * bytes, the end, a cancel, a stream ended short; and the flatten reading
 * a stream that is still decompressing (the pull's early flatten). */
static void test_stream_next(void **state) {
        (void) state;
#ifdef HAVE_ISAL
        size_t n = 8 * MIB, tlen = 0, glen = 0, blen = 0;
        char *rnd = xmalloc(n), *tar = NULL, *gzdata = NULL, *back = NULL;
        fill_random(rnd, n, 9);
        const struct ent ents[] = { { .path = "d/", .type = AE_IFDIR },
                                    { .path = "d/r", .type = AE_IFREG, .data = rnd, .len = n },
                                    { .path = "d/s", .type = AE_IFLNK, .data = "r" } };
        char *plain = layer("w.tar", NULL, ents, ELEMENTSOF(ents)), *gz = path_join(dir, "w.tar.gz");
        char *img = out_path("w.ext4");
        assert_int_equal(read_file(plain, 64 * MIB, &tar, &tlen), 0);
        int gfd = open(gz, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        put_gzip_member(gfd, tar, tlen);
        close(gfd);
        assert_int_equal(read_file(gz, 64 * MIB, &gzdata, &glen), 0);
        struct layer_pool *p = layer_pool_new(2 * MIB); /* smaller than the tar: chunks come back and again */

        /* half of the blob: some bytes, then nothing more to wait for but a cancel */
        struct layer_stream *s = layer_stream_new(p);
        assert_non_null(s);
        int fd = new_file("w1");
        layer_stream_written(s, fd, 0);
        feed(s, fd, gzdata, 0, glen / 2);
        polls = 0;
        assert_int_equal(drain(s, &back, &blen, cancel_after_3), -ECANCELED);
        assert_true(blen > 0 && blen < tlen);
        assert_memory_equal(back, tar, blen);
        /* the rest, verified: more, then 0 at the end with all of it read */
        feed(s, fd, gzdata, glen / 2, glen);
        layer_stream_end(s, true);
        char *rest = NULL;
        size_t rlen = 0;
        assert_int_equal(drain(s, &rest, &rlen, NULL), 0);
        assert_int_equal(blen + rlen, tlen);
        assert_memory_equal(rest, tar + blen, rlen);
        assert_true(layer_stream_join(s, NULL, NULL));
        free(back);
        free(rest);
        close(fd);

        /* ended short (the blob did not verify): negative */
        s = layer_stream_new(p);
        fd = new_file("w2");
        layer_stream_written(s, fd, 0);
        feed(s, fd, gzdata, 0, glen / 2);
        layer_stream_end(s, false);
        assert_true(drain(s, &back, &blen, NULL) < 0);
        free(back);
        assert_false(layer_stream_join(s, NULL, NULL));
        close(fd);

        /* the flatten beside a stream still decompressing */
        s = layer_stream_new(p);
        fd = new_file("w3");
        layer_stream_written(s, fd, 0);
        feed(s, fd, gzdata, 0, glen);
        layer_stream_end(s, true);
        struct oci_flatten_opts fo = { .next = next_one, .ud = s, .tar_bytes = tlen };
        struct op_error err = OP_ERROR_INIT;
        struct ext2_inode_large in;
        char buf[4096];
        if (oci_flatten((const char *const *) &gz, 1, img, &fo, NULL, &err) < 0)
                fail_msg("%s", op_error_message(&err));
        assert_true(layer_stream_join(s, NULL, NULL));
        close(fd);
        layer_pool_free(p);
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
        free(rnd);
        free(tar);
        free(gzdata);
        free(plain);
        free(gz);
        free(img);
#endif
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_gzip_members),
                cmocka_unit_test(test_stream),
                cmocka_unit_test(test_stream_bomb),
                cmocka_unit_test(test_stream_next),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
