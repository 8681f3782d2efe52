/* SPDX-License-Identifier: MIT */
#include "rpc.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "fsutil.h"
#include "ids.h"
#include "jsonx.h"
#include "macro.h"

static const char *const code_names[_RPC_CODE_MAX] = {
        [RPC_BAD_REQUEST] = "bad_request",       [RPC_BAD_VERSION] = "bad_version",
        [RPC_UNKNOWN_METHOD] = "unknown_method", [RPC_NOT_FOUND] = "not_found",
        [RPC_ALREADY_EXISTS] = "already_exists", [RPC_UNAUTHORIZED] = "unauthorized",
        [RPC_OPERATION_FAILED] = "operation_failed",
};

void rpc_op_id_new(char buf[static RPC_OP_ID_SIZE]) {
        _cleanup_free_ char *r = random_hex(3);
        snprintf(buf, RPC_OP_ID_SIZE, "op-%s", r);
}

int rpc_code_to_errno(enum rpc_code c) {
        switch (c) {
        case RPC_NOT_FOUND:
                return -ENOENT;
        case RPC_ALREADY_EXISTS:
                return -EEXIST;
        case RPC_BAD_REQUEST:
                return -EINVAL;
        case RPC_UNAUTHORIZED:
                return -EACCES;
        case RPC_UNKNOWN_METHOD:
                return -EOPNOTSUPP;
        case RPC_BAD_VERSION:
                return -EPROTO;
        default:
                return -EIO;
        }
}

const char *rpc_code_to_string(enum rpc_code c) {
        return c < _RPC_CODE_MAX ? code_names[c] : "operation_failed";
}

int rpc_code_from_string(const char *s) {
        for (int i = 0; i < _RPC_CODE_MAX; i++)
                if (s && strcmp(s, code_names[i]) == 0)
                        return i;
        return -EINVAL;
}

_printf_(3, 4) static int fault(struct rpc_fault *f, enum rpc_code code, const char *fmt, ...) {
        va_list ap;

        f->code = code;
        va_start(ap, fmt);
        vsnprintf(f->msg, sizeof(f->msg), fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static bool method_name_ok(const char *m) {
        size_t n = strlen(m);

        if (n == 0 || n > 64)
                return false;
        return strspn(m, "abcdefghijklmnopqrstuvwxyz0123456789._") == n;
}

int rpc_request_decode(const char *buf, size_t len, struct rpc_request *ret, struct rpc_fault *f) {
        _cleanup_json_ json_t *root = NULL;
        json_error_t jerr;
        const char *key;
        json_t *v, *id, *ver, *method, *params;

        *f = (struct rpc_fault) { 0 };
        if (len > RPC_MAX_MESSAGE)
                return fault(f, RPC_BAD_REQUEST, "request exceeds %u bytes", RPC_MAX_MESSAGE);
        root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
                return fault(f, RPC_BAD_REQUEST, "malformed JSON: %s", jerr.text);
        if (!json_is_object(root))
                return fault(f, RPC_BAD_REQUEST, "request must be a JSON object");

        id = json_object_get(root, "id");
        if (id && json_is_integer(id)) {
                f->has_id = true;
                f->id = json_integer_value(id);
        }
        json_object_foreach(root, key, v) {
                if (strcmp(key, "v") != 0 && strcmp(key, "id") != 0 && strcmp(key, "method") != 0 &&
                    strcmp(key, "params") != 0 && strcmp(key, "op_id") != 0)
                        return fault(f, RPC_BAD_REQUEST, "unknown request field '%.40s'", key);
        }
        ver = json_object_get(root, "v");
        if (!ver)
                return fault(f, RPC_BAD_VERSION, "missing protocol version 'v' (this daemon speaks %d)", RPC_VERSION);
        if (!json_is_integer(ver) || json_integer_value(ver) != RPC_VERSION)
                return fault(f, RPC_BAD_VERSION, "unsupported protocol version (this daemon speaks %d)", RPC_VERSION);
        if (!id)
                return fault(f, RPC_BAD_REQUEST, "missing 'id'");
        if (!json_is_integer(id))
                return fault(f, RPC_BAD_REQUEST, "'id' must be an integer");
        method = json_object_get(root, "method");
        if (!method || !json_is_string(method))
                return fault(f, RPC_BAD_REQUEST, "'method' must be a string");
        if (!method_name_ok(json_string_value(method)))
                return fault(f, RPC_BAD_REQUEST, "malformed method name");
        params = json_object_get(root, "params");
        if (params && !json_is_object(params) && !json_is_null(params))
                return fault(f, RPC_BAD_REQUEST, "'params' must be an object");
        json_t *op = json_object_get(root, "op_id");
        if (op && (!json_is_string(op) || !rpc_op_id_valid(json_string_value(op))))
                return fault(f, RPC_BAD_REQUEST, "'op_id' must be \"op-\" and 6 hex digits");

        *ret = (struct rpc_request) {
                .id = json_integer_value(id),
                .method = xstrdup(json_string_value(method)),
                .params = params && json_is_object(params) ? json_incref(params) : NULL,
                .op_id = op ? xstrdup(json_string_value(op)) : NULL,
        };
        return 0;
}

bool rpc_op_id_valid(const char *s) {
        return s && strlen(s) == 9 && strncmp(s, "op-", 3) == 0 && strspn(s + 3, "0123456789abcdef") == 6;
}

void rpc_request_done(struct rpc_request *r) {
        free(r->method);
        free(r->op_id);
        json_decref(r->params);
        *r = (struct rpc_request) { 0 };
}

char *rpc_request_encode_op(int64_t id, const char *method, const json_t *params, const char *op_id) {
        _cleanup_json_ json_t *o = json_pack("{s:i, s:I, s:s}", "v", RPC_VERSION, "id", (json_int_t) id, "method",
                                             method);
        if (params)
                json_object_set(o, "params", (json_t *) params);
        if (op_id)
                json_object_set_new(o, "op_id", json_string(op_id));
        return json_dump_compact(o);
}

char *rpc_request_encode(int64_t id, const char *method, const json_t *params) {
        return rpc_request_encode_op(id, method, params, NULL);
}

char *rpc_response_encode_result(bool has_id, int64_t id, const json_t *result) {
        _cleanup_json_ json_t *o = json_object();

        json_object_set_new(o, "id", has_id ? json_integer(id) : json_null());
        json_object_set(o, "result", result ? (json_t *) result : json_null());
        return json_dump_compact(o);
}

char *rpc_response_encode_error(bool has_id, int64_t id, enum rpc_code code, const char *message,
                                const char *op_id) {
        _cleanup_json_ json_t *o = json_object();
        json_t *e = json_pack("{s:s, s:s}", "code", rpc_code_to_string(code), "message", message ? message : "");

        if (op_id && *op_id)
                json_object_set_new(e, "op_id", json_string(op_id));
        json_object_set_new(o, "id", has_id ? json_integer(id) : json_null());
        json_object_set_new(o, "error", e);
        return json_dump_compact(o);
}

int rpc_response_decode(const char *buf, size_t len, struct rpc_response *ret, char **ret_err) {
        _cleanup_json_ json_t *root = NULL;
        json_error_t jerr;
        json_t *id, *err, *result;

        root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root || !json_is_object(root)) {
                *ret_err = xasprintf("malformed response from daemon: %s", root ? "not an object" : jerr.text);
                return -EBADMSG;
        }
        id = json_object_get(root, "id");
        err = json_object_get(root, "error");
        result = json_object_get(root, "result");
        *ret = (struct rpc_response) { .id = json_is_integer(id) ? json_integer_value(id) : -1 };
        if (err) {
                json_t *c = json_object_get(err, "code"), *m = json_object_get(err, "message"),
                       *op = json_object_get(err, "op_id");
                if (!json_is_object(err) || !json_is_string(c) || !json_is_string(m)) {
                        *ret_err = xstrdup("malformed error in daemon response");
                        return -EBADMSG;
                }
                int code = rpc_code_from_string(json_string_value(c));
                ret->is_error = true;
                ret->code = code < 0 ? RPC_OPERATION_FAILED : (enum rpc_code) code;
                ret->code_str = xstrdup(json_string_value(c));
                ret->message = xstrdup(json_string_value(m));
                ret->op_id = json_is_string(op) ? xstrdup(json_string_value(op)) : NULL;
                return 0;
        }
        if (!result) {
                *ret_err = xstrdup("daemon response has neither result nor error");
                return -EBADMSG;
        }
        ret->result = json_incref(result);
        return 0;
}

void rpc_response_done(struct rpc_response *r) {
        json_decref(r->result);
        free(r->code_str);
        free(r->message);
        free(r->op_id);
        *r = (struct rpc_response) { 0 };
}

void rpc_line_reader_init(struct rpc_line_reader *lr, int fd, size_t max) {
        lr->fd = fd;
        lr->max = max;
        lr->consumed = 0;
        strbuf_init(&lr->buf, 0);
}

void rpc_line_reader_done(struct rpc_line_reader *lr) {
        strbuf_release(&lr->buf);
}

int rpc_line_reader_next(struct rpc_line_reader *lr, int timeout_ms, char **ret, size_t *ret_len) {
        int64_t deadline = timeout_ms >= 0 ? mono_ms_now() + timeout_ms : 0;
        size_t scanned = 0;

        /* Drop what the previous call returned. */
        if (lr->consumed) {
                size_t rest = lr->buf.len - lr->consumed;
                memmove(lr->buf.buf, lr->buf.buf + lr->consumed, rest);
                strbuf_setlen(&lr->buf, rest);
                lr->consumed = 0;
        }
        for (;;) {
                char *nl = lr->buf.len > scanned ? memchr(lr->buf.buf + scanned, '\n', lr->buf.len - scanned) : NULL;
                if (nl) {
                        size_t n = (size_t) (nl - lr->buf.buf);
                        if (n > lr->max)
                                return -EMSGSIZE;
                        *nl = '\0';
                        if (n && lr->buf.buf[n - 1] == '\r')
                                lr->buf.buf[--n] = '\0';
                        lr->consumed = (size_t) (nl - lr->buf.buf) + 1;
                        *ret = lr->buf.buf;
                        *ret_len = n;
                        return 1;
                }
                scanned = lr->buf.len;
                if (lr->buf.len > lr->max)
                        return -EMSGSIZE;

                if (timeout_ms >= 0) {
                        int64_t left = deadline - mono_ms_now();
                        struct pollfd p = { .fd = lr->fd, .events = POLLIN };
                        if (left <= 0)
                                return -ETIMEDOUT;
                        int r = poll(&p, 1, (int) left);
                        if (r < 0 && errno != EINTR)
                                return -errno;
                        if (r < 0 && lr->stop_flag && *lr->stop_flag)
                                return -EINTR;
                        if (r <= 0)
                                continue;
                }
                strbuf_grow(&lr->buf, 65536);
                ssize_t k = read(lr->fd, lr->buf.buf + lr->buf.len, lr->buf.alloc - lr->buf.len - 1);
                if (k < 0) {
                        if (errno == EINTR && lr->stop_flag && *lr->stop_flag)
                                return -EINTR;
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        return 0; /* EOF; a partial line without '\n' is dropped */
                strbuf_setlen(&lr->buf, lr->buf.len + (size_t) k);
        }
}

int rpc_write_line(int fd, const char *line) {
        size_t n = strlen(line);
        _cleanup_free_ char *b = xmalloc(n + 1);

        memcpy(b, line, n);
        b[n] = '\n';
        return write_all(fd, b, n + 1);
}
