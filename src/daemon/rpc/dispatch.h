/* SPDX-License-Identifier: MIT */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "jsonx.h"
#include "rpc.h"

struct daemon;

struct rpc_call {
        struct daemon *d; /* borrowed */
        const char *op_id;
        uid_t peer_uid;
        pid_t peer_pid;
        int fd;          /* the client connection: progress lines, hang-up checks */
        int64_t req_id;
        int64_t last_bytes_ms;
};

/* Progress for long methods: {"id":N,"progress":{...}} lines before the
 * response. A client that hangs up cancels the work. */
void rpc_call_stage(struct rpc_call *call, const char *stage, const char *detail);
void rpc_call_bytes(struct rpc_call *call, const char *stage, uint64_t done, uint64_t total);
bool rpc_call_cancelled(struct rpc_call *call);

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
char *rpc_dispatch_line(struct daemon *d, const char *line, size_t len, uid_t uid, pid_t pid, int fd);

/* Handler helpers shared by the method groups (rpc_artifacts.c). */
struct art_error;
struct progress;
/* Maps a subsystem error onto an RPC failure (code by kind), consuming its message. */
int rpc_fail_from(struct art_error *e, int r, struct rpc_failure *fail);
/* Progress that streams stages to the client and records them on the op;
 * cancelled when the client hangs up or the op is cancelled. */
void rpc_call_progress(struct rpc_call *call, struct progress *ret);

/* rpc_artifacts.c, rpc_vms.c */
extern const struct rpc_method rpc_artifact_methods[];
extern const size_t rpc_artifact_methods_n;
extern const struct rpc_method rpc_vm_methods[];
extern const size_t rpc_vm_methods_n;
