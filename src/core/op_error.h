/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The daemon's one error type (docs/ERRORS.md). A function that can fail
 * returns 0 or a negative errno and, when the caller passed one, fills a
 * struct op_error with what the user should read (msg), the RPC code a
 * client sees (code) and the errno (err). Callers add context with
 * op_prefix() on the way up; dispatch turns it into {code, message, op_id}.
 *
 * Invariants: msg is NULL or owned; err is 0 (unset) or negative; every
 * setter replaces what was there and returns the (negative) error, so
 * `return op_fail(e, r, "...")` is the idiom. e may be NULL (the caller does
 * not want the message).
 */

#include <stdbool.h>

#include "macro.h"
#include "rpc.h"

struct op_error {
        enum rpc_code code;
        int err;   /* negative errno, 0 while unset */
        char *msg; /* owned; NULL while unset */
};

#define OP_ERROR_INIT { .code = RPC_OPERATION_FAILED, .err = 0, .msg = NULL }

/* Sets code, errno (any value >= 0 becomes -EIO) and message; returns the errno. */
int op_fail_as(struct op_error *e, enum rpc_code code, int err, const char *fmt, ...) _printf_(4, 5);
/* The common case: RPC_OPERATION_FAILED. */
int op_fail(struct op_error *e, int err, const char *fmt, ...) _printf_(3, 4);
/* RPC_BAD_REQUEST with -EINVAL; RPC_NOT_FOUND with -ENOENT. */
int op_bad_request(struct op_error *e, const char *fmt, ...) _printf_(2, 3);
int op_not_found(struct op_error *e, const char *fmt, ...) _printf_(2, 3);
/* "<context>: <message>" (the message alone when e had none: its strerror);
 * keeps code and errno. Returns e->err, or -EIO when it was unset. */
int op_prefix(struct op_error *e, const char *fmt, ...) _printf_(2, 3);
/* Bridges a library call that reports with a message string (shared/ and
 * core/ use `char **ret_err`): when r < 0, *msg (taken, may be NULL) becomes
 * the message. Returns r. */
int op_take_msg(struct op_error *e, int r, char **msg);
/* Only the code (e.g. a lower layer's failure is the client's fault). */
int op_recode(struct op_error *e, enum rpc_code code);

/* The message, else strerror of err, else "unknown error". Never NULL. */
const char *op_error_message(const struct op_error *e);
bool op_error_is_set(const struct op_error *e);
/* Frees the message and resets to OP_ERROR_INIT. Accepts NULL. */
void op_error_done(struct op_error *e);
/* Copies src into dst (dst's old message freed). */
void op_error_copy(struct op_error *dst, const struct op_error *src);
/* Moves src into dst (dst's old message freed; src reset). */
void op_error_move(struct op_error *dst, struct op_error *src);

#define _cleanup_op_error_ _cleanup_(op_error_done)
