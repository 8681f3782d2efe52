/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * The VM service: lifecycle of VMs on a VMM backend, as the design notes
 * describe it. Everything it uses from outside comes in through struct
 * vms_deps (the composition root fills it; unit tests pass fakes): it
 * includes nothing of the daemon.
 *
 * Locks (docs/ARCHITECTURE.md has the whole order):
 *   vm_locks[id]        one mutex per VM, held across a whole lifecycle
 *                       operation (create's preparation and boot, start,
 *                       stop, kill, delete, set, the exit watcher's cleanup,
 *                       reconcile, a stats sample);
 *   workspace_locks[id] workspace prepare/export of one VM, never together
 *                       with vm_locks[id];
 *   create_mu           the reservation window only (name uniqueness, guest
 *                       IP allocation, the row insert);
 *   leaves: set_mu (the lock sets), handles_mu (handles cache and watch
 *   list), creates_mu (+creates_cond: async creates), kh_mu (banger's
 *   known_hosts), hk_mu (+hk_cond: the housekeeping thread's sleep),
 *   stats_mu (the stats cache).
 * Order: vm_locks[id] -> create_mu -> image_ops_mu (artifacts) -> leaves.
 *
 * Durable intent is the vms row; transient handles (VMM pid and backend,
 * TAP) live in <vm_dir>/handles.json and the cache, and what teardown needs
 * is mirrored in the row's teardown_json so a lost handles.json never
 * blocks cleanup.
 */

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "artifacts/artifacts.h"
#include "config.h"
#include "layout.h"
#include "net/tappool.h"
#include "op_error.h"
#include "ops/opstate.h"
#include "ops/progress.h"
#include "priv/priv.h"
#include "store/store.h"
#include "vm/agent_client.h"
#include "vm/caps/caps.h"
#include "vmm/vmm.h"

/* One VMM backend this daemon can drive, with its binary. */
struct vmm_entry {
        const struct vmm_backend *backend; /* borrowed */
        const char *bin;                   /* borrowed */
        const struct vm_jailer *jail;      /* borrowed; its VMs run under the jailer (bin: the exec file it
                                            * copies in), chroots under <state>/VM_JAIL_DIR; NULL: unjailed */
};
#define VM_JAIL_DIR "jail"

typedef int (*vms_agent_call_fn)(void *ud, const char *socket_path, const char *method, int timeout_ms,
                                 const struct agent_wait *w, json_t **ret_result, struct op_error *e);

struct agent_exec;
/* Execs through the guest agent's link (agent_link.c); ud: agent_ud. */
struct vms_agent_exec_ops {
        int (*open)(void *ud, const char *socket_path, const uint8_t *spec, size_t spec_len, int timeout_ms,
                    struct agent_exec **ret, uint32_t *ret_pid, struct op_error *e);
        void (*attach)(struct agent_exec *x, int client_fd);
        void (*finish)(struct agent_exec *x);
        int (*fds)(void *ud, const char *socket_path, const uint8_t *spec, size_t spec_len, int in_fd, int out_fd,
                   int err_fd, const struct agent_wait *w, int *ret_status, struct op_error *e);
        char *(*lost)(void *ud, const char *socket_path); /* why the link died mid-use, or NULL */
};

struct vms_deps {
        const struct layout *layout;  /* borrowed: vms, runtime and ssh dirs */
        struct config_live *config;   /* borrowed: config_live_get() where a value is used (reload swaps it) */
        struct store *store;          /* borrowed */
        struct artifacts *artifacts;  /* borrowed: images and kernels a VM boots */
        struct opstate_registry *ops; /* borrowed: creates are listed there */
        const struct priv_ops *priv;  /* borrowed: every privileged step */
        const struct vmm_entry *vmms; /* borrowed: every backend; handles.json names one */
        size_t n_vmms;
        /* Which backend boots a VM now, and with which accelerator ("kvm",
         * "tcg"; *ret_accel malloc'd). */
        /* The backend for want ("qemu", "firecracker"; NULL: the daemon's
         * choice) as an index into vmms, and the accelerator; an error says
         * why it cannot be used here. */
        int (*choose_vmm)(void *ud, const char *want, size_t *ret_index, char **ret_accel, struct op_error *e);
        void *choose_ud;
        vms_agent_call_fn agent_call; /* the guest agent (agent_client.c) */
        const struct vms_agent_exec_ops *agent_exec; /* NULL: no execs through the agent */
        void *agent_ud;
        int64_t (*mono_ms)(void);     /* clock.h's clocks */
        int64_t (*wall_ms)(void);
        unsigned tsc_khz;             /* host TSC, for the guest's tsc_early_khz */
        struct fwd *fwd;              /* borrowed: the port forward relay; NULL: forwards are refused */
        bool rootless;                /* no bridge here: new VMs use user-mode networking, bridge is refused */
        /* Can a QEMU VM get a vhost-vsock device now (hostinfo_vhost_vsock)?
         * *ret_why (malloc'd) says why not. NULL: never (virtio-serial only). */
        bool (*vsock_usable)(char **ret_why);
        /* The capability hooks (vm_caps_default()), in order. */
        const struct vm_cap *const *caps;
        size_t n_caps;
        /* 0 = the defaults (180 s to boot, 15 s for a guest to power off). */
        int agent_boot_timeout_ms, stop_guest_timeout_ms;
};

struct vm_lock;
struct vm_handle;
struct create_op;
struct vm_stats;
struct watch;

struct vms {
        struct vms_deps deps;

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
        pthread_mutex_t kh_mu;

        /* housekeeping thread: stats every stats_poll_interval, the stale
         * sweep, TAP pool refills */
        pthread_t hk_thread;
        bool hk_started;
        pthread_mutex_t hk_mu;
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
        struct vm_templates *tpl; /* templates.c: its own leaf lock */
};

/* Starts the exit watcher. deps is copied; what it points to is borrowed. */
_warn_unused_ int vms_init(struct vms *v, const struct vms_deps *deps, struct op_error *e);
/* Reconcile at daemon start: adopt live VMMs, clean up after dead ones. */
void vms_reconcile(struct vms *v);
/* A reload published a new config: housekeeping picks up its intervals now. */
void vms_config_changed(struct vms *v);
/* Starts the housekeeping thread (after reconcile). */
_warn_unused_ int vms_start_housekeeping(struct vms *v, struct op_error *e);
/* Cancels creates in flight, waits for them, stops the threads. Running
 * VMs are left alone. */
void vms_done(struct vms *v);

struct workspace_req {
        const char *host_path; /* absolute, inside a git work tree */
        bool include_untracked;
        bool dry_run; /* list what would ship; no VM needed beyond the lookup */
        const char *branch, *from;
};

struct vm_create_req {
        const char *name;   /* NULL/"" = generated */
        const char *image;  /* NULL = config default_image_name */
        int64_t vcpu, memory_mib;                           /* 0 = config default */
        int64_t disk_size_bytes, system_overlay_size_bytes; /* 0 = default */
        bool vcpu_set, memory_set;                          /* explicitly given (0 is then an error) */
        bool no_start;
        bool nat;
        bool isolate;                                       /* no traffic with other guests */
        const char *net;    /* "bridge" | "user"; NULL = the daemon's default (user when rootless) */
        const char *vmm;    /* "qemu" | "firecracker"; NULL = the daemon's choice (vmm in config) */
        bool no_ssh_wait;   /* running once the agent answers (commands go through it) */
        bool cold;          /* never from a warm-start template */
        const struct port_spec *publish; /* --publish: forwards made with the VM */
        size_t n_publish;
        const char *from_snapshot; /* "VM:NAME": a fork (its spec, disks and state); nothing above but
                                    * name, nat, isolate, wait_ssh may be set */
        const struct workspace_req *workspace; /* written into the work disk before boot, or NULL */
};

/* Validates synchronously, then runs the create in a worker thread under
 * operation id op_id. */
_warn_unused_ int vm_create_begin(struct vms *v, const char *op_id, const struct vm_create_req *req, json_t **ret, struct op_error *e);
_warn_unused_ int vm_create_status(struct vms *v, const char *op_id, json_t **ret, struct op_error *e);
_warn_unused_ int vm_create_cancel(struct vms *v, const char *op_id, json_t **ret, struct op_error *e);
/* Blocks until the create op_id has finished (tests; the CLI polls status). */
void vm_create_wait(struct vms *v, const char *op_id);

_warn_unused_ int vm_list(struct vms *v, json_t **ret, struct op_error *e);
_warn_unused_ int vm_show(struct vms *v, const char *ref, json_t **ret, struct op_error *e);
_warn_unused_ int vm_start(struct vms *v, const char *ref, const struct progress *p, json_t **ret, struct op_error *e);
_warn_unused_ int vm_stop(struct vms *v, const char *ref, const struct progress *p, json_t **ret, struct op_error *e);
_warn_unused_ int vm_restart(struct vms *v, const char *ref, const struct progress *p, json_t **ret, struct op_error *e);
_warn_unused_ int vm_kill(struct vms *v, const char *ref, int sig, json_t **ret, struct op_error *e);
_warn_unused_ int vm_delete(struct vms *v, const char *ref, const struct progress *p, json_t **ret, struct op_error *e);
/* kill: no orderly guest poweroff (the disks are thrown away anyway);
 * background: answers once the delete is recorded, a worker does it (a
 * crash meanwhile is finished by the next reconcile). */
_warn_unused_ int vm_delete_ex(struct vms *v, const char *ref, bool kill, bool background, const struct progress *p,
                               json_t **ret, struct op_error *e);

struct vm_set_req {
        int64_t vcpu, memory_mib, disk_size_bytes; /* 0 = unchanged */
        bool vcpu_set, memory_set;
        int nat;     /* -1 unchanged, 0/1 */
        int isolate; /* -1 unchanged, 0/1 */
};
_warn_unused_ int vm_set(struct vms *v, const char *ref, const struct vm_set_req *req, json_t **ret, struct op_error *e);
/* Agent methods on a running VM ("health", "ports"). */
_warn_unused_ int vm_agent(struct vms *v, const char *ref, const char *method, json_t **ret, struct op_error *e);
_warn_unused_ int vm_touch(struct vms *v, const char *ref, struct op_error *e);

/* exec.c: a command through the guest agent. */
struct vm_exec_req {
        json_t *argv;    /* array of strings, at least one (borrowed) */
        json_t *env;     /* array of "NAME=value", or NULL */
        const char *cwd; /* absolute, or NULL: /root */
        bool pty;
        int64_t rows, cols;
        uint32_t uid, gid; /* 0:0 is root */
};
/* Starts it and returns the open channel; -EPROTONOSUPPORT (code
 * bad_version) when the agent speaks only version 1. */
_warn_unused_ int vm_exec_open(struct vms *v, const char *ref, const struct vm_exec_req *q, struct agent_exec **ret,
                               uint32_t *ret_pid, struct op_error *e);
void vm_exec_attach(struct vms *v, struct agent_exec *x, int client_fd);
void vm_exec_finish(struct vms *v, struct agent_exec *x);
/* Guest CPU/memory (agent), VMM RSS and CPU time, disk usage: the last
 * background sample (taken now if there is none yet). */
_warn_unused_ int vm_stats(struct vms *v, const char *ref, json_t **ret, struct op_error *e);
/* snapshot.c: a running VM's RAM, device state and disks at one instant
 * (name NULL: "snap-<UTC time>"); restoring one replaces the VM's running
 * state (it is started if stopped); list; delete. */
_warn_unused_ int vm_snapshot_create(struct vms *v, const char *ref, const char *name, const struct progress *p,
                                     json_t **ret, struct op_error *e);
_warn_unused_ int vm_snapshot_restore(struct vms *v, const char *ref, const char *name, const struct progress *p,
                                      json_t **ret, struct op_error *e);
_warn_unused_ int vm_snapshot_list(struct vms *v, const char *ref, json_t **ret, struct op_error *e);
_warn_unused_ int vm_snapshot_delete(struct vms *v, const char *ref, const char *name, json_t **ret, struct op_error *e);
/* templates.c: the warm-start templates ({"templates": [...]}); removing one
 * (key: a unique prefix of at least 6 hex digits) or, key NULL, every one
 * (only the stale ones when only_stale). */
_warn_unused_ int vm_template_list(struct vms *v, json_t **ret, struct op_error *e);
_warn_unused_ int vm_template_rm(struct vms *v, const char *key, bool only_stale, json_t **ret, struct op_error *e);
/* forwards.c: a VM's port forwards (`vm forward`): add one (spec
 * "[HOSTIP:]HOSTPORT:GUESTPORT[/proto]"; open at once when the VM runs),
 * remove the ones a key "[HOSTIP:]HOSTPORT[/proto]" matches, list one VM's
 * (ref NULL: every VM's). */
_warn_unused_ int vm_forward_add(struct vms *v, const char *ref, const char *spec, json_t **ret, struct op_error *e);
_warn_unused_ int vm_forward_remove(struct vms *v, const char *ref, const char *key, json_t **ret, struct op_error *e);
_warn_unused_ int vm_forward_list(struct vms *v, const char *ref, json_t **ret, struct op_error *e);
/* The TAP pool: how many idle TAPs it keeps, how many it holds now. */
void vms_tap_pool_state(struct vms *v, size_t *ret_target, size_t *ret_idle);
/* dns_lookup_fn for the zone `vm`: running VMs by exact name (ud: the vms). */
int vms_dns_lookup(void *ud, const char *label, uint32_t *ret_ip);

/* workspace.c */
_warn_unused_ int workspace_prepare(struct vms *v, const char *ref, const struct workspace_req *q, const struct progress *p,
                      json_t **ret, struct op_error *e);
/* A binary patch of the guest repo since base (NULL: the recorded head
 * commit) written to output (absolute path). */
_warn_unused_ int workspace_export(struct vms *v, const char *ref, const char *base, const char *output, json_t **ret,
                     struct op_error *e);
