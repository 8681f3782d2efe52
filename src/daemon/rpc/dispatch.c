/* SPDX-License-Identifier: MIT */
#include "dispatch.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "daemon.h"
#include "log.h"
#include "macro.h"
#include "rpc_methods.h"
#include "rpc_server.h"
#include "strbuf.h"
#include "version.h"

static int handle_ping(struct rpc_call *call, void *params, json_t **ret, struct rpc_failure *fail) {
        struct daemon *d = call->d;
        _cleanup_free_ char *vmm = NULL, *vmm_reason = NULL, *accel = NULL, *accel_reason = NULL;
        (void) params;
        (void) fail;

        daemon_vmm_choice(d, &vmm, &vmm_reason, &accel, &accel_reason);
        *ret = json_pack("{s:s, s:s, s:s, s:i, s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "version", banger_version(),
                         "commit", d->reported_commit, "built_at", banger_built_at(), "pid", (int) getpid(),
                         "uptime_ms", (json_int_t) (mono_ms_now() - d->started_mono_ms), "vmm", vmm, "vmm_reason",
                         vmm_reason, "accel", accel, "accel_reason", accel_reason, "state_dir", d->layout.state_dir,
                         "socket", d->layout.socket_path);
        json_object_set_new(*ret, "dns", json_pack("{s:s, s:b}", "listen", d->config->dns_listen, "serving",
                                                   d->dns.started));
        if (d->dns_error)
                json_object_set_new(json_object_get(*ret, "dns"), "error", json_string(d->dns_error));
        return 0;
}

static int handle_config_show(struct rpc_call *call, void *params, json_t **ret, struct rpc_failure *fail) {
        (void) params;
        (void) fail;
        *ret = json_pack("{s:s, s:o}", "path", call->d->layout.config_file, "config",
                         config_to_json(call->d->config));
        return 0;
}

struct ops_list_params {
        bool running_only;
};

static const struct json_field ops_list_fields[] = {
        { "running_only", JSON_FIELD_BOOL, offsetof(struct ops_list_params, running_only), false, JSON_NO_PRESENT,
          0, 0 },
};

static int handle_ops_list(struct rpc_call *call, void *params, json_t **ret, struct rpc_failure *fail) {
        struct ops_list_params *p = params;
        struct daemon *d = call->d;
        json_t *all, *out;
        size_t i;
        json_t *op;
        (void) fail;

        opstate_prune(&d->ops, wall_ms());
        all = opstate_list_json(&d->ops);
        if (!p->running_only) {
                out = all;
        } else {
                out = json_array();
                json_array_foreach(all, i, op)
                        if (!json_is_true(json_object_get(op, "done")))
                                json_array_append(out, op);
                json_decref(all);
        }
        *ret = json_pack("{s:o, s:I}", "operations", out, "running", (json_int_t) opstate_count_running(&d->ops));
        return 0;
}

static int handle_shutdown(struct rpc_call *call, void *params, json_t **ret, struct rpc_failure *fail) {
        (void) params;
        (void) fail;
        log_info("shutdown requested over rpc by uid=%u pid=%d", (unsigned) call->peer_uid, (int) call->peer_pid);
        daemon_request_stop(call->d);
        *ret = json_pack("{s:b, s:i}", "stopping", true, "pid", (int) getpid());
        return 0;
}

static const struct rpc_method methods[] = {
        { RPC_METHOD_PING, handle_ping, RPC_FLAG_QUIET, NULL, 0, 0 },
        { RPC_METHOD_CONFIG_SHOW, handle_config_show, 0, NULL, 0, 0 },
        { RPC_METHOD_DAEMON_OPERATIONS_LIST, handle_ops_list, 0, ops_list_fields, ELEMENTSOF(ops_list_fields),
          sizeof(struct ops_list_params) },
        { RPC_METHOD_DAEMON_SHUTDOWN, handle_shutdown, 0, NULL, 0, 0 },
};

const struct rpc_method *rpc_methods(size_t *ret_n) {
        *ret_n = ELEMENTSOF(methods);
        return methods;
}

const struct rpc_method *rpc_method_lookup(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(methods); i++)
                if (strcmp(methods[i].name, name) == 0)
                        return &methods[i];
        const struct {
                const struct rpc_method *m;
                size_t n;
        } groups[] = { { rpc_artifact_methods, rpc_artifact_methods_n }, { rpc_vm_methods, rpc_vm_methods_n } };
        for (size_t g = 0; g < ELEMENTSOF(groups); g++)
                for (size_t i = 0; i < groups[g].n; i++)
                        if (strcmp(groups[g].m[i].name, name) == 0)
                                return &groups[g].m[i];
        return NULL;
}

static void write_progress(struct rpc_call *call, json_t *progress) {
        _cleanup_json_ json_t *o = json_pack("{s:I, s:o}", "id", (json_int_t) call->req_id, "progress", progress);
        _cleanup_free_ char *line = json_dump_compact(o);
        if (call->fd >= 0)
                (void) rpc_write_line(call->fd, line);
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

static char *run_method(struct daemon *d, const struct rpc_method *m, struct rpc_request *req, const char *op_id,
                        uid_t uid, pid_t pid, int fd) {
        struct rpc_call call = { .d = d, .op_id = op_id, .peer_uid = uid, .peer_pid = pid, .fd = fd, .req_id = req->id };
        struct rpc_failure fail = { .code = RPC_OPERATION_FAILED };
        _cleanup_free_ void *params = m->params_size ? xcalloc(1, m->params_size) : NULL;
        _cleanup_free_ char *perr = NULL;
        json_t *result = NULL;
        int64_t t0 = mono_ms_now();
        char *resp;
        int r;

        r = json_decode_fields(req->params, m->params, m->n_params, params, &perr);
        if (r < 0) {
                log_info("rpc %s rejected: %s", m->name, perr);
                json_fields_free(m->params, m->n_params, params);
                return rpc_response_encode_error(true, req->id, RPC_BAD_REQUEST, perr, op_id);
        }
        r = m->handler(&call, params, &result, &fail);
        json_fields_free(m->params, m->n_params, params);
        int64_t dt = mono_ms_now() - t0;
        if (r < 0) {
                _cleanup_free_ char *msg = fail.message ? TAKE_PTR(fail.message) : xstrdup(strerror(-r));
                log_info("rpc %s failed code=%s duration_ms=%lld: %s", m->name, rpc_code_to_string(fail.code),
                         (long long) dt, msg);
                json_decref(result);
                return rpc_response_encode_error(true, req->id, fail.code, msg, op_id);
        }
        log_full(m->flags & RPC_FLAG_QUIET ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO, "rpc %s ok duration_ms=%lld",
                 m->name, (long long) dt);
        resp = rpc_response_encode_result(true, req->id, result);
        json_decref(result);
        return resp;
}

char *rpc_dispatch_line(struct daemon *d, const char *line, size_t len, uid_t uid, pid_t pid, int fd) {
        struct rpc_request req = { 0 };
        struct rpc_fault fault;
        char op_id[16];
        char *resp;

        rpc_new_op_id(op_id);
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
                log_full(m->flags & RPC_FLAG_QUIET ? LOG_LEVEL_DEBUG : LOG_LEVEL_INFO,
                         "rpc %s from uid=%u pid=%d", m->name, (unsigned) uid, (int) pid);
                resp = run_method(d, m, &req, op_id, uid, pid, fd);
        }
        rpc_request_done(&req);
        log_set_op_id(NULL);
        return resp;
}
