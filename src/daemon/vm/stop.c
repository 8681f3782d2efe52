/* SPDX-License-Identifier: MIT */
/*
 * Stopping, killing and destroying a VM (its lock held), and releasing what
 * a VM held once its VMM is gone: the capability hooks' cleanup, a
 * device-mapper root disk, the TAP, sockets, handles, the teardown record. Shared by stop, kill, delete, a
 * failed start, the exit watcher and reconcile.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <unistd.h>

#include "fsutil.h"
#include "jsonx.h"
#include "log.h"
#include "strbuf.h"
#include "testhook.h"
#include "vm/guestcfg.h"
#include "vms_internal.h"

void vms_cap_ctx(struct vms *v, const struct vm_row *r, const struct vm_paths *p, const char *tap,
                 struct vm_cap_ctx *ret) {
        const struct config *c = config_live_get(v->deps.config);
        *ret = (struct vm_cap_ctx) {
                .priv = v->deps.priv, .vm_id = r->id, .vm_name = r->name, .ip = r->guest_ip, .tap = tap,
                .bridge = c->bridge_name, .nat = r->nat, .isolate = r->isolate, .mac = r->mac, .work_disk = p->work,
                .work_disk_bytes = (uint64_t) r->disk_size_bytes, .dns_listen = c->dns_listen,
                .dns_routed = &v->dns_routed, .fwd = v->deps.fwd, .forwards = vms_forwards_of, .forwards_ud = v,
                .user_net = r->user_net, .hostfwd = vms_hostfwd_add,
        };
}

/* Is `tap` this VM's to release? Its own name, or a pool TAP no other
 * running VM holds. (A handles file naming anything else is not obeyed.) */
static bool tap_is_ours(struct vms *v, const struct vm_row *r, const char *tap) {
        _cleanup_free_ char *own = vm_tap_name(r->id);
        struct vm_handles mine;
        if (strcmp(tap, own) == 0)
                return true;
        if (!tap_pool_is_pool_name(tap))
                return false;
        bool held_by_me = handle_get(v, r->id, &mine) && strcmp(mine.tap, tap) == 0;
        return held_by_me || !vms_tap_in_use(v, tap);
}

static void delete_tap(struct vms *v, const struct vm_row *r, const char *tap) {
        _cleanup_op_error_ struct op_error err = OP_ERROR_INIT;
        if (!tap_pool_give(&v->pool, tap) && v->deps.priv->tap_delete(v->deps.priv->ud, tap, &err) < 0)
                log_warn("vm %s: removing TAP %s: %s", r->name, tap, op_error_message(&err));
}

/* The TAP the handles name when it is this VM's, and the VM's own-named
 * TAP in any case (a lost or forged handles file must not leak it). */
static void release_tap(struct vms *v, const struct vm_row *r, const char *tap) {
        _cleanup_free_ char *own = vm_tap_name(r->id);
        if (tap && *tap && !tap_is_ours(v, r, tap))
                log_warn("vm %s: not touching %s: it is not this VM's TAP", r->name, tap);
        else if (tap && *tap)
                delete_tap(v, r, tap);
        if ((!tap || strcmp(tap, own) != 0) && v->deps.priv->link_exists(v->deps.priv->ud, own))
                delete_tap(v, r, own);
}

void vms_release_host(struct vms *v, const struct vm_row *r, const struct vm_paths *p, const char *tap) {
        vms_dm_root_release(v, r, p); /* before the handles naming it go */
        release_tap(v, r, tap);
        unlink(p->handles);
        unlink(p->qmp);
        unlink(p->agent_sock);
        if (r->firecracker)
                vms_jail_release(v, r);
        handle_drop(v, r->id);
        int rc = store_vm_set_teardown(v->deps.store, r->id, NULL);
        if (rc < 0 && rc != -ENOENT)
                log_warn("vm %s: clearing its teardown record: %s", r->name, strerror(-rc));
}

void vms_jail_release(struct vms *v, const struct vm_row *r) {
        const struct priv_ops *pv = v->deps.priv;
        _cleanup_op_error_ struct op_error err = OP_ERROR_INIT;
        if (pv->fc_jail_remove && pv->fc_jail_remove(pv->ud, r->id, &err) < 0)
                log_warn("vm %s: removing its jail: %s (the next daemon start retries)", r->name,
                         op_error_message(&err));
}

void vms_release_runtime(struct vms *v, const struct vm_row *r, const struct vm_paths *p, const char *tap) {
        struct vm_cap_ctx c;
        _cleanup_op_error_ struct op_error err = OP_ERROR_INIT;
        vms_cap_ctx(v, r, p, tap, &c);
        if (vm_caps_cleanup(v->deps.caps, v->deps.n_caps, &c, &err) < 0)
                log_warn("vm %s: %s", r->name, op_error_message(&err));
        vms_release_host(v, r, p, tap);
}

/* The guest syncs and powers off through its agent; the VMM exits. */
static bool guest_poweroff(struct vms *v, const struct vm_row *r, const struct vm_paths *p, int pidfd) {
        struct agent_wait w = { .abort_fd = pidfd };
        _cleanup_json_ json_t *res = NULL, *res2 = NULL;
        _cleanup_op_error_ struct op_error err = OP_ERROR_INIT;
        if (v->deps.agent_call(v->deps.agent_ud, p->agent, "sync", 3000, &w, &res, &err) < 0)
                log_info("vm %s: agent sync: %s", r->name, op_error_message(&err));
        else if (v->deps.agent_call(v->deps.agent_ud, p->agent, "poweroff", 3000, &w, &res2, &err) < 0)
                log_info("vm %s: agent poweroff: %s", r->name, op_error_message(&err));
        else if (pidfd_wait(pidfd, v->deps.stop_guest_timeout_ms))
                return true;
        return false;
}

/* Stops the VMM of a VM (pid known to be ours): an orderly guest poweroff
 * when graceful, then the backend's stop (QMP quit, signals) or a SIGKILL. */
static void stop_vmm(struct vms *v, const struct vm_row *r, const struct vm_paths *p, pid_t pid,
                     const struct vmm_entry *m, bool graceful) {
        _cleanup_close_ int pidfd = (int) pidfd_open(pid, 0);
        if (pidfd < 0)
                return; /* already gone */
        if (graceful && guest_poweroff(v, r, p, pidfd)) {
                pidfd_reap(pidfd);
                return;
        }
        struct vm_boot b = { .id = r->id, .qmp_socket = p->qmp };
        struct vm_proc proc = { .pid = pid, .pidfd = pidfd };
        _cleanup_op_error_ struct op_error err = OP_ERROR_INIT;
        if (graceful) {
                if (m->backend->stop(&b, &proc, 3000, &err) < 0)
                        log_warn("vm %s: %s", r->name, op_error_message(&err));
        } else {
                m->backend->kill(&proc, SIGKILL);
                pidfd_wait(pidfd, VM_KILL_WAIT_MS);
        }
        pidfd_reap(pidfd);
}

int vms_stop_locked(struct vms *v, struct vm_row *r, bool graceful, struct op_error *e) {
        struct vm_paths p;
        struct vm_handles h;
        vm_paths_init(v, r, &p);
        pid_t pid = vms_live_pid(v, r, &p, &h);
        if (pid > 0) {
                const struct vmm_entry *m = vms_vmm_by_name(v, h.vmm);
                vms_set_state(v, r, "stopping", NULL);
                stop_vmm(v, r, &p, pid, m, graceful);
                if (m->backend->owns(pid, m->bin, r->id)) {
                        vms_set_state(v, r, "running", NULL);
                        vm_paths_done(&p);
                        return op_fail(e, -EBUSY, "vm %s: its VMM (pid %d) did not exit", r->name, (int) pid);
                }
        }
        vms_release_runtime(v, r, &p, h.tap);
        vms_set_state(v, r, "stopped", NULL);
        vm_paths_done(&p);
        return 0;
}

int vms_kill_locked(struct vms *v, struct vm_row *r, int sig, struct op_error *e) {
        struct vm_paths p;
        struct vm_handles h;
        int rc = 0;
        vm_paths_init(v, r, &p);
        pid_t pid = vms_live_pid(v, r, &p, &h);
        if (pid <= 0) {
                vm_paths_done(&p);
                return op_fail_as(e, RPC_BAD_REQUEST, -ESRCH, "vm %s is not running", r->name);
        }
        const struct vmm_entry *m = vms_vmm_by_name(v, h.vmm);
        _cleanup_close_ int pidfd = (int) pidfd_open(pid, 0);
        struct vm_proc proc = { .pid = pid, .pidfd = pidfd };
        if ((rc = m->backend->kill(&proc, sig)) < 0)
                rc = op_fail(e, rc, "signal %d to pid %d: %s", sig, (int) pid, strerror(-rc));
        else if (!pidfd_wait(pidfd, VM_KILL_WAIT_MS))
                rc = op_fail(e, -EBUSY, "vm %s: pid %d still running %d s after signal %d", r->name, (int) pid,
                             VM_KILL_WAIT_MS / 1000, sig);
        else {
                pidfd_reap(pidfd);
                vms_release_runtime(v, r, &p, h.tap);
                vms_set_state(v, r, "stopped", NULL);
        }
        vm_paths_done(&p);
        return rc;
}

int vms_destroy_locked(struct vms *v, const struct vm_row *r, struct op_error *e) {
        struct vm_paths p;
        struct vm_handles h;
        _cleanup_free_ char *kh = known_hosts_path(v), *patterns = vm_kh_patterns(r);
        vm_paths_init(v, r, &p);
        pid_t pid = vms_live_pid(v, r, &p, &h);
        if (pid > 0)
                stop_vmm(v, r, &p, pid, vms_vmm_by_name(v, h.vmm), false);
        vms_release_runtime(v, r, &p, h.tap);
        test_crash_point("delete:released");
        int rc = rm_rf(p.dir);
        test_crash_point("delete:files-gone");
        if (rc < 0)
                log_warn("vm %s: removing %s: %s", r->name, p.dir, strerror(-rc));
        rm_rf(p.run);
        pthread_mutex_lock(&v->kh_mu);
        rc = known_hosts_remove(kh, patterns);
        pthread_mutex_unlock(&v->kh_mu);
        if (rc < 0)
                log_warn("vm %s: removing its known_hosts entries: %s", r->name, strerror(-rc));
        rc = store_vm_delete(v->deps.store, r->id);
        vm_paths_done(&p);
        if (rc < 0 && rc != -ENOENT)
                return op_fail(e, rc, "deleting vm %s: %s", r->name, strerror(-rc));
        return 0;
}
