/* SPDX-License-Identifier: MIT */
/*
 * VM creation: the asynchronous create operations (vm.create.begin, status,
 * cancel), the reservation under create_mu, then the disks (disks.c) and
 * the first start. A cancel, or a failure before the VM could boot, removes
 * everything; a failed boot keeps the VM in 'error' (the start released
 * what it ran) so `vm logs` can show why.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "ipnet.h"
#include "jsonx.h"
#include "log.h"
#include "testhook.h"
#include "store/store_artifacts.h"
#include "strbuf.h"
#include "vmname.h"
#include "vms_internal.h"

#define MAX_STAGES 16
#define CREATE_OP_RETAIN_MS (10 * 60 * 1000)
#define NAME_ATTEMPTS 100

struct create_op {
        char op_id[32];
        char *vm_id, *vm_name;
        struct vm_create_req req; /* strings owned */
        struct workspace_req ws;  /* req.workspace points here; strings owned */
        struct vm_fork fork;      /* --from-snapshot: dir set */
        struct {
                char *name, *detail;
                int64_t start_ms, end_ms;
        } stages[MAX_STAGES];
        size_t n_stages;
        enum op_state state;
        struct op_error error;
        bool cancel;
        int64_t started_ms, finished_ms;
        struct vms *v;
        struct create_op *next;
};

/* What the worker builds up, undone by create_undo on failure. */
struct create_work {
        struct create_op *o;
        struct progress pr;
        struct image_row img;
        struct boot_files bf;
        uint64_t overlay_bytes;
        struct vm_row row;
        struct vm_lock *lock;
        bool inserted;
};

static void create_op_free(struct create_op *o) {
        free(o->vm_id);
        free(o->vm_name);
        free((char *) o->req.name);
        free((char *) o->req.image);
        free((char *) o->ws.host_path);
        free((char *) o->ws.branch);
        free((char *) o->ws.from);
        free((struct port_spec *) o->req.publish);
        vm_fork_done(&o->fork);
        for (size_t i = 0; i < o->n_stages; i++) {
                free(o->stages[i].name);
                free(o->stages[i].detail);
        }
        op_error_done(&o->error);
        free(o);
}

/* ---- progress of a create (creates_mu guards the stages) ---------------------- */

static void op_stage(void *ud, const char *name, const char *detail) {
        struct create_op *o = ud;
        int64_t now = o->v->deps.mono_ms();
        pthread_mutex_lock(&o->v->creates_mu);
        if (o->n_stages > 0 && strcmp(o->stages[o->n_stages - 1].name, name) == 0) {
                free(o->stages[o->n_stages - 1].detail);
                o->stages[o->n_stages - 1].detail = detail && *detail ? xstrdup(detail) : NULL;
        } else if (o->n_stages < MAX_STAGES) {
                if (o->n_stages > 0)
                        o->stages[o->n_stages - 1].end_ms = now;
                o->stages[o->n_stages].name = xstrdup(name);
                o->stages[o->n_stages].detail = detail && *detail ? xstrdup(detail) : NULL;
                o->stages[o->n_stages].start_ms = now;
                o->n_stages++;
        }
        pthread_mutex_unlock(&o->v->creates_mu);
        opstate_set_stage(o->v->deps.ops, o->op_id, name);
        log_info("create %s: %s%s%s", strempty(o->vm_name), name, detail && *detail ? ": " : "", strempty(detail));
}

static bool op_cancelled(void *ud) {
        struct create_op *o = ud;
        pthread_mutex_lock(&o->v->creates_mu);
        bool c = o->cancel || o->v->stopping;
        pthread_mutex_unlock(&o->v->creates_mu);
        return c;
}

/* ---- images ---------------------------------------------------------------------- */

static char *default_image(struct vms *v, const char *requested) {
        return xstrdup(requested && *requested ? requested : config_live_get(v->deps.config)->default_image_name);
}

/* The image row for `ref`, pulling it from the catalog when it is a catalog
 * name not yet present. */
static int ensure_image(struct vms *v, const char *ref, const struct progress *pr, struct image_row *ret,
                        struct op_error *e) {
        int r = store_image_get(v->deps.store, ref, ret);
        if (r == 0)
                return 0;
        /* an OCI reference pulled before: its image, without asking the registry */
        _cleanup_free_ char *oci_name = oci_ref_default_name(ref);
        if (oci_name && store_image_get(v->deps.store, oci_name, ret) == 0)
                return 0;
        progress_stage(pr, "pull image", "%s", ref);
        _cleanup_json_ json_t *res = NULL;
        struct oci_pull_opts o = { 0 };
        r = image_pull(v->deps.artifacts, ref, &o, pr, &res, e);
        if (r < 0)
                return r;
        /* an OCI reference gives the image a name of its own */
        const char *name = json_string_value(json_object_get(res, "name"));
        r = store_image_get(v->deps.store, name ? name : ref, ret);
        return r < 0 ? op_fail(e, r, "image '%s' vanished after its pull", ref) : 0;
}

static bool image_known(struct vms *v, const char *ref) {
        struct image_row img;
        if (store_image_get(v->deps.store, ref, &img) == 0) {
                image_row_done(&img);
                return true;
        }
        _cleanup_json_ json_t *cat = image_catalog();
        _cleanup_json_ json_t *ent = catalog_find(cat, "images", ref);
        _cleanup_free_ char *oci_name = ent ? NULL : oci_ref_default_name(ref);
        return ent != NULL || oci_name != NULL; /* a registry reference is pulled if missing */
}

/* ---- the worker's steps -------------------------------------------------------------- */

static int create_resolve(struct create_work *w, struct op_error *e) {
        struct vms *v = w->o->v;
        const struct vm_create_req *q = &w->o->req;
        progress_stage(&w->pr, "resolve image", "%s", q->image);
        int rc = ensure_image(v, q->image, &w->pr, &w->img, e);
        if (rc < 0 || (rc = vms_resolve_boot(v, w->img.id, &w->bf, e)) < 0)
                return rc;
        if (progress_cancelled(&w->pr))
                return op_fail(e, -ECANCELED, "cancelled");
        w->overlay_bytes = q->system_overlay_size_bytes ? (uint64_t) q->system_overlay_size_bytes
                                                        : config_live_get(v->deps.config)->system_overlay_size_bytes;
        if (w->overlay_bytes >= w->bf.rootfs_size)
                return 0;
        if (q->system_overlay_size_bytes)
                return op_bad_request(e, "system overlay size %llu bytes is smaller than image '%s' (%llu bytes)",
                                      (unsigned long long) w->overlay_bytes, w->img.name,
                                      (unsigned long long) w->bf.rootfs_size);
        w->overlay_bytes = w->bf.rootfs_size;
        return 0;
}

/* The lowest free guest address of the bridge's network. */
static int pick_address(struct vms *v, char ip[static 16], char mac[static 18], struct op_error *e) {
        const struct config *c = config_live_get(v->deps.config);
        struct vm_row *rows = NULL;
        size_t n = 0;
        int rc = store_vm_list(v->deps.store, &rows, &n);
        if (rc < 0)
                return op_fail(e, rc, "listing vms: %s", strerror(-rc));
        _cleanup_free_ const char **used = xcalloc(n + 1, sizeof(char *));
        for (size_t i = 0; i < n; i++)
                used[i] = rows[i].guest_ip;
        struct ipv4_subnet net;
        _cleanup_free_ char *msg = NULL;
        uint32_t a;
        if (ipv4_subnet_init(&net, c->bridge_ip, (int) c->cidr, &msg) < 0)
                rc = op_fail(e, -EINVAL, "%s", msg);
        else if (ipv4_alloc_lowest(&net, used, n, &a) < 0)
                rc = op_fail(e, -ENOSPC, "no free guest address left in %s/%d", c->bridge_ip, (int) c->cidr);
        else {
                ipv4_format(a, ip);
                mac_for_ipv4(a, mac);
        }
        vm_rows_free(rows, n);
        return rc;
}

/* Name uniqueness, the address and the row, under create_mu. */
static int reserve_locked(struct create_work *w, struct op_error *e) {
        struct create_op *o = w->o;
        struct vms *v = o->v;
        const struct config *c = config_live_get(v->deps.config);
        struct vm_row other;
        char ip[16], mac[18];
        if (store_vm_get(v->deps.store, o->vm_name, &other) == 0) {
                vm_row_done(&other);
                return op_fail_as(e, RPC_ALREADY_EXISTS, -EEXIST, "vm name '%s' is already in use", o->vm_name);
        }
        bool user = strcmp(o->req.net, "user") == 0;
        int rc = user ? 0 : pick_address(v, ip, mac, e);
        if (rc < 0)
                return rc;
        w->row = (struct vm_row) {
                .id = xstrdup(o->vm_id), .name = xstrdup(o->vm_name), .image_id = xstrdup(w->img.id),
                .state = xstrdup("created"), .vcpu = o->req.vcpu ? o->req.vcpu : c->vcpu,
                .memory_mib = o->req.memory_mib ? o->req.memory_mib : c->memory_mib,
                .disk_size_bytes = o->req.disk_size_bytes ? o->req.disk_size_bytes : (int64_t) c->disk_size_bytes,
                .system_overlay_size_bytes = (int64_t) w->overlay_bytes, .nat = o->req.nat,
                .isolate = o->req.isolate, .user_net = user,
                .firecracker = o->req.vmm && strcmp(o->req.vmm, "firecracker") == 0, .guest_ip = user ? NULL : xstrdup(ip),
                .mac = user ? NULL : xstrdup(mac), .vm_dir = path_join(v->deps.layout->vms_dir, o->vm_id),
        };
        rc = store_vm_insert(v->deps.store, &w->row);
        if (rc == -EEXIST)
                return op_fail_as(e, RPC_ALREADY_EXISTS, rc, "vm name '%s' is already in use", o->vm_name);
        if (rc < 0)
                return op_fail(e, rc, "storing vm '%s': %s", o->vm_name, strerror(-rc));
        w->inserted = true;
        /* the VM's delete (create_undo) takes them along */
        return vms_forwards_record(v, &w->row, o->req.publish, o->req.n_publish, e);
}

/* The VM's lock first (the order), then create_mu. The VM's lock is held
 * until the worker ends. */
static int create_reserve(struct create_work *w, struct op_error *e) {
        struct vms *v = w->o->v;
        w->lock = vms_lock(v, w->o->vm_id);
        pthread_mutex_lock(&v->create_mu);
        int rc = reserve_locked(w, e);
        pthread_mutex_unlock(&v->create_mu);
        return rc;
}

/* While it exists the VM's files are half made: a daemon that dies now
 * leaves it, and reconcile rolls the create back (reconcile.c, finish_interrupted). */
static int mark_creating(const struct vm_row *r, bool on, struct op_error *e) {
        _cleanup_free_ char *m = path_join(r->vm_dir, VM_CREATING_MARKER);
        if (!on)
                return unlink(m) < 0 && errno != ENOENT ? op_fail(e, -errno, "%s: %s", m, strerror(errno)) : 0;
        int rc = mkdir_p(r->vm_dir, 0700);
        if (rc == 0)
                rc = write_file_atomic(m, "", 0, 0600);
        return rc < 0 ? op_fail(e, rc, "cannot create %s: %s", m, strerror(-rc)) : 0;
}

/* The first start: from a template when one fits (start.c), or, for a fork,
 * from the snapshot's state with a new identity. */
static int create_start(struct create_work *w, struct op_error *e) {
        const struct vm_fork *f = &w->o->fork;
        struct vm_identify id = { .full = true, .old_ip = f->ip };
        struct vm_start_opts so = { .wait_ssh = !w->o->req.no_ssh_wait, .state_fd = -1, .fresh = true,
                                    .cold = w->o->req.cold };
        _cleanup_free_ char *state = f->dir ? path_join(f->dir, "state") : NULL;
        _cleanup_close_ int fd = state ? open(state, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
        if (state && fd < 0)
                return op_fail(e, -errno, "cannot open %s: %s", state, strerror(errno));
        if (f->dir) {
                so = (struct vm_start_opts) { .wait_ssh = so.wait_ssh, .state_fd = fd, .identify = &id,
                                              .saved_transport = f->transport };
                progress_stage(&w->pr, "fork", "from %s", f->dir);
        }
        return vms_start_opts_locked(w->o->v, &w->row, &w->pr, &so, e);
}

static int create_build(struct create_work *w, struct op_error *e) {
        progress_stage(&w->pr, "prepare disks", "%s overlay on %s, work disk", w->img.name,
                       w->row.user_net ? "user-mode networking" : w->row.guest_ip);
        int rc = mark_creating(&w->row, true, e);
        if (rc == 0 && w->o->fork.dir)
                rc = vms_fork_disks(w->o->v, &w->row, &w->o->fork, e);
        else if (rc == 0)
                rc = vms_prepare_disks(w->o->v, &w->row, &w->bf, e);
        if (rc == 0 && w->o->req.workspace) {
                /* the repository goes into the repo disk now: the guest boots with it */
                struct vm_paths p;
                vm_paths_init(w->o->v, &w->row, &p);
                rc = workspace_preboot(w->o->v, &w->row, p.repo, w->o->req.workspace, &w->pr, e);
                vm_paths_done(&p);
        }
        test_crash_point("create:disks-made");
        if (rc == 0)
                rc = mark_creating(&w->row, false, e); /* complete: from here a crash leaves a stopped VM */
        if (rc == 0 && progress_cancelled(&w->pr))
                rc = op_fail(e, -ECANCELED, "cancelled");
        if (rc == 0 && !w->o->req.no_start) {
                rc = create_start(w, e);
                if (rc < 0 && progress_cancelled(&w->pr))
                        rc = op_fail(e, -ECANCELED, "cancelled");
                if (rc == 0 && w->o->req.workspace)
                        rc = workspace_preboot_finish(w->o->v, &w->row, w->o->req.workspace, e);
        }
        return rc;
}

/* Cancelled, or failed before the VM could boot: nothing stays. A failed
 * boot keeps the VM (state error) for `vm logs`. */
static void create_undo(struct create_work *w, int rc) {
        struct vms *v = w->o->v;
        struct vm_row cur;
        if (!w->inserted)
                return;
        bool boot_failed = false;
        if (store_vm_get(v->deps.store, w->o->vm_id, &cur) == 0) {
                boot_failed = strcmp(cur.state, "error") == 0;
                vm_row_done(&cur);
        }
        if (rc != -ECANCELED && boot_failed)
                return;
        _cleanup_op_error_ struct op_error e2 = OP_ERROR_INIT;
        if (vms_destroy_locked(v, &w->row, &e2) < 0)
                log_warn("create %s: cleanup: %s", w->o->vm_name, op_error_message(&e2));
}

static void create_finish(struct create_op *o, int rc, struct op_error *e) {
        struct vms *v = o->v;
        pthread_mutex_lock(&v->creates_mu);
        int64_t now = v->deps.mono_ms();
        if (o->n_stages > 0)
                o->stages[o->n_stages - 1].end_ms = now;
        o->state = rc == 0 ? OP_DONE : rc == -ECANCELED ? OP_CANCELLED : OP_FAILED;
        if (rc < 0)
                op_error_move(&o->error, e);
        o->finished_ms = now;
        pthread_mutex_unlock(&v->creates_mu);
        opstate_finish(v->deps.ops, o->op_id, o->state, rc < 0 ? op_error_message(&o->error) : NULL);
        if (rc == 0)
                log_info("create %s: done", o->vm_name);
        else
                log_warn("create %s: %s", o->vm_name, op_error_message(&o->error));
        pthread_mutex_lock(&v->creates_mu);
        v->create_workers--;
        pthread_cond_broadcast(&v->creates_cond);
        pthread_mutex_unlock(&v->creates_mu);
}

static void *create_main(void *arg) {
        struct create_work w = { .o = arg };
        _cleanup_op_error_ struct op_error e = OP_ERROR_INIT;
        w.pr = (struct progress) { op_stage, NULL, op_cancelled, w.o };
        log_set_op_id(w.o->op_id);
        int rc = create_resolve(&w, &e);
        if (rc == 0)
                rc = create_reserve(&w, &e);
        if (rc == 0)
                rc = create_build(&w, &e);
        if (rc < 0)
                create_undo(&w, rc);
        if (w.lock)
                vms_unlock(w.o->v, w.lock);
        image_row_done(&w.img);
        vms_boot_files_done(&w.bf);
        vm_row_done(&w.row);
        create_finish(w.o, rc, &e); /* last: vms_done() may free the op once workers hit 0 */
        return NULL;
}

/* ---- begin, status, cancel --------------------------------------------------------------- */

/* The name given (free now; the reservation checks again) or a generated one. */
static int choose_name(struct vms *v, const char *req, char **ret, struct op_error *e) {
        _cleanup_free_ char *msg = NULL;
        struct vm_row other;
        if (req && *req) {
                if (vm_name_validate(req, &msg) < 0)
                        return op_bad_request(e, "%s", msg);
                bool taken = store_vm_get(v->deps.store, req, &other) == 0;
                bool exact = taken && strcmp(other.name, req) == 0;
                if (taken)
                        vm_row_done(&other);
                if (exact)
                        return op_fail_as(e, RPC_ALREADY_EXISTS, -EEXIST, "vm name '%s' is already in use", req);
                *ret = xstrdup(req);
                return 0;
        }
        for (int i = 0; i < NAME_ATTEMPTS; i++) {
                char *cand = vm_name_generate();
                if (store_vm_get(v->deps.store, cand, &other) < 0) {
                        *ret = cand;
                        return 0;
                }
                vm_row_done(&other);
                free(cand);
        }
        return op_fail(e, -EEXIST, "could not generate a free vm name");
}

static struct create_op *new_op(struct vms *v, const char *op_id, const struct vm_create_req *req, char *name,
                                const char *image) {
        struct create_op *o = xcalloc(1, sizeof(*o));
        snprintf(o->op_id, sizeof(o->op_id), "%s", op_id);
        o->v = v;
        o->vm_id = vm_id_generate();
        o->vm_name = name;
        o->req = *req;
        o->req.name = xstrdup(name);
        o->req.image = xstrdup(image);
        o->req.net = req->net && strcmp(req->net, "user") == 0 ? "user" : "bridge"; /* decided by create_begin */
        o->req.publish = NULL; /* the caller's: a copy below, or none */
        if (req->n_publish) {
                struct port_spec *pub = xcalloc(req->n_publish, sizeof(*pub));
                memcpy(pub, req->publish, req->n_publish * sizeof(*pub));
                o->req.publish = pub;
        }
        if (req->workspace) {
                o->ws = (struct workspace_req) { .host_path = xstrdup(req->workspace->host_path),
                                                 .include_untracked = req->workspace->include_untracked,
                                                 .branch = req->workspace->branch ? xstrdup(req->workspace->branch) : NULL,
                                                 .from = req->workspace->from ? xstrdup(req->workspace->from) : NULL };
                o->req.workspace = &o->ws;
        }
        o->state = OP_RUNNING;
        o->error = (struct op_error) OP_ERROR_INIT;
        o->started_ms = v->deps.mono_ms();
        return o;
}

static int spawn_worker(struct vms *v, struct create_op *o, struct op_error *e) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int r = pthread_create(&t, &attr, create_main, o);
        pthread_attr_destroy(&attr);
        if (r == 0)
                return 0;
        pthread_mutex_lock(&v->creates_mu);
        o->state = OP_FAILED;
        op_fail(&o->error, -r, "cannot start a worker thread");
        v->create_workers--;
        pthread_mutex_unlock(&v->creates_mu);
        opstate_finish(v->deps.ops, o->op_id, OP_FAILED, o->error.msg);
        return op_fail(e, -r, "cannot start a worker thread");
}

static json_t *begin_json(struct vms *v, const struct create_op *o) {
        const struct config *c = config_live_get(v->deps.config);
        const struct vm_create_req *q = &o->req;
        json_t *j = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s}", "op_id", o->op_id, "id", o->vm_id, "name",
                              q->name, "vcpu", (json_int_t) (q->vcpu ? q->vcpu : c->vcpu), "memory_mib",
                              (json_int_t) (q->memory_mib ? q->memory_mib : c->memory_mib), "disk_size_bytes",
                              (json_int_t) (q->disk_size_bytes ? q->disk_size_bytes : (int64_t) c->disk_size_bytes),
                              "image", q->image);
        json_object_set_new(j, "net", json_string(q->net));
        return j;
}

static int create_begin(struct vms *v, const char *op_id, const struct vm_create_req *req, struct vm_fork *fork,
                        json_t **ret, struct op_error *e);

/* --from-snapshot: the spec is the snapshot's; nothing else may be asked. */
static int fork_req(struct vms *v, const struct vm_create_req *req, struct vm_fork *f, struct vm_create_req *ret,
                    struct op_error *e) {
        if (req->image || req->vcpu_set || req->memory_set || req->disk_size_bytes || req->system_overlay_size_bytes ||
            req->workspace || req->no_start || req->cold)
                return op_bad_request(e, "a fork (--from-snapshot) takes the snapshot's image, size and disks, and "
                                         "starts at once: no --image, --vcpu, --memory, --disk-size, "
                                         "--system-overlay-size, workspace, --no-start or --cold");
        int rc = vms_fork_resolve(v, req->from_snapshot, f, e);
        if (rc < 0)
                return rc;
        *ret = *req;
        ret->image = f->image_id;
        ret->vcpu = f->vcpu;
        ret->memory_mib = f->memory_mib;
        ret->vcpu_set = ret->memory_set = true;
        ret->disk_size_bytes = f->disk_bytes;
        ret->system_overlay_size_bytes = f->overlay_bytes;
        return 0;
}

int vm_create_begin(struct vms *v, const char *op_id, const struct vm_create_req *req0, json_t **ret,
                    struct op_error *e) {
        struct vm_fork fork = { 0 };
        struct vm_create_req forked;
        const struct vm_create_req *req = req0;
        int rc = req0->from_snapshot ? fork_req(v, req0, &fork, &forked, e) : 0;
        if (rc < 0)
                return rc;
        if (req0->from_snapshot)
                req = &forked;
        rc = create_begin(v, op_id, req, &fork, ret, e);
        vm_fork_done(&fork);
        return rc;
}

/* --net: user-mode unless asked for the bridge when rootless; the bridge
 * needs what a rootless daemon lacks. A fork resumes a bridge guest's
 * state (its NIC's backend is part of it). */
static int choose_net(struct vms *v, const struct vm_create_req *req, const char **ret, struct op_error *e) {
        const char *net = req->net && *req->net ? req->net : v->deps.rootless ? "user" : "bridge";
        if (strcmp(net, "user") != 0 && strcmp(net, "bridge") != 0)
                return op_bad_request(e, "net '%s': want bridge or user", net);
        if (strcmp(net, "bridge") == 0 && v->deps.rootless)
                return op_fail_as(e, RPC_UNAUTHORIZED, -EPERM,
                                  "bridge networking needs CAP_NET_ADMIN or the root helper (banger system install); "
                                  "this daemon runs without both: use --net user");
        if (strcmp(net, "user") == 0 && req->from_snapshot)
                return op_bad_request(e, "a fork (--from-snapshot) resumes on the bridge: no --net user");
        *ret = net;
        return 0;
}

static int create_begin(struct vms *v, const char *op_id, const struct vm_create_req *req0, struct vm_fork *fork,
                        json_t **ret, struct op_error *e) {
        _cleanup_free_ char *name = NULL, *image = default_image(v, req0->image);
        struct vm_create_req netreq = *req0;
        const struct vm_create_req *req = &netreq;
        int rc = vm_spec_check(req, e);
        if (rc < 0 || (rc = choose_net(v, req0, &netreq.net, e)) < 0)
                return rc;
        /* a VMM that cannot boot it is refused before any row exists */
        size_t vmm_index;
        _cleanup_free_ char *accel = NULL;
        if (req->vmm && strcmp(req->vmm, "qemu") != 0 && strcmp(req->vmm, "firecracker") != 0)
                return op_bad_request(e, "unknown vmm '%s' (qemu or firecracker)", req->vmm);
        /* a fork resumes a QEMU state (forks of Firecracker VMs are refused) */
        if ((rc = v->deps.choose_vmm(v->deps.choose_ud, fork && fork->dir ? "qemu" : req->vmm, &vmm_index, &accel,
                                     e)) < 0)
                return op_recode(e, RPC_BAD_REQUEST);
        netreq.vmm = v->deps.vmms[vmm_index].backend->name; /* static: the row takes it */
        if (strcmp(netreq.vmm, "firecracker") == 0 && strcmp(netreq.net, "user") == 0)
                return op_bad_request(e, "firecracker has no user-mode networking: --net bridge (as root or with "
                                         "the system install), or --vmm qemu");
        if (req->workspace && (rc = workspace_preboot_check(req->workspace, e)) < 0)
                return rc;
        if (req->workspace && req->no_start)
                return op_bad_request(e, "a workspace needs the VM started");
        if ((rc = vms_forwards_validate(v, NULL, strcmp(netreq.net, "user") == 0, req->publish, req->n_publish, e)) < 0)
                return rc;
        if (!image_known(v, image))
                return op_not_found(e, "image '%s' not found locally or in the catalog, and no OCI "
                                       "reference (see: banger image list --available)", image);
        if (v->stopping)
                return op_fail(e, -ESHUTDOWN, "the daemon is shutting down");
        pthread_mutex_lock(&v->create_mu);
        rc = choose_name(v, req->name, &name, e);
        pthread_mutex_unlock(&v->create_mu);
        if (rc < 0)
                return rc;
        struct create_op *o = new_op(v, op_id, req, TAKE_PTR(name), image);
        o->fork = *fork; /* moved */
        *fork = (struct vm_fork) { 0 };
        o->req.from_snapshot = NULL;
        opstate_begin(v->deps.ops, op_id, "vm.create", o->vm_name);
        pthread_mutex_lock(&v->creates_mu);
        o->next = v->creates;
        v->creates = o;
        v->create_workers++;
        pthread_mutex_unlock(&v->creates_mu);
        if ((rc = spawn_worker(v, o, e)) < 0)
                return rc;
        *ret = begin_json(v, o);
        return 0;
}

static struct create_op *find_op(struct vms *v, const char *op_id) {
        for (struct create_op *o = v->creates; o; o = o->next)
                if (strcmp(o->op_id, op_id) == 0)
                        return o;
        return NULL;
}

/* Drops finished create ops after 10 minutes (creates_mu held). */
static void prune_ops(struct vms *v) {
        int64_t now = v->deps.mono_ms();
        for (struct create_op **p = &v->creates; *p;) {
                struct create_op *o = *p;
                if (o->state != OP_RUNNING && now - o->finished_ms > CREATE_OP_RETAIN_MS) {
                        *p = o->next;
                        create_op_free(o);
                } else
                        p = &o->next;
        }
}

static const char *error_kind(enum rpc_code c) {
        return c == RPC_NOT_FOUND ? "not_found" : c == RPC_ALREADY_EXISTS ? "exists" : c == RPC_BAD_REQUEST ? "bad_request"
                                                                                                         : "failed";
}

/* creates_mu held */
static json_t *status_json(struct vms *v, const struct create_op *o) {
        int64_t now = v->deps.mono_ms();
        json_t *stages = json_array();
        for (size_t i = 0; i < o->n_stages; i++) {
                int64_t end = o->stages[i].end_ms ? o->stages[i].end_ms : now;
                json_t *s = json_pack("{s:s, s:I, s:b}", "name", o->stages[i].name, "elapsed_ms",
                                      (json_int_t) (end - o->stages[i].start_ms), "done", o->stages[i].end_ms != 0);
                if (o->stages[i].detail)
                        json_object_set_new(s, "detail", json_string(o->stages[i].detail));
                json_array_append_new(stages, s);
        }
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:b, s:o, s:I}", "op_id", o->op_id, "id", o->vm_id, "name",
                              o->vm_name, "state", op_state_to_string(o->state), "done", o->state != OP_RUNNING,
                              "stages", stages, "elapsed_ms",
                              (json_int_t) ((o->finished_ms ? o->finished_ms : now) - o->started_ms));
        if (o->state == OP_FAILED || o->state == OP_CANCELLED) {
                json_object_set_new(j, "error", json_string(op_error_message(&o->error)));
                json_object_set_new(j, "error_kind", json_string(error_kind(o->error.code)));
        }
        return j;
}

int vm_create_status(struct vms *v, const char *op_id, json_t **ret, struct op_error *e) {
        pthread_mutex_lock(&v->creates_mu);
        prune_ops(v);
        struct create_op *o = find_op(v, op_id);
        if (!o) {
                pthread_mutex_unlock(&v->creates_mu);
                return op_not_found(e, "no create operation %s", op_id);
        }
        *ret = status_json(v, o);
        bool done = o->state == OP_DONE;
        _cleanup_free_ char *vm_id = xstrdup(o->vm_id);
        pthread_mutex_unlock(&v->creates_mu);
        if (done)
                json_object_set_new(*ret, "vm", vm_json_by_id(v, vm_id));
        return 0;
}

int vm_create_cancel(struct vms *v, const char *op_id, json_t **ret, struct op_error *e) {
        pthread_mutex_lock(&v->creates_mu);
        struct create_op *o = find_op(v, op_id);
        bool running = o && o->state == OP_RUNNING;
        if (o)
                o->cancel = true;
        pthread_mutex_unlock(&v->creates_mu);
        if (!o)
                return op_not_found(e, "no create operation %s", op_id);
        opstate_request_cancel(v->deps.ops, op_id);
        *ret = json_pack("{s:s, s:b}", "op_id", op_id, "cancel_requested", running);
        return 0;
}

void vm_create_wait(struct vms *v, const char *op_id) {
        pthread_mutex_lock(&v->creates_mu);
        for (;;) {
                struct create_op *o = find_op(v, op_id);
                if (!o || o->state != OP_RUNNING)
                        break;
                pthread_cond_wait(&v->creates_cond, &v->creates_mu);
        }
        pthread_mutex_unlock(&v->creates_mu);
}

bool vms_create_in_flight(struct vms *v, const char *id) {
        bool busy = false;
        pthread_mutex_lock(&v->creates_mu);
        for (struct create_op *o = v->creates; o; o = o->next)
                if (o->state == OP_RUNNING && strcmp(o->vm_id, id) == 0)
                        busy = true;
        pthread_mutex_unlock(&v->creates_mu);
        return busy;
}

void vms_creates_done(struct vms *v) {
        pthread_mutex_lock(&v->creates_mu);
        for (struct create_op *o = v->creates; o; o = o->next)
                o->cancel = true;
        while (v->create_workers > 0)
                pthread_cond_wait(&v->creates_cond, &v->creates_mu);
        while (v->creates) {
                struct create_op *o = v->creates;
                v->creates = o->next;
                create_op_free(o);
        }
        pthread_mutex_unlock(&v->creates_mu);
}
