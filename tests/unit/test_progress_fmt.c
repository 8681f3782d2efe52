/* SPDX-License-Identifier: MIT */
/* The figures of the CLI's progress display (src/cli/progress_fmt.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "progress_fmt.h"

static void test_percent(void **state) {
        (void) state;
        assert_int_equal(progress_percent(0, 0), -1); /* total unknown */
        assert_int_equal(progress_percent(5, 0), -1);
        assert_int_equal(progress_percent(0, 100), 0);
        assert_int_equal(progress_percent(999, 1000), 99); /* floored: 100% only when done */
        assert_int_equal(progress_percent(1000, 1000), 100);
        assert_int_equal(progress_percent(2000, 1000), 100); /* clamped */
        assert_int_equal(progress_percent(UINT64_MAX / 2, UINT64_MAX), 49); /* no overflow */
}

static void test_rate(void **state) {
        char b[32];
        (void) state;
        assert_true(progress_rate(1 << 20, 100) == 0); /* too early to say */
        assert_true(progress_rate(1 << 20, 1000) == (double) (1 << 20));
        assert_true(progress_rate(3 << 20, 2000) == 1.5 * (1 << 20));
        assert_string_equal(progress_fmt_rate(1.5 * (1 << 20), b, sizeof(b)), "1.5 MiB/s");
        assert_string_equal(progress_fmt_rate(512, b, sizeof(b)), "512 B/s");
        assert_string_equal(progress_fmt_rate(-3, b, sizeof(b)), "0 B/s");
}

static void test_eta(void **state) {
        (void) state;
        assert_int_equal(progress_eta_ms(0, 0, 100), -1);     /* total unknown */
        assert_int_equal(progress_eta_ms(10, 100, 0), -1);    /* rate unknown */
        assert_int_equal(progress_eta_ms(100, 100, 0), 0);    /* there */
        assert_int_equal(progress_eta_ms(50, 100, 10), 5000); /* 50 B at 10 B/s */
        assert_int_equal(progress_eta_ms(0, 25 << 20, 1 << 20), 25000);
}

static void test_duration(void **state) {
        char b[32];
        (void) state;
        assert_string_equal(progress_fmt_duration(0, b, sizeof(b)), "0.0s");
        assert_string_equal(progress_fmt_duration(-5, b, sizeof(b)), "0.0s");
        assert_string_equal(progress_fmt_duration(1234, b, sizeof(b)), "1.2s");
        assert_string_equal(progress_fmt_duration(59999, b, sizeof(b)), "59.9s");
        assert_string_equal(progress_fmt_duration(65000, b, sizeof(b)), "1m05s");
        assert_string_equal(progress_fmt_duration(3600000 + 3 * 60000 + 59000, b, sizeof(b)), "1h03m");
        assert_string_equal(progress_fmt_duration(1234, b, 3), "1."); /* truncated, terminated */
}

static void test_size(void **state) {
        char b[32];
        (void) state;
        assert_string_equal(cli_human_size(1023, b, sizeof(b)), "1023 B");
        assert_string_equal(cli_human_size(1536, b, sizeof(b)), "1.5 KiB");
        assert_string_equal(cli_human_size(25ULL << 20, b, sizeof(b)), "25.0 MiB");
        assert_string_equal(cli_human_size(3ULL << 29, b, sizeof(b)), "1.5 GiB");
}

static void test_gate(void **state) {
        struct progress_gate g = { 0 };
        (void) state;
        assert_true(progress_gate_due(&g, 0, 100, 1000));        /* the first */
        assert_false(progress_gate_due(&g, 10, 100, 1100));      /* same quarter, too soon */
        assert_true(progress_gate_due(&g, 25, 100, 1200));       /* a 25% step */
        assert_false(progress_gate_due(&g, 49, 100, 1300));
        assert_true(progress_gate_due(&g, 49, 100, 1300 + PROGRESS_PLAIN_EVERY_MS)); /* a while later */
        assert_true(progress_gate_due(&g, 100, 100, 6400));      /* done */
        assert_false(progress_gate_due(&g, 100, 100, 6500));     /* the final count repeated */
        struct progress_gate u = { 0 };                          /* total unknown: by time only */
        assert_true(progress_gate_due(&u, 1, 0, 0));
        assert_false(progress_gate_due(&u, 1 << 30, 0, 4999));
        assert_true(progress_gate_due(&u, 1 << 30, 0, 5000));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_percent),  cmocka_unit_test(test_rate), cmocka_unit_test(test_eta),
                cmocka_unit_test(test_duration), cmocka_unit_test(test_size), cmocka_unit_test(test_gate),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
