/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The VM service: lifecycle of VMs on the VMM backend, as the design notes
 * describe it.
 *
 * Locks (see docs/ARCHITECTURE.md for the whole order):
 *   vm_locks[id]  one mutex per VM, held across a whole lifecycle operation
 *                 (create's preparation and boot, start, stop, kill, delete,
 *                 set, the exit watcher's cleanup, reconcile);
 *   create_mu     create_vm_mu: the reservation window only (name uniqueness
 *                 and guest IP allocation, then the row insert);
 *   set_mu        leaf: the lock set itself;
 *   handles_mu    leaf: the in-memory cache of handles.json;
 *   creates_mu    leaf: async create operations (status, cancel);
 *   kh_mu         leaf: banger's known_hosts file.
 * Order: vm_locks[id] -> create_mu -> image_ops_mu -> leaves.
 *
 * Durable intent is the vms row; transient handles (VMM pid, TAP) live in
 * <vm_dir>/handles.json and the cache, and what teardown needs is mirrored in
 * the row's teardown_json so a lost handles.json never blocks cleanup.
 */

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "artifacts/artifacts.h"
#include "net/tappool.h"

struct daemon;
struct vm_lock;
struct vm_handle;
struct create_op;
struct vm_stats;
struct watch;

struct vms {
        struct daemon *d; /* borrowed: layout, config, store, artifacts, ops, VMM choice */

        pthread_mutex_t create_mu;
        pthread_mutex_t set_mu;
        struct vm_lock *locks;
        struct vm_lock *ws_locks; /* workspace_locks[id], same set_mu */
        pthread_mutex_t handles_mu;
        struct vm_handle *handles;
        pthread_mutex_t creates_mu;
        pthread_cond_t creates_cond;
        struct create_op *creates;
        int create_workers; /* running create threads (guarded by creates_mu) */
        pthread_mutex_t kh_mu; /* leaf: banger's known_hosts file */

        /* housekeeping thread: stats every stats_poll_interval, the stale
         * sweep; stats_mu (leaf) guards the stats cache */
        pthread_t hk_thread;
        bool hk_started;
        pthread_mutex_t hk_mu; /* leaf: with hk_cond, the thread's sleep */
        pthread_cond_t hk_cond;
        pthread_mutex_t stats_mu;
        struct vm_stats *stats;
        bool hk_kicked; /* guarded by hk_mu: refill the TAP pool now */
        _Atomic bool dns_routed; /* resolvectl routing set up (undone at close) */
        struct tap_pool pool;

        /* exit watcher: pidfds of running VMMs in an epoll set */
        int ep_fd;
        int wake_fd;
        struct watch *watches; /* guarded by handles_mu */
        pthread_t watcher;
        bool watcher_started;
        _Atomic bool stopping;
};

/* Errors carry the RPC-ish kind (artifacts' enum: not found, exists, bad
 * request, failed) so handlers can pick the code. */
typedef struct art_error vm_error;

int vms_init(struct vms *v, struct daemon *d, char **ret_err);
/* Reconcile at daemon start: adopt live VMMs, clean up after dead ones. */
void vms_reconcile(struct vms *v);
/* Cancels creates in flight, waits for them, stops the watcher. Running VMs
 * are left alone. */
void vms_done(struct vms *v);

struct vm_create_req {
        const char *name;   /* NULL/"" = generated */
        const char *image;  /* NULL = config default_image_name */
        int64_t vcpu, memory_mib;                     /* 0 = config default */
        int64_t disk_size_bytes, system_overlay_size_bytes; /* 0 = default */
        bool vcpu_set, memory_set;                     /* explicitly given (0 is then an error) */
        bool no_start;
        bool nat;
};

/* Validates synchronously, then runs the create in a worker thread under
 * operation id op_id. */
int vm_create_begin(struct vms *v, const char *op_id, const struct vm_create_req *req, json_t **ret, vm_error *e);
int vm_create_status(struct vms *v, const char *op_id, json_t **ret, vm_error *e);
int vm_create_cancel(struct vms *v, const char *op_id, json_t **ret, vm_error *e);

int vm_list(struct vms *v, json_t **ret, vm_error *e);
int vm_show(struct vms *v, const char *ref, json_t **ret, vm_error *e);
int vm_start(struct vms *v, const char *ref, const struct progress *p, json_t **ret, vm_error *e);
int vm_stop(struct vms *v, const char *ref, const struct progress *p, json_t **ret, vm_error *e);
int vm_restart(struct vms *v, const char *ref, const struct progress *p, json_t **ret, vm_error *e);
int vm_kill(struct vms *v, const char *ref, int sig, json_t **ret, vm_error *e);
int vm_delete(struct vms *v, const char *ref, const struct progress *p, json_t **ret, vm_error *e);

struct vm_set_req {
        int64_t vcpu, memory_mib, disk_size_bytes; /* 0 = unchanged */
        bool vcpu_set, memory_set;
        int nat; /* -1 unchanged, 0/1 */
};
int vm_set(struct vms *v, const char *ref, const struct vm_set_req *req, json_t **ret, vm_error *e);
/* Agent methods on a running VM ("health", "ports"). */
int vm_agent(struct vms *v, const char *ref, const char *method, json_t **ret, vm_error *e);
int vm_touch(struct vms *v, const char *ref, vm_error *e);
/* Guest CPU/memory (agent), VMM RSS and CPU time, disk usage: the last
 * background sample (taken now if there is none yet). */
int vm_stats(struct vms *v, const char *ref, json_t **ret, vm_error *e);
/* Starts the housekeeping thread (after reconcile). */
int vms_start_housekeeping(struct vms *v, char **ret_err);
/* dns_lookup_fn for the zone `vm`: running VMs by exact name (ud: the vms). */
int vms_dns_lookup(void *ud, const char *label, uint32_t *ret_ip);

/* workspace.c */
struct workspace_req {
        const char *host_path; /* absolute, inside a git work tree */
        bool include_untracked;
        bool dry_run; /* list what would ship; no VM needed beyond the lookup */
        const char *branch, *from;
};
int workspace_prepare(struct vms *v, const char *ref, const struct workspace_req *q, const struct progress *p,
                      json_t **ret, vm_error *e);
/* A binary patch of the guest repo since base (NULL: the recorded head
 * commit) written to output (absolute path). */
int workspace_export(struct vms *v, const char *ref, const char *base, const char *output, json_t **ret, vm_error *e);
