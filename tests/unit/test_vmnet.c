/* SPDX-License-Identifier: MIT */
/* VM names (the reference's exact messages), ids, and guest addresses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipnet.h"
#include "vmname.h"

static void expect_name_error(const char *name, const char *msg) {
        char *err = NULL;
        assert_int_equal(vm_name_validate(name, &err), -EINVAL);
        assert_non_null(err);
        assert_string_equal(err, msg);
        free(err);
}

static void test_names(void **state) {
        char *err = NULL;
        (void) state;
        assert_int_equal(vm_name_validate("dev", &err), 0);
        assert_int_equal(vm_name_validate("a", &err), 0);
        assert_int_equal(vm_name_validate("web-1-x", &err), 0);
        assert_int_equal(vm_name_validate("0", &err), 0);
        char max[64];
        memset(max, 'a', 63);
        max[63] = '\0';
        assert_int_equal(vm_name_validate(max, &err), 0);
        assert_null(err);

        expect_name_error("", "vm name is required");
        expect_name_error(NULL, "vm name is required");
        char longer[65];
        memset(longer, 'b', 64);
        longer[64] = '\0';
        char *want = NULL;
        assert_true(asprintf(&want, "vm name \"%s\" is 64 characters; max is 63 (DNS label limit)", longer) > 0);
        expect_name_error(longer, want);
        free(want);
        expect_name_error("-dev", "vm name \"-dev\" cannot start or end with '-'");
        expect_name_error("dev-", "vm name \"dev-\" cannot start or end with '-'");
        expect_name_error("-", "vm name \"-\" cannot start or end with '-'");
        expect_name_error("Dev", "vm name \"Dev\" has invalid character 'D' at position 0 (allowed: lowercase a-z, "
                                 "0-9, '-')");
        expect_name_error("my_vm", "vm name \"my_vm\" has invalid character '_' at position 2 (allowed: lowercase "
                                   "a-z, 0-9, '-')");
        expect_name_error("a.vm", "vm name \"a.vm\" has invalid character '.' at position 1 (allowed: lowercase a-z, "
                                  "0-9, '-')");
        expect_name_error("a b", "vm name \"a b\" has invalid character ' ' at position 1 (allowed: lowercase a-z, "
                                 "0-9, '-')");
        /* no normalisation, and quoting like Go's %q */
        expect_name_error("caf\xc3\xa9", "vm name \"caf\xc3\xa9\" has invalid character '\xc3\xa9' at position 3 "
                                         "(allowed: lowercase a-z, 0-9, '-')");
        expect_name_error("x\"y", "vm name \"x\\\"y\" has invalid character '\"' at position 1 (allowed: lowercase "
                                  "a-z, 0-9, '-')");
        expect_name_error("x\ny", "vm name \"x\\ny\" has invalid character '\\n' at position 1 (allowed: lowercase "
                                  "a-z, 0-9, '-')");
        expect_name_error("a/../b", "vm name \"a/../b\" has invalid character '/' at position 1 (allowed: lowercase "
                                    "a-z, 0-9, '-')");
}

static void test_generated(void **state) {
        (void) state;
        for (int i = 0; i < 500; i++) {
                char *n = vm_name_generate(), *err = NULL;
                assert_int_equal(vm_name_validate(n, &err), 0);
                assert_non_null(strchr(n, '-'));
                free(n);
        }
        char *id = vm_id_generate();
        assert_int_equal(strlen(id), 16);
        assert_true(vm_id_like(id));
        free(id);
        assert_true(vm_id_like("ab12"));
        assert_false(vm_id_like(""));
        assert_false(vm_id_like("xyz"));
        assert_false(vm_id_like("0123456789abcdef0"));
}

static void test_subnet(void **state) {
        struct ipv4_subnet n;
        char *err = NULL, buf[18];
        uint32_t a;
        (void) state;

        assert_int_equal(ipv4_subnet_init(&n, "172.16.0.1", 24, &err), 0);
        assert_int_equal(ipv4_alloc_lowest(&n, NULL, 0, &a), 0);
        ipv4_format(a, buf);
        assert_string_equal(buf, "172.16.0.2");
        mac_for_ipv4(a, buf);
        assert_string_equal(buf, "52:54:ac:10:00:02");

        /* lowest free: holes are reused; junk and foreign entries ignored */
        const char *used[] = { "172.16.0.2", "172.16.0.4", "garbage", "10.0.0.3", "172.16.0.3", "172.16.0.6" };
        assert_int_equal(ipv4_alloc_lowest(&n, used, 6, &a), 0);
        ipv4_format(a, buf);
        assert_string_equal(buf, "172.16.0.5");

        /* the bridge in the middle of the range is skipped */
        assert_int_equal(ipv4_subnet_init(&n, "10.9.0.3", 29, &err), 0);
        const char *u2[] = { "10.9.0.1", "10.9.0.2" };
        assert_int_equal(ipv4_alloc_lowest(&n, u2, 2, &a), 0);
        ipv4_format(a, buf);
        assert_string_equal(buf, "10.9.0.4");
        const char *full[] = { "10.9.0.1", "10.9.0.2", "10.9.0.4", "10.9.0.5", "10.9.0.6" };
        assert_int_equal(ipv4_alloc_lowest(&n, full, 5, &a), -ENOSPC);

        /* /30: exactly one guest */
        assert_int_equal(ipv4_subnet_init(&n, "192.168.7.1", 30, &err), 0);
        assert_int_equal(ipv4_alloc_lowest(&n, NULL, 0, &a), 0);
        ipv4_format(a, buf);
        assert_string_equal(buf, "192.168.7.2");
        const char *one[] = { "192.168.7.2" };
        assert_int_equal(ipv4_alloc_lowest(&n, one, 1, &a), -ENOSPC);

        assert_int_equal(ipv4_subnet_init(&n, "172.16.0.0", 24, &err), -EINVAL);
        free(err);
        err = NULL;
        assert_int_equal(ipv4_subnet_init(&n, "172.16.0.1", 31, &err), -EINVAL);
        free(err);
        err = NULL;
        assert_int_equal(ipv4_subnet_init(&n, "nope", 24, &err), -EINVAL);
        free(err);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_generated),
                cmocka_unit_test(test_subnet),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
