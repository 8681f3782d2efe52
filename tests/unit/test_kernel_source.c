/* SPDX-License-Identifier: MIT */
/* The kernel build's source steps (kernel_source.c) against crafted
 * archives: the tree unpacked below its top directory, hostile entries
 * refused, the changelog's date read. */
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

#include "artifacts/kernel_build.h"
#include "fsutil.h"
#include "strbuf.h"

static char dir[64];

struct ent {
        const char *path;
        unsigned type; /* AE_IFREG, AE_IFLNK, AE_IFDIR, AE_IFCHR; hard link: AE_IFREG with link */
        const char *data;
        unsigned perm;
        const char *hardlink;
};

static char *make_tar(const char *name, const struct ent *e, size_t n) {
        char *p = xasprintf("%s/%s.tar.xz", dir, name);
        struct archive *a = archive_write_new();
        archive_write_set_format_pax_restricted(a);
        archive_write_add_filter_xz(a);
        assert_int_equal(archive_write_open_filename(a, p), ARCHIVE_OK);
        for (size_t i = 0; i < n; i++) {
                struct archive_entry *ae = archive_entry_new();
                archive_entry_set_pathname(ae, e[i].path);
                archive_entry_set_filetype(ae, e[i].type);
                archive_entry_set_perm(ae, e[i].perm ? e[i].perm : 0644);
                if (e[i].type == AE_IFLNK)
                        archive_entry_set_symlink(ae, e[i].data);
                if (e[i].hardlink)
                        archive_entry_set_hardlink(ae, e[i].hardlink);
                size_t len = e[i].type == AE_IFREG && !e[i].hardlink ? strlen(e[i].data) : 0;
                archive_entry_set_size(ae, (la_int64_t) len);
                assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
                if (len)
                        archive_write_data(a, e[i].data, len);
                archive_entry_free(ae);
        }
        archive_write_free(a);
        return p;
}

static int unpack(const char *name, const struct ent *e, size_t n, struct op_error *err) {
        _cleanup_free_ char *tar = make_tar(name, e, n), *dest = xasprintf("%s/%s", dir, name);
        return kernel_source_unpack(tar, "linux-source-6.1", dest, NULL, err);
}

static char *content(const char *rel) {
        _cleanup_free_ char *p = path_join(dir, rel);
        char *data = NULL;
        size_t len;
        return read_file(p, 4096, &data, &len) == 0 ? data : NULL;
}

static int setup(void **state) {
        (void) state;
        snprintf(dir, sizeof(dir), "/tmp/banger-ksrc-XXXXXX");
        return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
        (void) state;
        rm_rf(dir);
        return 0;
}

static void test_unpack_tree(void **state) {
        const struct ent e[] = {
                { "linux-source-6.1/", AE_IFDIR, "", 0755, NULL },
                { "linux-source-6.1/Makefile", AE_IFREG, "VERSION = 6\n", 0, NULL },
                { "linux-source-6.1/scripts/", AE_IFDIR, "", 0755, NULL },
                { "linux-source-6.1/scripts/config", AE_IFREG, "#!/bin/sh\n", 0755, NULL },
                { "linux-source-6.1/scripts/dtc/include-prefixes/arm", AE_IFLNK, "../../../arch/arm/boot/dts", 0, NULL },
                { "./linux-source-6.1/arch/x86/Kconfig", AE_IFREG, "config X86\n", 0, NULL },
        };
        struct op_error err = OP_ERROR_INIT;
        struct stat st;
        char buf[64];
        (void) state;
        assert_int_equal(unpack("ok", e, ELEMENTSOF(e), &err), 0);
        _cleanup_free_ char *mk = content("ok/Makefile"), *kc = content("ok/arch/x86/Kconfig");
        assert_non_null(mk);
        assert_string_equal(mk, "VERSION = 6\n"); /* the top directory is stripped */
        assert_non_null(kc);
        _cleanup_free_ char *script = xasprintf("%s/ok/scripts/config", dir);
        assert_int_equal(stat(script, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0755); /* execute bits kept */
        _cleanup_free_ char *link = xasprintf("%s/ok/scripts/dtc/include-prefixes/arm", dir);
        ssize_t k = readlink(link, buf, sizeof(buf) - 1);
        assert_true(k > 0);
        buf[k] = '\0';
        assert_string_equal(buf, "../../../arch/arm/boot/dts");
}

static void test_unpack_hostile(void **state) {
        const struct {
                const char *name;
                struct ent e;
                const char *needle;
        } cases[] = {
                { "other-top", { "linux-source-6.2/Makefile", AE_IFREG, "x", 0, NULL }, "not below" },
                { "prefix-top", { "linux-source-6.1x/Makefile", AE_IFREG, "x", 0, NULL }, "not below" },
                { "dotdot", { "linux-source-6.1/../etc/passwd", AE_IFREG, "x", 0, NULL }, "unsafe entry path" },
                { "abs", { "/etc/shadow", AE_IFREG, "x", 0, NULL }, "unsafe entry path" },
                { "escape", { "linux-source-6.1/evil", AE_IFLNK, "../../etc", 0, NULL }, "leaves the tree" },
                { "abslink", { "linux-source-6.1/evil", AE_IFLNK, "/etc", 0, NULL }, "leaves the tree" },
                { "dev", { "linux-source-6.1/sda", AE_IFCHR, "", 0, NULL }, "device" },
                { "hardlink", { "linux-source-6.1/h", AE_IFREG, "", 0, "linux-source-6.1/Makefile" }, "hard link" },
                { "dup", { "linux-source-6.1/Makefile", AE_IFREG, "again", 0, NULL }, "File exists" },
        };
        (void) state;
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const struct ent e[] = { { "linux-source-6.1/Makefile", AE_IFREG, "k", 0, NULL }, cases[i].e };
                struct op_error err = OP_ERROR_INIT;
                assert_true(unpack(cases[i].name, e, 2, &err) < 0);
                if (!strstr(op_error_message(&err), cases[i].needle))
                        fail_msg("%s: error '%s' lacks '%s'", cases[i].name, op_error_message(&err), cases[i].needle);
                op_error_done(&err);
        }
}

/* A symlink that is inside the tree by its text but not once an earlier
 * symlinked directory is followed: nothing is written through it. */
static void test_unpack_beneath(void **state) {
        const struct ent e[] = {
                { "linux-source-6.1/x", AE_IFLNK, ".", 0, NULL },
                { "linux-source-6.1/x/q/", AE_IFDIR, "", 0755, NULL },
                { "linux-source-6.1/x/q/y", AE_IFLNK, "../..", 0, NULL }, /* from x/q: the root; from q: its parent */
                { "linux-source-6.1/x/q/y/planted", AE_IFREG, "owned", 0, NULL },
        };
        struct op_error err = OP_ERROR_INIT;
        (void) state;
        assert_true(unpack("beneath", e, ELEMENTSOF(e), &err) < 0);
        assert_non_null(strstr(op_error_message(&err), "planted"));
        op_error_done(&err);
        _cleanup_free_ char *planted = content("planted");
        assert_null(planted);
}

static void test_changelog_date(void **state) {
        const char *cl = "linux (6.1.170-3) bookworm; urgency=medium\n\n  * x\n\n"
                         " -- Salvatore Bonaccorso <carnil@debian.org>  Thu, 02 Jul 2026 15:50:42 +0200\n";
        _cleanup_free_ char *gz = xasprintf("%s/changelog.Debian.gz", dir);
        struct archive *a = archive_write_new();
        archive_write_set_format_raw(a);
        archive_write_add_filter_gzip(a);
        assert_int_equal(archive_write_open_filename(a, gz), ARCHIVE_OK);
        struct archive_entry *ae = archive_entry_new();
        archive_entry_set_filetype(ae, AE_IFREG);
        archive_entry_set_size(ae, (la_int64_t) strlen(cl));
        assert_int_equal(archive_write_header(a, ae), ARCHIVE_OK);
        archive_write_data(a, cl, strlen(cl));
        archive_entry_free(ae);
        archive_write_free(a);
        struct op_error err = OP_ERROR_INIT;
        int64_t t = 0;
        (void) state;
        assert_int_equal(kernel_source_date(gz, &t, &err), 0);
        assert_int_equal(t, 1783000242); /* 2026-07-02T13:50:42Z */
        _cleanup_free_ char *missing = xasprintf("%s/nope.gz", dir);
        assert_true(kernel_source_date(missing, &t, &err) < 0);
        op_error_done(&err);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_unpack_tree),
                cmocka_unit_test(test_unpack_hostile),
                cmocka_unit_test(test_unpack_beneath),
                cmocka_unit_test(test_changelog_date),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
