/* SPDX-License-Identifier: MIT */
/* The per-VM lock sets: vm_locks[id] and workspace_locks[id]. Entries are
 * refcounted under set_mu (a leaf) and freed when the last user leaves. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"
#include "vms_internal.h"

struct vm_lock {
        char id[17];
        pthread_mutex_t mu;
        int refs; /* guarded by set_mu */
        struct vm_lock *next;
};

static struct vm_lock *acquire(struct vms *v, struct vm_lock **set, const char *id) {
        struct vm_lock *l;
        pthread_mutex_lock(&v->set_mu);
        for (l = *set; l; l = l->next)
                if (strcmp(l->id, id) == 0)
                        break;
        if (!l) {
                l = xcalloc(1, sizeof(*l));
                snprintf(l->id, sizeof(l->id), "%s", id);
                pthread_mutex_init(&l->mu, NULL);
                l->next = *set;
                *set = l;
        }
        l->refs++;
        pthread_mutex_unlock(&v->set_mu);
        pthread_mutex_lock(&l->mu);
        return l;
}

static void release(struct vms *v, struct vm_lock **set, struct vm_lock *l) {
        pthread_mutex_unlock(&l->mu);
        pthread_mutex_lock(&v->set_mu);
        if (--l->refs == 0) {
                for (struct vm_lock **p = set; *p; p = &(*p)->next)
                        if (*p == l) {
                                *p = l->next;
                                break;
                        }
                pthread_mutex_destroy(&l->mu);
                free(l);
        }
        pthread_mutex_unlock(&v->set_mu);
}

struct vm_lock *vms_lock(struct vms *v, const char *id) {
        return acquire(v, &v->locks, id);
}

void vms_unlock(struct vms *v, struct vm_lock *l) {
        release(v, &v->locks, l);
}

struct vm_lock *vms_workspace_lock(struct vms *v, const char *id) {
        return acquire(v, &v->ws_locks, id);
}

void vms_workspace_unlock(struct vms *v, struct vm_lock *l) {
        release(v, &v->ws_locks, l);
}
