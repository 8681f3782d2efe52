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
