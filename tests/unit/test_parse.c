/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "parse.h"
#include "strbuf.h"

static void test_sizes(void **state) {
        uint64_t b;
        (void) state;
        assert_int_equal(parse_size("4G", &b), 0);
        assert_int_equal(b, 4ULL << 30);
        assert_int_equal(parse_size("4GiB", &b), 0);
        assert_int_equal(b, 4ULL << 30);
        assert_int_equal(parse_size("512MiB", &b), 0);
        assert_int_equal(b, 512ULL << 20);
        assert_int_equal(parse_size("4KiB", &b), 0);
        assert_int_equal(b, 4096);
        assert_int_equal(parse_size("2048", &b), 0); /* bare number: MiB */
        assert_int_equal(b, 2048ULL << 20);
        assert_int_equal(parse_size("10B", &b), 0);
        assert_int_equal(b, 10);
        assert_int_equal(parse_size("1tib", &b), 0);
        assert_int_equal(b, 1ULL << 40);
        assert_int_equal(parse_size("", &b), -EINVAL);
        assert_int_equal(parse_size("G", &b), -EINVAL);
        assert_int_equal(parse_size("-1G", &b), -EINVAL);
        assert_int_equal(parse_size("4 G", &b), -EINVAL);
        assert_int_equal(parse_size("4X", &b), -EINVAL);
        assert_int_equal(parse_size("1.5G", &b), -EINVAL);
        assert_int_equal(parse_size("99999999999999999999", &b), -ERANGE);
        assert_int_equal(parse_size("17179869184T", &b), -ERANGE);
}

static void test_durations(void **state) {
        uint64_t ms;
        (void) state;
        assert_int_equal(parse_duration_ms("10s", &ms), 0);
        assert_int_equal(ms, 10000);
        assert_int_equal(parse_duration_ms("0", &ms), 0);
        assert_int_equal(ms, 0);
        assert_int_equal(parse_duration_ms("1h30m", &ms), 0);
        assert_int_equal(ms, 5400000);
        assert_int_equal(parse_duration_ms("250ms", &ms), 0);
        assert_int_equal(ms, 250);
        assert_int_equal(parse_duration_ms("30", &ms), 0);
        assert_int_equal(ms, 30000);
        assert_int_equal(parse_duration_ms("", &ms), -EINVAL);
        assert_int_equal(parse_duration_ms("s", &ms), -EINVAL);
        assert_int_equal(parse_duration_ms("5x", &ms), -EINVAL);
        assert_int_equal(parse_duration_ms("-5s", &ms), -EINVAL);
}

static void test_ints(void **state) {
        int64_t v;
        uint64_t u;
        (void) state;
        assert_int_equal(parse_int64("-42", &v), 0);
        assert_int_equal(v, -42);
        assert_int_equal(parse_int64(" 1", &v), -EINVAL);
        assert_int_equal(parse_int64("1x", &v), -EINVAL);
        assert_int_equal(parse_int64("9223372036854775808", &v), -ERANGE);
        assert_int_equal(parse_uint64("-1", &u), -EINVAL);
        assert_int_equal(parse_int_range("31", 8, 30, &v), -ERANGE);
        assert_int_equal(parse_int_range("30", 8, 30, &v), 0);
}

static void test_format(void **state) {
        char buf[32];
        (void) state;
        assert_string_equal(format_size(8ULL << 30, buf, sizeof(buf)), "8 GiB");
        assert_string_equal(format_size(512ULL << 20, buf, sizeof(buf)), "512 MiB");
        assert_string_equal(format_size(1536ULL << 20, buf, sizeof(buf)), "1.5 GiB");
        assert_string_equal(format_duration_ms(10000, buf, sizeof(buf)), "10s");
        assert_string_equal(format_duration_ms(300000, buf, sizeof(buf)), "5m");
        assert_string_equal(format_duration_ms(0, buf, sizeof(buf)), "0");
}

static void test_dns_label(void **state) {
        (void) state;
        assert_true(string_is_dns_label("dev-1"));
        assert_true(string_is_dns_label("a"));
        assert_false(string_is_dns_label(""));
        assert_false(string_is_dns_label("-a"));
        assert_false(string_is_dns_label("a-"));
        assert_false(string_is_dns_label("Dev"));
        assert_false(string_is_dns_label("a_b"));
        assert_false(string_is_dns_label("a.b"));
        char long_name[65];
        memset(long_name, 'a', 64);
        long_name[64] = '\0';
        assert_false(string_is_dns_label(long_name));
        long_name[63] = '\0';
        assert_true(string_is_dns_label(long_name));
}

static void test_strbuf(void **state) {
        struct strbuf sb = STRBUF_INIT;
        (void) state;
        assert_non_null(sb.buf);
        assert_string_equal(sb.buf, "");
        strbuf_addf(&sb, "%s-%d", "x", 42);
        for (int i = 0; i < 1000; i++)
                strbuf_addch(&sb, 'y');
        assert_int_equal(sb.len, 4 + 1000);
        assert_int_equal(sb.buf[sb.len], '\0');
        strbuf_addstr(&sb, "  \n");
        strbuf_rtrim(&sb);
        assert_int_equal(sb.len, 1004);
        size_t n;
        char *s = strbuf_detach(&sb, &n);
        assert_int_equal(n, 1004);
        assert_string_equal(sb.buf, "");
        free(s);
        s = strbuf_detach(&sb, NULL); /* detaching an empty buffer gives "" */
        assert_string_equal(s, "");
        free(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sizes),  cmocka_unit_test(test_durations), cmocka_unit_test(test_ints),
                cmocka_unit_test(test_format), cmocka_unit_test(test_dns_label), cmocka_unit_test(test_strbuf),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
