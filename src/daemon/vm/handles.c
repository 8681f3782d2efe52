/* SPDX-License-Identifier: MIT */
/*
 * Handles of running VMs: the in-memory cache (guarded by handles_mu, a
 * leaf), <vm_dir>/handles.json and the row's teardown mirror. The cache is
 * the truth while the daemon lives; the file and the mirror let the next
 * daemon find the VMM again. Nothing read back is trusted: a pid is used
 * only once its backend re-identified the process, a TAP name only once it
 * is shown to be this VM's (and the priv ops check it again).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "fsutil.h"
#include "jsonx.h"
#include "log.h"
#include "strbuf.h"
#include "vm/agent_transport.h"
#include "vms_internal.h"

#define HANDLES_MAX_BYTES (1u << 16)

struct vm_handle {
        char id[17];
        struct vm_handles h;
        struct vm_handle *next;
};

bool handle_get(struct vms *v, const char *id, struct vm_handles *ret) {
        bool found = false;
        pthread_mutex_lock(&v->handles_mu);
        for (struct vm_handle *h = v->handles; h; h = h->next)
                if (strcmp(h->id, id) == 0) {
                        *ret = h->h;
                        found = true;
                        break;
                }
        pthread_mutex_unlock(&v->handles_mu);
        return found;
}

void handle_put(struct vms *v, const char *id, const struct vm_handles *hs) {
        pthread_mutex_lock(&v->handles_mu);
        struct vm_handle *h;
        for (h = v->handles; h; h = h->next)
                if (strcmp(h->id, id) == 0)
                        break;
        if (!h) {
                h = xcalloc(1, sizeof(*h));
                snprintf(h->id, sizeof(h->id), "%s", id);
                h->next = v->handles;
                v->handles = h;
        }
        h->h = *hs;
        pthread_mutex_unlock(&v->handles_mu);
}

void handle_drop(struct vms *v, const char *id) {
        pthread_mutex_lock(&v->handles_mu);
        for (struct vm_handle **p = &v->handles; *p; p = &(*p)->next)
                if (strcmp((*p)->id, id) == 0) {
                        struct vm_handle *h = *p;
                        *p = h->next;
                        free(h);
                        break;
                }
        pthread_mutex_unlock(&v->handles_mu);
}

unsigned vms_cid_claim(struct vms *v, const char *id, unsigned from) {
        size_t n = 0, cap = 0;
        _cleanup_free_ unsigned *used = NULL;
        pthread_mutex_lock(&v->handles_mu);
        struct vm_handle *mine = NULL;
        for (struct vm_handle *h = v->handles; h; h = h->next) {
                if (strcmp(h->id, id) == 0) {
                        mine = h;
                        continue;
                }
                if (!h->h.vsock_cid)
                        continue;
                if (n == cap)
                        used = xrealloc(used, (cap = cap ? cap * 2 : 16) * sizeof(*used));
                used[n++] = h->h.vsock_cid;
        }
        unsigned cid = vsock_cid_pick(used, n, from);
        if (!mine) {
                mine = xcalloc(1, sizeof(*mine));
                snprintf(mine->id, sizeof(mine->id), "%s", id);
                mine->next = v->handles;
                v->handles = mine;
        }
        mine->h.vsock_cid = cid;
        pthread_mutex_unlock(&v->handles_mu);
        return cid;
}

void handles_free(struct vms *v) {
        while (v->handles) {
                struct vm_handle *h = v->handles;
                v->handles = h->next;
                free(h);
        }
}

bool vms_tap_in_use(void *ud, const char *name) {
        struct vms *v = ud;
        bool used = false;
        pthread_mutex_lock(&v->handles_mu);
        for (struct vm_handle *h = v->handles; h; h = h->next)
                used |= strcmp(h->h.tap, name) == 0;
        pthread_mutex_unlock(&v->handles_mu);
        return used;
}

int handles_write(struct vms *v, const struct vm_row *r, const struct vm_paths *p, const struct vm_handles *h) {
        _cleanup_free_ char *now = now_rfc3339();
        _cleanup_json_ json_t *j = json_pack("{s:i, s:s, s:s, s:s}", "pid", (int) h->pid, "tap", h->tap, "vmm", h->vmm,
                                             "started_at", now);
        if (h->ssh_port)
                json_object_set_new(j, "ssh_port", json_integer(h->ssh_port));
        if (h->vsock_cid)
                json_object_set_new(j, "vsock_cid", json_integer(h->vsock_cid));
        if (h->dm[0])
                json_object_set_new(j, "dm", json_string(h->dm));
        _cleanup_free_ char *text = json_dump_compact(j);
        handle_put(v, r->id, h);
        /* the mirror first: enough to clean up when handles.json is lost */
        int rc = store_vm_set_teardown(v->deps.store, r->id, text);
        if (rc < 0)
                log_warn("vm %s: recording its teardown handles: %s", r->name, strerror(-rc));
        int wr = write_file_atomic(p->handles, text, strlen(text), 0600);
        if (wr < 0)
                log_warn("vm %s: cannot write %s: %s", r->name, p->handles, strerror(-wr));
        return rc < 0 ? rc : wr;
}

static bool parse_handles(const char *text, size_t len, struct vm_handles *ret) {
        _cleanup_json_ json_t *j = text ? json_loadb(text, len, 0, NULL) : NULL;
        if (!json_is_object(j))
                return false;
        json_t *pid = json_object_get(j, "pid");
        const char *tap = json_string_value(json_object_get(j, "tap"));
        const char *vmm = json_string_value(json_object_get(j, "vmm"));
        json_int_t n = json_is_integer(pid) ? json_integer_value(pid) : 0;
        ret->pid = n > 1 && n < INT32_MAX ? (pid_t) n : 0;
        json_t *sp = json_object_get(j, "ssh_port");
        json_int_t port = json_is_integer(sp) ? json_integer_value(sp) : 0;
        ret->ssh_port = port > 0 && port < 65536 ? (unsigned) port : 0;
        json_t *cj = json_object_get(j, "vsock_cid");
        json_int_t cid = json_is_integer(cj) ? json_integer_value(cj) : 0;
        ret->vsock_cid = cid >= AGENT_VSOCK_CID_MIN && cid <= AGENT_VSOCK_CID_MAX ? (unsigned) cid : 0;
        if (tap && strlen(tap) < sizeof(ret->tap))
                snprintf(ret->tap, sizeof(ret->tap), "%s", tap);
        if (vmm && strlen(vmm) < sizeof(ret->vmm))
                snprintf(ret->vmm, sizeof(ret->vmm), "%s", vmm);
        const char *dm = json_string_value(json_object_get(j, "dm"));
        if (dm && strlen(dm) < sizeof(ret->dm))
                snprintf(ret->dm, sizeof(ret->dm), "%s", dm);
        return true;
}

void handles_read(const struct vm_row *r, const struct vm_paths *p, struct vm_handles *ret) {
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        *ret = (struct vm_handles) { 0 };
        int rc = read_file_nofollow(p->handles, HANDLES_MAX_BYTES, &text, &len);
        if (rc < 0 && rc != -ENOENT)
                log_warn("vm %s: ignoring %s: %s", r->name, p->handles,
                         rc == -EBADFD ? "not a regular file" : strerror(-rc));
        if (!(rc == 0 && parse_handles(text, len, ret)) && r->teardown_json)
                parse_handles(r->teardown_json, strlen(r->teardown_json), ret);
        /* only ever this VM's own device: it is removed by the VM's id anyway */
        _cleanup_free_ char *own = xasprintf("/dev/mapper/banger-%s", r->id);
        if (strcmp(ret->dm, own) != 0)
                ret->dm[0] = '\0';
}

const struct vmm_entry *vms_vmm_by_name(struct vms *v, const char *name) {
        for (size_t i = 0; name && *name && i < v->deps.n_vmms; i++)
                if (strcmp(v->deps.vmms[i].backend->name, name) == 0)
                        return &v->deps.vmms[i];
        return v->deps.n_vmms ? &v->deps.vmms[0] : NULL;
}

pid_t vms_live_pid(struct vms *v, const struct vm_row *r, const struct vm_paths *p, struct vm_handles *ret) {
        struct vm_handles h;
        if (!handle_get(v, r->id, &h))
                handles_read(r, p, &h);
        const struct vmm_entry *m = vms_vmm_by_name(v, h.vmm);
        if (h.pid > 0 && (!m || !m->backend->owns(h.pid, m->bin, r->id)))
                h.pid = 0;
        if (ret)
                *ret = h;
        return h.pid;
}

pid_t vms_find_vmm(struct vms *v, const char *id, const struct vmm_entry **ret_vmm) {
        _cleanup_(closedirp) DIR *d = opendir("/proc");
        struct dirent *de;
        while (d && (de = readdir(d))) {
                if (de->d_name[0] < '1' || de->d_name[0] > '9')
                        continue;
                pid_t pid = (pid_t) atoi(de->d_name);
                for (size_t i = 0; i < v->deps.n_vmms; i++)
                        if (v->deps.vmms[i].backend->owns(pid, v->deps.vmms[i].bin, id)) {
                                *ret_vmm = &v->deps.vmms[i];
                                return pid;
                        }
        }
        return 0;
}
