/* SPDX-License-Identifier: MIT */
/* The pure parts of `kernel build`: a config fragment against the final
 * .config, and the changelog date the build's timestamp comes from. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "debian.h"
#include "kconfig.h"

static int check(const char *frag, const char *config, struct kconfig_check *c) {
        return kconfig_check_fragment(frag, strlen(frag), config, strlen(config), c);
}

static void test_fragment_kept(void **state) {
        const char *config = "#\n# Automatically generated file; DO NOT EDIT.\n#\nCONFIG_64BIT=y\n"
                             "CONFIG_LOCALVERSION=\"-banger-microvm\"\n# CONFIG_MODULES is not set\n"
                             "CONFIG_NR_CPUS=64\nCONFIG_VIRTIO_MMIO=y";
        const char *frag = "# a comment\n\nCONFIG_64BIT=y\nCONFIG_LOCALVERSION=\"-banger-microvm\"\n"
                           "# CONFIG_MODULES is not set\n# CONFIG_SOUND is not set\nCONFIG_DRM=n\nCONFIG_NR_CPUS=64\n"
                           "CONFIG_VIRTIO_MMIO=y\n";
        struct kconfig_check c;
        (void) state;
        assert_int_equal(check(frag, config, &c), 0);
        assert_int_equal(c.options, 7); /* comments and blank lines are no settings */
        assert_int_equal(c.dropped, 0);
        assert_string_equal(c.report, "");
        kconfig_check_done(&c);
}

static void test_fragment_dropped(void **state) {
        const char *config = "CONFIG_64BIT=y\n# CONFIG_PCI is not set\nCONFIG_MODULES=y\nCONFIG_NR_CPUS=8\n"
                             "CONFIG_VIRTIO_MMIO_X=y\n";
        const char *frag = "CONFIG_64BIT=y\nCONFIG_PCI=y\n# CONFIG_MODULES is not set\nCONFIG_NR_CPUS=64\n"
                           "CONFIG_VIRTIO_MMIO=y\n";
        struct kconfig_check c;
        (void) state;
        assert_int_equal(check(frag, config, &c), 0);
        assert_int_equal(c.options, 5);
        assert_int_equal(c.dropped, 4);
        /* a symbol that is a prefix of another is not that other */
        assert_string_equal(c.report, "CONFIG_PCI=y (got: not set), CONFIG_MODULES=n (got: y), "
                                      "CONFIG_NR_CPUS=64 (got: 8), CONFIG_VIRTIO_MMIO=y (got: not set)");
        kconfig_check_done(&c);
}

static void test_fragment_malformed(void **state) {
        const char *bad[] = { "CONFIG_X\n", "# CONFIG_X is not sett\n", "CONFIG_=y\n", "VIRTIO=y\n", "CONFIG_A B=y\n" };
        struct kconfig_check c;
        (void) state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                if (check(bad[i], "", &c) != -EBADMSG)
                        fail_msg("accepted: %s", bad[i]);
                assert_non_null(c.report);
                assert_true(strlen(c.report) > 0);
                kconfig_check_done(&c);
        }
}

static void test_changelog_date(void **state) {
        const char *cl = "linux (6.1.176-1) bookworm; urgency=medium\n\n  * New upstream stable update\n\n"
                         " -- Ben Hutchings <benh@debian.org>  Thu, 02 Jul 2026 13:50:00 +0200\n\n"
                         "linux (6.1.170-3) bookworm; urgency=medium\n\n"
                         " -- Salvatore Bonaccorso <carnil@debian.org>  Sat, 09 May 2026 08:00:00 +0000\n";
        int64_t t = 0;
        (void) state;
        assert_int_equal(debian_changelog_date(cl, strlen(cl), &t), 0);
        assert_int_equal(t, 1782993000); /* 2026-07-02T11:50:00Z */
        const char *epoch = " -- A <a@b>  Thu, 01 Jan 1970 00:00:00 +0000  \n";
        assert_int_equal(debian_changelog_date(epoch, strlen(epoch), &t), 0);
        assert_int_equal(t, 0);
        const char *leap = " -- A <a@b>  Thu, 29 Feb 2024 23:59:59 -0130\n";
        assert_int_equal(debian_changelog_date(leap, strlen(leap), &t), 0);
        assert_int_equal(t, 1709251199 + 5400);
        assert_int_equal(debian_changelog_date("no trailer\n", 11, &t), -ENOENT);
        const char *bad[] = { " -- A <a@b> Thu, 02 Jul 2026 13:50:00 +0200\n", " -- A <a@b>  02 Jul 2026 13:50:00 +0200\n",
                              " -- A <a@b>  Thu, 02 Jux 2026 13:50:00 +0200\n", " -- A <a@b>  Thu, 02 Jul 2026 25:50:00 +0200\n",
                              " -- A <a@b>  Thu, 02 Jul 2026 13:50:00 0200\n", " -- A <a@b>  Thu, 02 Jul 2026 13:50:00 +0200 x\n" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (debian_changelog_date(bad[i], strlen(bad[i]), &t) != -EINVAL)
                        fail_msg("accepted: %s", bad[i]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fragment_kept),
                cmocka_unit_test(test_fragment_dropped),
                cmocka_unit_test(test_fragment_malformed),
                cmocka_unit_test(test_changelog_date),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
