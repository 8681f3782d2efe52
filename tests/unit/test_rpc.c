/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fsutil.h"
#include "jsonx.h"
#include "rpc.h"

static void expect_fault(const char *req, enum rpc_code code, const char *needle, bool has_id) {
        struct rpc_request r;
        struct rpc_fault f;
        assert_int_equal(rpc_request_decode(req, strlen(req), &r, &f), -EINVAL);
        assert_int_equal(f.code, code);
        if (!strstr(f.msg, needle))
                fail_msg("fault '%s' does not mention '%s'", f.msg, needle);
        assert_int_equal(f.has_id, has_id);
}

static void test_decode_ok(void **state) {
        struct rpc_request r;
        struct rpc_fault f;
        const char *req = "{\"v\":1,\"id\":7,\"method\":\"vm.create.begin\",\"params\":{\"name\":\"dev\"}}";
        (void) state;
        assert_int_equal(rpc_request_decode(req, strlen(req), &r, &f), 0);
        assert_int_equal(r.id, 7);
        assert_string_equal(r.method, "vm.create.begin");
        assert_string_equal(json_string_value(json_object_get(r.params, "name")), "dev");
        rpc_request_done(&r);
        req = "{\"v\":1,\"id\":1,\"method\":\"ping\",\"params\":null}";
        assert_int_equal(rpc_request_decode(req, strlen(req), &r, &f), 0);
        assert_null(r.params);
        rpc_request_done(&r);
}

static void test_decode_faults(void **state) {
        (void) state;
        expect_fault("not json", RPC_BAD_REQUEST, "malformed JSON", false);
        expect_fault("[1]", RPC_BAD_REQUEST, "object", false);
        expect_fault("{\"id\":1,\"method\":\"ping\"}", RPC_BAD_VERSION, "missing protocol version", true);
        expect_fault("{\"v\":2,\"id\":1,\"method\":\"ping\"}", RPC_BAD_VERSION, "unsupported", true);
        expect_fault("{\"v\":\"1\",\"id\":1,\"method\":\"ping\"}", RPC_BAD_VERSION, "unsupported", true);
        expect_fault("{\"v\":1,\"method\":\"ping\"}", RPC_BAD_REQUEST, "missing 'id'", false);
        expect_fault("{\"v\":1,\"id\":\"x\",\"method\":\"ping\"}", RPC_BAD_REQUEST, "integer", false);
        expect_fault("{\"v\":1,\"id\":3}", RPC_BAD_REQUEST, "'method'", true);
        expect_fault("{\"v\":1,\"id\":3,\"method\":\"Bad Method\"}", RPC_BAD_REQUEST, "method name", true);
        expect_fault("{\"v\":1,\"id\":3,\"method\":\"ping\",\"params\":[1]}", RPC_BAD_REQUEST, "'params'", true);
        expect_fault("{\"v\":1,\"id\":3,\"method\":\"ping\",\"extra\":1}", RPC_BAD_REQUEST, "unknown request field", true);
        expect_fault("{\"v\":1,\"v\":1,\"id\":3,\"method\":\"ping\"}", RPC_BAD_REQUEST, "malformed", false);
}

static void test_encode_roundtrip(void **state) {
        struct rpc_response resp;
        char *err = NULL;
        (void) state;
        json_t *res = json_pack("{s:i}", "x", 5);
        char *line = rpc_response_encode_result(true, 9, res);
        assert_string_equal(line, "{\"id\":9,\"result\":{\"x\":5}}");
        assert_int_equal(rpc_response_decode(line, strlen(line), &resp, &err), 0);
        assert_false(resp.is_error);
        assert_int_equal(json_integer_value(json_object_get(resp.result, "x")), 5);
        rpc_response_done(&resp);
        free(line);
        json_decref(res);

        line = rpc_response_encode_error(false, 0, RPC_NOT_FOUND, "vm 'x' not found", "op-abc123");
        assert_string_equal(line, "{\"id\":null,\"error\":{\"code\":\"not_found\",\"message\":\"vm 'x' not found\","
                                  "\"op_id\":\"op-abc123\"}}");
        assert_int_equal(rpc_response_decode(line, strlen(line), &resp, &err), 0);
        assert_true(resp.is_error);
        assert_int_equal(resp.code, RPC_NOT_FOUND);
        assert_string_equal(resp.op_id, "op-abc123");
        rpc_response_done(&resp);
        free(line);

        line = rpc_request_encode(3, "ping", NULL);
        assert_string_equal(line, "{\"v\":1,\"id\":3,\"method\":\"ping\"}");
        free(line);

        assert_int_equal(rpc_response_decode("{\"id\":1}", 8, &resp, &err), -EBADMSG);
        free(err);
        for (int c = 0; c < _RPC_CODE_MAX; c++)
                assert_int_equal(rpc_code_from_string(rpc_code_to_string(c)), c);
        assert_int_equal(rpc_code_from_string("nope"), -EINVAL);
}

static void test_line_reader(void **state) {
        int sv[2];
        struct rpc_line_reader lr;
        char *line;
        size_t len;
        (void) state;

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        rpc_line_reader_init(&lr, sv[0], 16);
        const char *data = "one\r\ntwo\nthree-is-much-longer-than-16\n";
        assert_int_equal(write_all(sv[1], data, strlen(data)), 0);
        assert_int_equal(rpc_line_reader_next(&lr, 1000, &line, &len), 1);
        assert_string_equal(line, "one");
        assert_int_equal(rpc_line_reader_next(&lr, 1000, &line, &len), 1);
        assert_string_equal(line, "two");
        assert_int_equal(len, 3);
        assert_int_equal(rpc_line_reader_next(&lr, 1000, &line, &len), -EMSGSIZE);
        rpc_line_reader_done(&lr);

        rpc_line_reader_init(&lr, sv[0], 16);
        assert_int_equal(rpc_line_reader_next(&lr, 50, &line, &len), -ETIMEDOUT);
        assert_int_equal(write_all(sv[1], "par", 3), 0);
        assert_int_equal(rpc_line_reader_next(&lr, 50, &line, &len), -ETIMEDOUT);
        assert_int_equal(write_all(sv[1], "tial\n", 5), 0);
        assert_int_equal(rpc_line_reader_next(&lr, 1000, &line, &len), 1);
        assert_string_equal(line, "partial");
        /* a line with no newline and no end: oversize is detected without one */
        assert_int_equal(write_all(sv[1], "aaaaaaaaaaaaaaaaaaaaaaaaa", 25), 0);
        assert_int_equal(rpc_line_reader_next(&lr, 1000, &line, &len), -EMSGSIZE);
        rpc_line_reader_done(&lr);

        rpc_line_reader_init(&lr, sv[0], 16);
        close(sv[1]);
        /* drain whatever is left, then EOF */
        int r;
        while ((r = rpc_line_reader_next(&lr, 1000, &line, &len)) == 1)
                ;
        assert_true(r == 0 || r == -EMSGSIZE);
        rpc_line_reader_done(&lr);
        close(sv[0]);
}

struct params {
        char *name;
        int64_t vcpu;
        bool nat;
        bool vcpu_set;
};

static const struct json_field fields[] = {
        { "name", JSON_FIELD_STRING, offsetof(struct params, name), true, JSON_NO_PRESENT, 0, 0 },
        { "vcpu", JSON_FIELD_INT, offsetof(struct params, vcpu), false, offsetof(struct params, vcpu_set), 1, 64 },
        { "nat", JSON_FIELD_BOOL, offsetof(struct params, nat), false, JSON_NO_PRESENT, 0, 0 },
};

static void decode(const char *js, int want, const char *needle) {
        struct params p = { 0 };
        char *err = NULL;
        json_t *j = json_loads(js, 0, NULL);
        int r = json_decode_fields(j, fields, 3, &p, &err);
        assert_int_equal(r, want);
        if (needle && (!err || !strstr(err, needle)))
                fail_msg("error '%s' does not mention '%s'", err ? err : "(none)", needle);
        json_fields_free(fields, 3, &p);
        free(err);
        json_decref(j);
}

static void test_json_fields(void **state) {
        struct params p = { 0 };
        char *err = NULL;
        (void) state;
        json_t *j = json_loads("{\"name\":\"dev\",\"vcpu\":4,\"nat\":true}", 0, NULL);
        assert_int_equal(json_decode_fields(j, fields, 3, &p, &err), 0);
        assert_string_equal(p.name, "dev");
        assert_int_equal(p.vcpu, 4);
        assert_true(p.vcpu_set);
        assert_true(p.nat);
        json_fields_free(fields, 3, &p);
        assert_null(p.name);
        json_decref(j);

        decode("{}", -EINVAL, "missing required parameter 'name'");
        decode("{\"name\":1}", -EINVAL, "'name' must be a string");
        decode("{\"name\":\"x\",\"vcpu\":0}", -EINVAL, "between 1 and 64");
        decode("{\"name\":\"x\",\"nat\":\"yes\"}", -EINVAL, "boolean");
        decode("{\"name\":\"x\",\"extra\":1}", -EINVAL, "unknown parameter 'extra'");
        decode("[]", -EINVAL, "object");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_decode_ok),   cmocka_unit_test(test_decode_faults),
                cmocka_unit_test(test_encode_roundtrip), cmocka_unit_test(test_line_reader),
                cmocka_unit_test(test_json_fields),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
