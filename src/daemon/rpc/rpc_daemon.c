/* SPDX-License-Identifier: MIT */
/* RPC handlers about the daemon itself: ping, config.show,
 * daemon.operations.list, daemon.shutdown, daemon.reload. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "dispatch.h"
#include "hostinfo.h"
#include "log.h"
#include "macro.h"
#include "rpc_methods.h"
#include "strbuf.h"
#include "version.h"

static int handle_ping(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        const struct rpc_services *s = call->svc;
        struct rpc_vmm_choice c = { 0 };
        (void) params;
        (void) e;
        s->vmm_choice(s->ud, &c);
        *ret = json_pack("{s:s, s:s, s:s, s:i, s:I, s:s, s:s, s:s, s:s, s:s, s:s}", "version", banger_version(),
                         "commit", s->reported_commit, "built_at", banger_built_at(), "pid", (int) getpid(),
                         "uptime_ms", (json_int_t) (mono_ms_now() - s->started_mono_ms), "vmm", c.vmm, "vmm_reason",
                         c.vmm_reason, "accel", c.accel, "accel_reason", c.accel_reason, "state_dir",
                         s->layout->state_dir, "socket", s->layout->socket_path);
        rpc_vmm_choice_done(&c);
        json_t *dns = json_pack("{s:s, s:b}", "listen", s->dns_listen, "serving", s->dns_serving);
        if (s->dns_error)
                json_object_set_new(dns, "error", json_string(s->dns_error));
        json_object_set_new(*ret, "dns", dns);
        json_object_set_new(*ret, "default_net", json_string(s->rootless ? "user" : "bridge"));
        size_t target, idle;
        vms_tap_pool_state(s->vms, &target, &idle);
        json_object_set_new(*ret, "tap_pool", json_pack("{s:I, s:I}", "target", (json_int_t) target, "idle",
                                                        (json_int_t) idle));
        return 0;
}

/* The running config, and how config.toml as it is now differs from it:
 * "file_differs" [{key, running, file, needs_restart}] (edits a reload would
 * apply, or keys that wait for a restart), or "file_error" when it does not load. */
static int handle_config_show(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        const struct config *cur = config_live_get(call->svc->config);
        _cleanup_free_ char *msg = NULL;
        struct config *file = NULL;
        (void) params;
        (void) e;
        *ret = json_pack("{s:s, s:o}", "path", call->svc->layout->config_file, "config", config_to_json(cur));
        if (hostinfo_load_config(call->svc->layout, &file, &msg) < 0) {
                json_object_set_new(*ret, "file_error", json_string(msg));
                return 0;
        }
        _cleanup_json_ json_t *diff = config_diff(cur, file, false);
        json_t *out = json_array(), *d;
        size_t k;
        const char *const lists[] = { "changed", "needs_restart" };
        for (size_t l = 0; l < ELEMENTSOF(lists); l++)
                json_array_foreach(json_object_get(diff, lists[l]), k, d) {
                        json_t *x = json_deep_copy(d);
                        json_object_set_new(x, "needs_restart", json_boolean(l == 1));
                        json_array_append_new(out, x);
                }
        json_object_set_new(*ret, "file_differs", out);
        config_free(file);
        return 0;
}

struct ops_list_params {
        bool running_only;
};

static const struct json_field ops_list_fields[] = {
        { "running_only", JSON_FIELD_BOOL, offsetof(struct ops_list_params, running_only), false, JSON_NO_PRESENT,
          0, 0 },
};

static int handle_ops_list(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct ops_list_params *p = params;
        struct opstate_registry *ops = call->svc->ops;
        json_t *all, *out, *op;
        size_t i;
        (void) e;

        opstate_prune(ops, wall_ms());
        all = opstate_list_json(ops);
        if (!p->running_only) {
                out = all;
        } else {
                out = json_array();
                json_array_foreach(all, i, op)
                        if (!json_is_true(json_object_get(op, "done")))
                                json_array_append(out, op);
                json_decref(all);
        }
        *ret = json_pack("{s:o, s:I}", "operations", out, "running", (json_int_t) opstate_count_running(ops));
        return 0;
}

static int handle_shutdown(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        (void) params;
        (void) e;
        log_info("shutdown requested over rpc by uid=%u pid=%d", (unsigned) call->peer_uid, (int) call->peer_pid);
        call->svc->request_stop(call->svc->ud);
        *ret = json_pack("{s:b, s:i}", "stopping", true, "pid", (int) getpid());
        return 0;
}

static int handle_reload(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        (void) params;
        log_info("config reload requested over rpc by uid=%u pid=%d", (unsigned) call->peer_uid, (int) call->peer_pid);
        return call->svc->reload(call->svc->ud, ret, e);
}

const struct rpc_method rpc_daemon_methods[] = {
        { RPC_METHOD_PING, handle_ping, RPC_FLAG_QUIET, NULL, 0, 0 },
        { RPC_METHOD_CONFIG_SHOW, handle_config_show, 0, NULL, 0, 0 },
        { RPC_METHOD_DAEMON_OPERATIONS_LIST, handle_ops_list, 0, ops_list_fields, ELEMENTSOF(ops_list_fields),
          sizeof(struct ops_list_params) },
        { RPC_METHOD_DAEMON_SHUTDOWN, handle_shutdown, 0, NULL, 0, 0 },
        { RPC_METHOD_DAEMON_RELOAD, handle_reload, 0, NULL, 0, 0 },
};
const size_t rpc_daemon_methods_n = ELEMENTSOF(rpc_daemon_methods);
