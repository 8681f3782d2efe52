/* SPDX-License-Identifier: MIT */
/* .deb and bundle readers against crafted archives (written with libarchive). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/artifacts.h"
#include "artifacts/bundle.h"
#include "artifacts/bzimage.h"
#include "artifacts/deb.h"
#include "artifacts/initramfs.h"
#include "fsutil.h"
#include "sha256.h"
#include "strbuf.h"

static char dir[64];

struct ent {
        const char *path;
        unsigned type; /* AE_IFREG, AE_IFLNK, AE_IFCHR, AE_IFDIR */
        const char *data_or_target;
};

static void write_tar(struct archive *a, const struct ent *e, size_t n) {
        for (size_t i = 0; i < n; i++) {
                struct archive_entry *ae = archive_entry_new();
                archive_entry_set_pathname(ae, e[i].path);
                archive_entry_set_filetype(ae, e[i].type);
                archive_entry_set_perm(ae, 0644);
                if (e[i].type == AE_IFLNK)
                        archive_entry_set_symlink(ae, e[i].data_or_target);
                size_t len = e[i].type == AE_IFREG ? strlen(e[i].data_or_target) : 0;
                archive_entry_set_size(ae, (la_int64_t) len);
                assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
                if (len)
                        archive_write_data(a, e[i].data_or_target, len);
                archive_entry_free(ae);
        }
}

/* A .deb: ar with debian-binary, control.tar.xz and data.tar.xz. */
static char *make_deb(const char *name, const struct ent *e, size_t n) {
        char *tarpath = xasprintf("%s/%s.data.tar.xz", dir, name), *deb = xasprintf("%s/%s.deb", dir, name);
        struct archive *t = archive_write_new();
        archive_write_set_format_pax_restricted(t);
        archive_write_add_filter_xz(t);
        assert_int_equal(archive_write_open_filename(t, tarpath), ARCHIVE_OK);
        write_tar(t, e, n);
        archive_write_free(t);

        char *data = NULL;
        size_t len;
        assert_int_equal(read_file(tarpath, 1 << 24, &data, &len), 0);
        struct archive *ar = archive_write_new();
        archive_write_set_format_ar_svr4(ar);
        assert_int_equal(archive_write_open_filename(ar, deb), ARCHIVE_OK);
        const char *names[] = { "debian-binary", "data.tar.xz" };
        const char *bufs[] = { "2.0\n", data };
        size_t lens[] = { 4, len };
        for (int i = 0; i < 2; i++) {
                struct archive_entry *ae = archive_entry_new();
                archive_entry_set_pathname(ae, names[i]);
                archive_entry_set_filetype(ae, AE_IFREG);
                archive_entry_set_perm(ae, 0644);
                archive_entry_set_size(ae, (la_int64_t) lens[i]);
                archive_write_header(ar, ae);
                archive_write_data(ar, bufs[i], lens[i]);
                archive_entry_free(ae);
        }
        archive_write_free(ar);
        free(data);
        unlink(tarpath);
        free(tarpath);
        return deb;
}

static char *want_boot(const char *p, void *ud) {
        (void) ud;
        if (strncmp(p, "boot/", 5) == 0)
                return xstrdup(p + 5);
        return NULL;
}

static int setup(void **state) {
        (void) state;
        snprintf(dir, sizeof(dir), "/tmp/banger-extract-XXXXXX");
        return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
        (void) state;
        rm_rf(dir);
        return 0;
}

static int extract(const char *name, const struct ent *e, size_t n, struct op_error *ret_err, int *written) {
        char *deb = make_deb(name, e, n);
        char *out = xasprintf("%s/out-%s", dir, name);
        mkdir(out, 0755);
        int r = deb_extract(deb, out, want_boot, NULL, written, ret_err);
        free(deb);
        free(out);
        return r;
}

static void test_deb_ok(void **state) {
        const struct ent e[] = { { "./", AE_IFDIR, "" },
                                 { "./boot/", AE_IFDIR, "" },
                                 { "./boot/vmlinuz-1", AE_IFREG, "kernel" },
                                 { "./usr/share/doc/x", AE_IFREG, "doc" },
                                 { "./lib/link", AE_IFLNK, "../usr/share/doc/x" } };
        struct op_error err = OP_ERROR_INIT;
        int n = 0;
        (void) state;
        assert_int_equal(extract("ok", e, 5, &err, &n), 0);
        assert_int_equal(n, 1);
        char *p = xasprintf("%s/out-ok/vmlinuz-1", dir), *data = NULL;
        size_t len;
        assert_int_equal(read_file(p, 100, &data, &len), 0);
        assert_string_equal(data, "kernel");
        free(data);
        free(p);
        p = xasprintf("%s/out-ok/x", dir);
        assert_int_equal(access(p, F_OK), -1); /* not asked for, not written */
        free(p);
}

static void test_deb_hostile(void **state) {
        const struct { const char *name; struct ent e; const char *needle; } cases[] = {
                { "dotdot", { "./boot/../../etc/passwd", AE_IFREG, "x" }, "unsafe entry path" },
                { "abs", { "/etc/shadow", AE_IFREG, "x" }, "unsafe entry path" },
                { "escape", { "./lib/evil", AE_IFLNK, "../../../../etc/passwd" }, "escapes" },
                { "abslink", { "./lib/evil", AE_IFLNK, "/etc/passwd" }, "escapes" },
                { "dev", { "./dev/sda", AE_IFCHR, "" }, "device" },
                { "wantedlink", { "./boot/vmlinuz-2", AE_IFLNK, "vmlinuz-1" }, "not a regular file" },
        };
        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const struct ent e[] = { { "./boot/vmlinuz-1", AE_IFREG, "k" }, cases[i].e };
                struct op_error err = OP_ERROR_INIT;
                int n = 0;
                assert_true(extract(cases[i].name, e, 2, &err, &n) < 0);
                if (!strstr(op_error_message(&err), cases[i].needle))
                        fail_msg("%s: error '%s' lacks '%s'", cases[i].name, op_error_message(&err), cases[i].needle);
                op_error_done(&err);
        }
        /* not a .deb at all */
        char *junk = xasprintf("%s/junk.deb", dir);
        struct op_error err = OP_ERROR_INIT;
        int n;
        assert_int_equal(write_file_atomic(junk, "not an archive", 14, 0644), 0);
        assert_true(deb_extract(junk, dir, want_boot, NULL, &n, &err) < 0);
        op_error_done(&err);
        free(junk);
}

static char *make_bundle(const char *name, const struct ent *e, size_t n) {
        char *p = xasprintf("%s/%s.tar.zst", dir, name);
        struct archive *t = archive_write_new();
        archive_write_set_format_pax_restricted(t);
        archive_write_add_filter_zstd(t);
        assert_int_equal(archive_write_open_filename(t, p), ARCHIVE_OK);
        write_tar(t, e, n);
        archive_write_free(t);
        return p;
}

static int read_bundle(const char *name, const struct ent *e, size_t n, const char *sha, struct op_error *err) {
        char *b = make_bundle(name, e, n), *out = xasprintf("%s/b-%s", dir, name);
        struct image_manifest m = { 0 };
        mkdir(out, 0755);
        int r = bundle_read(b, out, sha, NULL, &m, err);
        image_manifest_done(&m);
        free(b);
        free(out);
        return r;
}

#define MANIFEST "{\"format\":1,\"name\":\"img\",\"init_mode\":\"fast\"}"

static void test_bundles(void **state) {
        struct op_error err = OP_ERROR_INIT;
        (void) state;
        const struct ent ok[] = { { "manifest.json", AE_IFREG, MANIFEST }, { "rootfs.ext4", AE_IFREG, "rootfs" } };
        assert_int_equal(read_bundle("ok", ok, 2, NULL, &err), 0);
        char *b = xasprintf("%s/ok.tar.zst", dir);
        char hex[65];
        assert_int_equal(sha256_file_hex(b, hex), 0);
        free(b);
        assert_int_equal(read_bundle("ok2", ok, 2, hex, &err), 0); /* same bytes: same hash */
        assert_true(read_bundle("ok3", ok, 2, "0000000000000000000000000000000000000000000000000000000000000000", &err) < 0);
        assert_non_null(strstr(op_error_message(&err), "SHA256 mismatch"));
        op_error_done(&err);

        const struct { const char *name; struct ent e[3]; size_t n; const char *needle; } cases[] = {
                { "extra", { { "manifest.json", AE_IFREG, MANIFEST }, { "rootfs.ext4", AE_IFREG, "r" }, { "evil.sh", AE_IFREG, "x" } }, 3, "unexpected entry" },
                { "dotdot", { { "manifest.json", AE_IFREG, MANIFEST }, { "../rootfs.ext4", AE_IFREG, "r" } }, 2, "unsafe entry" },
                { "abs", { { "manifest.json", AE_IFREG, MANIFEST }, { "/rootfs.ext4", AE_IFREG, "r" } }, 2, "unsafe entry" },
                { "link", { { "manifest.json", AE_IFREG, MANIFEST }, { "rootfs.ext4", AE_IFLNK, "/etc/shadow" } }, 2, "not a regular file" },
                { "dup", { { "manifest.json", AE_IFREG, MANIFEST }, { "rootfs.ext4", AE_IFREG, "r" }, { "rootfs.ext4", AE_IFREG, "r" } }, 3, "twice" },
                { "nomanifest", { { "rootfs.ext4", AE_IFREG, "r" } }, 1, "must contain" },
                { "badmanifest", { { "manifest.json", AE_IFREG, "{\"format\":1}" }, { "rootfs.ext4", AE_IFREG, "r" } }, 2, "manifest.json" },
                { "hashmismatch", { { "manifest.json", AE_IFREG, "{\"format\":1,\"name\":\"i\",\"init_mode\":\"fast\",\"rootfs_sha256\":\"0000000000000000000000000000000000000000000000000000000000000000\"}" }, { "rootfs.ext4", AE_IFREG, "r" } }, 2, "does not match" },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                if (read_bundle(cases[i].name, cases[i].e, cases[i].n, NULL, &err) == 0)
                        fail_msg("%s: accepted", cases[i].name);
                if (!strstr(op_error_message(&err), cases[i].needle))
                        fail_msg("%s: error '%s' lacks '%s'", cases[i].name, op_error_message(&err), cases[i].needle);
                op_error_done(&err);
        }
}

/* The cpio writer output, read back with libarchive. */
static void test_cpio_roundtrip(void **state) {
        char *p = xasprintf("%s/x.cpio", dir);
        struct op_error err = OP_ERROR_INIT;
        const struct cpio_entry e[] = {
                { .path = "init", .data = "#!init", .len = 6, .mode = 0755 },
                { .path = "lib/modules/a.ko", .data = "AAAA", .len = 4, .mode = 0644 },
                { .path = "banger/root/etc/hostname", .data = "vm1\n", .len = 4, .mode = 0600 },
        };
        (void) state;
        assert_int_equal(cpio_write(p, e, 3, true, &err), 0);
        struct archive *a = archive_read_new();
        struct archive_entry *ae;
        archive_read_support_format_cpio(a);
        assert_int_equal(archive_read_open_filename(a, p, 4096), ARCHIVE_OK);
        const char *expect[] = { "dev", "dev/console", "init", "lib", "lib/modules", "lib/modules/a.ko", "banger",
                                 "banger/root", "banger/root/etc", "banger/root/etc/hostname" };
        size_t i = 0;
        while (archive_read_next_header(a, &ae) == ARCHIVE_OK) {
                assert_true(i < 10);
                assert_string_equal(archive_entry_pathname(ae), expect[i]);
                if (strcmp(expect[i], "dev/console") == 0)
                        assert_int_equal(archive_entry_filetype(ae), AE_IFCHR);
                if (strcmp(expect[i], "banger/root/etc/hostname") == 0) {
                        char buf[8] = { 0 };
                        assert_int_equal(archive_entry_perm(ae), 0600);
                        assert_int_equal(archive_read_data(a, buf, sizeof(buf)), 4);
                        assert_string_equal(buf, "vm1\n");
                }
                assert_int_equal(archive_entry_uid(ae), 0);
                i++;
        }
        assert_int_equal(i, 10);
        archive_read_free(a);
        free(p);
}

static void test_bzimage_rejects(void **state) {
        unsigned char img[0x400] = { 0 };
        unsigned char *out = NULL;
        size_t olen;
        bool pvh;
        struct op_error err = OP_ERROR_INIT;
        (void) state;
        assert_int_equal(bzimage_extract_vmlinux(img, sizeof(img), &out, &olen, &pvh, &err), -EBADMSG);
        op_error_done(&err);
        memcpy(img + 0x202, "HdrS", 4);
        img[0x1f1] = 200; /* setup beyond the file */
        assert_int_equal(bzimage_extract_vmlinux(img, sizeof(img), &out, &olen, &pvh, &err), -EBADMSG);
        op_error_done(&err);
        assert_false(elf_has_pvh_note(img, sizeof(img)));
}

/* ---- the cache of finished kernel pulls (kernel_cache.c) ---- */

static void put_text(const char *d, const char *rel, const char *text) {
        char *p = path_join(d, rel);
        char *slash = strrchr(p, '/');
        *slash = '\0';
        assert_int_equal(mkdir_p(p, 0755), 0);
        *slash = '/';
        assert_int_equal(write_file_atomic(p, text, strlen(text), 0644), 0);
        free(p);
}

/* A committed kernel dir: two files and the manifest naming them. */
static char *kernel_dir_with(const char *name, const char *files_json) {
        char *kdir = xasprintf("%s/%s", dir, name);
        put_text(kdir, "vmlinuz", "the kernel");
        put_text(kdir, "modules/virtio_blk.ko", "a module");
        put_text(kdir, "modules.ext4", "a disk");
        put_text(kdir, "modules.order", "virtio_blk.ko");
        char *m = xasprintf("{\"kernel_version\": \"6.1.0-1-cloud-amd64\", \"modules_release\": "
                            "\"6.1.0-1-cloud-amd64\", \"pvh\": true, \"modules_order\": [\"virtio_blk.ko\"], "
                            "\"files\": %s}", files_json);
        put_text(kdir, "manifest.json", m);
        free(m);
        return kdir;
}

static bool same_text(const char *path, const char *want) {
        char *text = NULL;
        size_t len = 0;
        bool same = read_file(path, 1024, &text, &len) == 0 && strcmp(text, want) == 0;
        free(text);
        return same;
}

static void test_kernel_cache(void **state) {
        (void) state;
        char h1[65], h2[65], h3[65], h4[65];
        sha256_buf_hex("the kernel", 10, h1);
        sha256_buf_hex("a module", 8, h2);
        sha256_buf_hex("a disk", 6, h3);
        sha256_buf_hex("virtio_blk.ko", 13, h4);
        char *files = xasprintf("{\"vmlinuz\": \"%s\", \"modules/virtio_blk.ko\": \"%s\", \"modules.ext4\": \"%s\", "
                                "\"modules.order\": \"%s\"}", h1, h2, h3, h4);
        char *kdir = kernel_dir_with("k1", files);
        struct artifacts a = { .kernel_cache_dir = xasprintf("%s/kernel-pulls", dir) };
        json_t *e1 = json_pack("{s:s}", "meta_package", "linux-image-cloud-amd64");
        char *key = kernel_cache_key(e1, "aa"), *key2 = kernel_cache_key(e1, "bb");
        assert_string_not_equal(key, key2);

        /* a miss, then put and get: the files back, each checked */
        char *staging = xasprintf("%s/staging", dir);
        json_t *m = NULL;
        assert_int_equal(mkdir_p(staging, 0755), 0);
        assert_int_equal(kernel_cache_get(&a, "deb", key, staging, &m), 0);
        kernel_cache_put(&a, "deb", key, kdir);
        assert_int_equal(kernel_cache_get(&a, "deb", key, staging, &m), 1);
        char *got = path_join(staging, "modules/virtio_blk.ko");
        assert_true(same_text(got, "a module"));
        assert_true(json_is_true(json_object_get(m, "pvh")));
        json_decref(m);

        /* a damaged entry is a miss, and is gone */
        char *entry = xasprintf("%s/deb-%s", a.kernel_cache_dir, key), *cached = path_join(entry, "vmlinuz");
        rm_rf(staging);
        assert_int_equal(mkdir_p(staging, 0755), 0);
        assert_int_equal(unlink(cached), 0); /* (a hard link to the kernel's: replaced, not written through) */
        put_text(entry, "vmlinuz", "the kernel, changed");
        assert_int_equal(kernel_cache_get(&a, "deb", key, staging, &m), 0);
        assert_int_equal(access(entry, F_OK), -1);

        /* a manifest naming a file outside the entry: a miss, nothing outside staging */
        kernel_cache_put(&a, "deb", key, kdir);
        char *evil = xasprintf("{\"../escaped\": \"%s\"}", h1);
        char *kbad = kernel_dir_with("k2", evil);
        put_text(entry, "manifest.json", "");
        char *mtext = NULL;
        size_t mlen;
        char *kbad_m = path_join(kbad, "manifest.json"), *entry_m = path_join(entry, "manifest.json");
        assert_int_equal(read_file(kbad_m, 4096, &mtext, &mlen), 0);
        assert_int_equal(write_file_atomic(entry_m, mtext, mlen, 0644), 0);
        assert_int_equal(kernel_cache_get(&a, "deb", key, staging, &m), 0);
        char *escaped = xasprintf("%s/escaped", dir);
        assert_int_equal(access(escaped, F_OK), -1);
        assert_int_equal(access(entry, F_OK), -1);

        /* one entry per name: a newer package's pull replaces the older one */
        kernel_cache_put(&a, "deb", key, kdir);
        kernel_cache_put(&a, "deb", key2, kdir);
        char *entry2 = xasprintf("%s/deb-%s", a.kernel_cache_dir, key2);
        assert_int_equal(access(entry, F_OK), -1);
        assert_int_equal(access(entry2, F_OK), 0);

        json_decref(e1);
        free(files), free(kdir), free(a.kernel_cache_dir), free(key), free(key2), free(staging), free(got);
        free(entry), free(cached), free(evil), free(kbad), free(mtext), free(kbad_m), free(entry_m), free(escaped);
        free(entry2);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_deb_ok),         cmocka_unit_test(test_deb_hostile),
                cmocka_unit_test(test_bundles),        cmocka_unit_test(test_cpio_roundtrip),
                cmocka_unit_test(test_bzimage_rejects), cmocka_unit_test(test_kernel_cache),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
