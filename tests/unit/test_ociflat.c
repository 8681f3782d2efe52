/* SPDX-License-Identifier: MIT */
/* OCI layers flattened into ext4: layer tarballs made here with libarchive's
 * writer, the image read back with libext2fs, and e2fsck -fn must find every
 * image clean. Every failure must leave nothing at the output path. */
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


/* ---- tests ------------------------------------------------------------------------- */

static void test_whiteouts(void **state) {
        (void) state;
        const struct ent l1[] = {
                { .path = "etc/", .type = AE_IFDIR },       { .path = "etc/keep", .type = AE_IFREG, .data = "one" },
                { .path = "etc/gone", .type = AE_IFREG, .data = "x" },
                { .path = "d2/", .type = AE_IFDIR },        { .path = "d2/a", .type = AE_IFREG, .data = "a" },
                { .path = "d2/sub/", .type = AE_IFDIR },    { .path = "d2/sub/b", .type = AE_IFREG, .data = "b" },
                { .path = "opq/", .type = AE_IFDIR },       { .path = "opq/old", .type = AE_IFREG, .data = "o" },
                { .path = "opq/olddir/x", .type = AE_IFREG, .data = "o" },
                { .path = "re/", .type = AE_IFDIR },        { .path = "re/child", .type = AE_IFREG, .data = "c" },
                { .path = "bin/orig", .type = AE_IFREG, .data = "orig" },
                { .path = "lost+found/", .type = AE_IFDIR, .mode = 0700 },
                { .path = "lost+found/kept", .type = AE_IFREG, .data = "k" },
                { .path = "w/old", .type = AE_IFREG, .data = "o" },
        };
        const struct ent l2[] = {
                { .path = "etc/.wh.gone", .type = AE_IFREG },
                { .path = ".wh.d2", .type = AE_IFREG },
                { .path = "opq/", .type = AE_IFDIR, .mode = 0750 },
                { .path = "opq/new", .type = AE_IFREG, .data = "n" }, /* before the marker: same layer, stays */
                { .path = "opq/.wh..wh..opq", .type = AE_IFREG },
                { .path = "re/", .type = AE_IFDIR, .mode = 0700, .uid = 5, .gid = 6, .mtime = 1234567890 },
                { .path = "bin/link", .type = HARDLINK, .data = "bin/orig" },
                { .path = "w/", .type = AE_IFDIR },
                { .path = "w/new", .type = AE_IFREG, .data = "n" },
                { .path = ".wh.w", .type = AE_IFREG }, /* after w/ of its own layer: only hides w/old */
                { .path = ".wh..wh.plnk/", .type = AE_IFDIR },
                { .path = ".wh..wh.plnk/1.2", .type = AE_IFREG, .data = "aufs" },
        };
        const struct ent l3[] = {
                { .path = "d2/", .type = AE_IFDIR, .mode = 0711 }, { .path = "d2/c", .type = AE_IFREG, .data = "c" },
                { .path = "./etc/keep", .type = AE_IFREG, .data = "three" },
                { .path = "bin/.wh.orig", .type = AE_IFREG },
        };
        char *layers[] = { layer("l1.tar", NULL, l1, ELEMENTSOF(l1)), layer("l2.tar.gz", "gzip", l2, ELEMENTSOF(l2)),
                           layer("l3.tar.zst", "zstd", l3, ELEMENTSOF(l3)) };
        char *out = out_path("wh.ext4");
        struct op_error err = OP_ERROR_INIT;
        struct oci_flatten_stats st;
        struct ext2_inode_large in;
        if (flatten(layers, 3, out, NULL, &st, &err) < 0)
                fail_msg("%s", op_error_message(&err));
        assert_int_equal(st.entries, 14); /* etc keep d2 c opq new re child bin link lost+found kept w new */
        assert_int_equal(st.size_bytes, 256 * MIB);
        ext2_filsys fs = img_open(out);
        assert_absent(fs, "etc/gone");
        assert_content(fs, "etc/keep", "three");
        assert_absent(fs, "d2/a");
        assert_absent(fs, "d2/sub");
        assert_content(fs, "d2/c", "c");
        img_must(fs, "d2", &in);
        assert_int_equal(in.i_mode, LINUX_S_IFDIR | 0711);
        assert_absent(fs, "opq/old");
        assert_absent(fs, "opq/olddir");
        assert_content(fs, "opq/new", "n");
        img_must(fs, "opq", &in);
        assert_int_equal(in.i_mode, LINUX_S_IFDIR | 0750);
        img_must(fs, "re", &in);
        assert_int_equal(in.i_mode, LINUX_S_IFDIR | 0700);
        assert_int_equal(uid_of(&in), 5);
        assert_int_equal(gid_of(&in), 6);
        assert_int_equal(in.i_mtime, 1234567890);
        assert_int_equal(in.i_atime, 1234567890);
        assert_content(fs, "re/child", "c");
        img_must(fs, "bin", &in); /* a missing parent: 0755 root */
        assert_int_equal(in.i_mode, LINUX_S_IFDIR | 0755);
        assert_int_equal(uid_of(&in), 0);
        assert_absent(fs, "bin/orig");
        assert_content(fs, "bin/link", "orig");
        img_must(fs, "bin/link", &in);
        assert_int_equal(in.i_links_count, 1);
        assert_absent(fs, "w/old");
        assert_content(fs, "w/new", "n");
        assert_absent(fs, ".wh..wh.plnk");
        assert_absent(fs, ".wh.w");
        assert_int_equal(img_must(fs, "lost+found", &in), EXT2_GOOD_OLD_FIRST_INO); /* mkfs's, reused */
        assert_int_equal(in.i_mode, LINUX_S_IFDIR | 0700);
        assert_content(fs, "lost+found/kept", "k");
        ext2fs_close_free(&fs);
        assert_fsck_clean(out);
        free_layers(layers, 3);
        free(out);
}

/* A Debian build's tar split in two (imagebuild.c): the tree without /root's
 * content, and /root's content as an image of its own. */
static void test_parts(void **state) {
        (void) state;
        const struct ent l1[] = {
                { .path = "./", .type = AE_IFDIR },
                { .path = "./etc/", .type = AE_IFDIR },       { .path = "./etc/hostname", .type = AE_IFREG, .data = "b" },
                { .path = "./root/", .type = AE_IFDIR, .mode = 0700, .mtime = 1111111111 },
                { .path = "./root/.profile", .type = AE_IFREG, .data = "p" },
                { .path = "./root/.ssh/", .type = AE_IFDIR, .mode = 0700 },
                { .path = "./root/.ssh/k", .type = AE_IFREG, .data = "k", .mode = 0600 },
                { .path = "./rootx", .type = AE_IFREG, .data = "not below root/" },
                { .path = "./root/hl", .type = HARDLINK, .data = "./root/.profile" },
        };
        const struct ent l2[] = { { .path = "./root/bad", .type = HARDLINK, .data = "./etc/hostname" } };
        char *layers[] = { layer("parts.tar", NULL, l1, ELEMENTSOF(l1)), layer("parts2.tar", NULL, l2, ELEMENTSOF(l2)) };
        char *out = out_path("parts-root.ext4"), *seed = out_path("parts-seed.ext4");
        struct op_error err = OP_ERROR_INIT;
        struct oci_flatten_stats st;
        struct ext2_inode_large in;
        struct oci_flatten_opts without = { .without = "root" }, sub = { .subtree = "root", .floor_bytes = 32 * MIB };
        if (flatten(layers, 1, out, &without, &st, &err) < 0 || flatten(layers, 1, seed, &sub, NULL, &err) < 0)
                fail_msg("%s", op_error_message(&err));
        ext2_filsys fs = img_open(out);
        assert_content(fs, "etc/hostname", "b");
        assert_content(fs, "rootx", "not below root/");
        img_must(fs, "root", &in);
        assert_int_equal(in.i_mode, LINUX_S_IFDIR | 0700);
        assert_int_equal(in.i_mtime, 1111111111);
        assert_absent(fs, "root/.profile");
        assert_absent(fs, "root/.ssh");
        assert_absent(fs, "root/hl");
        ext2fs_close_free(&fs);
        assert_fsck_clean(out);
        fs = img_open(seed);
        assert_int_equal((uint64_t) fs->super->s_blocks_count * 4096, 32 * MIB);
        assert_content(fs, ".profile", "p");
        assert_content(fs, ".ssh/k", "k");
        img_must(fs, "hl", &in);
        assert_int_equal(in.i_links_count, 2);
        img_must(fs, "", &in);
        assert_int_equal(in.i_mode, LINUX_S_IFDIR | 0700);
        assert_int_equal(in.i_mtime, 1111111111);
        assert_absent(fs, "etc");
        assert_absent(fs, "rootx");
        ext2fs_close_free(&fs);
        assert_fsck_clean(seed);
        /* a hard link from the part taken to a name outside it */
        assert_refused(layers, 2, &sub, -EPERM, "outside the part of the tree taken");
        free_layers(layers, 2);
        free(out);
        free(seed);
}

static void test_special_files(void **state) {
        (void) state;
        static const unsigned char cap[20] = { 0x00, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00 }; /* cap_net_raw */
        char longt[101];
        memset(longt, 'l', 100);
        longt[100] = '\0';
        const struct ent l1[] = {
                { .path = "./", .type = AE_IFDIR, .mode = 0755, .mtime = 1000 },
                { .path = "a", .type = AE_IFREG, .data = "hello" },
                { .path = "b", .type = HARDLINK, .data = "./a" },
                { .path = "sbin/su", .type = AE_IFREG, .mode = 04755, .uid = 1000, .gid = 1000, .data = "su" },
                { .path = "tmp/", .type = AE_IFDIR, .mode = 01777 },
                { .path = "dev/null", .type = AE_IFCHR, .mode = 0666, .major = 1, .minor = 3 },
                { .path = "dev/big", .type = AE_IFBLK, .mode = 0660, .major = 259, .minor = 70000 },
                { .path = "run/fifo", .type = AE_IFIFO, .mode = 0600 },
                { .path = "bin/ping", .type = AE_IFREG, .data = "ping", .xname = "security.capability",
                  .xval = cap, .xlen = sizeof(cap) },
                { .path = "data/", .type = AE_IFDIR, .xname = "user.comment", .xval = "hi", .xlen = 2 },
                { .path = "lnk", .type = AE_IFLNK, .data = "/etc/passwd" },
                { .path = "long", .type = AE_IFLNK, .data = longt },
                { .path = "big-owner", .type = AE_IFREG, .uid = 100000, .gid = 4000000000u, .data = "x" },
                { .path = "\xc3\xbcn\xc3\xaf/c\xc3\xb8" "d\xc3\xa9", .type = AE_IFREG, .data = "utf8" },
        };
        /* a pax "path" in UTF-8 (what Go's archive/tar writes), read in the C locale */
        const struct ent l2[] = { { .path = "\xc3\xbcn\xc3\xaf/pax-\xc3\xa9", .type = AE_IFREG, .data = "pax" } };
        assert_non_null(setlocale(LC_ALL, "C.UTF-8"));
        char *utf8 = layer("utf8.tar", NULL, l2, 1);
        setlocale(LC_ALL, "C");
        char *layers[] = { layer("sp.tar.gz", "gzip", l1, ELEMENTSOF(l1)), utf8 };
        char *out = out_path("sp.ext4");
        struct op_error err = OP_ERROR_INIT;
        struct ext2_inode_large in, in2;
        char buf[128] = { 0 };
        if (flatten(layers, 2, out, NULL, NULL, &err) < 0)
                fail_msg("%s", op_error_message(&err));
        ext2_filsys fs = img_open(out);
        assert_content(fs, "\xc3\xbcn\xc3\xaf/pax-\xc3\xa9", "pax");
        img_must(fs, "/", &in);
        assert_int_equal(in.i_mtime, 1000);
        ext2_ino_t a = img_must(fs, "a", &in), b = img_must(fs, "b", &in2);
        assert_int_equal(a, b);
        assert_int_equal(in.i_links_count, 2);
        assert_content(fs, "b", "hello");
        img_must(fs, "sbin/su", &in);
        assert_int_equal(in.i_mode, LINUX_S_IFREG | 04755);
        assert_int_equal(uid_of(&in), 1000);
        assert_int_equal(gid_of(&in), 1000);
        img_must(fs, "tmp", &in);
        assert_int_equal(in.i_mode, LINUX_S_IFDIR | 01777);
        img_must(fs, "dev/null", &in);
        assert_int_equal(in.i_mode, LINUX_S_IFCHR | 0666);
        assert_int_equal(in.i_block[0], 0x103);
        img_must(fs, "dev/big", &in);
        assert_int_equal(in.i_mode, LINUX_S_IFBLK | 0660);
        assert_int_equal(in.i_block[0], 0);
        assert_int_equal(in.i_block[1], (70000 & 0xff) | (259 << 8) | ((70000 & ~0xffu) << 12));
        img_must(fs, "run/fifo", &in);
        assert_int_equal(in.i_mode, LINUX_S_IFIFO | 0600);
        img_must(fs, "lnk", &in);
        assert_int_equal(in.i_mode, LINUX_S_IFLNK | 0644);
        assert_int_equal(in.i_size, 11);
        assert_memory_equal(in.i_block, "/etc/passwd", 11);
        assert_false(in.i_flags & EXT4_EXTENTS_FL);
        ext2_ino_t l = img_must(fs, "long", &in);
        assert_int_equal(in.i_size, 100);
        assert_int_equal(img_read(fs, l, 0, buf, sizeof(buf)), 100);
        assert_memory_equal(buf, longt, 100);
        img_must(fs, "big-owner", &in);
        assert_int_equal(uid_of(&in), 100000);
        assert_int_equal(gid_of(&in), 4000000000u);
        assert_content(fs, "\xc3\xbcn\xc3\xaf/c\xc3\xb8" "d\xc3\xa9", "utf8");

        struct ext2_xattr_handle *h;
        void *v;
        size_t vlen;
        ext2_ino_t ping = img_must(fs, "bin/ping", &in);
        assert_int_equal(ext2fs_xattrs_open(fs, ping, &h), 0);
        assert_int_equal(ext2fs_xattrs_read(h), 0);
        assert_int_equal(ext2fs_xattr_get(h, "security.capability", &v, &vlen), 0);
        assert_int_equal(vlen, sizeof(cap));
        assert_memory_equal(v, cap, sizeof(cap));
        ext2fs_free_mem(&v);
        ext2fs_xattrs_close(&h);
        ext2_ino_t data = img_must(fs, "data", &in);
        assert_int_equal(ext2fs_xattrs_open(fs, data, &h), 0);
        assert_int_equal(ext2fs_xattrs_read(h), 0);
        assert_int_equal(ext2fs_xattr_get(h, "user.comment", &v, &vlen), 0);
        assert_memory_equal(v, "hi", 2);
        ext2fs_free_mem(&v);
        ext2fs_xattrs_close(&h);
        ext2fs_close_free(&fs);
        assert_fsck_clean(out);
        free_layers(layers, 2);
        free(out);
}

/* A 1 GiB file with three data regions (pax sparse), and 1 MiB of zeros
 * that were not marked sparse: neither may take its size in the image. */
static void test_sparse(void **state) {
        (void) state;
        static const uint64_t offs[] = { 0, 512 * MIB, 1024 * MIB - 4096 };
        char *zeros = xcalloc(1, MIB), *path = path_join(dir, "sparse.tar");
        struct archive *a = layer_begin(path, NULL);
        struct archive_entry *e = archive_entry_new();
        archive_entry_set_pathname(e, "big");
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, (la_int64_t) (1024 * MIB));
        for (size_t i = 0; i < ELEMENTSOF(offs); i++)
                archive_entry_sparse_add_entry(e, (la_int64_t) offs[i], 4096);
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        char block[4096];
        for (uint64_t off = 0; off < 1024 * MIB;) {
                bool data = false;
                for (size_t i = 0; i < ELEMENTSOF(offs); i++)
                        data |= off == offs[i];
                if (data) {
                        memset(block, 'A' + (int) (off / (512 * MIB)), sizeof(block));
                        assert_int_equal(archive_write_data(a, block, sizeof(block)), sizeof(block));
                        off += sizeof(block);
                } else {
                        size_t n = off % MIB ? MIB - off % MIB : MIB;
                        for (size_t i = 0; i < ELEMENTSOF(offs); i++)
                                if (offs[i] > off && offs[i] - off < n)
                                        n = offs[i] - off;
                        assert_int_equal(archive_write_data(a, zeros, n), (la_ssize_t) n);
                        off += n;
                }
        }
        archive_entry_free(e);
        struct ent z = { .path = "zeros", .type = AE_IFREG, .data = zeros, .len = MIB };
        put(a, &z);
        layer_end(a);

        char *out = out_path("sparse.ext4");
        struct op_error err = OP_ERROR_INIT;
        struct ext2_inode_large in;
        struct stat st;
        if (flatten(&path, 1, out, NULL, NULL, &err) < 0)
                fail_msg("%s", op_error_message(&err));
        assert_int_equal(stat(out, &st), 0);
        if ((uint64_t) st.st_blocks * 512 >= 64 * MIB)
                fail_msg("the image takes %llu MiB", (unsigned long long) (st.st_blocks * 512 >> 20));
        ext2_filsys fs = img_open(out);
        ext2_ino_t ino = img_must(fs, "big", &in);
        assert_int_equal(EXT2_I_SIZE(&in), 1024 * MIB);
        assert_true(ext2fs_get_stat_i_blocks(fs, (struct ext2_inode *) &in) * 512 < MIB);
        for (size_t i = 0; i < ELEMENTSOF(offs); i++) {
                assert_int_equal(img_read(fs, ino, offs[i], block, sizeof(block)), sizeof(block));
                assert_int_equal(block[0], 'A' + (int) (offs[i] / (512 * MIB)));
                assert_int_equal(block[4095], block[0]);
        }
        assert_int_equal(img_read(fs, ino, 4096, block, sizeof(block)), sizeof(block));
        assert_int_equal(block[0], 0);
        img_must(fs, "zeros", &in);
        assert_int_equal(EXT2_I_SIZE(&in), MIB);
        assert_int_equal(ext2fs_get_stat_i_blocks(fs, (struct ext2_inode *) &in), 0);
        ext2fs_close_free(&fs);
        assert_fsck_clean(out);
        free(zeros);
        free(path);
        free(out);
}

struct progress_seen {
        size_t calls, last_layer;
        uint64_t done, total;
};

static void on_progress(void *ud, size_t layer, size_t n_layers, uint64_t done, uint64_t total) {
        struct progress_seen *p = ud;
        assert_true(layer >= 1 && layer <= n_layers);
        assert_true(done <= total || total == 0);
        p->calls++;
        p->last_layer = layer;
        p->done = done;
        p->total = total;
}

static void test_size_rules(void **state) {
        (void) state;
        size_t n = 16 * MIB;
        char *rnd = xmalloc(n);
        fill_random(rnd, n, 42);
        const struct ent small[] = { { .path = "f", .type = AE_IFREG, .data = "x" } };
        const struct ent big[] = { { .path = "r", .type = AE_IFREG, .data = rnd, .len = n } };
        char *ls = layer("small.tar", NULL, small, 1), *lb = layer("big.tar.gz", "gzip", big, 1);
        char *out = out_path("size.ext4");
        struct op_error err = OP_ERROR_INIT;
        struct oci_flatten_stats st;
        struct stat sb;

        /* the floor */
        assert_int_equal(flatten(&ls, 1, out, NULL, &st, &err), 0);
        assert_int_equal(st.size_bytes, 256 * MIB);
        assert_int_equal(stat(out, &sb), 0);
        assert_int_equal(sb.st_size, 256 * MIB);
        assert_int_equal(st.entries, 1);
        assert_true(st.content_bytes > 0 && st.content_bytes < 256 * MIB);
        unlink(out);
        /* an explicit size; progress ends with all the data */
        struct progress_seen seen = { 0 };
        struct oci_flatten_opts o = { .size_bytes = 300 * MIB, .progress = on_progress, .ud = &seen };
        assert_int_equal(flatten(&lb, 1, out, &o, &st, &err), 0);
        assert_true(seen.calls >= 3);
        assert_int_equal(seen.last_layer, 1);
        assert_int_equal(seen.done, n);
        assert_int_equal(seen.total, n);
        assert_int_equal(st.size_bytes, 300 * MIB);
        assert_int_equal(stat(out, &sb), 0);
        assert_int_equal(sb.st_size, 300 * MIB);
        ext2_filsys fs = img_open(out);
        assert_int_equal(ext2fs_blocks_count(fs->super), 300 * MIB / 4096);
        struct ext2_inode_large in;
        char buf[4096];
        ext2_ino_t ino = img_must(fs, "r", &in);
        assert_int_equal(img_read(fs, ino, n - 4096, buf, 4096), 4096);
        assert_memory_equal(buf, rnd + n - 4096, 4096);
        ext2fs_close_free(&fs);
        assert_fsck_clean(out);
        unlink(out);
        /* too small: refused before anything is written */
        o.size_bytes = 8 * MIB;
        assert_refused(&lb, 1, &o, -ENOSPC, "smaller than its content");
        /* above the estimate, but the journal and metadata leave too little room */
        o.size_bytes = 18 * MIB;
        assert_refused(&lb, 1, &o, -ENOSPC, "too small");
        /* out_path exists: refused, and left alone */
        assert_int_equal(write_file_atomic(out, "keep", 4, 0644), 0);
        assert_int_equal(flatten(&ls, 1, out, NULL, NULL, &err), -EEXIST);
        assert_int_equal(stat(out, &sb), 0);
        assert_int_equal(sb.st_size, 4);
        unlink(out);
        op_error_done(&err);
        free(rnd);
        free(ls);
        free(lb);
        free(out);
}

struct hostile {
        const char *name;
        struct ent ents[3];
        int want;
        const char *frag;
};

static void test_hostile(void **state) {
        (void) state;
        static char long_comp[300], long_path[5001];
        memset(long_comp, 'c', 256);
        memset(long_path, 'p', 20 * 250);
        for (size_t i = 1; i < 20; i++)
                long_path[i * 250] = '/';
        const struct hostile cases[] = {
                { "dotdot", { { .path = "../x", .type = AE_IFREG, .data = "x" } }, -EPERM, "'..'" },
                { "dotdot-mid", { { .path = "a/../../x", .type = AE_IFREG, .data = "x" } }, -EPERM, "'..'" },
                { "abs", { { .path = "/abs", .type = AE_IFREG, .data = "x" } }, -EPERM, "absolute" },
                { "symlink-parent",
                  { { .path = "d", .type = AE_IFLNK, .data = "/etc" },
                    { .path = "d/passwd", .type = AE_IFREG, .data = "root::0:0::/:/bin/sh\n" } },
                  -ENOTDIR, "'d' is a symlink" },
                { "file-parent",
                  { { .path = "f", .type = AE_IFREG, .data = "x" }, { .path = "f/x", .type = AE_IFREG, .data = "x" } },
                  -ENOTDIR, "'f' is a regular file" },
                { "link-out", { { .path = "h", .type = HARDLINK, .data = "../../etc/shadow" } }, -EPERM,
                  "outside the image" },
                { "link-abs", { { .path = "h", .type = HARDLINK, .data = "/etc/shadow" } }, -EPERM,
                  "outside the image" },
                { "link-missing", { { .path = "h", .type = HARDLINK, .data = "nothere" } }, -ENOENT,
                  "not in the image" },
                { "link-dir", { { .path = "dd/", .type = AE_IFDIR }, { .path = "h", .type = HARDLINK, .data = "dd" } },
                  -EPERM, "is a directory" },
                { "link-through-symlink",
                  { { .path = "s", .type = AE_IFLNK, .data = "/etc" },
                    { .path = "h", .type = HARDLINK, .data = "s/shadow" } },
                  -ENOTDIR, "'s' is a symlink" },
                { "long-component", { { .path = long_comp, .type = AE_IFREG, .data = "x" } }, -ENAMETOOLONG, "255" },
                { "long-path", { { .path = long_path, .type = AE_IFREG, .data = "x" } }, -ENAMETOOLONG, "4096" },
                { "root-file", { { .path = ".", .type = AE_IFREG, .data = "x" } }, -EINVAL, "root" },
                { "lost+found-file", { { .path = "lost+found", .type = AE_IFREG, .data = "x" } }, -EINVAL,
                  "lost+found" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                size_t n = 0;
                while (n < 3 && cases[i].ents[n].path)
                        n++;
                _cleanup_free_ char *name = xasprintf("%s.tar", cases[i].name);
                char *l = layer(name, i % 2 ? "gzip" : NULL, cases[i].ents, n);
                print_message("# hostile: %s\n", cases[i].name);
                assert_refused(&l, 1, NULL, cases[i].want, cases[i].frag);
                free(l);
        }
}

/* Symlink in one layer, a file through it in the next; broken layers. */
static void test_hostile_layers(void **state) {
        (void) state;
        const struct ent l1[] = { { .path = "d", .type = AE_IFLNK, .data = "/etc" } };
        const struct ent l2[] = { { .path = "d/passwd", .type = AE_IFREG, .data = "x" } };
        char *two[] = { layer("sym1.tar", NULL, l1, 1), layer("sym2.tar", NULL, l2, 1) };
        assert_refused(two, 2, NULL, -ENOTDIR, "layer 2, entry 'd/passwd': 'd' is a symlink");

        /* truncated gzip */
        size_t n = 4 * MIB;
        char *rnd = xmalloc(n);
        fill_random(rnd, n, 7);
        const struct ent big[] = { { .path = "a", .type = AE_IFREG, .data = "a" },
                                   { .path = "r", .type = AE_IFREG, .data = rnd, .len = n },
                                   { .path = "z", .type = AE_IFREG, .data = "z" } };
        char *trunc = layer("trunc.tar.gz", "gzip", big, 3);
        struct stat st;
        assert_int_equal(stat(trunc, &st), 0);
        assert_int_equal(truncate(trunc, st.st_size / 2), 0);
        char *one[] = { two[0], trunc };
        assert_refused(one, 2, NULL, -EBADMSG, "layer 2");
        /* truncated plain tar (libarchive seeks over data here) */
        char *trunc2 = layer("trunc.tar", NULL, big, 3);
        assert_int_equal(truncate(trunc2, 2 * MIB), 0);
        assert_refused(&trunc2, 1, NULL, -EBADMSG, "layer 1");

        /* not a tar */
        char *junk = path_join(dir, "junk.bin");
        memset(rnd, 'j', 65536);
        assert_int_equal(write_file_atomic(junk, rnd, 65536, 0644), 0);
        assert_refused(&junk, 1, NULL, -EBADMSG, "not a tar");
        /* a zip is an archive, not a tar */
        char *zip = path_join(dir, "x.zip");
        struct archive *a = archive_write_new();
        archive_write_set_format_zip(a);
        assert_int_equal(archive_write_open_filename(a, zip), ARCHIVE_OK);
        put(a, &l2[0]);
        layer_end(a);
        assert_refused(&zip, 1, NULL, -EBADMSG, "not a tar");
        /* an empty layer (gzip of nothing) is a layer without entries */
        static const unsigned char gz_empty[] = { 0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0x03, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
        char *empty[] = { two[0], path_join(dir, "empty.tar.gz") }, *out = out_path("empty.ext4");
        struct oci_flatten_stats fst;
        struct op_error err = OP_ERROR_INIT;
        assert_int_equal(write_file_atomic(empty[1], gz_empty, sizeof(gz_empty), 0644), 0);
        assert_int_equal(flatten(empty, 2, out, NULL, &fst, &err), 0);
        assert_int_equal(fst.entries, 1);
        assert_fsck_clean(out);
        free(empty[1]);
        free(out);
        /* missing layer */
        char *missing[] = { path_join(dir, "nope.tar") };
        assert_refused(missing, 1, NULL, -ENOENT, "nope.tar");
        free(rnd);
        free(junk);
        free(zip);
        free(trunc);
        free(trunc2);
        free(missing[0]);
        free_layers(two, 2);
}




struct counter {
        int calls, stop_at;
};

static bool cancel_at(void *ud) {
        struct counter *c = ud;
        return ++c->calls >= c->stop_at && c->stop_at > 0;
}

static void test_cancel(void **state) {
        (void) state;
        const struct ent l1[] = { { .path = "a", .type = AE_IFREG, .data = "a" },
                                  { .path = "b", .type = AE_IFREG, .data = "b" },
                                  { .path = "c", .type = AE_IFREG, .data = "c" } };
        char *l = layer("cancel.tar", NULL, l1, 3);
        char *out = out_path("cancel.ext4");
        struct counter c = { .stop_at = 2 }; /* the second poll: after the first entry */
        struct oci_flatten_opts o = { .cancel = cancel_at, .ud = &c };
        assert_refused(&l, 1, &o, -ECANCELED, "cancelled");
        assert_int_equal(c.calls, 2);
        /* count the polls of a whole run, then stop at the last one (the image is made by then) */
        c = (struct counter) { 0 };
        struct op_error err = OP_ERROR_INIT;
        assert_int_equal(flatten(&l, 1, out, &o, NULL, &err), 0);
        unlink(out);
        c = (struct counter) { .stop_at = c.calls };
        assert_refused(&l, 1, &o, -ECANCELED, "cancelled");
        free(l);
        free(out);
}

/* 100,000 entries: a directory of 50,000 files and 50 of 999. */
static void test_many_entries(void **state) {
        (void) state;
        char *path = path_join(dir, "many.tar.gz");
        struct archive *a = layer_begin(path, "gzip");
        char name[64], data[32];
        size_t count = 0;
        put(a, &(struct ent) { .path = "big/", .type = AE_IFDIR });
        count++;
        for (int i = 0; i < 50000; i++, count++) {
                snprintf(name, sizeof(name), "big/file-%06d", i);
                snprintf(data, sizeof(data), "%d", i);
                put(a, &(struct ent) { .path = name, .type = AE_IFREG, .data = data });
        }
        for (int d = 0; d < 50; d++) {
                snprintf(name, sizeof(name), "d%02d/", d);
                put(a, &(struct ent) { .path = name, .type = AE_IFDIR });
                count++;
                for (int i = 0; i < 999; i++, count++) {
                        snprintf(name, sizeof(name), "d%02d/f%d", d, i);
                        put(a, &(struct ent) { .path = name, .type = AE_IFREG, .data = "s" });
                }
        }
        layer_end(a);
        assert_int_equal(count, 100001);

        char *out = out_path("many.ext4");
        struct op_error err = OP_ERROR_INIT;
        struct oci_flatten_stats st;
        double t0 = now();
        if (flatten(&path, 1, out, NULL, &st, &err) < 0)
                fail_msg("%s", op_error_message(&err));
        double t1 = now();
        assert_int_equal(st.entries, count);
        ext2_filsys fs = img_open(out);
        assert_content(fs, "big/file-049999", "49999");
        assert_content(fs, "big/file-000000", "0");
        assert_content(fs, "d49/f998", "s");
        struct ext2_inode_large in;
        img_must(fs, "big", &in);
        assert_int_equal(in.i_links_count, 2);
        img_must(fs, "/", &in);
        assert_int_equal(in.i_links_count, 2 + 51 + 1); /* big, d00..d49, lost+found */
        ext2fs_close_free(&fs);
        assert_fsck_clean(out);
        print_message("# 100,001 entries: flatten %.2f s, e2fsck %.2f s\n", t1 - t0, now() - t1);
        free(path);
        free(out);
}

/* Free blocks and inodes of an image (e2fsck also checks they add up). */
static void img_free(const char *img, uint64_t *blocks, uint64_t *inodes) {
        ext2_filsys fs = img_open(img);
        *blocks = ext2fs_free_blocks_count(fs->super);
        *inodes = fs->super->s_free_inodes_count;
        ext2fs_close_free(&fs);
}

static uint64_t journal_size(ext2_filsys fs) {
        struct ext2_inode_large in;
        assert_int_equal(ext2fs_read_inode_full(fs, fs->super->s_journal_inum, (struct ext2_inode *) &in, sizeof(in)), 0);
        return EXT2_I_SIZE(&in);
}

static ssize_t never_next(void *ud, size_t layer, const void **buf) {
        (void) ud, (void) layer;
        if (buf)
                fail_msg("next called");
        return -EIO;
}

static int saved_mode;
static int early_reset(void **state) { /* also after a failed assert */
        (void) state;
        flatten_mode = saved_mode;
        early_fail_at = 0;
        early_tar_bytes = 0;
        return 0;
}

/* The early flatten (next) against the two passes: what pass 1 wrote and a
 * later layer replaced or whited out (a file with an xattr block, a long
 * symlink, a device, a hard-linked file) is freed, and the image is the
 * same; a follow that fails, an estimate far too big or too small. */
static void test_early(void **state) {
        (void) state;
        saved_mode = flatten_mode;
        char big_x[3000], longt[200];
        memset(big_x, 'x', sizeof(big_x)); /* past the inode's room: an xattr block */
        memset(longt, 't', sizeof(longt) - 1);
        longt[sizeof(longt) - 1] = '\0';
        size_t n = 3 * MIB;
        char *rnd = xmalloc(n);
        fill_random(rnd, n, 7);
        const struct ent l1[] = {
                { .path = "d/", .type = AE_IFDIR, .mode = 0700 },
                { .path = "d/x", .type = AE_IFREG, .data = "old", .xname = "user.big", .xval = big_x,
                  .xlen = sizeof(big_x) },
                { .path = "d/sym", .type = AE_IFLNK, .data = longt },
                { .path = "d/dev", .type = AE_IFCHR, .major = 1, .minor = 5 },
                { .path = "d/data", .type = AE_IFREG, .data = rnd, .len = n },
                { .path = "d/gone", .type = AE_IFREG, .data = rnd + 1, .len = n - 1 },
                { .path = "d/keep", .type = AE_IFREG, .data = "keep" },
                { .path = "d/twice", .type = AE_IFREG, .data = "first" },
                { .path = "d/twice", .type = AE_IFREG, .data = "second" },
                { .path = "x/", .type = AE_IFDIR, .xname = "user.dir", .xval = "v", .xlen = 1 },
        };
        const struct ent l2[] = {
                { .path = "d/", .type = AE_IFDIR, .mode = 0750, .uid = 7 },
                { .path = "d/x", .type = AE_IFREG, .data = "new" },
                { .path = "d/.wh.sym", .type = AE_IFREG },
                { .path = "d/dev", .type = AE_IFDIR },
                { .path = "hl", .type = HARDLINK, .data = "d/data" },
                { .path = "d/.wh.data", .type = AE_IFREG },
                { .path = "d/.wh.gone", .type = AE_IFREG },
        };
        char *layers[] = { layer("e1.tar", NULL, l1, ELEMENTSOF(l1)), layer("e2.tar.gz", "gzip", l2, ELEMENTSOF(l2)) };
        char *two = out_path("two.ext4"), *out = out_path("early.ext4");
        struct op_error err = OP_ERROR_INIT;
        struct oci_flatten_stats st2, st;
        struct ext2_inode_large in;
        uint64_t fb2, fi2, fb, fi;
        char buf[4096];
        flatten_mode = 0;
        assert_int_equal(flatten(layers, 2, two, NULL, &st2, &err), 0);
        flatten_mode = 1;
        unsigned fell = early_fallbacks;
        if (flatten(layers, 2, out, NULL, &st, &err) < 0)
                fail_msg("%s", op_error_message(&err));
        assert_int_equal(early_fallbacks, fell); /* done early, not again */
        assert_int_equal(st.size_bytes, st2.size_bytes);
        assert_int_equal(st.entries, st2.entries);
        ext2_filsys fs = img_open(out);
        assert_content(fs, "d/x", "new");
        assert_absent(fs, "d/sym");
        assert_absent(fs, "d/data");
        assert_content(fs, "d/keep", "keep");
        assert_content(fs, "d/twice", "second");
        img_must(fs, "d/dev", &in);
        assert_int_equal(in.i_mode, LINUX_S_IFDIR | 0755);
        img_must(fs, "d", &in);
        assert_int_equal(in.i_mode, LINUX_S_IFDIR | 0750);
        assert_int_equal(uid_of(&in), 7);
        ext2_ino_t hl = img_must(fs, "hl", &in);
        assert_int_equal(in.i_links_count, 1);
        assert_int_equal(EXT2_I_SIZE(&in), n);
        assert_int_equal(img_read(fs, hl, n - 4096, buf, 4096), 4096);
        assert_memory_equal(buf, rnd + n - 4096, 4096);
        struct ext2_xattr_handle *h;
        void *v;
        size_t vlen;
        assert_int_equal(ext2fs_xattrs_open(fs, img_must(fs, "x", &in), &h), 0);
        assert_int_equal(ext2fs_xattrs_read(h), 0);
        assert_int_equal(ext2fs_xattr_get(h, "user.dir", &v, &vlen), 0);
        assert_memory_equal(v, "v", 1);
        ext2fs_free_mem(&v);
        ext2fs_xattrs_close(&h);
        ext2fs_close_free(&fs);
        assert_fsck_clean(out);
        img_free(two, &fb2, &fi2);
        img_free(out, &fb, &fi);
        assert_int_equal(fb, fb2); /* nothing of the losers left, the same journal */
        assert_int_equal(fi, fi2);
        struct stat a2, ae;
        assert_int_equal(stat(two, &a2), 0);
        assert_int_equal(stat(out, &ae), 0);
        if (ae.st_blocks > a2.st_blocks + 2048) /* d/gone's 3 MiB punched out of the file too */
                fail_msg("the early image takes %lld KiB, the two passes' %lld KiB", (long long) ae.st_blocks / 2,
                         (long long) a2.st_blocks / 2);
        unlink(out);

        /* the third follow fails: done again, the same image */
        early_fail_at = 3;
        assert_int_equal(flatten(layers, 2, out, NULL, &st, &err), 0);
        assert_int_equal(early_fallbacks, fell + 1);
        early_fail_at = 0;
        assert_fsck_clean(out);
        img_free(out, &fb, &fi);
        assert_int_equal(fb, fb2);
        unlink(out);

        /* an estimate far too big: the image shrunk to the rule's size */
        early_tar_bytes = 1024 * MIB;
        assert_int_equal(flatten(layers, 2, out, NULL, &st, &err), 0);
        assert_int_equal(early_fallbacks, fell + 1);
        assert_int_equal(st.size_bytes, st2.size_bytes);
        struct stat sb;
        assert_int_equal(stat(out, &sb), 0);
        assert_int_equal((uint64_t) sb.st_size, st2.size_bytes);
        assert_fsck_clean(out);
        /* the journal made for the final size, not the first (the inodes
         * per group stay the first image's: more of them, never fewer) */
        ext2_filsys fs2 = img_open(two);
        fs = img_open(out);
        assert_int_equal(ext2fs_blocks_count(fs->super) * 4096, st2.size_bytes);
        assert_true(ext2fs_has_feature_journal(fs->super));
        assert_int_equal(journal_size(fs), journal_size(fs2));
        assert_true(fs->super->s_inodes_count >= fs2->super->s_inodes_count);
        ext2fs_close_free(&fs);
        ext2fs_close_free(&fs2);
        unlink(out);

        /* too small, but the data fits (a floor of 64 MiB, 45 MiB of data):
         * grown to the rule's size */
        size_t n45 = 45 * MIB;
        char *r45 = xmalloc(n45);
        fill_random(r45, n45, 45);
        const struct ent l45[] = { { .path = "r", .type = AE_IFREG, .data = r45, .len = n45 } };
        char *big = layer("e45.tar", NULL, l45, 1);
        early_tar_bytes = 1;
        struct oci_flatten_opts o = { .floor_bytes = 64 * MIB };
        assert_int_equal(flatten(&big, 1, out, &o, &st, &err), 0);
        assert_int_equal(early_fallbacks, fell + 1);
        assert_true(st.size_bytes > 64 * MIB);
        assert_int_equal(stat(out, &sb), 0);
        assert_int_equal((uint64_t) sb.st_size, st.size_bytes);
        assert_fsck_clean(out);
        fs = img_open(out);
        assert_int_equal(ext2fs_blocks_count(fs->super) * 4096, st.size_bytes);
        ext2_ino_t ino = img_must(fs, "r", &in);
        assert_int_equal(img_read(fs, ino, n45 - 4096, buf, 4096), 4096);
        assert_memory_equal(buf, r45 + n45 - 4096, 4096);
        ext2fs_close_free(&fs);
        unlink(out);
        early_tar_bytes = 0;
        free(big);
        free(r45);

        /* next without the tars' size, or for a part of the tree: refused,
         * not two passes over a tar that may be cut */
        struct oci_flatten_opts bad = { .next = never_next };
        assert_int_equal(oci_flatten((const char *const *) layers, 2, out, &bad, NULL, &err), -EINVAL);
        assert_false(exists(out));
        op_error_done(&err);
        bad = (struct oci_flatten_opts) { .next = never_next, .tar_bytes = MIB, .subtree = "d" };
        assert_int_equal(oci_flatten((const char *const *) layers, 2, out, &bad, NULL, &err), -EINVAL);
        assert_false(exists(out));

        op_error_done(&err);
        free_layers(layers, 2);
        free(two);
        free(out);
        free(rnd);
}

/* Over 2,000,000 names (here mostly parents no header declared): refused. */
static void test_too_many(void **state) {
        (void) state;
        char *path = path_join(dir, "toomany.tar.gz"), name[64];
        struct archive *a = archive_write_new();
        struct archive_entry *e = archive_entry_new();
        archive_write_set_format_ustar(a);
        archive_write_add_filter_gzip(a);
        archive_write_set_filter_option(a, "gzip", "compression-level", "1");
        assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
        for (int i = 0; i < 200001; i++) { /* ten names each */
                archive_entry_clear(e);
                snprintf(name, sizeof(name), "%06d/b/c/d/e/f/g/h/i/j", i);
                archive_entry_set_pathname(e, name);
                archive_entry_set_filetype(e, AE_IFREG);
                archive_entry_set_perm(e, 0644);
                archive_entry_set_size(e, 0);
                assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        }
        archive_entry_free(e);
        layer_end(a);
        assert_refused(&path, 1, NULL, -E2BIG, "more than 2000000 entries");
        free(path);
}

/* A header whose size no ext4 file can have (17 TiB, base-256 in the tar
 * header): refused in pass 1, before any data is read. */
static void test_too_big(void **state) {
        (void) state;
        char *path = path_join(dir, "toobig.tar");
        struct archive *a = layer_begin(path, NULL);
        struct ent en = { .path = "huge", .type = AE_IFREG, .data = "x" };
        put(a, &en);
        layer_end(a);
        FILE *fp = fopen(path, "r+b");
        unsigned char h[512];
        long at = -1;
        assert_non_null(fp);
        for (long off = 0; at < 0 && fread(h, 1, sizeof(h), fp) == sizeof(h); off += 512)
                if (memcmp(h, "huge", 5) == 0)
                        at = off;
        assert_true(at >= 0);
        uint64_t size = UINT64_C(17) << 40;
        memset(h + 124, 0, 12);
        h[124] = 0x80; /* base-256 */
        for (int i = 0; i < 8; i++)
                h[135 - i] = (unsigned char) (size >> (8 * i));
        memset(h + 148, ' ', 8);
        unsigned sum = 0;
        for (size_t i = 0; i < sizeof(h); i++)
                sum += h[i];
        snprintf((char *) h + 148, 8, "%06o", sum);
        assert_int_equal(fseek(fp, at, SEEK_SET), 0);
        assert_int_equal(fwrite(h, 1, sizeof(h), fp), sizeof(h));
        fclose(fp);
        assert_refused(&path, 1, NULL, -EFBIG, "more than ext4 holds");
        free(path);
}

/* Both groups; "two" or "early" runs one (one TAP plan each, for meson). */
int main(int argc, char **argv) {
        const char *only = argc > 1 ? argv[1] : "";
        if (*only && strcmp(only, "two") != 0 && strcmp(only, "early") != 0) {
                fprintf(stderr, "usage: %s [two|early]\n", argv[0]);
                return 2;
        }
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_whiteouts),   cmocka_unit_test(test_parts),   cmocka_unit_test(test_special_files),
                cmocka_unit_test(test_sparse), cmocka_unit_test(test_too_big),      cmocka_unit_test(test_size_rules),
                cmocka_unit_test(test_hostile),     cmocka_unit_test(test_hostile_layers),
                cmocka_unit_test(test_cancel),      cmocka_unit_test(test_many_entries),
                cmocka_unit_test(test_too_many),    cmocka_unit_test_teardown(test_early, early_reset),
        };
        int failed = 0;
        if (strcmp(only, "early") != 0)
                failed += cmocka_run_group_tests_name("two passes", tests, setup, teardown);
        if (strcmp(only, "two") == 0)
                return failed;
        flatten_mode = 1; /* all of them again, as a pull with streams runs */
        failed += cmocka_run_group_tests_name("early (next)", tests, setup, teardown);
        print_message("# early: %u runs, %u fell back to two passes\n", early_runs, early_fallbacks);
        return failed;
}
