/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * RPC dispatch: decode a request line, find the method in the tables of the
 * method families (rpc_daemon.c, rpc_artifacts.c, rpc_vms.c), decode its
 * params table-driven, run the handler, encode the answer. Handlers reach
 * the daemon only through struct rpc_services, which the composition root
 * fills: this folder includes nothing of the daemon root.
 */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "artifacts/artifacts.h"
#include "config.h"
#include "jsonx.h"
#include "layout.h"
#include "op_error.h"
#include "ops/opstate.h"
#include "ops/progress.h"
#include "rpc.h"
#include "vm/vms.h"

struct rpc_vmm_choice {
        char *vmm, *vmm_reason, *accel, *accel_reason; /* owned */
};

/* What handlers may use; every pointer is borrowed. */
struct rpc_services {
        const struct layout *layout;
        struct config_live *config;
        struct opstate_registry *ops;
        struct artifacts *artifacts;
        struct vms *vms;
        const char *reported_commit; /* what ping reports as our commit */
        int64_t started_mono_ms;
        const char *dns_listen;
        bool dns_serving;
        const char *dns_error;       /* why DNS is not served, or NULL */
        bool rootless;               /* new VMs default to user-mode networking */
        /* The daemon's own state, through callbacks (ud: the daemon). */
        void *ud;
        void (*vmm_choice)(void *ud, struct rpc_vmm_choice *ret);
        void (*accel_refresh)(void *ud); /* a kernel was pulled or imported */
        void (*request_stop)(void *ud);  /* daemon.shutdown */
        /* daemon.reload: config.toml again; *ret {path, changed, needs_restart, warnings} */
        int (*reload)(void *ud, json_t **ret, struct op_error *e);
};

void rpc_vmm_choice_done(struct rpc_vmm_choice *c);

struct rpc_call {
        const struct rpc_services *svc; /* borrowed */
        const char *op_id;
        uid_t peer_uid;
        pid_t peer_pid;
        int fd;          /* the client connection: progress lines, hang-up checks */
        int64_t req_id;
        int64_t last_bytes_ms;
        bool hijacked;   /* the handler answered and used the connection itself (vm.exec) */
};

/* Progress for long methods: {"id":N,"progress":{...}} lines before the
 * response. A client that hangs up cancels the work. */
void rpc_call_stage(struct rpc_call *call, const char *stage, const char *detail);
void rpc_call_bytes(struct rpc_call *call, const char *stage, uint64_t done, uint64_t total);
bool rpc_call_cancelled(struct rpc_call *call);
/* Progress that streams stages to the client and records them on the op;
 * cancelled when the client hangs up or the op is cancelled. */
void rpc_call_progress(struct rpc_call *call, struct progress *ret);

/* 0 with *ret_result, or -errno with *e (its code is what the client sees). */
typedef int (*rpc_handler_fn)(struct rpc_call *call, void *params, json_t **ret_result, struct op_error *e);

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

/* Decodes, dispatches and encodes one request line into a response line
 * (an rpc_line_handler_fn; ud: the services). */
char *rpc_dispatch_line(void *ud, const char *line, size_t len, uid_t uid, pid_t pid, int fd);

/* The method families. */
extern const struct rpc_method rpc_daemon_methods[];
extern const size_t rpc_daemon_methods_n;
extern const struct rpc_method rpc_artifact_methods[];
extern const size_t rpc_artifact_methods_n;
extern const struct rpc_method rpc_vm_methods[];
extern const size_t rpc_vm_methods_n;
