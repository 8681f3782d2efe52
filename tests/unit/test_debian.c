/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "archive_path.h"
#include "debian.h"
#include "image_manifest.h"
#include "modorder.h"

#define H1 "9e0b5aabb2465b3d2e7a7fe27f9913846277833f7a2826e7767acccff5b588c5"
#define H2 "6777ea16514725f9427f48c240d92e0a6b8496138e37a1491d8597e66774e309"

static void test_release(void **state) {
        const char *text = "Origin: Debian\nSuite: oldstable\nCodename: bookworm\nDate: Sat, 11 Jul 2026 10:16:37 UTC\n"
                           "MD5Sum:\n f230d61720e789abf5df55d6026230c6 50060337 main/binary-amd64/Packages\n"
                           "SHA256:\n " H1 "  8790396 main/binary-amd64/Packages.xz\n " H2 " 12084798 main/binary-amd64/Packages.gz\n";
        struct release r;
        char *err = NULL;
        (void) state;
        assert_int_equal(debian_release_parse(text, strlen(text), &r, &err), 0);
        assert_string_equal(r.codename, "bookworm");
        assert_string_equal(r.date, "Sat, 11 Jul 2026 10:16:37 UTC");
        assert_int_equal(r.n_files, 2); /* MD5Sum lines are not SHA256 entries */
        const struct release_file *f = debian_release_find(&r, "main/binary-amd64/Packages.xz");
        assert_non_null(f);
        assert_string_equal(f->sha256, H1);
        assert_int_equal(f->size, 8790396);
        assert_null(debian_release_find(&r, "main/binary-amd64/Packages"));
        debian_release_done(&r);

        const char *bad[] = { "Suite: x\n", "SHA256:\n nothex 12 a\n", "SHA256:\n " H1 " 12\n",
                              "SHA256:\n " H1 " -1 a\n", "SHA256:\n " H1 " 1 a b\n" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(debian_release_parse(bad[i], strlen(bad[i]), &r, &err), -EINVAL);
                free(err);
                err = NULL;
        }
}

static const char packages[] =
        "Package: linux-image-cloud-amd64\nSource: linux-signed-amd64 (6.1.176+1)\nVersion: 6.1.176-1\n"
        "Depends: linux-image-6.1.0-50-cloud-amd64 (= 6.1.176-1)\n"
        "Filename: pool/main/l/linux-signed-amd64/linux-image-cloud-amd64_6.1.176-1_amd64.deb\nSize: 1500\n"
        "SHA256: " H1 "\n\n"
        "Package: linux-image-6.1.0-50-cloud-amd64\nVersion: 6.1.176-1\n"
        "Depends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool\n"
        "Filename: pool/main/l/linux-signed-amd64/linux-image-6.1.0-50-cloud-amd64_6.1.176-1_amd64.deb\n"
        "Size: 26484304\nSHA256: " H2 "\n\n"
        "Package: evil\nVersion: 1\nFilename: ../../etc/passwd\nSize: 1\nSHA256: " H2 "\n\n"
        "Package: nohash\nVersion: 1\nFilename: pool/x.deb\nSize: 1\n";

static void test_packages(void **state) {
        struct deb_package p;
        char *err = NULL;
        (void) state;
        assert_int_equal(debian_packages_find(packages, strlen(packages), "linux-image-cloud-amd64", &p, &err), 0);
        char *dep = debian_depends_first_with_prefix(p.depends, "linux-image-");
        assert_string_equal(dep, "linux-image-6.1.0-50-cloud-amd64");
        deb_package_done(&p);
        assert_int_equal(debian_packages_find(packages, strlen(packages), dep, &p, &err), 0);
        assert_int_equal(p.size, 26484304);
        assert_string_equal(p.sha256, H2);
        assert_string_equal(p.version, "6.1.176-1");
        assert_null(debian_depends_first_with_prefix(p.depends, "linux-image-"));
        deb_package_done(&p);
        free(dep);
        assert_int_equal(debian_packages_find(packages, strlen(packages), "linux-image", &p, &err), -ENOENT);
        assert_int_equal(debian_packages_find(packages, strlen(packages), "evil", &p, &err), -EINVAL);
        assert_non_null(strstr(err, "suspicious"));
        free(err);
        err = NULL;
        assert_int_equal(debian_packages_find(packages, strlen(packages), "nohash", &p, &err), -EINVAL);
        free(err);
        char *alt = debian_depends_first_with_prefix("a | linux-image-x, b", "linux-image-");
        assert_string_equal(alt, "linux-image-x");
        free(alt);
}

static void test_archive_paths(void **state) {
        char *n = NULL;
        (void) state;
        assert_int_equal(archive_path_normalize("./boot/vmlinuz-6.1", &n), 0);
        assert_string_equal(n, "boot/vmlinuz-6.1");
        free(n);
        assert_int_equal(archive_path_normalize("./", &n), 0);
        assert_string_equal(n, "");
        free(n);
        assert_int_equal(archive_path_normalize("lib/modules/", &n), 0);
        assert_string_equal(n, "lib/modules");
        free(n);
        const char *bad[] = { "/etc/passwd", "../x", "a/../../x", "a/..", "a//b", "a/./b", "a\nb" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_true(archive_path_normalize(bad[i], &n) < 0);
        assert_true(archive_symlink_is_safe("a/b/link", "../c"));
        assert_true(archive_symlink_is_safe("a/b/link", "../../c"));
        assert_false(archive_symlink_is_safe("a/b/link", "../../../c"));
        assert_false(archive_symlink_is_safe("link", "/etc/passwd"));
        assert_false(archive_symlink_is_safe("link", "x/../../y"));
        assert_false(archive_symlink_is_safe("link", ""));
}

static void test_modorder(void **state) {
        const struct modnode nodes[] = {
                { "virtio_net", "virtio_ring,virtio,net_failover" },
                { "net_failover", "failover" },
                { "failover", "" },
                { "virtio", "" },
                { "virtio_ring", "" },
                { "virtio-rng", "virtio,virtio_ring" },
                { "loop_a", "loop_b" },
                { "loop_b", "loop_a" },
                { "broken", "missing_mod" },
        };
        const char *want[] = { "virtio_net", "virtio_rng" };
        size_t *order = NULL, n = 0;
        char *err = NULL;
        (void) state;
        assert_int_equal(modorder_resolve(want, 2, nodes, 9, &order, &n, &err), 0);
        assert_int_equal(n, 6);
        /* every module after its deps, each once */
        size_t pos[9];
        for (size_t i = 0; i < 9; i++)
                pos[i] = 99;
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(pos[order[i]], 99);
                pos[order[i]] = i;
        }
        assert_true(pos[2] < pos[1] && pos[1] < pos[0] && pos[3] < pos[0] && pos[4] < pos[0] && pos[3] < pos[5]);
        free(order);

        const char *cyc[] = { "loop_a" };
        assert_int_equal(modorder_resolve(cyc, 1, nodes, 9, &order, &n, &err), -ELOOP);
        free(err);
        const char *miss[] = { "broken" };
        assert_int_equal(modorder_resolve(miss, 1, nodes, 9, &order, &n, &err), -ENOENT);
        assert_non_null(strstr(err, "missing_mod"));
        free(err);
        const char *unk[] = { "nope" };
        assert_int_equal(modorder_resolve(unk, 1, nodes, 9, &order, &n, &err), -ENOENT);
        free(err);
}

static void test_image_manifest(void **state) {
        struct image_manifest m;
        char *err = NULL;
        (void) state;
        const char *ok = "{\"format\":1,\"name\":\"my-img\",\"init_mode\":\"fast\",\"kernel_ref\":\"debian-cloud-6.1\","
                         "\"rootfs_sha256\":\"" H1 "\",\"rootfs_size_bytes\":42,\"extra\":{\"x\":1}}";
        assert_int_equal(image_manifest_parse(ok, strlen(ok), &m, &err), 0);
        assert_string_equal(m.name, "my-img");
        assert_string_equal(m.kernel_ref, "debian-cloud-6.1");
        assert_string_equal(m.rootfs_sha256, H1);
        assert_int_equal(m.rootfs_size_bytes, 42);
        image_manifest_done(&m);
        const char *bad[] = {
                "[]",
                "{\"format\":2,\"name\":\"a\",\"init_mode\":\"fast\"}",
                "{\"format\":1,\"name\":\"Bad_Name\",\"init_mode\":\"fast\"}",
                "{\"format\":1,\"name\":\"a\",\"init_mode\":\"openrc\"}",
                "{\"format\":1,\"name\":\"a\",\"init_mode\":\"fast\",\"kernel_ref\":\"../k\"}",
                "{\"format\":1,\"name\":\"a\",\"init_mode\":\"fast\",\"rootfs_sha256\":\"abc\"}",
                "{\"format\":1,\"name\":\"a\",\"init_mode\":\"fast\",\"rootfs_size_bytes\":-1}",
                "{\"format\":1,\"name\":\"a\",\"name\":\"b\",\"init_mode\":\"fast\"}",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                if (image_manifest_parse(bad[i], strlen(bad[i]), &m, &err) == 0)
                        fail_msg("accepted: %s", bad[i]);
                free(err);
                err = NULL;
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_release),       cmocka_unit_test(test_packages),
                cmocka_unit_test(test_archive_paths), cmocka_unit_test(test_modorder),
                cmocka_unit_test(test_image_manifest),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
