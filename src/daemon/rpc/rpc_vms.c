/* SPDX-License-Identifier: MIT */
/* RPC handlers for vm.*: decode, call the VM service, map its errors. */
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "dispatch.h"
#include "macro.h"
#include "rpc_methods.h"
#include "vm/vms.h"

struct vm_params {
        char *vm;
        char *op_id;
        char *name, *image, *net, *vmm;
        int64_t vcpu, memory_mib, disk_size_bytes, system_overlay_size_bytes, signal;
        bool vcpu_set, memory_set, nat, nat_set, isolate, isolate_set, no_start, wait_ssh, wait_ssh_set;
        char *path, *branch, *from, *base_commit, *output;
        bool include_untracked, dry_run;
        bool kill, background, cold, all;
        char *key, *from_snapshot, *spec;
        json_t *argv, *env, *publish;
        char *cwd;
        bool pty;
        int64_t rows, cols, uid, gid;
};

#define F(n, t, f, req) { n, t, offsetof(struct vm_params, f), req, JSON_NO_PRESENT, 0, 0 }
#define FP(n, t, f, pres) { n, t, offsetof(struct vm_params, f), false, offsetof(struct vm_params, pres), 0, 0 }
#define FR(n, f, lo, hi) { n, JSON_FIELD_INT, offsetof(struct vm_params, f), false, JSON_NO_PRESENT, lo, hi }
static const struct json_field vm_only[] = { F("vm", JSON_FIELD_STRING, vm, true) };
static const struct json_field op_only[] = { F("op_id", JSON_FIELD_STRING, op_id, true) };
static const struct json_field create_fields[] = {
        F("name", JSON_FIELD_STRING, name, false),
        F("image", JSON_FIELD_STRING, image, false),
        FP("vcpu", JSON_FIELD_INT, vcpu, vcpu_set),
        FP("memory_mib", JSON_FIELD_INT, memory_mib, memory_set),
        FR("disk_size_bytes", disk_size_bytes, 0, INT64_MAX),
        FR("system_overlay_size_bytes", system_overlay_size_bytes, 0, INT64_MAX),
        F("no_start", JSON_FIELD_BOOL, no_start, false),
        F("nat", JSON_FIELD_BOOL, nat, false),
        F("isolate", JSON_FIELD_BOOL, isolate, false),
        F("net", JSON_FIELD_STRING, net, false),
        F("vmm", JSON_FIELD_STRING, vmm, false),
        F("cold", JSON_FIELD_BOOL, cold, false),
        F("from_snapshot", JSON_FIELD_STRING, from_snapshot, false),
        FP("wait_ssh", JSON_FIELD_BOOL, wait_ssh, wait_ssh_set),
        F("workspace_path", JSON_FIELD_STRING, path, false),
        F("include_untracked", JSON_FIELD_BOOL, include_untracked, false),
        F("branch", JSON_FIELD_STRING, branch, false),
        F("from", JSON_FIELD_STRING, from, false),
        F("publish", JSON_FIELD_JSON, publish, false),
};
static const struct json_field fwd_add_fields[] = { F("vm", JSON_FIELD_STRING, vm, true),
                                                    F("spec", JSON_FIELD_STRING, spec, true) };
static const struct json_field fwd_rm_fields[] = { F("vm", JSON_FIELD_STRING, vm, true),
                                                   F("key", JSON_FIELD_STRING, key, true) };
static const struct json_field fwd_list_fields[] = { F("vm", JSON_FIELD_STRING, vm, false) };
static const struct json_field snap_fields[] = { F("vm", JSON_FIELD_STRING, vm, true),
                                                 F("name", JSON_FIELD_STRING, name, false) };
static const struct json_field snap_named_fields[] = { F("vm", JSON_FIELD_STRING, vm, true),
                                                       F("name", JSON_FIELD_STRING, name, true) };
static const struct json_field tpl_rm_fields[] = { F("key", JSON_FIELD_STRING, key, false),
                                                   F("all", JSON_FIELD_BOOL, all, false) };
static const struct json_field kill_fields[] = { F("vm", JSON_FIELD_STRING, vm, true),
                                                 FR("signal", signal, 1, 64) };
static const struct json_field set_fields[] = {
        F("vm", JSON_FIELD_STRING, vm, true),
        FP("vcpu", JSON_FIELD_INT, vcpu, vcpu_set),
        FP("memory_mib", JSON_FIELD_INT, memory_mib, memory_set),
        FR("disk_size_bytes", disk_size_bytes, 0, INT64_MAX),
        FP("nat", JSON_FIELD_BOOL, nat, nat_set),
        FP("isolate", JSON_FIELD_BOOL, isolate, isolate_set),
};
static const struct json_field prepare_fields[] = {
        F("vm", JSON_FIELD_STRING, vm, true),
        F("path", JSON_FIELD_STRING, path, true),
        F("include_untracked", JSON_FIELD_BOOL, include_untracked, false),
        F("dry_run", JSON_FIELD_BOOL, dry_run, false),
        F("branch", JSON_FIELD_STRING, branch, false),
        F("from", JSON_FIELD_STRING, from, false),
};
static const struct json_field export_fields[] = {
        F("vm", JSON_FIELD_STRING, vm, true),
        F("base_commit", JSON_FIELD_STRING, base_commit, false),
        F("output", JSON_FIELD_STRING, output, true),
};
static const struct json_field delete_fields[] = {
        F("vm", JSON_FIELD_STRING, vm, true),
        F("kill", JSON_FIELD_BOOL, kill, false),
        F("background", JSON_FIELD_BOOL, background, false),
};
static const struct json_field exec_fields[] = {
        F("vm", JSON_FIELD_STRING, vm, true),
        F("argv", JSON_FIELD_JSON, argv, true),
        F("env", JSON_FIELD_JSON, env, false),
        F("cwd", JSON_FIELD_STRING, cwd, false),
        F("pty", JSON_FIELD_BOOL, pty, false),
        FR("rows", rows, 0, 65535),
        FR("cols", cols, 0, 65535),
        FR("uid", uid, 0, 4294967294LL),
        FR("gid", gid, 0, 4294967294LL),
};
#undef F
#undef FP
#undef FR

#define MAX_PUBLISH 64

/* publish: ["[HOSTIP:]HOSTPORT:GUESTPORT[/proto]", ...] */
static int publish_parse(json_t *a, struct port_spec *ret, size_t *ret_n, struct op_error *e) {
        *ret_n = 0;
        if (!a || json_is_null(a))
                return 0;
        if (!json_is_array(a))
                return op_bad_request(e, "publish: want an array of port forward specs");
        if (json_array_size(a) > MAX_PUBLISH)
                return op_bad_request(e, "publish: at most %d forwards", MAX_PUBLISH);
        size_t i;
        json_t *x;
        json_array_foreach(a, i, x) {
                const char *why = NULL;
                if (!json_is_string(x))
                        return op_bad_request(e, "publish[%zu]: want a string", i);
                if (port_spec_parse(json_string_value(x), &ret[i], &why) < 0)
                        return op_bad_request(e, "--publish '%s': %s (want [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp])",
                                              json_string_value(x), why);
        }
        *ret_n = json_array_size(a);
        return 0;
}

static int h_create_begin(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        struct port_spec pub[MAX_PUBLISH];
        size_t n_pub;
        if (publish_parse(p->publish, pub, &n_pub, e) < 0)
                return -EINVAL;
        struct vm_create_req req = {
                .name = p->name, .image = p->image, .vcpu = p->vcpu, .memory_mib = p->memory_mib,
                .disk_size_bytes = p->disk_size_bytes, .system_overlay_size_bytes = p->system_overlay_size_bytes,
                .vcpu_set = p->vcpu_set, .memory_set = p->memory_set, .no_start = p->no_start, .nat = p->nat,
                .isolate = p->isolate, .net = p->net, .vmm = p->vmm, .no_ssh_wait = p->wait_ssh_set && !p->wait_ssh, .cold = p->cold,
                .from_snapshot = p->from_snapshot, .publish = pub, .n_publish = n_pub,
        };
        struct workspace_req ws = { .host_path = p->path, .include_untracked = p->include_untracked,
                                    .branch = p->branch, .from = p->from };
        if (p->path)
                req.workspace = &ws;
        else if (p->branch || p->from || p->include_untracked)
                return op_bad_request(e, "branch, from and include_untracked need workspace_path");
        int r = vm_create_begin(call->svc->vms, call->op_id, &req, ret, e);
        return r;
}

static int h_create_status(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        int r = vm_create_status(call->svc->vms, p->op_id, ret, e);
        return r;
}

static int h_create_cancel(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        int r = vm_create_cancel(call->svc->vms, p->op_id, ret, e);
        return r;
}

static int h_list(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        (void) params;
        int r = vm_list(call->svc->vms, ret, e);
        return r;
}

static int h_show(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        int r = vm_show(call->svc->vms, p->vm, ret, e);
        return r;
}

typedef int (*lifecycle_fn)(struct vms *, const char *, const struct progress *, json_t **, struct op_error *);

static int lifecycle(struct rpc_call *call, void *params, json_t **ret, struct op_error *e, lifecycle_fn fn) {
        struct vm_params *p = params;
        struct progress pr;
        rpc_call_progress(call, &pr);
        int r = fn(call->svc->vms, p->vm, &pr, ret, e);
        return r;
}

static int h_start(struct rpc_call *c, void *p, json_t **ret, struct op_error *e) {
        return lifecycle(c, p, ret, e, vm_start);
}
static int h_stop(struct rpc_call *c, void *p, json_t **ret, struct op_error *e) {
        return lifecycle(c, p, ret, e, vm_stop);
}
static int h_restart(struct rpc_call *c, void *p, json_t **ret, struct op_error *e) {
        return lifecycle(c, p, ret, e, vm_restart);
}
static int h_delete(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        struct progress pr;
        rpc_call_progress(call, &pr);
        return vm_delete_ex(call->svc->vms, p->vm, p->kill, p->background, &pr, ret, e);
}

static int h_kill(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        int r = vm_kill(call->svc->vms, p->vm, p->signal ? (int) p->signal : SIGKILL, ret, e);
        return r;
}

static int h_set(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        struct vm_set_req req = { .vcpu = p->vcpu, .memory_mib = p->memory_mib, .disk_size_bytes = p->disk_size_bytes,
                                  .vcpu_set = p->vcpu_set, .memory_set = p->memory_set,
                                  .nat = p->nat_set ? p->nat : -1, .isolate = p->isolate_set ? p->isolate : -1 };
        int r = vm_set(call->svc->vms, p->vm, &req, ret, e);
        return r;
}

static int h_health(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        int r = vm_agent(call->svc->vms, p->vm, "health", ret, e);
        return r;
}

static int h_ports(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        int r = vm_agent(call->svc->vms, p->vm, "ports", ret, e);
        json_t *fw = NULL;
        /* what the host relays to the guest beside what listens there */
        if (r == 0 && json_is_object(*ret) && vm_forward_list(call->svc->vms, p->vm, &fw, NULL) == 0) {
                json_object_set(*ret, "forwards", json_object_get(fw, "forwards"));
                json_decref(fw);
        }
        return r;
}

static int h_forward_add(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        return vm_forward_add(call->svc->vms, p->vm, p->spec, ret, e);
}

static int h_forward_rm(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        return vm_forward_remove(call->svc->vms, p->vm, p->key, ret, e);
}

static int h_forward_list(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        return vm_forward_list(call->svc->vms, p->vm, ret, e);
}

static int h_stats(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        int r = vm_stats(call->svc->vms, p->vm, ret, e);
        return r;
}

static int h_touch(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        int r = vm_touch(call->svc->vms, p->vm, e);
        if (r < 0)
                return r;
        *ret = json_pack("{s:b}", "touched", true);
        return 0;
}

static int h_ws_prepare(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        struct progress pr;
        rpc_call_progress(call, &pr);
        struct workspace_req q = { .host_path = p->path, .include_untracked = p->include_untracked,
                                   .dry_run = p->dry_run, .branch = p->branch, .from = p->from };
        int r = workspace_prepare(call->svc->vms, p->vm, &q, &pr, ret, e);
        return r;
}

static int h_ws_export(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        int r = workspace_export(call->svc->vms, p->vm, p->base_commit, p->output, ret, e);
        return r;
}

static int h_snapshot(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        struct progress pr;
        rpc_call_progress(call, &pr);
        return vm_snapshot_create(call->svc->vms, p->vm, p->name, &pr, ret, e);
}

static int h_restore(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        struct progress pr;
        rpc_call_progress(call, &pr);
        return vm_snapshot_restore(call->svc->vms, p->vm, p->name, &pr, ret, e);
}

static int h_snapshot_list(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        return vm_snapshot_list(call->svc->vms, p->vm, ret, e);
}

static int h_snapshot_delete(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        return vm_snapshot_delete(call->svc->vms, p->vm, p->name, ret, e);
}

static int h_template_list(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        (void) params;
        return vm_template_list(call->svc->vms, ret, e);
}

/* {key}: that one; {}: the stale ones; {all: true}: every one. */
static int h_template_rm(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        if (p->key && p->all)
                return op_bad_request(e, "key and all exclude each other");
        return vm_template_rm(call->svc->vms, p->key, !p->key && !p->all, ret, e);
}

/* The answer goes out here, then the connection carries the exec's frames
 * (docs/PROTOCOL.md) until it ends; nothing more is written after. */
static int h_exec(struct rpc_call *call, void *params, json_t **ret, struct op_error *e) {
        struct vm_params *p = params;
        struct vm_exec_req q = { .argv = p->argv, .env = p->env, .cwd = p->cwd, .pty = p->pty, .rows = p->rows,
                                 .cols = p->cols, .uid = (uint32_t) p->uid, .gid = (uint32_t) p->gid };
        struct agent_exec *x;
        uint32_t pid;
        int r = vm_exec_open(call->svc->vms, p->vm, &q, &x, &pid, e);
        if (r < 0)
                return r;
        _cleanup_json_ json_t *res = json_pack("{s:i, s:b, s:i}", "pid", (int) pid, "upgraded", true, "protocol", 2);
        _cleanup_free_ char *line = rpc_response_encode_result(true, call->req_id, res);
        call->hijacked = true;
        if (rpc_write_line(call->fd, line) == 0)
                vm_exec_attach(call->svc->vms, x, call->fd);
        vm_exec_finish(call->svc->vms, x);
        *ret = NULL;
        return 0;
}

#define M(name, h, fields) { name, h, 0, fields, ELEMENTSOF(fields), sizeof(struct vm_params) }
const struct rpc_method rpc_vm_methods[] = {
        M(RPC_METHOD_VM_CREATE_BEGIN, h_create_begin, create_fields),
        { RPC_METHOD_VM_CREATE_STATUS, h_create_status, RPC_FLAG_QUIET, op_only, 1, sizeof(struct vm_params) },
        M(RPC_METHOD_VM_CREATE_CANCEL, h_create_cancel, op_only),
        { RPC_METHOD_VM_LIST, h_list, 0, NULL, 0, sizeof(struct vm_params) },
        M(RPC_METHOD_VM_SHOW, h_show, vm_only),
        M(RPC_METHOD_VM_START, h_start, vm_only),
        M(RPC_METHOD_VM_STOP, h_stop, vm_only),
        M(RPC_METHOD_VM_RESTART, h_restart, vm_only),
        M(RPC_METHOD_VM_KILL, h_kill, kill_fields),
        M(RPC_METHOD_VM_DELETE, h_delete, delete_fields),
        M(RPC_METHOD_VM_SET, h_set, set_fields),
        M(RPC_METHOD_VM_HEALTH, h_health, vm_only),
        M(RPC_METHOD_VM_PORTS, h_ports, vm_only),
        M(RPC_METHOD_VM_STATS, h_stats, vm_only),
        M(RPC_METHOD_VM_FORWARD_ADD, h_forward_add, fwd_add_fields),
        M(RPC_METHOD_VM_FORWARD_REMOVE, h_forward_rm, fwd_rm_fields),
        M(RPC_METHOD_VM_FORWARD_LIST, h_forward_list, fwd_list_fields),
        M(RPC_METHOD_WORKSPACE_PREPARE, h_ws_prepare, prepare_fields),
        M(RPC_METHOD_WORKSPACE_EXPORT, h_ws_export, export_fields),
        M(RPC_METHOD_VM_EXEC, h_exec, exec_fields),
        M(RPC_METHOD_VM_SNAPSHOT, h_snapshot, snap_fields),
        M(RPC_METHOD_VM_RESTORE, h_restore, snap_named_fields),
        M(RPC_METHOD_VM_SNAPSHOT_LIST, h_snapshot_list, vm_only),
        M(RPC_METHOD_VM_SNAPSHOT_DELETE, h_snapshot_delete, snap_named_fields),
        { RPC_METHOD_TEMPLATE_LIST, h_template_list, 0, NULL, 0, sizeof(struct vm_params) },
        M(RPC_METHOD_TEMPLATE_RM, h_template_rm, tpl_rm_fields),
        { RPC_METHOD_VM_TOUCH, h_touch, RPC_FLAG_QUIET, vm_only, 1, sizeof(struct vm_params) },
};
#undef M
const size_t rpc_vm_methods_n = ELEMENTSOF(rpc_vm_methods);
