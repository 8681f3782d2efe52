/* SPDX-License-Identifier: MIT */
/* The embedded catalogs parse, and every entry is usable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "artifacts/artifacts.h"
#include "parse.h"

static void test_kernel_catalog(void **state) {
        json_t *c = kernel_catalog(), *e;
        size_t i, j;
        (void) state;
        assert_int_equal(json_integer_value(json_object_get(c, "version")), 1);
        assert_true(json_array_size(json_object_get(c, "kernels")) >= 1);
        json_array_foreach(json_object_get(c, "kernels"), i, e) {
                assert_true(kernel_name_valid(json_string_value(json_object_get(e, "name"))));
                assert_true(json_integer_value(json_object_get(e, "size_bytes")) > 0);
                const char *common[] = { "distro", "arch", "suite", "component", "description" };
                for (j = 0; j < sizeof(common) / sizeof(common[0]); j++)
                        assert_non_null(json_string_value(json_object_get(e, common[j])));
                if (kernel_entry_built(e)) { /* built from a source package with an embedded fragment */
                        json_t *b = json_object_get(e, "build");
                        assert_string_equal(json_string_value(json_object_get(e, "kind")), "build");
                        assert_non_null(json_string_value(json_object_get(b, "source_package")));
                        const char *frag = kernel_fragment(json_string_value(json_object_get(b, "config")));
                        assert_non_null(frag);
                        assert_non_null(strstr(frag, "\n# CONFIG_MODULES is not set\n"));
                        assert_non_null(strstr(frag, "\nCONFIG_PVH=y\n"));
                        continue;
                }
                assert_string_equal(json_string_value(json_object_get(e, "kind")), "debian");
                const char *fields[] = { "meta_package", "image_prefix" };
                for (j = 0; j < sizeof(fields) / sizeof(fields[0]); j++)
                        assert_non_null(json_string_value(json_object_get(e, fields[j])));
                assert_true(json_array_size(json_object_get(e, "modules")) > 0);
        }
        json_decref(c);
}

static void test_image_catalog(void **state) {
        json_t *c = image_catalog(), *k = kernel_catalog(), *e, *pkg, *ke;
        size_t i, j;
        (void) state;
        assert_true(json_array_size(json_object_get(c, "images")) >= 2);
        json_array_foreach(json_object_get(c, "images"), i, e) {
                const char *name = json_string_value(json_object_get(e, "name"));
                assert_true(string_is_dns_label(name));
                const char *mode = json_string_value(json_object_get(e, "init_mode"));
                assert_true(strcmp(mode, "systemd") == 0 || strcmp(mode, "fast") == 0);
                /* the kernel it references is in the kernel catalog */
                bool found = false;
                json_array_foreach(json_object_get(k, "kernels"), j, ke)
                        found |= strcmp(json_string_value(json_object_get(ke, "name")),
                                        json_string_value(json_object_get(e, "kernel_ref"))) == 0;
                assert_true(found);
                assert_string_equal(json_string_value(json_object_get(e, "kind")), "debian");
                bool kmod = false; /* modprobe, on the kernel's modules disk */
                json_array_foreach(json_object_get(e, "packages"), j, pkg) {
                        const char *p = json_string_value(pkg);
                        assert_non_null(p);
                        assert_int_equal(strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789+-."), strlen(p));
                        kmod |= strcmp(p, "kmod") == 0;
                }
                assert_true(kmod);
                if (strcmp(mode, "systemd") == 0) { /* a systemd image must ship systemd and sshd */
                        bool sd = false, ssh = false;
                        json_array_foreach(json_object_get(e, "packages"), j, pkg) {
                                sd |= strcmp(json_string_value(pkg), "systemd-sysv") == 0;
                                ssh |= strcmp(json_string_value(pkg), "openssh-server") == 0;
                        }
                        assert_true(sd && ssh);
                }
        }
        /* the default image of the config is in the catalog */
        bool def = false;
        json_array_foreach(json_object_get(c, "images"), i, e)
                def |= strcmp(json_string_value(json_object_get(e, "name")), "debian-bookworm") == 0;
        assert_true(def);
        json_decref(c);
        json_decref(k);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_kernel_catalog),
                cmocka_unit_test(test_image_catalog),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
