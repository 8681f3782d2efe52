/* SPDX-License-Identifier: MIT */
#include "dispatch.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "macro.h"
#include "strbuf.h"

void rpc_vmm_choice_done(struct rpc_vmm_choice *c) {
        free(c->vmm);
        free(c->vmm_reason);
        free(c->accel);
        free(c->accel_reason);
        *c = (struct rpc_vmm_choice) { 0 };
}

const struct rpc_method *rpc_method_lookup(const char *name) {
        const struct {
                const struct rpc_method *m;
                const size_t *n;
        } groups[] = { { rpc_daemon_methods, &rpc_daemon_methods_n },
                       { rpc_artifact_methods, &rpc_artifact_methods_n },
                       { rpc_vm_methods, &rpc_vm_methods_n } };
        for (size_t g = 0; g < ELEMENTSOF(groups); g++)
                for (size_t i = 0; i < *groups[g].n; i++)
                        if (strcmp(groups[g].m[i].name, name) == 0)
                                return &groups[g].m[i];
        return NULL;
}

/* ---- progress ------------------------------------------------------------------ */

static void write_progress(struct rpc_call *call, json_t *progress) {
        _cleanup_json_ json_t *o = json_pack("{s:I, s:o}", "id", (json_int_t) call->req_id, "progress", progress);
        _cleanup_free_ char *line = json_dump_compact(o);
        if (call->fd >= 0)
                (void) rpc_write_line(call->fd, line); /* a client gone is noticed by rpc_call_cancelled */
}

void rpc_call_stage(struct rpc_call *call, const char *stage, const char *detail) {
        log_info("%s: %s", stage, detail ? detail : "");
        write_progress(call, json_pack("{s:s, s:s}", "stage", stage, "detail", detail ? detail : ""));
}

void rpc_call_bytes(struct rpc_call *call, const char *stage, uint64_t done, uint64_t total) {
        int64_t now = mono_ms_now();
        if (now - call->last_bytes_ms < 200 && done != total)
                return; /* at most five a second */
        call->last_bytes_ms = now;
        write_progress(call, json_pack("{s:s, s:I, s:I}", "stage", stage, "done", (json_int_t) done, "total",
                                       (json_int_t) total));
}

bool rpc_call_cancelled(struct rpc_call *call) {
        struct pollfd p = { .fd = call->fd, .events = POLLRDHUP };
        return call->fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static void p_stage(void *ud, const char *stage, const char *detail) {
        struct rpc_call *c = ud;
        opstate_set_stage(c->svc->ops, c->op_id, stage);
        rpc_call_stage(c, stage, detail);
}

static void p_bytes(void *ud, const char *stage, uint64_t done, uint64_t total) {
        rpc_call_bytes(ud, stage, done, total);
}

static bool p_cancelled(void *ud) {
        struct rpc_call *c = ud;
        return rpc_call_cancelled(c) || opstate_cancel_requested(c->svc->ops, c->op_id);
}

void rpc_call_progress(struct rpc_call *call, struct progress *ret) {
        *ret = (struct progress) { p_stage, p_bytes, p_cancelled, call };
}

/* ---- one request ------------------------------------------------------------------ */

static char *run_method(const struct rpc_method *m, struct rpc_request *req, struct rpc_call *call) {
        _cleanup_op_error_ struct op_error e = OP_ERROR_INIT;
        _cleanup_free_ void *params = m->params_size ? xcalloc(1, m->params_size) : NULL;
        _cleanup_free_ char *perr = NULL;
        json_t *result = NULL;
        int64_t t0 = mono_ms_now();

        int r = json_decode_fields(req->params, m->params, m->n_params, params, &perr);
        if (r < 0) {
                log_info("rpc %s rejected: %s", m->name, perr);
                json_fields_free(m->params, m->n_params, params);
                return rpc_response_encode_error(true, req->id, RPC_BAD_REQUEST, perr, call->op_id);
        }
        r = m->handler(call, params, &result, &e);
        json_fields_free(m->params, m->n_params, params);
        int64_t dt = mono_ms_now() - t0;
        if (r < 0) {
                if (!op_error_is_set(&e))
                        e.err = r; /* a handler that gave no reason: its errno */
                log_info("rpc %s failed code=%s duration_ms=%lld: %s", m->name, rpc_code_to_string(e.code),
                         (long long) dt, op_error_message(&e));
                json_decref(result);
                return rpc_response_encode_error(true, req->id, e.code, op_error_message(&e), call->op_id);
        }
        log_full(m->flags & RPC_FLAG_QUIET ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO, "rpc %s ok duration_ms=%lld", m->name,
                 (long long) dt);
        if (call->hijacked) {
                json_decref(result);
                return NULL; /* answered; the connection ends here */
        }
        char *resp = rpc_response_encode_result(true, req->id, result);
        json_decref(result);
        return resp;
}

char *rpc_dispatch_line(void *ud, const char *line, size_t len, uid_t uid, pid_t pid, int fd) {
        const struct rpc_services *svc = ud;
        struct rpc_request req = { 0 };
        struct rpc_fault fault;
        char op_id[RPC_OP_ID_SIZE];
        char *resp;

        rpc_op_id_new(op_id);
        log_set_op_id(op_id);
        if (rpc_request_decode(line, len, &req, &fault) < 0) {
                log_info("rpc request rejected code=%s uid=%u pid=%d: %s", rpc_code_to_string(fault.code),
                         (unsigned) uid, (int) pid, fault.msg);
                resp = rpc_response_encode_error(fault.has_id, fault.id, fault.code, fault.msg, op_id);
                log_set_op_id(NULL);
                return resp;
        }
        const struct rpc_method *m = rpc_method_lookup(req.method);
        if (!m) {
                _cleanup_free_ char *msg = xasprintf("unknown method '%s'", req.method);
                log_info("rpc %s", msg);
                resp = rpc_response_encode_error(true, req.id, RPC_UNKNOWN_METHOD, msg, op_id);
        } else {
                struct rpc_call call = { .svc = svc, .op_id = op_id, .peer_uid = uid, .peer_pid = pid, .fd = fd,
                                         .req_id = req.id };
                log_full(m->flags & RPC_FLAG_QUIET ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO, "rpc %s from uid=%u pid=%d",
                         m->name, (unsigned) uid, (int) pid);
                resp = run_method(m, &req, &call);
        }
        rpc_request_done(&req);
        log_set_op_id(NULL);
        return resp;
}
