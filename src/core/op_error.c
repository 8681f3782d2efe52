/* SPDX-License-Identifier: MIT */
#include "op_error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

_printf_(4, 0) static int set(struct op_error *e, enum rpc_code code, int err, const char *fmt, va_list ap) {
        if (err >= 0)
                err = -EIO;
        if (!e)
                return err;
        char *msg = NULL;
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        free(e->msg);
        e->msg = msg;
        e->code = code;
        e->err = err;
        return err;
}

int op_fail_as(struct op_error *e, enum rpc_code code, int err, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int r = set(e, code, err, fmt, ap);
        va_end(ap);
        return r;
}

int op_fail(struct op_error *e, int err, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int r = set(e, RPC_OPERATION_FAILED, err, fmt, ap);
        va_end(ap);
        return r;
}

int op_bad_request(struct op_error *e, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int r = set(e, RPC_BAD_REQUEST, -EINVAL, fmt, ap);
        va_end(ap);
        return r;
}

int op_not_found(struct op_error *e, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        int r = set(e, RPC_NOT_FOUND, -ENOENT, fmt, ap);
        va_end(ap);
        return r;
}

int op_prefix(struct op_error *e, const char *fmt, ...) {
        if (!e)
                return -EIO;
        if (e->err >= 0)
                e->err = -EIO;
        char *ctx = NULL;
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&ctx, fmt, ap) < 0)
                ctx = NULL;
        va_end(ap);
        if (ctx) {
                char *msg = xasprintf("%s: %s", ctx, op_error_message(e));
                free(ctx);
                free(e->msg);
                e->msg = msg;
        }
        return e->err;
}

int op_recode(struct op_error *e, enum rpc_code code) {
        if (!e)
                return -EIO;
        e->code = code;
        if (e->err >= 0)
                e->err = -EIO;
        return e->err;
}

const char *op_error_message(const struct op_error *e) {
        if (e && e->msg)
                return e->msg;
        if (e && e->err < 0)
                return strerror(-e->err);
        return "unknown error";
}

bool op_error_is_set(const struct op_error *e) {
        return e && (e->err < 0 || e->msg);
}

void op_error_done(struct op_error *e) {
        if (!e)
                return;
        free(e->msg);
        *e = (struct op_error) OP_ERROR_INIT;
}

void op_error_move(struct op_error *dst, struct op_error *src) {
        if (!dst) {
                op_error_done(src);
                return;
        }
        free(dst->msg);
        *dst = *src;
        *src = (struct op_error) OP_ERROR_INIT;
}

void op_error_copy(struct op_error *dst, const struct op_error *src) {
        if (!dst)
                return;
        free(dst->msg);
        dst->code = src->code;
        dst->err = src->err < 0 ? src->err : -EIO;
        dst->msg = src->msg ? xstrdup(src->msg) : NULL;
}

int op_take_msg(struct op_error *e, int r, char **msg) {
        if (r >= 0) {
                free(*msg);
                *msg = NULL;
                return r;
        }
        if (e) {
                free(e->msg);
                e->code = RPC_OPERATION_FAILED;
                e->err = r;
                e->msg = *msg;
        } else
                free(*msg);
        *msg = NULL;
        return r;
}
