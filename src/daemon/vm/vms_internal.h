/* SPDX-License-Identifier: MIT */
#pragma once

/* Shared between the VM service's files (vms.c, workspace.c); not for
 * other subsystems. */

#include <jansson.h>
#include <sys/types.h>

#include "store/store_vms.h"
#include "vms.h"

struct vm_paths {
        char *dir, *run, *overlay, *work, *console, *console_prev, *handles, *hostkey, *cpio, *initrd, *qmp, *agent;
};

void vm_paths_init(struct vms *v, const struct vm_row *r, struct vm_paths *p);
void vm_paths_done(struct vm_paths *p);
char *known_hosts_path(struct vms *v);

int vm_fail(vm_error *e, enum art_err kind, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
int vms_get_row(struct vms *v, const char *ref, struct vm_row *ret, vm_error *e);
/* The VMM pid if the VM is running (and the process really is its VMM), else 0. */
pid_t vms_live_pid(struct vms *v, const struct vm_row *r, const struct vm_paths *p, char **ret_tap);
json_t *vm_json_by_id(struct vms *v, const char *id);

/* workspace_locks[id]: taken without the VM's lock (never both). */
struct vm_lock *vms_workspace_lock(struct vms *v, const char *id);
void vms_workspace_unlock(struct vms *v, struct vm_lock *l);

/* The per-VM lock set (vms.c): held across whole lifecycle operations. */
struct vm_lock *vms_lock(struct vms *v, const char *id);
void vms_unlock(struct vms *v, struct vm_lock *l);

struct boot_files {
        char *kernel, *initramfs, *rootfs, *work_seed, *init_mode;
        uint64_t rootfs_size;
};
void vms_boot_files_done(struct boot_files *b);
int vms_resolve_boot(struct vms *v, const char *image_id, struct boot_files *b, vm_error *e);

/* With the VM's lock held (vms.c). start: on failure the VM is in 'error'
 * with nothing running; destroy: every trace of a VM whose VMM is gone. */
int vms_start_locked(struct vms *v, struct vm_row *r, const struct progress *pr, vm_error *e);
int vms_stop_locked(struct vms *v, struct vm_row *r, bool graceful, vm_error *e);
int vms_destroy_locked(struct vms *v, const struct vm_row *r, vm_error *e);
bool vm_state_active(const char *state); /* starting, running or stopping */
char *vm_kh_patterns(const struct vm_row *r); /* "<name>.vm,<ip>" for known_hosts */

/* create.c */
bool vms_create_in_flight(struct vms *v, const char *id);
void vms_creates_done(struct vms *v); /* cancels, waits for, frees the create ops */

bool vms_tap_in_use(void *ud, const char *name); /* tap_in_use_fn; ud: the vms */

/* housekeeping.c */
void vms_hk_kick(struct vms *v);                  /* refill the TAP pool now */
void vms_housekeeping_stop(struct vms *v);        /* sets `stopping`, joins the thread */
