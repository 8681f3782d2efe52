/* SPDX-License-Identifier: MIT */
/*
 * Reconcile, at daemon start and before serving: every VM whose VMM still
 * runs (pid from handles.json, else the row's teardown record, else a /proc
 * scan for its identity; always re-identified by the backend) is adopted;
 * every other VM that held something is released and marked stopped. Live
 * VMs are adopted first, so the release of a dead one can tell which TAPs
 * are still in use whatever its handles file says.
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/pidfd.h>
#include <unistd.h>

#include "fsutil.h"
#include "ids.h"
#include "jsonx.h"
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

struct ready_job {
        struct vms *v;
        char *id;
};

static bool ready_cancelled(void *ud) {
        return ((struct vms *) ud)->stopping;
}

/* One look at a VM being readied, under its lock: 1 still starting with its
 * VMM alive (*ret_agent its agent socket), 0 not starting any more, -1 its
 * VMM is gone (the watcher marks it). */
static int still_starting(struct vms *v, const char *id, char **ret_agent) {
        struct vm_lock *l = vms_lock(v, id);
        struct vm_row r;
        int st = 0;
        if (store_vm_get(v->deps.store, id, &r) == 0) {
                if (strcmp(r.state, "starting") == 0) {
                        struct vm_paths p;
                        vm_paths_init(v, &r, &p);
                        st = vms_live_pid(v, &r, &p, NULL) > 0 ? 1 : -1;
                        *ret_agent = xstrdup(p.agent);
                        vm_paths_done(&p);
                }
                vm_row_done(&r);
        }
        vms_unlock(v, l);
        return st;
}

/* Under the VM's lock: running when ready; else (given up) stopped and error. */
static void settle_ready(struct vms *v, const char *id, bool ready) {
        struct vm_lock *l = vms_lock(v, id);
        struct vm_row r;
        if (store_vm_get(v->deps.store, id, &r) == 0 && strcmp(r.state, "starting") == 0) {
                _cleanup_op_error_ struct op_error e = OP_ERROR_INIT;
                if (ready) {
                        vms_set_state(v, &r, "running", NULL);
                        log_info("reconcile: vm %s finished booting after the daemon restarted", r.name);
                } else {
                        log_warn("reconcile: vm %s did not become ready after the daemon restarted: stopping it",
                                 r.name);
                        if (vms_stop_locked(v, &r, false, &e) < 0)
                                log_warn("vm %s: %s", r.name, op_error_message(&e));
                        vms_set_state(v, &r, "error", "its start was interrupted and it did not become ready");
                }
                vm_row_done(&r);
        }
        vms_unlock(v, l);
}

/* The job is over: vms_done no longer waits for it. */
static void ready_job_done(struct ready_job *j) {
        struct vms *v = j->v;
        free(j->id);
        free(j);
        pthread_mutex_lock(&v->creates_mu);
        v->create_workers--;
        pthread_cond_broadcast(&v->creates_cond);
        pthread_mutex_unlock(&v->creates_mu);
}

/* A VM whose start the daemon died in: running only once its agent and sshd
 * answer (as a start would have waited); else stopped, with why. The VM's
 * lock is held only for each look, never across a wait. */
static void *ready_main(void *arg) {
        struct ready_job *j = arg;
        struct vms *v = j->v;
        struct agent_wait w = { .abort_fd = -1, .cancelled = ready_cancelled, .ud = v };
        int64_t deadline = v->deps.mono_ms() + v->deps.agent_boot_timeout_ms;
        bool ready = false;
        int st = 1;
        while (!ready && !v->stopping && v->deps.mono_ms() < deadline) {
                _cleanup_free_ char *agent = NULL;
                if ((st = still_starting(v, j->id, &agent)) <= 0)
                        break;
                _cleanup_json_ json_t *h = NULL;
                _cleanup_op_error_ struct op_error e = OP_ERROR_INIT;
                ready = v->deps.agent_call(v->deps.agent_ud, agent, "health", 5000, &w, &h, &e) == 0 &&
                        json_is_true(json_object_get(h, "sshd_listening"));
                if (!ready)
                        (void) poll(NULL, 0, 200);
        }
        if (st > 0 && !v->stopping)
                settle_ready(v, j->id, ready);
        ready_job_done(j);
        return NULL;
}

static void wait_ready(struct vms *v, const struct vm_row *r) {
        struct ready_job *j = xcalloc(1, sizeof(*j));
        *j = (struct ready_job) { v, xstrdup(r->id) };
        log_info("reconcile: vm %s was starting when the daemon stopped: waiting for it to be ready", r->name);
        pthread_mutex_lock(&v->creates_mu);
        v->create_workers++; /* vms_done waits for it like for a create */
        pthread_mutex_unlock(&v->creates_mu);
        pthread_t t;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &a, ready_main, j) != 0) {
                log_warn("reconcile: vm %s: cannot wait for it to be ready; marking it running", r->name);
                vms_set_state(v, r, "running", NULL);
                ready_job_done(j);
        }
        pthread_attr_destroy(&a);
}

/* The port a user-mode VM's QEMU forwards to its sshd, from its command
 * line ("hostfwd=tcp:127.0.0.1:PORT-:22"), when handles.json lost it. */
static unsigned ssh_port_of(pid_t pid) {
        _cleanup_free_ char *path = xasprintf("/proc/%d/cmdline", (int) pid), *text = NULL;
        size_t len;
        static const char key[] = "hostfwd=tcp:127.0.0.1:";
        if (read_file(path, 1 << 16, &text, &len) < 0)
                return 0;
        for (size_t i = 0; i < len; i++)
                if (text[i] == '\0')
                        text[i] = ' ';
        const char *at = strstr(text, key);
        char *end;
        unsigned long port = at ? strtoul(at + strlen(key), &end, 10) : 0;
        return at && *end == '-' && port > 0 && port < 65536 ? (unsigned) port : 0;
}

/* The guest CID of a QEMU's vhost-vsock device, from its command line
 * ("vhost-vsock-device,guest-cid=N"); 0: none (the agent is on virtio-serial). */
unsigned vms_vsock_cid_of_cmdline(const char *cmd, size_t len) {
        static const char key[] = "vhost-vsock-device,guest-cid=";
        for (size_t i = 0; i < len;) {
                const char *arg = cmd + i;
                size_t n = strnlen(arg, len - i);
                char *end;
                if (n < len - i && strncmp(arg, key, strlen(key)) == 0) {
                        unsigned long cid = strtoul(arg + strlen(key), &end, 10);
                        if (*end == '\0' && cid >= AGENT_VSOCK_CID_MIN && cid <= AGENT_VSOCK_CID_MAX)
                                return (unsigned) cid;
                }
                i += n + 1;
        }
        return 0;
}

static unsigned vsock_cid_of(pid_t pid) {
        _cleanup_free_ char *path = xasprintf("/proc/%d/cmdline", (int) pid), *text = NULL;
        size_t len;
        return read_file(path, 1 << 16, &text, &len) < 0 ? 0 : vms_vsock_cid_of_cmdline(text, len);
}

static void adopt(struct vms *v, const struct vm_row *r, const struct vm_paths *p, struct vm_handles *h) {
        if (r->user_net && !h->ssh_port)
                h->ssh_port = ssh_port_of(h->pid);
        /* the (re-identified) process says which CID it has, whatever the file said */
        if (!r->firecracker)
                h->vsock_cid = vsock_cid_of(h->pid);
        /* a TAP name from the file is kept only when it is this VM's own */
        _cleanup_free_ char *own = vm_tap_name(r->id);
        if (!*h->tap || (strcmp(h->tap, own) != 0 && !tap_pool_is_pool_name(h->tap)))
                snprintf(h->tap, sizeof(h->tap), "%s", v->deps.priv->link_exists(v->deps.priv->ud, own) ? own : "");
        handle_put(v, r->id, h);
        /* the file says what was found, whatever it said before (missing, garbage, another TAP) */
        int rc = handles_write(v, r, p, h);
        if (rc < 0)
                log_warn("reconcile: vm %s: rewriting its handles: %s", r->name, strerror(-rc));
        vms_watch(v, r->id, h->pid);
        vms_forwards_adopt(v, r);
        log_info("reconcile: vm %s is running (pid %d); adopted", r->name, (int) h->pid);
        if (strcmp(r->state, "running") != 0 && strcmp(r->state, "starting") != 0)
                vms_set_state(v, r, "running", NULL);
}

/* A dead VM whose create or delete the daemon died in is finished off:
 * a create that had not finished its disks (marker, or no dir yet) is
 * rolled back; a VM whose dir is gone (a delete cut short after removing
 * its files, or a create before it made any) can never start again, so its
 * delete is completed. Either way nothing of it is left. */
static bool finish_interrupted(struct vms *v, const struct vm_row *r, const struct vm_paths *p) {
        _cleanup_free_ char *m = path_join(p->dir, VM_CREATING_MARKER);
        bool no_dir = access(p->dir, F_OK) < 0 && errno == ENOENT;
        bool creating = strcmp(r->state, "created") == 0 && access(m, F_OK) == 0;
        if (!no_dir && !creating)
                return false;
        const char *what = strcmp(r->state, "created") == 0 ? "create" : "delete";
        _cleanup_op_error_ struct op_error e = OP_ERROR_INIT;
        if (vms_destroy_locked(v, r, &e) < 0)
                log_warn("reconcile: finishing vm %s's interrupted %s: %s", r->name, what, op_error_message(&e));
        else if (strcmp(what, "create") == 0)
                log_info("reconcile: vm %s's create was interrupted; rolled back (nothing of it is left)", r->name);
        else
                log_info("reconcile: vm %s's files are gone (a delete was interrupted); deleted (nothing of it is left)",
                         r->name);
        return true;
}

static void release_dead(struct vms *v, const struct vm_row *r, const struct vm_paths *p, const struct vm_handles *h) {
        if (finish_interrupted(v, r, p))
                return;
        if (!vm_state_active(r->state) && !r->teardown_json)
                return;
        vms_release_runtime(v, r, p, h->tap);
        if (vm_state_active(r->state))
                vms_set_state(v, r, "stopped", NULL);
        log_info("reconcile: vm %s is not running; cleaned up and marked stopped", r->name);
}

/* A delete the daemon accepted and did not finish (a background delete cut
 * short): finished now, live VMM or not. */
static bool deleting(struct vms *v, const struct vm_row *r, const struct vm_paths *p) {
        _cleanup_free_ char *m = path_join(p->dir, VM_DELETING_MARKER);
        if (access(m, F_OK) < 0)
                return false;
        _cleanup_op_error_ struct op_error e = OP_ERROR_INIT;
        if (vms_destroy_locked(v, r, &e) < 0)
                log_warn("reconcile: finishing vm %s's delete: %s", r->name, op_error_message(&e));
        else
                log_info("reconcile: vm %s's delete was interrupted; finished (nothing of it is left)", r->name);
        return true;
}

/* A VMM whose guest the daemon died re-identifying (from a template or a
 * fork): never adopted (it would run with another's identity, or none). It
 * is killed and its runtime released; the VM is stopped (a fork's disks are
 * the snapshot's and boot cold; a warm VM gets a fresh overlay instead of the
 * template's copy: it never ran anything of its own). */
static bool unidentified(struct vms *v, struct vm_row *r, const struct vm_paths *p, pid_t pid, struct vm_handles *h) {
        _cleanup_free_ char *m = path_join(p->dir, VM_IDENTIFYING_MARKER), *what = NULL;
        size_t len;
        if (access(m, F_OK) < 0)
                return false;
        bool warm = read_file_nofollow(m, 64, &what, &len) == 0 && strncmp(what, "warm", 4) == 0;
        if (pid > 0) {
                const struct vmm_entry *e = vms_vmm_by_name(v, h->vmm);
                _cleanup_close_ int pidfd = (int) pidfd_open(pid, 0);
                struct vm_proc proc = { .pid = pid, .pidfd = pidfd };
                e->backend->kill(&proc, SIGKILL);
                pidfd_wait(pidfd, VM_KILL_WAIT_MS);
                pidfd_reap(pidfd);
        }
        vms_release_runtime(v, r, p, h->tap);
        struct boot_files bf = { 0 };
        _cleanup_op_error_ struct op_error err = OP_ERROR_INIT;
        bool fresh = warm && vms_resolve_boot(v, r->image_id, &bf, &err) == 0 &&
                     (unlink(p->overlay), vm_overlay_create(p->overlay, bf.rootfs, (uint64_t) r->system_overlay_size_bytes,
                                                            &err) == 0);
        vms_boot_files_done(&bf);
        unlink(m);
        vms_set_state(v, r, "stopped", NULL);
        log_info("reconcile: vm %s was being re-identified when the daemon died: its VMM killed, it is stopped%s%s",
                 r->name, fresh ? " (a fresh overlay)" : warm ? "; " : "", fresh || !warm ? "" : op_error_message(&err));
        free(r->state);
        r->state = xstrdup("stopped");
        return true;
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
                if (pass == 0 && deleting(v, r, &p)) {
                        free(r->state);
                        r->state = xstrdup("deleted"); /* pass 1 and the readying skip it */
                } else if (strcmp(r->state, "deleted") == 0)
                        ; /* finished in pass 0 */
                else if (pass == 0 && unidentified(v, r, &p, pid, &h))
                        ; /* not adopted */
                else if (pass == 0 && pid > 0) {
                        adopt(v, r, &p, &h);
                        vms_snapshots_recover(v, r, true);
                } else if (pass == 1 && pid <= 0) {
                        vms_snapshots_recover(v, r, false);
                        release_dead(v, r, &p, &h);
                }
                vm_paths_done(&p);
                vms_unlock(v, l);
        }
}

/* A daemon that died during a prepare left its local clone (up to the size
 * of the repository) in the VM's dir: removed, under the workspace lock
 * alone (never with the VM's), so a prepare already running is waited for. */
static void sweep_staging(struct vms *v, const struct vm_row *r) {
        struct vm_lock *l = vms_workspace_lock(v, r->id);
        _cleanup_(closedirp) DIR *d = opendir(r->vm_dir);
        struct dirent *de;
        while (d && (de = readdir(d))) {
                if (strncmp(de->d_name, VM_WS_STAGING_PREFIX, strlen(VM_WS_STAGING_PREFIX)) != 0)
                        continue;
                _cleanup_free_ char *path = path_join(r->vm_dir, de->d_name);
                int rc = rm_rf(path);
                if (rc < 0)
                        log_warn("reconcile: vm %s: cannot remove %s: %s", r->name, path, strerror(-rc));
                else
                        log_info("reconcile: vm %s: removed %s, left by a workspace prepare cut short", r->name, path);
        }
        vms_workspace_unlock(v, l);
}

/* Jails no live VM holds: a daemon that died between making one and
 * recording the VM's handles, or a VM deleted since. */
static void sweep_jails(struct vms *v) {
        const struct priv_ops *pv = v->deps.priv;
        _cleanup_strv_free_ char **ids = NULL;
        _cleanup_op_error_ struct op_error err = OP_ERROR_INIT;
        if (!pv->fc_jail_list || !pv->fc_jail_remove)
                return;
        if (pv->fc_jail_list(pv->ud, &ids, &err) < 0) {
                log_warn("reconcile: listing jails: %s", op_error_message(&err));
                return;
        }
        for (char **id = ids; *id; id++) {
                struct vm_row r;
                bool live = false;
                if (!is_hex_id(*id, 8))
                        continue;
                if (store_vm_get(v->deps.store, *id, &r) == 0) {
                        live = vm_state_active(r.state);
                        vm_row_done(&r);
                }
                _cleanup_op_error_ struct op_error re = OP_ERROR_INIT;
                if (!live && pv->fc_jail_remove(pv->ud, *id, &re) == 0)
                        log_info("reconcile: removed the jail of vm %s, which no running VM holds", *id);
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
        sweep_jails(v);
        vms_dm_sweep(v); /* root disk devices no running VM uses (a crash between making and recording one) */
        vms_tpl_sweep(v, true); /* template builds a dead daemon left */
        for (size_t i = 0; i < n; i++)
                if (strcmp(rows[i].state, "deleted") != 0 && rows[i].vm_dir)
                        sweep_staging(v, &rows[i]);
        /* adopted VMs whose start was cut short: ready them in the background */
        for (size_t i = 0; i < n; i++) {
                struct vm_row cur;
                if (strcmp(rows[i].state, "starting") == 0 && store_vm_get(v->deps.store, rows[i].id, &cur) == 0) {
                        if (strcmp(cur.state, "starting") == 0)
                                wait_ready(v, &cur);
                        vm_row_done(&cur);
                }
        }
        vm_rows_free(rows, n);
}
