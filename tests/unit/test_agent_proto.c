/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "../../src/agent/proto.h"

static enum agent_parse_error parse(const char *s, struct agent_request *r, bool *idk) {
        return agent_request_parse(s, strlen(s), r, idk);
}

static void test_requests(void **state) {
        struct agent_request r;
        bool idk;
        (void) state;
        assert_int_equal(parse("{\"v\":1,\"id\":7,\"method\":\"health\"}", &r, &idk), AGENT_OK);
        assert_int_equal(r.id, 7);
        assert_string_equal(r.method, "health");
        assert_int_equal(parse(" { \"method\" : \"ports\" , \"id\" : -3 , \"v\" : 1 } \r\n", &r, &idk), AGENT_OK);
        assert_int_equal(r.id, -3);
        assert_int_equal(parse("{\"v\":2,\"id\":1,\"method\":\"health\"}", &r, &idk), AGENT_ERR_VERSION);
        assert_true(idk);
        assert_int_equal(parse("{\"id\":1,\"method\":\"health\"}", &r, &idk), AGENT_ERR_VERSION);
        assert_int_equal(parse("{\"v\":1,\"method\":\"health\"}", &r, &idk), AGENT_ERR_FIELD);
        assert_false(idk);
        const char *syntax[] = { "", "[]", "{", "{\"v\":1", "{\"v\":1,}", "{\"v\":1} x", "{v:1}",
                                 "{\"v\":1,\"id\":1,\"method\":\"a\\u0041\"}" };
        for (size_t i = 0; i < sizeof(syntax) / sizeof(syntax[0]); i++)
                if (parse(syntax[i], &r, &idk) == AGENT_OK)
                        fail_msg("accepted '%s'", syntax[i]);
        const char *fields[] = { "{\"v\":1,\"id\":1,\"method\":\"health\",\"x\":1}",
                                 "{\"v\":1,\"id\":1,\"id\":2,\"method\":\"health\"}",
                                 "{\"v\":1,\"id\":1.5,\"method\":\"health\"}",
                                 "{\"v\":1,\"id\":1,\"method\":\"\"}",
                                 "{\"v\":1,\"id\":99999999999999999999999,\"method\":\"h\"}",
                                 "{\"v\":1,\"id\":1,\"method\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}" };
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
                if (parse(fields[i], &r, &idk) == AGENT_OK)
                        fail_msg("accepted '%s'", fields[i]);
        char big[AGENT_MAX_LINE + 10];
        memset(big, ' ', sizeof(big));
        assert_int_equal(agent_request_parse(big, sizeof(big), &r, &idk), AGENT_ERR_SYNTAX);
}

static void test_json_string(void **state) {
        char buf[64];
        size_t pos = 0;
        (void) state;
        assert_true(json_put_string(buf, sizeof(buf), &pos, "a\"b\\c\n\x01"));
        assert_string_equal(buf, "\"a\\\"b\\\\c\\u000a\\u0001\"");
        pos = 0;
        char small[4];
        assert_false(json_put_string(small, sizeof(small), &pos, "abcdef"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_requests),
                cmocka_unit_test(test_json_string),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
