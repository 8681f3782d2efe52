/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "toml.h"

static struct toml_table *parse_ok(const char *s) {
        struct toml_table *t = NULL;
        struct toml_error e;
        int r = toml_parse(s, strlen(s), &t, &e);
        if (r < 0)
                fail_msg("unexpected error line %u: %s", e.line, e.msg);
        return t;
}

static void expect_error(const char *s, unsigned line, const char *needle) {
        struct toml_table *t = NULL;
        struct toml_error e;
        int r = toml_parse(s, strlen(s), &t, &e);
        if (r == 0) {
                toml_table_free(t);
                fail_msg("expected an error for: %s", s);
        }
        assert_int_equal(e.line, line);
        if (!strstr(e.msg, needle))
                fail_msg("error '%s' does not mention '%s'", e.msg, needle);
}

static void test_values(void **state) {
        (void) state;
        struct toml_table *t = parse_ok("# comment\n"
                                        "a = \"x\\ty\\u00e9\"  # trailing\n"
                                        "b = 'C:\\path'\n"
                                        "c = -1_000\n"
                                        "d = true\n"
                                        "e = false\r\n"
                                        "\"quoted key\" = 0\n");
        assert_string_equal(toml_table_get(t, "a")->s, "x\ty\xc3\xa9");
        assert_string_equal(toml_table_get(t, "b")->s, "C:\\path");
        assert_int_equal(toml_table_get(t, "c")->i, -1000);
        assert_true(toml_table_get(t, "d")->b);
        assert_false(toml_table_get(t, "e")->b);
        assert_int_equal(toml_table_get(t, "quoted key")->i, 0);
        assert_int_equal(toml_table_get(t, "c")->line, 4);
        toml_table_free(t);
}

static void test_tables(void **state) {
        (void) state;
        struct toml_table *t = parse_ok("x = 1\n[vm_defaults]\nvcpu = 4\n\n[[file_sync]]\nhost = \"a\"\n"
                                        "[[file_sync]]\nhost = \"b\"\n");
        const struct toml_value *v = toml_table_get(t, "vm_defaults");
        assert_int_equal(v->type, TOML_TABLE);
        assert_int_equal(toml_table_get(v->table, "vcpu")->i, 4);
        v = toml_table_get(t, "file_sync");
        assert_int_equal(v->type, TOML_ARRAY_OF_TABLES);
        assert_int_equal(v->array.n, 2);
        assert_string_equal(toml_table_get(v->array.items[1], "host")->s, "b");
        assert_null(toml_table_get(t, "vcpu"));
        toml_table_free(t);
}

static void test_int_limits(void **state) {
        (void) state;
        struct toml_table *t = parse_ok("a = 9223372036854775807\nb = -9223372036854775808\n");
        assert_true(toml_table_get(t, "a")->i == INT64_MAX);
        assert_true(toml_table_get(t, "b")->i == INT64_MIN);
        toml_table_free(t);
        expect_error("a = 9223372036854775808\n", 1, "out of range");
}

static void test_errors(void **state) {
        (void) state;
        expect_error("a = 1\na = 2\n", 2, "duplicate key 'a'");
        expect_error("a = \"unterminated\n", 1, "unterminated");
        expect_error("a = 1.5\n", 1, "floats");
        expect_error("a = [1, 2]\n", 1, "arrays");
        expect_error("a = {x = 1}\n", 1, "inline tables");
        expect_error("\n\na = bare\n", 3, "quotes");
        expect_error("a.b = 1\n", 1, "dotted keys");
        expect_error("[a.b]\n", 1, "nested tables");
        expect_error("[t]\n[t]\n", 2, "defined twice");
        expect_error("t = 1\n[t]\n", 2, "already defined");
        expect_error("[[t]]\n[t]\n", 2, "already defined");
        expect_error("a = 1 b = 2\n", 1, "after value");
        expect_error("a = 0644\n", 1, "leading zeros");
        expect_error("a = \"\\q\"\n", 1, "invalid escape");
        expect_error("a = \"\\u0000\"\n", 1, "invalid unicode");
        expect_error("a = \"\\uD800\"\n", 1, "invalid unicode");
        expect_error("a = \"\"\"x\"\"\"\n", 1, "multi-line");
        expect_error("a = 1979-05-27\n", 1, "dates");
        expect_error("a = 0x10\n", 1, "decimal");
        expect_error("a = 1__0\n", 1, "'_'");
        expect_error("a =\n", 1, "missing value");
        expect_error("= 1\n", 1, "expected a key");
        expect_error("[t\n", 1, "expected ']'");
        expect_error("a = \"x\x01\"\n", 1, "control character");
}

static void test_nul_and_bom(void **state) {
        struct toml_table *t = NULL;
        struct toml_error e;
        (void) state;
        assert_int_equal(toml_parse("a = 1\0b", 7, &t, &e), -22);
        assert_non_null(strstr(e.msg, "NUL"));
        t = parse_ok("\xEF\xBB\xBF" "a = 1\n");
        assert_int_equal(toml_table_get(t, "a")->i, 1);
        toml_table_free(t);
        t = parse_ok("");
        assert_int_equal(t->n, 0);
        toml_table_free(t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_values),     cmocka_unit_test(test_tables),
                cmocka_unit_test(test_int_limits), cmocka_unit_test(test_errors),
                cmocka_unit_test(test_nul_and_bom),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
