/* SPDX-License-Identifier: MIT */
/*
 * A VM's port forwards: recorded in vm_forwards (they belong to the VM and
 * outlive its runs), open while it runs (the forward capability hook opens
 * them once the guest answers and closes them when the VMM is gone;
 * reconcile opens them again for the VMs it adopts). `vm forward` adds and
 * removes them on a VM in any state, under the VM's lock.
 *
 * Bridge mode: bangerd's relay (net/forward.c) listens and connects to the
 * guest's address. User-mode networking: the guest has no address the host
 * reaches, so the VMM forwards (slirp's hostfwd); it keeps them while it
 * runs, through daemon restarts, and they go with it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonx.h"
#include "log.h"
#include "net/forward.h"
#include "strbuf.h"
#include "vms_internal.h"

static bool wildcard(const struct port_spec *f) {
        return strcmp(f->host_ip, "0.0.0.0") == 0 || strcmp(f->host_ip, "::") == 0;
}

/* Could a and b not both listen? Same protocol and port, and the same
 * address or one the wildcard of the other's family (0.0.0.0 takes every
 * IPv4 address; :: every IPv6 one, as the relay binds it IPV6_V6ONLY). */
static bool clash(const struct port_spec *a, const struct port_spec *b) {
        if (a->proto != b->proto || a->host_port != b->host_port || port_spec_is_v6(a) != port_spec_is_v6(b))
                return false;
        return strcmp(a->host_ip, b->host_ip) == 0 || wildcard(a) || wildcard(b);
}

/* user_live: a running user-mode VM (its VMM holds the forward; no
 * connection count of ours). */
static json_t *forward_json(struct vms *v, const struct vm_row *r, bool user_live, const struct port_spec *f) {
        char t[PORTSPEC_TEXT_MAX];
        port_spec_format(f, t);
        bool relayed = !r->user_net && v->deps.fwd && fwd_is_open(v->deps.fwd, r->id, f);
        return json_pack("{s:s, s:s, s:s, s:i, s:i, s:b, s:I, s:s}", "spec", t, "proto", port_proto_name(f->proto),
                         "host_ip", f->host_ip, "host_port", (int) f->host_port, "guest_port", (int) f->guest_port,
                         "open", relayed || (r->user_net && user_live), "connections",
                         (json_int_t) (relayed ? fwd_active(v->deps.fwd, r->id, f) : 0), "by",
                         r->user_net ? "vmm" : "bangerd");
}

static bool running(struct vms *v, const struct vm_row *r);

int vms_forwards_of(void *ud, const char *vm_id, struct port_spec **ret, size_t *ret_n) {
        struct vms *v = ud;
        return store_forward_list(v->deps.store, vm_id, ret, NULL, ret_n);
}

json_t *vms_forwards_json(struct vms *v, const struct vm_row *r) {
        struct port_spec *fs = NULL;
        size_t n = 0;
        json_t *a = json_array();
        if (store_forward_list(v->deps.store, r->id, &fs, NULL, &n) < 0)
                return a;
        bool user_live = n > 0 && r->user_net && running(v, r);
        for (size_t i = 0; i < n; i++)
                json_array_append_new(a, forward_json(v, r, user_live, &fs[i]));
        free(fs);
        return a;
}

/* Does f clash with a forward some VM has? Names it (self: the VM f is for). */
static int taken_check(struct vms *v, const char *self, const struct port_spec *f, struct op_error *e) {
        struct port_spec *all = NULL;
        char **ids = NULL;
        size_t n = 0;
        int rc = store_forward_list(v->deps.store, NULL, &all, &ids, &n);
        if (rc < 0)
                return op_fail(e, rc, "reading port forwards: %s", strerror(-rc));
        for (size_t i = 0; i < n && rc == 0; i++) {
                if (!clash(&all[i], f))
                        continue;
                struct vm_row o;
                bool named = store_vm_get(v->deps.store, ids[i], &o) == 0;
                if (!self || strcmp(ids[i], self) != 0)
                        rc = op_fail_as(e, RPC_ALREADY_EXISTS, -EEXIST, "%s port %u on %s is forwarded to vm %s already%s%s",
                                        port_proto_name(f->proto), f->host_port, f->host_ip, named ? o.name : ids[i],
                                        strcmp(all[i].host_ip, f->host_ip) ? " on " : "",
                                        strcmp(all[i].host_ip, f->host_ip) ? all[i].host_ip : "");
                else
                        rc = op_fail_as(e, RPC_ALREADY_EXISTS, -EEXIST,
                                        "vm %s forwards %s port %u on %s already (to guest port %u)",
                                        named ? o.name : ids[i], port_proto_name(f->proto), f->host_port,
                                        all[i].host_ip, all[i].guest_port);
                if (named)
                        vm_row_done(&o);
        }
        for (size_t i = 0; i < n; i++)
                free(ids[i]);
        free(ids);
        free(all);
        return rc;
}

int vms_forwards_validate(struct vms *v, const char *self, bool user_net, const struct port_spec *fs, size_t n,
                          struct op_error *e) {
        if (n > 0 && !v->deps.fwd)
                return op_bad_request(e, "this daemon does not forward ports");
        for (size_t i = 0; i < n; i++) {
                char t[PORTSPEC_TEXT_MAX];
                port_spec_format(&fs[i], t);
                if (user_net && port_spec_is_v6(&fs[i]))
                        return op_bad_request(e, "--publish %s: user-mode networking forwards IPv4 host addresses only", t);
                for (size_t j = 0; j < i; j++)
                        if (clash(&fs[i], &fs[j]))
                                return op_bad_request(e, "--publish %s: that host port is published twice", t);
                int rc = taken_check(v, self, &fs[i], e);
                if (rc == 0)
                        rc = fwd_check(&fs[i], e);
                if (rc < 0)
                        return rc;
        }
        return 0;
}

int vms_forwards_record(struct vms *v, const struct vm_row *r, const struct port_spec *fs, size_t n, struct op_error *e) {
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *owner = NULL;
                int rc = store_forward_insert(v->deps.store, r->id, &fs[i], &owner);
                if (rc == -EEXIST)
                        return op_fail_as(e, RPC_ALREADY_EXISTS, rc, "%s port %u on %s is forwarded to vm %s already",
                                          port_proto_name(fs[i].proto), fs[i].host_port, fs[i].host_ip,
                                          owner ? owner : "?");
                if (rc < 0)
                        return op_fail(e, rc, "recording a port forward: %s", strerror(-rc));
        }
        return 0;
}

enum hostfwd_op { HOSTFWD_ADD, HOSTFWD_REMOVE, HOSTFWD_ENSURE /* added unless there */ };

/* The VMM of a user-mode VM asked over its QMP socket. */
static int hostfwd(struct vms *v, const struct vm_row *r, enum hostfwd_op op, const struct port_spec *f,
                   struct op_error *e) {
        struct vm_paths p;
        struct vm_handles h = { 0 };
        bool has = false;
        vm_paths_init(v, r, &p);
        (void) handle_get(v, r->id, &h);
        const struct vmm_entry *vmm = vms_vmm_by_name(v, h.vmm);
        struct vm_boot b = { .qmp_socket = p.qmp };
        int rc = vmm && vmm->backend->hostfwd && vmm->backend->hostfwd_has ? 0
                                                                           : op_fail(e, -EOPNOTSUPP, "the VMM cannot forward ports");
        if (rc == 0 && op == HOSTFWD_ENSURE)
                rc = vmm->backend->hostfwd_has(&b, f, &has, e);
        if (rc == 0 && !has)
                rc = vmm->backend->hostfwd(&b, op != HOSTFWD_REMOVE, f, e);
        vm_paths_done(&p);
        return rc;
}

int vms_hostfwd_add(void *ud, const char *vm_id, const struct port_spec *f, struct op_error *e) {
        struct vms *v = ud;
        struct vm_row r;
        if (store_vm_get(v->deps.store, vm_id, &r) < 0)
                return op_not_found(e, "vm %s not found", vm_id);
        int rc = hostfwd(v, &r, HOSTFWD_ADD, f, e);
        vm_row_done(&r);
        return rc;
}

/* Live forwards: the relay's, or the VMM's. */
static int forward_open(struct vms *v, const struct vm_row *r, const struct port_spec *f, struct op_error *e) {
        return r->user_net ? hostfwd(v, r, HOSTFWD_ADD, f, e) : fwd_open(v->deps.fwd, r->id, f, r->guest_ip, e);
}

static void forward_close(struct vms *v, const struct vm_row *r, const struct port_spec *f, bool live) {
        _cleanup_op_error_ struct op_error e = OP_ERROR_INIT;
        if (!r->user_net && v->deps.fwd)
                fwd_close(v->deps.fwd, r->id, f);
        else if (r->user_net && live && hostfwd(v, r, HOSTFWD_REMOVE, f, &e) < 0)
                log_warn("vm %s: %s", r->name, op_error_message(&e));
}

/* A user-mode VM's VMM kept its forwards, unless the daemon died between
 * recording one and asking the VMM (a start before its post_start, `vm
 * forward`): what it lacks is added. */
void vms_forwards_adopt(struct vms *v, const struct vm_row *r) {
        struct port_spec *fs = NULL;
        size_t n = 0;
        if (!v->deps.fwd || store_forward_list(v->deps.store, r->id, &fs, NULL, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++) {
                _cleanup_op_error_ struct op_error e = OP_ERROR_INIT;
                if ((r->user_net ? hostfwd(v, r, HOSTFWD_ENSURE, &fs[i], &e) : fwd_open(v->deps.fwd, r->id, &fs[i], r->guest_ip, &e)) < 0)
                        log_warn("reconcile: vm %s: %s", r->name, op_error_message(&e));
        }
        free(fs);
}

static bool running(struct vms *v, const struct vm_row *r) {
        struct vm_paths p;
        vm_paths_init(v, r, &p);
        /* (an adopted VM may still be "starting" while it gets ready, unlocked) */
        bool live = vm_state_active(r->state) && strcmp(r->state, "stopping") != 0 && vms_live_pid(v, r, &p, NULL) > 0;
        vm_paths_done(&p);
        return live;
}

int vm_forward_add(struct vms *v, const char *ref, const char *spec, json_t **ret, struct op_error *e) {
        struct port_spec f;
        const char *why = NULL;
        if (!spec || port_spec_parse(spec, &f, &why) < 0)
                return op_bad_request(e, "port forward '%s': %s (want [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp])",
                                      strempty(spec), why ? why : "missing");
        struct vm_row r;
        struct vm_lock *l;
        int rc = vms_lock_row(v, ref, &r, &l, e);
        if (rc < 0)
                return rc;
        bool live = running(v, &r);
        rc = vms_forwards_validate(v, r.id, r.user_net, &f, 1, e);
        if (rc == 0)
                rc = vms_forwards_record(v, &r, &f, 1, e);
        if (rc == 0 && live && (rc = forward_open(v, &r, &f, e)) < 0 &&
            store_forward_delete(v->deps.store, r.id, &f, false, false, NULL, NULL) < 0)
                log_warn("vm %s: a forward that did not open stays recorded", r.name);
        if (rc == 0) {
                *ret = json_pack("{s:s, s:o}", "vm", r.name, "forward", forward_json(v, &r, live, &f));
                log_info("vm %s: forward %s", r.name, json_string_value(json_object_get(
                                                               json_object_get(*ret, "forward"), "spec")));
        }
        vms_unlock(v, l);
        vm_row_done(&r);
        return rc < 0 ? op_prefix(e, "vm %s", ref) : 0;
}

int vm_forward_remove(struct vms *v, const char *ref, const char *key, json_t **ret, struct op_error *e) {
        struct port_spec k, *gone = NULL;
        bool any_ip, any_proto;
        const char *why = NULL;
        size_t n = 0;
        if (!key || port_key_parse(key, &k, &any_ip, &any_proto, &why) < 0)
                return op_bad_request(e, "port forward key '%s': %s (want [HOSTIP:]HOSTPORT[/tcp|/udp])",
                                      strempty(key), why ? why : "missing");
        struct vm_row r;
        struct vm_lock *l;
        int rc = vms_lock_row(v, ref, &r, &l, e);
        if (rc < 0)
                return rc;
        bool live = r.user_net && running(v, &r);
        rc = store_forward_delete(v->deps.store, r.id, &k, any_ip, any_proto, &gone, &n);
        if (rc == -ENOENT)
                rc = op_not_found(e, "vm %s has no port forward matching %s", r.name, key);
        else if (rc < 0)
                rc = op_fail(e, rc, "removing a port forward of vm %s: %s", r.name, strerror(-rc));
        else {
                json_t *a = json_array();
                for (size_t i = 0; i < n; i++) {
                        forward_close(v, &r, &gone[i], live);
                        json_array_append_new(a, forward_json(v, &r, false, &gone[i]));
                }
                *ret = json_pack("{s:s, s:o}", "vm", r.name, "removed", a);
                free(gone);
        }
        vms_unlock(v, l);
        vm_row_done(&r);
        return rc;
}

int vm_forward_list(struct vms *v, const char *ref, json_t **ret, struct op_error *e) {
        struct vm_row r;
        if (ref && *ref) {
                int rc = vms_get_row(v, ref, &r, e);
                if (rc < 0)
                        return rc;
                json_t *a = vms_forwards_json(v, &r);
                size_t i;
                json_t *x;
                json_array_foreach(a, i, x) json_object_set_new(x, "vm", json_string(r.name));
                *ret = json_pack("{s:o}", "forwards", a);
                vm_row_done(&r);
                return 0;
        }
        struct vm_row *rows;
        size_t n;
        int rc = store_vm_list(v->deps.store, &rows, &n);
        if (rc < 0)
                return op_fail(e, rc, "listing vms: %s", strerror(-rc));
        json_t *all = json_array();
        for (size_t k = 0; k < n; k++) {
                json_t *a = vms_forwards_json(v, &rows[k]);
                size_t i;
                json_t *x;
                json_array_foreach(a, i, x) {
                        json_object_set_new(x, "vm", json_string(rows[k].name));
                        json_array_append(all, x);
                }
                json_decref(a);
        }
        vm_rows_free(rows, n);
        *ret = json_pack("{s:o}", "forwards", all);
        return 0;
}
