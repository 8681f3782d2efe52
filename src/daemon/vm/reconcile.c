/* SPDX-License-Identifier: MIT */
/*
 * Reconcile, at daemon start and before serving: every VM whose VMM still
 * runs (pid from handles.json, else the row's teardown record, else a /proc
 * scan for its identity; always re-identified by the backend) is adopted;
 * every other VM that held something is released and marked stopped. Live
 * VMs are adopted first, so the release of a dead one can tell which TAPs
 * are still in use whatever its handles file says.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "strbuf.h"
#include "vms_internal.h"

/* The VMM of r if it still runs: *ret its handles. */
static pid_t find_live(struct vms *v, const struct vm_row *r, const struct vm_paths *p, struct vm_handles *ret) {
        handles_read(r, p, ret);
        const struct vmm_entry *m = vms_vmm_by_name(v, ret->vmm);
        if (ret->pid > 0 && m && m->backend->owns(ret->pid, m->bin, r->id))
                return ret->pid;
        ret->pid = 0;
        if (!vm_state_active(r->state))
                return 0;
        pid_t pid = vms_find_vmm(v, r->id, &m);
        if (pid > 0) {
                ret->pid = pid;
                snprintf(ret->vmm, sizeof(ret->vmm), "%s", m->backend->name);
        }
        return pid;
}

static void adopt(struct vms *v, const struct vm_row *r, struct vm_handles *h) {
        /* a TAP name from the file is kept only when it is this VM's own */
        _cleanup_free_ char *own = vm_tap_name(r->id);
        if (!*h->tap || (strcmp(h->tap, own) != 0 && !tap_pool_is_pool_name(h->tap)))
                snprintf(h->tap, sizeof(h->tap), "%s", v->deps.priv->link_exists(v->deps.priv->ud, own) ? own : "");
        handle_put(v, r->id, h);
        vms_watch(v, r->id, h->pid);
        if (strcmp(r->state, "running") != 0)
                vms_set_state(v, r, "running", NULL);
        log_info("reconcile: vm %s is running (pid %d); adopted", r->name, (int) h->pid);
}

static void release_dead(struct vms *v, const struct vm_row *r, const struct vm_paths *p, const struct vm_handles *h) {
        if (!vm_state_active(r->state) && !r->teardown_json)
                return;
        vms_release_runtime(v, r, p, h->tap);
        if (vm_state_active(r->state))
                vms_set_state(v, r, "stopped", NULL);
        log_info("reconcile: vm %s is not running; cleaned up and marked stopped", r->name);
}

/* pass 0 adopts the live, pass 1 releases the dead */
static void reconcile_pass(struct vms *v, struct vm_row *rows, size_t n, int pass) {
        for (size_t i = 0; i < n; i++) {
                struct vm_row *r = &rows[i];
                struct vm_lock *l = vms_lock(v, r->id);
                struct vm_paths p;
                struct vm_handles h;
                vm_paths_init(v, r, &p);
                pid_t pid = find_live(v, r, &p, &h);
                if (pass == 0 && pid > 0)
                        adopt(v, r, &h);
                else if (pass == 1 && pid <= 0)
                        release_dead(v, r, &p, &h);
                vm_paths_done(&p);
                vms_unlock(v, l);
        }
}

void vms_reconcile(struct vms *v) {
        struct vm_row *rows;
        size_t n;
        int rc = store_vm_list(v->deps.store, &rows, &n);
        if (rc < 0) {
                log_error("reconcile: cannot list vms: %s", strerror(-rc));
                return;
        }
        reconcile_pass(v, rows, n, 0);
        reconcile_pass(v, rows, n, 1);
        vm_rows_free(rows, n);
}
