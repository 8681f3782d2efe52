/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The bangerd wire protocol (docs/PROTOCOL.md): one JSON object per line.
 *   request   {"v":1,"id":N,"method":"...","params":{...}}
 *   response  {"id":N,"result":...}
 *          or {"id":N,"error":{"code":"...","message":"...","op_id":"op-xxxxxx"}}
 * Decoding and encoding are pure (fuzzed); rpc_line_reader does the framing.
 */

#include <jansson.h>
#include <stdbool.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "strbuf.h"

#define RPC_VERSION 1
#define RPC_MAX_MESSAGE (1u << 20) /* bytes per line, both directions */

enum rpc_code {
        RPC_BAD_REQUEST,
        RPC_BAD_VERSION,
        RPC_UNKNOWN_METHOD,
        RPC_NOT_FOUND,
        RPC_ALREADY_EXISTS,
        RPC_UNAUTHORIZED,
        RPC_OPERATION_FAILED,
        _RPC_CODE_MAX,
};

const char *rpc_code_to_string(enum rpc_code c);

/* A fresh "op-xxxxxx": names one request in every log line and error. */
#define RPC_OP_ID_SIZE 16
void rpc_op_id_new(char buf[static RPC_OP_ID_SIZE]);
int rpc_code_from_string(const char *s); /* code or -EINVAL */
/* The errno a client reports for a code: -ENOENT for not_found, -EEXIST,
 * -EINVAL, -EACCES, -EOPNOTSUPP, -EPROTO, else -EIO. */
int rpc_code_to_errno(enum rpc_code c);

struct rpc_request {
        int64_t id;
        char *method;   /* owned */
        json_t *params; /* owned; NULL when absent */
        char *op_id;    /* owned; NULL when absent: the caller's operation id
                         * ("op-" + 6 hex digits), adopted by the root helper */
};

/* Why a request could not be decoded; id is kept when it could be read. */
struct rpc_fault {
        enum rpc_code code;
        bool has_id;
        int64_t id;
        char msg[160];
};

int rpc_request_decode(const char *buf, size_t len, struct rpc_request *ret, struct rpc_fault *fault);
void rpc_request_done(struct rpc_request *r);

/* Encoders return a malloc'd line without the trailing '\n'. */
char *rpc_request_encode(int64_t id, const char *method, const json_t *params);
/* The same with the caller's op_id (NULL: none). */
char *rpc_request_encode_op(int64_t id, const char *method, const json_t *params, const char *op_id);
/* "op-" + 6 lowercase hex digits. */
bool rpc_op_id_valid(const char *s);
char *rpc_response_encode_result(bool has_id, int64_t id, const json_t *result);
char *rpc_response_encode_error(bool has_id, int64_t id, enum rpc_code code, const char *message,
                                const char *op_id);

struct rpc_response {
        int64_t id;
        json_t *result; /* owned; NULL on error */
        bool is_error;
        enum rpc_code code;
        char *code_str; /* owned; as sent (unknown codes kept verbatim) */
        char *message;  /* owned */
        char *op_id;    /* owned; may be NULL */
};

int rpc_response_decode(const char *buf, size_t len, struct rpc_response *ret, char **ret_err);
void rpc_response_done(struct rpc_response *r);

/* Line framing over a stream fd. */
struct rpc_line_reader {
        int fd; /* borrowed */
        size_t max;
        struct strbuf buf;
        size_t consumed; /* bytes of buf already returned */
        /* When set and non-zero after a signal interrupted a wait, the reader
         * gives up with -EINTR (a CLI's Ctrl-C); otherwise EINTR is retried. */
        const volatile sig_atomic_t *stop_flag;
};

void rpc_line_reader_init(struct rpc_line_reader *lr, int fd, size_t max);
void rpc_line_reader_done(struct rpc_line_reader *lr);
/*
 * Next line (without '\n', NUL-terminated, valid until the next call) in
 * *ret. Returns 1 for a line, 0 at EOF, -EMSGSIZE when a line exceeds max,
 * -ETIMEDOUT when timeout_ms (-1: none) passes without a full line, or -errno.
 */
int rpc_line_reader_next(struct rpc_line_reader *lr, int timeout_ms, char **ret, size_t *ret_len);

/* Writes line + '\n'. */
int rpc_write_line(int fd, const char *line);
