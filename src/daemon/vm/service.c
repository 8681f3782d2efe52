/* SPDX-License-Identifier: MIT */
/*
 * The VM service's frame: init and shutdown, per-VM paths, the spec limits,
 * row lookups. The work is in create.c, start.c, stop.c, commands.c,
 * reconcile.c, watcher.c, housekeeping.c and workspace.c.
 */
#include <errno.h>
#include <sys/sysinfo.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>

#include "clock.h"
#include "fsutil.h"
#include "log.h"
#include "strbuf.h"
#include "vms_internal.h"

void vm_paths_init(struct vms *v, const struct vm_row *r, struct vm_paths *p) {
        *p = (struct vm_paths) { 0 }; /* callers' are uninitialised */
        p->dir = xstrdup(r->vm_dir);
        p->run = xasprintf("%s/vms/%s", v->deps.layout->runtime_dir, r->id);
        /* Firecracker boots raw disks, answers on its API socket, and reaches the
         * agent through its hybrid vsock */
        p->overlay = path_join(p->dir, r->firecracker ? "root.raw" : "root.qcow2");
        if (r->firecracker) {
                _cleanup_free_ char *cow = path_join(p->dir, VM_ROOT_COW);
                struct stat st;
                p->dm_root = lstat(cow, &st) == 0 && S_ISREG(st.st_mode);
                if (p->dm_root) {
                        free(p->overlay);
                        p->overlay = TAKE_PTR(cow);
                }
        }
        p->work = path_join(p->dir, "work.ext4");
        p->repo = path_join(p->dir, "repo.ext4");
        p->console = path_join(p->dir, "console.log");
        p->console_prev = path_join(p->dir, "console.prev.log");
        p->handles = path_join(p->dir, "handles.json");
        p->hostkey = path_join(p->dir, "hostkey");
        p->cpio = path_join(p->dir, "guest.cpio");
        p->initrd = path_join(p->dir, "initrd");
        p->qmp = path_join(p->run, r->firecracker ? "api.sock" : "qmp.sock");
        p->agent_sock = path_join(p->run, r->firecracker ? AGENT_VSOCK_NAME : "agent.sock");
        /* a running QEMU VM with a vhost-vsock device: its CID is in its handles */
        struct vm_handles h;
        bool vsock = !r->firecracker && handle_get(v, r->id, &h) && h.vsock_cid;
        p->agent = vsock ? agent_addr_vsock_new(h.vsock_cid, r->id) : xstrdup(p->agent_sock);
}

void vm_paths_done(struct vm_paths *p) {
        char **all[] = { &p->dir,    &p->run,     &p->overlay, &p->work, &p->repo, &p->console, &p->console_prev,
                         &p->handles, &p->hostkey, &p->cpio,    &p->initrd, &p->qmp,     &p->agent,
                         &p->agent_sock };
        for (size_t i = 0; i < ELEMENTSOF(all); i++)
                free(*all[i]);
        *p = (struct vm_paths) { 0 };
}

bool vm_has_repo_disk(const struct vm_paths *p) {
        struct stat st;
        return lstat(p->repo, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= (off_t) (64u << 20);
}

char *vm_tap_name(const char *id) {
        return xasprintf("bg%.12s", id);
}

char *known_hosts_path(struct vms *v) {
        return path_join(v->deps.layout->ssh_dir, "known_hosts");
}

char *vm_kh_patterns(const struct vm_row *r) {
        return r->guest_ip ? xasprintf("%s.vm,%s", r->name, r->guest_ip) : xasprintf("%s.vm", r->name);
}

bool vm_state_active(const char *state) {
        return strcmp(state, "running") == 0 || strcmp(state, "starting") == 0 || strcmp(state, "stopping") == 0;
}

int vm_spec_check(const struct vm_create_req *q, struct op_error *e) {
        if (q->vcpu_set && q->vcpu <= 0)
                return op_bad_request(e, "vcpu must be > 0 (got %lld)", (long long) q->vcpu);
        if (q->vcpu > CONFIG_VCPU_MAX)
                return op_bad_request(e, "vcpu %lld is more than %d", (long long) q->vcpu, CONFIG_VCPU_MAX);
        if (q->memory_set && q->memory_mib <= 0)
                return op_bad_request(e, "memory must be > 0 (got %lld MiB)", (long long) q->memory_mib);
        if (q->memory_set && q->memory_mib < CONFIG_MEMORY_MIB_MIN)
                return op_bad_request(e, "memory %lld MiB is below the %d MiB minimum", (long long) q->memory_mib,
                                      CONFIG_MEMORY_MIB_MIN);
        if (q->memory_mib > CONFIG_MEMORY_MIB_MAX)
                return op_bad_request(e, "memory %lld MiB is above the %d MiB maximum", (long long) q->memory_mib,
                                      CONFIG_MEMORY_MIB_MAX);
        struct sysinfo si;
        int64_t host_mib = sysinfo(&si) == 0 ? (int64_t) ((uint64_t) si.totalram * si.mem_unit >> 20) : 0;
        if (host_mib > 0 && q->memory_mib > host_mib)
                return op_bad_request(e, "memory %lld MiB is more than this host has (%lld MiB)",
                                      (long long) q->memory_mib, (long long) host_mib);
        if (q->disk_size_bytes < 0 || (uint64_t) q->disk_size_bytes > CONFIG_DISK_SIZE_MAX ||
            (q->disk_size_bytes && (uint64_t) q->disk_size_bytes < CONFIG_DISK_SIZE_MIN))
                return op_bad_request(e, "disk size must be between 64 MiB and 128 GiB");
        if (q->system_overlay_size_bytes < 0 || (uint64_t) q->system_overlay_size_bytes > CONFIG_DISK_SIZE_MAX)
                return op_bad_request(e, "system overlay size must be between 1 byte and 128 GiB");
        return 0;
}

int vms_get_row(struct vms *v, const char *ref, struct vm_row *ret, struct op_error *e) {
        int r = store_vm_get(v->deps.store, ref, ret);
        if (r == -ENOENT)
                return op_not_found(e, "vm '%s' not found", strempty(ref));
        if (r == -ENOTUNIQ)
                return op_bad_request(e, "vm id prefix '%s' is ambiguous; use more characters or the name", ref);
        if (r < 0)
                return op_fail(e, r, "reading vm '%s': %s", ref, strerror(-r));
        return 0;
}

void vms_set_state(struct vms *v, const struct vm_row *r, const char *state, const char *last_error) {
        int rc = store_vm_set_state(v->deps.store, r->id, state, last_error);
        if (rc < 0 && rc != -ENOENT)
                log_error("vm %s: cannot record state %s: %s", r->name, state, strerror(-rc));
}

static void init_locks(struct vms *v) {
        pthread_mutex_init(&v->create_mu, NULL);
        pthread_mutex_init(&v->set_mu, NULL);
        pthread_mutex_init(&v->handles_mu, NULL);
        pthread_mutex_init(&v->creates_mu, NULL);
        pthread_mutex_init(&v->kh_mu, NULL);
        pthread_cond_init(&v->creates_cond, NULL);
        pthread_mutex_init(&v->hk_mu, NULL);
        pthread_mutex_init(&v->stats_mu, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&v->hk_cond, &ca);
        pthread_condattr_destroy(&ca);
}

int vms_init(struct vms *v, const struct vms_deps *deps, struct op_error *e) {
        *v = (struct vms) { .deps = *deps, .ep_fd = -1, .wake_fd = -1 };
        if (!v->deps.mono_ms)
                v->deps.mono_ms = mono_ms_now;
        if (!v->deps.wall_ms)
                v->deps.wall_ms = wall_ms;
        if (!v->deps.agent_boot_timeout_ms)
                v->deps.agent_boot_timeout_ms = VM_AGENT_BOOT_TIMEOUT_MS;
        if (!v->deps.stop_guest_timeout_ms)
                v->deps.stop_guest_timeout_ms = VM_STOP_GUEST_TIMEOUT_MS;
        init_locks(v);
        vms_tpl_init(v);
        /* rootless: no bridge, no TAPs */
        tap_pool_init(&v->pool, deps->rootless ? 0 : (size_t) config_live_get(deps->config)->tap_pool_size, config_live_get(deps->config)->bridge_name, deps->priv);
        return vms_watcher_start(v, e);
}

void vms_done(struct vms *v) {
        if (v->dns_routed)
                v->deps.priv->dns_unroute(v->deps.priv->ud);
        vms_housekeeping_stop(v); /* sets `stopping` */
        vms_creates_done(v);
        vms_tpl_done(v);
        vms_watcher_stop(v);
        handles_free(v);
        pthread_mutex_destroy(&v->create_mu);
        pthread_mutex_destroy(&v->set_mu);
        pthread_mutex_destroy(&v->handles_mu);
        pthread_mutex_destroy(&v->creates_mu);
        pthread_mutex_destroy(&v->kh_mu);
        pthread_cond_destroy(&v->creates_cond);
        pthread_mutex_destroy(&v->hk_mu);
        pthread_mutex_destroy(&v->stats_mu);
        tap_pool_done(&v->pool);
        pthread_cond_destroy(&v->hk_cond);
}
