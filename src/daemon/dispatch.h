/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>
#include <stddef.h>
#include <sys/types.h>

#include "jsonx.h"
#include "rpc.h"

struct daemon;

struct rpc_call {
        struct daemon *d; /* borrowed */
        const char *op_id;
        uid_t peer_uid;
        pid_t peer_pid;
};

struct rpc_failure {
        enum rpc_code code;
        char *message; /* owned */
};

/* params: the decoded parameter struct (see the table), or NULL. */
typedef int (*rpc_handler_fn)(struct rpc_call *call, void *params, json_t **ret_result, struct rpc_failure *fail);

enum {
        RPC_FLAG_QUIET = 1 << 0, /* log at debug, not info (ping is frequent) */
};

struct rpc_method {
        const char *name;
        rpc_handler_fn handler;
        unsigned flags;
        const struct json_field *params; /* table-driven decoding */
        size_t n_params;
        size_t params_size;
};

const struct rpc_method *rpc_method_lookup(const char *name);
const struct rpc_method *rpc_methods(size_t *ret_n);

/* Decodes, dispatches and encodes one request line into a response line. */
char *rpc_dispatch_line(struct daemon *d, const char *line, size_t len, uid_t uid, pid_t pid);
