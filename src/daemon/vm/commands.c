/* SPDX-License-Identifier: MIT */
/*
 * The VM service's commands: list, show, start/stop/restart/delete (one
 * locked runner), kill, set, agent calls, touch, and the DNS lookup. Each
 * one that changes a VM takes its lock and re-reads the row once it holds
 * it (the VM may have changed or gone while it waited).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "ipnet.h"
#include "jsonx.h"
#include "log.h"
#include "store/store_artifacts.h"
#include "strbuf.h"
#include "disk/workdisk.h"
#include "vms_internal.h"

/* ---- JSON --------------------------------------------------------------- */

static void json_set_str_or_null(json_t *j, const char *key, const char *value) {
        json_object_set_new(j, key, value ? json_string(value) : json_null());
}

/* How its last boot went (start.c writes it): "cold", "restored", "forked" (from
 * another VM's snapshot), or "warm"
 * with the template's key. A file in the state dir: checked, not trusted. */
static void boot_json(const struct vm_row *r, json_t *j) {
        _cleanup_free_ char *f = path_join(r->vm_dir, "boot"), *text = NULL;
        size_t len;
        char kind[16] = "", key[65] = "";
        if (read_file_nofollow(f, 128, &text, &len) < 0 || sscanf(text, "%15s %64s", kind, key) < 1)
                return;
        if (strcmp(kind, "cold") == 0 || strcmp(kind, "restored") == 0 || strcmp(kind, "forked") == 0)
                json_object_set_new(j, "boot", json_string(kind));
        else if (strcmp(kind, "warm") == 0 && strlen(key) == 64 && strspn(key, "0123456789abcdef") == 64) {
                json_object_set_new(j, "boot", json_string(kind));
                json_object_set_new(j, "template", json_string(key));
        }
}

static json_t *vm_json(struct vms *v, const struct vm_row *r) {
        struct image_row img = { 0 };
        struct vm_handles h;
        _cleanup_free_ char *console = path_join(r->vm_dir, "console.log"), *kh = known_hosts_path(v);
        bool have_img = store_image_get(v->deps.store, r->image_id, &img) == 0;
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:b}", "id", r->id, "name", r->name, "state",
                              r->state, "image_id", r->image_id, "image", have_img ? img.name : r->image_id, "vcpu",
                              (json_int_t) r->vcpu, "memory_mib", (json_int_t) r->memory_mib, "disk_size_bytes",
                              (json_int_t) r->disk_size_bytes, "system_overlay_size_bytes",
                              (json_int_t) r->system_overlay_size_bytes, "nat", r->nat);
        image_row_done(&img);
        json_set_str_or_null(j, "ip", r->guest_ip);
        json_object_set_new(j, "net", json_string(r->user_net ? "user" : "bridge"));
        json_object_set_new(j, "vmm", json_string(r->firecracker ? "firecracker" : "qemu"));
        json_object_set_new(j, "dns_name", json_sprintf("%s.vm", r->name));
        json_set_str_or_null(j, "mac", r->mac);
        json_object_set_new(j, "isolate", json_boolean(r->isolate));
        json_object_set_new(j, "created_at", json_string(r->created_at));
        json_object_set_new(j, "updated_at", json_string(r->updated_at));
        json_set_str_or_null(j, "last_touched_at", r->last_touched_at);
        json_set_str_or_null(j, "last_error", r->last_error);
        json_object_set_new(j, "vm_dir", json_string(r->vm_dir));
        json_t *ws = r->workspace_json ? json_loads(r->workspace_json, 0, NULL) : NULL;
        /* the host repository it was made from (vm run PATH, vm workspace prepare) */
        const char *host = json_string_value(json_object_get(ws, "host_path"));
        json_set_str_or_null(j, "workspace_path", host && *host ? host : NULL);
        json_object_set_new(j, "workspace", ws ? ws : json_null());
        json_object_set_new(j, "console_log", json_string(console));
        boot_json(r, j);
        bool have_h = handle_get(v, r->id, &h) && h.pid > 0;
        if (have_h) {
                json_object_set_new(j, "pid", json_integer(h.pid));
                json_set_str_or_null(j, "tap", *h.tap ? h.tap : NULL);
                json_object_set_new(j, "vmm", json_string(h.vmm));
                /* unhealthy: the agent's link died under a running command */
                struct vm_paths p;
                vm_paths_init(v, r, &p);
                _cleanup_free_ char *lost = v->deps.agent_exec ? v->deps.agent_exec->lost(v->deps.agent_ud, p.agent) : NULL;
                vm_paths_done(&p);
                json_object_set_new(j, "agent_healthy", json_boolean(!lost));
                json_set_str_or_null(j, "agent_error", lost);
        }
        /* user-mode networking: the VMM's port on the host's loopback */
        bool fwd22 = r->user_net && have_h && h.ssh_port;
        json_t *ssh = json_pack("{s:s, s:s, s:s, s:s}", "user", "root", "host",
                                fwd22 ? "127.0.0.1" : r->guest_ip ? r->guest_ip : "", "key",
                                config_live_get(v->deps.config)->ssh_key_path, "known_hosts", kh);
        /* (a user-mode VM that is not running has no port yet: null) */
        json_object_set_new(ssh, "port", fwd22 ? json_integer(h.ssh_port) : r->user_net ? json_null() : json_integer(22));
        json_object_set_new(j, "ssh", ssh);
        return j;
}

json_t *vm_json_by_id(struct vms *v, const char *id) {
        struct vm_row r;
        if (store_vm_get(v->deps.store, id, &r) < 0)
                return json_null();
        json_t *j = vm_json(v, &r);
        vm_row_done(&r);
        return j;
}

int vm_list(struct vms *v, json_t **ret, struct op_error *e) {
        struct vm_row *rows;
        size_t n;
        int r = store_vm_list(v->deps.store, &rows, &n);
        if (r < 0)
                return op_fail(e, r, "listing vms: %s", strerror(-r));
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(a, vm_json(v, &rows[i]));
        vm_rows_free(rows, n);
        *ret = json_pack("{s:o}", "vms", a);
        return 0;
}

int vm_show(struct vms *v, const char *ref, json_t **ret, struct op_error *e) {
        struct vm_row r;
        int rc = vms_get_row(v, ref, &r, e);
        if (rc < 0)
                return rc;
        *ret = vm_json(v, &r);
        json_object_set_new(*ret, "forwards", vms_forwards_json(v, &r));
        vm_row_done(&r);
        return 0;
}

/* ---- lifecycle commands --------------------------------------------------- */

/* Resolves ref, takes the VM's lock, re-reads the row. */
int vms_lock_row(struct vms *v, const char *ref, struct vm_row *row, struct vm_lock **ret_lock, struct op_error *e) {
        struct vm_row first;
        int r = vms_get_row(v, ref, &first, e);
        if (r < 0)
                return r;
        struct vm_lock *l = vms_lock(v, first.id);
        r = store_vm_get(v->deps.store, first.id, row);
        vm_row_done(&first);
        if (r < 0) {
                vms_unlock(v, l);
                return op_not_found(e, "vm '%s' not found", ref);
        }
        *ret_lock = l;
        return 0;
}

enum lifecycle_op { LC_START, LC_STOP, LC_RESTART, LC_DELETE };

/* What may not run now: a start or delete of a VM still being created, a
 * start of one already running. */
static int lifecycle_check(struct vms *v, const struct vm_row *r, enum lifecycle_op op, struct op_error *e) {
        if ((op == LC_START || op == LC_DELETE) && vms_create_in_flight(v, r->id))
                return op_fail_as(e, RPC_BAD_REQUEST, -EBUSY, "vm %s is still being created%s", r->name,
                                  op == LC_DELETE ? " (cancel it first)" : "");
        if (op == LC_START && vm_state_active(r->state)) {
                struct vm_paths pp;
                vm_paths_init(v, r, &pp);
                pid_t pid = vms_live_pid(v, r, &pp, NULL);
                vm_paths_done(&pp);
                if (pid > 0)
                        return op_fail_as(e, RPC_BAD_REQUEST, -EALREADY, "vm %s is already running", r->name);
        }
        return 0;
}

static int lifecycle_ex(struct vms *v, const char *ref, enum lifecycle_op op, bool kill, const struct progress *p,
                        json_t **ret, struct op_error *e) {
        struct vm_row r;
        struct vm_lock *l;
        int rc = vms_lock_row(v, ref, &r, &l, e);
        if (rc < 0)
                return rc;
        rc = lifecycle_check(v, &r, op, e);
        /* a delete with kill: the disks go, no orderly poweroff (destroy kills) */
        if (rc == 0 && (op == LC_STOP || op == LC_RESTART || (op == LC_DELETE && !kill && vm_state_active(r.state)))) {
                progress_stage(p, "stop", "%s", r.name);
                rc = vms_stop_locked(v, &r, true, e);
        }
        if (rc == 0 && (op == LC_START || op == LC_RESTART))
                rc = vms_start_locked(v, &r, p, e);
        if (rc == 0 && op == LC_DELETE) {
                progress_stage(p, "delete", "%s", r.name);
                rc = vms_destroy_locked(v, &r, e);
                if (rc == 0)
                        *ret = json_pack("{s:s, s:s, s:b}", "id", r.id, "name", r.name, "deleted", true);
        } else if (rc == 0)
                *ret = vm_json_by_id(v, r.id);
        vms_unlock(v, l);
        vm_row_done(&r);
        return rc;
}

static int lifecycle(struct vms *v, const char *ref, enum lifecycle_op op, const struct progress *p, json_t **ret,
                     struct op_error *e) {
        return lifecycle_ex(v, ref, op, false, p, ret, e);
}

int vm_start(struct vms *v, const char *ref, const struct progress *p, json_t **ret, struct op_error *e) {
        return lifecycle(v, ref, LC_START, p, ret, e);
}

int vm_stop(struct vms *v, const char *ref, const struct progress *p, json_t **ret, struct op_error *e) {
        return lifecycle(v, ref, LC_STOP, p, ret, e);
}

int vm_restart(struct vms *v, const char *ref, const struct progress *p, json_t **ret, struct op_error *e) {
        return lifecycle(v, ref, LC_RESTART, p, ret, e);
}

int vm_delete(struct vms *v, const char *ref, const struct progress *p, json_t **ret, struct op_error *e) {
        return lifecycle(v, ref, LC_DELETE, p, ret, e);
}

struct bg_delete {
        struct vms *v;
        char *id;
};

static void *bg_delete_main(void *arg) {
        struct bg_delete *b = arg;
        struct vms *v = b->v;
        _cleanup_op_error_ struct op_error e = OP_ERROR_INIT;
        _cleanup_json_ json_t *res = NULL;
        int64_t t0 = v->deps.mono_ms();
        if (lifecycle_ex(v, b->id, LC_DELETE, true, &(struct progress) { 0 }, &res, &e) < 0)
                log_warn("vm %s: background delete: %s (the next daemon start finishes it)", b->id,
                         op_error_message(&e));
        else
                log_info("vm %s: deleted in the background in %lld ms", b->id, (long long) (v->deps.mono_ms() - t0));
        free(b->id);
        free(b);
        pthread_mutex_lock(&v->creates_mu);
        v->create_workers--;
        pthread_cond_broadcast(&v->creates_cond);
        pthread_mutex_unlock(&v->creates_mu);
        return NULL;
}

/* The .deleting marker: from here on a crash is finished by reconcile. */
static int mark_deleting(const struct vm_row *r, struct op_error *e) {
        _cleanup_free_ char *m = path_join(r->vm_dir, VM_DELETING_MARKER);
        int rc = write_file_atomic(m, "", 0, 0600);
        return rc < 0 ? op_fail(e, rc, "vm %s: recording the delete: %s", r->name, strerror(-rc)) : 0;
}

int vm_delete_ex(struct vms *v, const char *ref, bool kill, bool background, const struct progress *p, json_t **ret,
                 struct op_error *e) {
        if (!background)
                return lifecycle_ex(v, ref, LC_DELETE, kill, p, ret, e);
        struct vm_row r;
        struct vm_lock *l;
        int rc = vms_lock_row(v, ref, &r, &l, e);
        if (rc < 0)
                return rc;
        if ((rc = lifecycle_check(v, &r, LC_DELETE, e)) == 0 && (rc = mark_deleting(&r, e)) == 0) {
                struct bg_delete *b = xcalloc(1, sizeof(*b));
                *b = (struct bg_delete) { .v = v, .id = xstrdup(r.id) };
                pthread_t t;
                pthread_attr_t at;
                pthread_attr_init(&at);
                pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
                pthread_mutex_lock(&v->creates_mu);
                v->create_workers++; /* vms_done waits for it like for a create */
                pthread_mutex_unlock(&v->creates_mu);
                if (pthread_create(&t, &at, bg_delete_main, b) != 0) {
                        pthread_mutex_lock(&v->creates_mu);
                        v->create_workers--;
                        pthread_mutex_unlock(&v->creates_mu);
                        free(b->id);
                        free(b);
                        _cleanup_free_ char *m = path_join(r.vm_dir, VM_DELETING_MARKER);
                        unlink(m); /* not deleting after all: reconcile must not either */
                        rc = op_fail(e, -EAGAIN, "cannot start the delete");
                }
                pthread_attr_destroy(&at);
        }
        if (rc == 0)
                *ret = json_pack("{s:s, s:s, s:b}", "id", r.id, "name", r.name, "deleting", true);
        vms_unlock(v, l); /* the worker takes the lock in turn */
        vm_row_done(&r);
        return rc;
}

/* fn on the VM under its lock; its JSON afterwards. */
static int with_vm(struct vms *v, const char *ref, int (*fn)(struct vms *, struct vm_row *, const void *, struct op_error *),
                   const void *ud, json_t **ret, struct op_error *e) {
        struct vm_row r;
        struct vm_lock *l;
        int rc = vms_lock_row(v, ref, &r, &l, e);
        if (rc < 0)
                return rc;
        rc = fn(v, &r, ud, e);
        if (rc == 0)
                *ret = vm_json_by_id(v, r.id);
        vms_unlock(v, l);
        vm_row_done(&r);
        return rc;
}

static int kill_locked(struct vms *v, struct vm_row *r, const void *sig, struct op_error *e) {
        return vms_kill_locked(v, r, *(const int *) sig, e);
}

int vm_kill(struct vms *v, const char *ref, int sig, json_t **ret, struct op_error *e) {
        return with_vm(v, ref, kill_locked, &sig, ret, e);
}

/* ---- set ------------------------------------------------------------------ */

static int set_apply(struct vms *v, struct vm_row *r, const void *ud, struct op_error *e) {
        const struct vm_set_req *req = ud;
        if (vm_state_active(r->state))
                return op_fail_as(e, RPC_BAD_REQUEST, -EBUSY, "vm %s is %s; stop it first (banger vm stop %s)", r->name,
                                  r->state, r->name);
        if (req->disk_size_bytes && req->disk_size_bytes < r->disk_size_bytes)
                return op_bad_request(e, "vm %s: shrinking the work disk (%lld -> %lld bytes) is not supported", r->name,
                                      (long long) r->disk_size_bytes, (long long) req->disk_size_bytes);
        if (req->disk_size_bytes && req->disk_size_bytes > r->disk_size_bytes) {
                _cleanup_free_ char *work = path_join(r->vm_dir, "work.ext4");
                int rc = workdisk_grow(work, (uint64_t) req->disk_size_bytes, e);
                if (rc < 0)
                        return op_prefix(e, "growing the work disk");
                r->disk_size_bytes = req->disk_size_bytes;
        }
        if (req->vcpu_set)
                r->vcpu = req->vcpu;
        if (req->memory_set)
                r->memory_mib = req->memory_mib;
        if (req->nat >= 0)
                r->nat = req->nat != 0;
        if (req->isolate >= 0)
                r->isolate = req->isolate != 0;
        int rc = store_vm_update(v->deps.store, r);
        return rc < 0 ? op_fail(e, rc, "updating vm %s: %s", r->name, strerror(-rc)) : 0;
}

int vm_set(struct vms *v, const char *ref, const struct vm_set_req *req, json_t **ret, struct op_error *e) {
        struct vm_create_req spec = { .vcpu = req->vcpu, .memory_mib = req->memory_mib,
                                      .disk_size_bytes = req->disk_size_bytes, .vcpu_set = req->vcpu_set,
                                      .memory_set = req->memory_set };
        int rc = vm_spec_check(&spec, e);
        return rc < 0 ? rc : with_vm(v, ref, set_apply, req, ret, e);
}

/* ---- the agent, activity, DNS ------------------------------------------------ */

int vms_with_running(struct vms *v, const char *ref, vms_running_fn fn, void *ud, struct op_error *e) {
        struct vm_row r;
        struct vm_paths p;
        int rc = vms_get_row(v, ref, &r, e);
        if (rc < 0)
                return rc;
        vm_paths_init(v, &r, &p);
        if (vms_live_pid(v, &r, &p, NULL) <= 0)
                rc = op_fail_as(e, RPC_BAD_REQUEST, -ESRCH, "vm %s is not running (state %s)", r.name, r.state);
        else if ((rc = fn(v, &r, &p, ud, e)) < 0)
                op_prefix(e, "vm %s", r.name);
        else if (store_vm_touch(v->deps.store, r.id) < 0)
                log_warn("vm %s: cannot record its activity", r.name);
        vm_paths_done(&p);
        vm_row_done(&r);
        return rc;
}

struct agent_ask {
        const char *method;
        json_t **ret;
};

static int ask(struct vms *v, const struct vm_row *r, const struct vm_paths *p, void *ud, struct op_error *e) {
        struct agent_ask *a = ud;
        (void) r;
        return v->deps.agent_call(v->deps.agent_ud, p->agent, a->method, 10000, NULL, a->ret, e);
}

int vm_agent(struct vms *v, const char *ref, const char *method, json_t **ret, struct op_error *e) {
        return vms_with_running(v, ref, ask, &(struct agent_ask) { method, ret }, e);
}

int vm_touch(struct vms *v, const char *ref, struct op_error *e) {
        struct vm_row r;
        int rc = vms_get_row(v, ref, &r, e);
        if (rc < 0)
                return rc;
        rc = store_vm_touch(v->deps.store, r.id);
        vm_row_done(&r);
        return rc < 0 ? op_fail(e, rc, "touch: %s", strerror(-rc)) : 0;
}

int vms_dns_lookup(void *ud, const char *label, uint32_t *ret_ip) {
        struct vms *v = ud;
        struct vm_row r;
        int found = 0;
        /* exact names only (store_vm_get also takes id prefixes) */
        if (store_vm_get(v->deps.store, label, &r) < 0)
                return 0;
        if (strcmp(r.name, label) == 0 && strcmp(r.state, "running") == 0 && r.guest_ip &&
            ipv4_parse(r.guest_ip, ret_ip) == 0)
                found = 1;
        vm_row_done(&r);
        return found;
}
