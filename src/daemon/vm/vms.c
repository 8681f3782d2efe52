/* SPDX-License-Identifier: MIT */
/*
 * The VM service (vms.h has the locking rules): the per-VM locks, the
 * handles of running VMs and the exit watcher, start/stop/kill/delete/set,
 * reconcile. Creation is in create.c, background work in housekeeping.c,
 * workspaces in workspace.c. Every path that creates something undoes it on
 * failure: QEMU processes, TAPs, nft rules, files, rows.
 */
#include "vms.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "accel.h"
#include "clock.h"
#include "daemon.h"
#include "fsutil.h"
#include "ipnet.h"
#include "jsonx.h"
#include "log.h"
#include "priv/priv.h"
#include "store/store_artifacts.h"
#include "store/store_vms.h"
#include "strbuf.h"
#include "vm/agent_client.h"
#include "vm/guestcfg.h"
#include "vm/workdisk.h"
#include "vmm/vmm.h"
#include "vms_internal.h"

#define AGENT_BOOT_TIMEOUT_MS 180000 /* systemd images under TCG are slow */
#define STOP_GUEST_TIMEOUT_MS 15000
#define KILL_WAIT_MS 5000

/* ---- the per-VM lock set ------------------------------------------------ */

struct vm_lock {
        char id[17];
        pthread_mutex_t mu;
        int refs; /* guarded by set_mu */
        struct vm_lock *next;
};

static struct vm_lock *lockset_acquire(struct vms *v, struct vm_lock **set, const char *id) {
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

static void lockset_release(struct vms *v, struct vm_lock **set, struct vm_lock *l) {
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
        return lockset_acquire(v, &v->locks, id);
}

void vms_unlock(struct vms *v, struct vm_lock *l) {
        lockset_release(v, &v->locks, l);
}

struct vm_lock *vms_workspace_lock(struct vms *v, const char *id) {
        return lockset_acquire(v, &v->ws_locks, id);
}

void vms_workspace_unlock(struct vms *v, struct vm_lock *l) {
        lockset_release(v, &v->ws_locks, l);
}

/* ---- handles: pid and TAP of a running VM ------------------------------- */

struct vm_handle {
        char id[17];
        pid_t pid;
        char tap[16];
        struct vm_handle *next;
};

struct watch {
        char id[17];
        pid_t pid;
        int pidfd;
        struct watch *next;
};
static bool handle_get(struct vms *v, const char *id, struct vm_handle *ret) {
        bool found = false;
        pthread_mutex_lock(&v->handles_mu);
        for (struct vm_handle *h = v->handles; h; h = h->next)
                if (strcmp(h->id, id) == 0) {
                        *ret = *h;
                        found = true;
                        break;
                }
        pthread_mutex_unlock(&v->handles_mu);
        return found;
}

static void handle_put(struct vms *v, const char *id, pid_t pid, const char *tap) {
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
        h->pid = pid;
        snprintf(h->tap, sizeof(h->tap), "%s", strempty(tap));
        pthread_mutex_unlock(&v->handles_mu);
}

static void handle_drop(struct vms *v, const char *id) {
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

bool vms_tap_in_use(void *ud, const char *name) {
        struct vms *v = ud;
        bool used = false;
        pthread_mutex_lock(&v->handles_mu);
        for (struct vm_handle *h = v->handles; h; h = h->next)
                used |= strcmp(h->tap, name) == 0;
        pthread_mutex_unlock(&v->handles_mu);
        return used;
}

/* ---- paths -------------------------------------------------------------- */

void vm_paths_init(struct vms *v, const struct vm_row *r, struct vm_paths *p) {
        p->dir = xstrdup(r->vm_dir);
        p->run = xasprintf("%s/vms/%s", v->d->layout.runtime_dir, r->id);
        p->overlay = path_join(p->dir, "root.qcow2");
        p->work = path_join(p->dir, "work.ext4");
        p->console = path_join(p->dir, "console.log");
        p->console_prev = path_join(p->dir, "console.prev.log");
        p->handles = path_join(p->dir, "handles.json");
        p->hostkey = path_join(p->dir, "hostkey");
        p->cpio = path_join(p->dir, "guest.cpio");
        p->initrd = path_join(p->dir, "initrd");
        p->qmp = path_join(p->run, "qmp.sock");
        p->agent = path_join(p->run, "agent.sock");
}

void vm_paths_done(struct vm_paths *p) {
        char **all[] = { &p->dir,    &p->run,     &p->overlay, &p->work,   &p->console, &p->console_prev,
                         &p->handles, &p->hostkey, &p->cpio,    &p->initrd, &p->qmp,     &p->agent };
        for (size_t i = 0; i < ELEMENTSOF(all); i++)
                free(*all[i]);
}

static char *tap_name(const char *id) {
        return xasprintf("bg%.12s", id);
}

char *known_hosts_path(struct vms *v) {
        return path_join(v->d->layout.ssh_dir, "known_hosts");
}

char *vm_kh_patterns(const struct vm_row *r) {
        return r->guest_ip ? xasprintf("%s.vm,%s", r->name, r->guest_ip) : xasprintf("%s.vm", r->name);
}

/* ---- errors ------------------------------------------------------------- */

int vm_fail(vm_error *e, enum art_err kind, int rc, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        free(e->msg);
        e->kind = kind;
        if (vasprintf(&e->msg, fmt, ap) < 0)
                e->msg = NULL;
        va_end(ap);
        return rc < 0 ? rc : -EIO;
}

int vms_get_row(struct vms *v, const char *ref, struct vm_row *ret, vm_error *e) {
        int r = store_vm_get(v->d->store, ref, ret);
        if (r == -ENOENT)
                return vm_fail(e, ART_ERR_NOT_FOUND, r, "vm '%s' not found", strempty(ref));
        if (r == -ENOTUNIQ)
                return vm_fail(e, ART_ERR_BAD_REQUEST, r, "vm id prefix '%s' is ambiguous; use more characters or the name",
                            ref);
        if (r < 0)
                return vm_fail(e, ART_ERR_FAILED, r, "reading vm '%s': %s", ref, strerror(-r));
        return 0;
}

/* ---- JSON --------------------------------------------------------------- */

static json_t *vm_json(struct vms *v, const struct vm_row *r) {
        struct image_row img = { 0 };
        struct vm_handle h;
        _cleanup_free_ char *console = path_join(r->vm_dir, "console.log"), *kh = known_hosts_path(v);
        bool have_img = store_image_get(v->d->store, r->image_id, &img) == 0;
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:b}", "id", r->id, "name", r->name, "state",
                              r->state, "image_id", r->image_id, "image", have_img ? img.name : r->image_id, "vcpu",
                              (json_int_t) r->vcpu, "memory_mib", (json_int_t) r->memory_mib, "disk_size_bytes",
                              (json_int_t) r->disk_size_bytes, "system_overlay_size_bytes",
                              (json_int_t) r->system_overlay_size_bytes, "nat", r->nat);
        image_row_done(&img);
        json_object_set_new(j, "ip", r->guest_ip ? json_string(r->guest_ip) : json_null());
        json_object_set_new(j, "dns_name", json_sprintf("%s.vm", r->name));
        json_object_set_new(j, "mac", r->mac ? json_string(r->mac) : json_null());
        json_object_set_new(j, "created_at", json_string(r->created_at));
        json_object_set_new(j, "updated_at", json_string(r->updated_at));
        json_object_set_new(j, "last_touched_at", r->last_touched_at ? json_string(r->last_touched_at) : json_null());
        json_object_set_new(j, "last_error", r->last_error ? json_string(r->last_error) : json_null());
        json_object_set_new(j, "vm_dir", json_string(r->vm_dir));
        json_t *ws = r->workspace_json ? json_loads(r->workspace_json, 0, NULL) : NULL;
        json_object_set_new(j, "workspace", ws ? ws : json_null());
        json_object_set_new(j, "console_log", json_string(console));
        if (handle_get(v, r->id, &h)) {
                json_object_set_new(j, "pid", json_integer(h.pid));
                json_object_set_new(j, "tap", json_string(h.tap));
        }
        json_object_set_new(j, "ssh", json_pack("{s:s, s:s, s:s, s:s}", "user", "root", "host",
                                                r->guest_ip ? r->guest_ip : "", "key", v->d->config->ssh_key_path,
                                                "known_hosts", kh));
        return j;
}

json_t *vm_json_by_id(struct vms *v, const char *id) {
        struct vm_row r;
        if (store_vm_get(v->d->store, id, &r) < 0)
                return json_null();
        json_t *j = vm_json(v, &r);
        vm_row_done(&r);
        return j;
}

/* ---- handles.json and the teardown mirror --------------------------------- */

static void write_handles(struct vms *v, const struct vm_row *r, const struct vm_paths *p, pid_t pid,
                          const char *tap) {
        _cleanup_json_ json_t *h = json_pack("{s:i, s:s, s:s, s:s}", "pid", (int) pid, "tap", tap, "vmm", "qemu",
                                             "started_at", "");
        _cleanup_free_ char *now = now_rfc3339();
        json_object_set_new(h, "started_at", json_string(now));
        _cleanup_free_ char *text = json_dump_compact(h);
        if (write_file_atomic(p->handles, text, strlen(text), 0600) < 0)
                log_warn("vm %s: cannot write %s", r->name, p->handles);
        /* the mirror: enough to clean up when handles.json is lost */
        store_vm_set_teardown(v->d->store, r->id, text);
        handle_put(v, r->id, pid, tap);
}

/* pid and tap from handles.json, else the row's mirror. */
static void read_handles(const struct vm_row *r, const struct vm_paths *p, pid_t *ret_pid, char **ret_tap) {
        _cleanup_free_ char *text = NULL;
        size_t len;
        _cleanup_json_ json_t *j = NULL;
        *ret_pid = 0;
        *ret_tap = NULL;
        if (read_file(p->handles, 1 << 16, &text, &len) == 0)
                j = json_loadb(text, len, 0, NULL);
        if (!json_is_object(j) && r->teardown_json) {
                json_decref(j);
                j = json_loads(r->teardown_json, 0, NULL);
        }
        if (!json_is_object(j))
                return;
        json_int_t pid = json_integer_value(json_object_get(j, "pid"));
        *ret_pid = pid > 0 && pid < INT32_MAX ? (pid_t) pid : 0;
        const char *tap = json_string_value(json_object_get(j, "tap"));
        if (tap && *tap)
                *ret_tap = xstrdup(tap);
}

/* A VMM whose handles are lost is found by its -name in /proc. */
static pid_t find_vmm(struct vms *v, const char *id) {
        _cleanup_(closedirp) DIR *d = opendir("/proc");
        struct dirent *de;
        while (d && (de = readdir(d)))
                if (de->d_name[0] >= '1' && de->d_name[0] <= '9') {
                        pid_t pid = (pid_t) atoi(de->d_name);
                        if (vmm_qemu.owns(pid, v->d->config->qemu_bin, id))
                                return pid;
                }
        return 0;
}

/* Releases what a running VM holds on the host (TAP, sockets, handles),
 * after its VMM is gone. Errors are logged; nothing short-circuits. */
static void release_runtime(struct vms *v, const struct vm_row *r, const struct vm_paths *p, const char *tap) {
        _cleanup_free_ char *err = NULL;
        if (priv_nat_disable(r->id, &err) < 0)
                log_warn("vm %s: removing NAT rules: %s", r->name, strempty(err));
        free(TAKE_PTR(err));
        if (priv_antispoof_disable(r->id, &err) < 0)
                log_warn("vm %s: removing its address guard: %s", r->name, strempty(err));
        free(TAKE_PTR(err));
        if (tap && *tap && !tap_pool_give(&v->pool, tap) && priv_tap_delete(tap, &err) < 0)
                log_warn("vm %s: removing TAP %s: %s", r->name, tap, strempty(err));
        unlink(p->handles);
        unlink(p->qmp);
        unlink(p->agent);
        handle_drop(v, r->id);
        store_vm_set_teardown(v->d->store, r->id, NULL);
}

static void reap(int pidfd) {
        siginfo_t si;
        if (pidfd >= 0)
                waitid(P_PIDFD, (id_t) pidfd, &si, WEXITED | WNOHANG);
}

static bool wait_pidfd(int pidfd, int timeout_ms) {
        struct pollfd pf = { .fd = pidfd, .events = POLLIN };
        if (pidfd < 0)
                return true;
        for (;;) {
                int n = poll(&pf, 1, timeout_ms);
                if (n < 0 && errno == EINTR)
                        continue;
                return n > 0;
        }
}

/* ---- the exit watcher --------------------------------------------------- */

static void on_vmm_exit(struct vms *v, const char *id, pid_t pid);

static void watch_add(struct vms *v, const char *id, pid_t pid) {
        int pidfd = (int) pidfd_open(pid, 0);
        if (pidfd < 0) {
                log_warn("vm %s: cannot watch pid %d: %s", id, (int) pid, strerror(errno));
                return;
        }
        struct watch *w = xcalloc(1, sizeof(*w));
        snprintf(w->id, sizeof(w->id), "%s", id);
        w->pid = pid;
        w->pidfd = pidfd;
        pthread_mutex_lock(&v->handles_mu);
        w->next = v->watches;
        v->watches = w;
        pthread_mutex_unlock(&v->handles_mu);
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = w };
        if (epoll_ctl(v->ep_fd, EPOLL_CTL_ADD, pidfd, &ev) < 0)
                log_warn("vm %s: epoll: %s", id, strerror(errno));
}

static void *watcher_main(void *arg) {
        struct vms *v = arg;
        log_set_op_id("watcher");
        while (!v->stopping) {
                struct epoll_event evs[8];
                int n = epoll_wait(v->ep_fd, evs, 8, -1);
                for (int i = 0; i < n; i++) {
                        struct watch *w = evs[i].data.ptr;
                        if (!w)
                                continue; /* the wake eventfd */
                        epoll_ctl(v->ep_fd, EPOLL_CTL_DEL, w->pidfd, NULL);
                        reap(w->pidfd);
                        pthread_mutex_lock(&v->handles_mu);
                        for (struct watch **p = &v->watches; *p; p = &(*p)->next)
                                if (*p == w) {
                                        *p = w->next;
                                        break;
                                }
                        pthread_mutex_unlock(&v->handles_mu);
                        close(w->pidfd);
                        if (!v->stopping)
                                on_vmm_exit(v, w->id, w->pid);
                        free(w);
                }
        }
        return NULL;
}

/* The VMM went away on its own (guest poweroff, crash, kill -9). Unless a
 * lifecycle operation already dealt with it (then the handle is gone or
 * names another process), release what it held and mark the VM stopped. */
static void on_vmm_exit(struct vms *v, const char *id, pid_t pid) {
        struct vm_lock *l = vms_lock(v, id);
        struct vm_handle h;
        struct vm_row r = { 0 };
        struct vm_paths p = { 0 };
        if (!handle_get(v, id, &h) || h.pid != pid || store_vm_get(v->d->store, id, &r) < 0)
                goto out;
        vm_paths_init(v, &r, &p);
        release_runtime(v, &r, &p, h.tap);
        store_vm_set_state(v->d->store, id, "stopped", NULL);
        log_info("vm %s: its VMM (pid %d) exited; marked stopped", r.name, (int) pid);
out:
        vm_paths_done(&p);
        vm_row_done(&r);
        vms_unlock(v, l);
}

/* ---- boot files of an image --------------------------------------------- */

void vms_boot_files_done(struct boot_files *b) {
        free(b->kernel);
        free(b->initramfs);
        free(b->rootfs);
        free(b->work_seed);
        free(b->init_mode);
}

int vms_resolve_boot(struct vms *v, const char *image_id, struct boot_files *b, vm_error *e) {
        struct image_row img = { 0 };
        struct kernel_row k = { 0 };
        int r = store_image_get(v->d->store, image_id, &img);
        if (r < 0)
                return vm_fail(e, ART_ERR_NOT_FOUND, r, "image '%s' not found", image_id);
        b->rootfs = xstrdup(img.rootfs_path);
        b->work_seed = img.work_seed_path ? xstrdup(img.work_seed_path) : NULL;
        b->init_mode = xstrdup(img.init_mode ? img.init_mode : "systemd");
        struct stat st;
        b->rootfs_size = stat(img.rootfs_path, &st) == 0 ? (uint64_t) st.st_size : 0;
        if (img.kernel_name) {
                r = store_kernel_get(v->d->store, img.kernel_name, &k);
                if (r < 0) {
                        r = vm_fail(e, ART_ERR_NOT_FOUND, r, "kernel '%s' of image '%s' is not installed (banger kernel pull %s)",
                                 img.kernel_name, img.name, img.kernel_name);
                        goto out;
                }
                _cleanup_free_ char *x = path_join(k.dir, "vmlinux"), *z = path_join(k.dir, "vmlinuz");
                b->kernel = xstrdup(access(x, R_OK) == 0 ? x : z);
                r = kernel_initramfs(&v->d->artifacts, img.kernel_name, &b->initramfs, e);
        } else if (img.kernel_path && img.initrd_path) {
                b->kernel = xstrdup(img.kernel_path);
                b->initramfs = xstrdup(img.initrd_path);
        } else
                r = vm_fail(e, ART_ERR_FAILED, -ENOENT, "image '%s' has no kernel", img.name);
out:
        image_row_done(&img);
        kernel_row_done(&k);
        return r;
}

static bool agent_cancelled(void *ud) {
        return progress_cancelled(ud);
}

/* ---- start / stop --------------------------------------------------------- */

static int concat_files(const char *a, const char *b, const char *out) {
        _cleanup_close_ int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        const char *in[] = { a, b };
        if (fd < 0)
                return -errno;
        for (size_t i = 0; i < 2; i++) {
                _cleanup_close_ int src = open(in[i], O_RDONLY | O_CLOEXEC);
                char buf[1 << 16];
                ssize_t n;
                if (src < 0)
                        return -errno;
                while ((n = read(src, buf, sizeof(buf))) > 0)
                        if (write_all(fd, buf, (size_t) n) < 0)
                                return -EIO;
                if (n < 0)
                        return -errno;
        }
        return 0;
}

/* Stops the VMM of a VM (pid known to be ours): agent sync + poweroff, a
 * bounded wait, then QMP quit and signals. */
static void stop_vmm(struct vms *v, const struct vm_row *r, const struct vm_paths *p, pid_t pid, bool graceful) {
        _cleanup_close_ int pidfd = (int) pidfd_open(pid, 0);
        if (pidfd < 0)
                return; /* already gone */
        if (graceful) {
                struct agent_wait w = { .abort_fd = pidfd };
                _cleanup_json_ json_t *res = NULL, *res2 = NULL;
                _cleanup_free_ char *err = NULL, *err2 = NULL;
                if (agent_call(p->agent, "sync", 3000, &w, &res, &err) < 0)
                        log_info("vm %s: agent sync: %s", r->name, err);
                else if (agent_call(p->agent, "poweroff", 3000, &w, &res2, &err2) < 0)
                        log_info("vm %s: agent poweroff: %s", r->name, err2);
                else if (wait_pidfd(pidfd, STOP_GUEST_TIMEOUT_MS)) {
                        reap(pidfd);
                        return;
                }
        }
        struct vm_boot b = { .id = r->id, .qmp_socket = p->qmp };
        struct vm_proc proc = { .pid = pid, .pidfd = pidfd };
        _cleanup_free_ char *err = NULL;
        if (graceful) {
                if (vmm_qemu.stop(&b, &proc, 3000, &err) < 0)
                        log_warn("vm %s: %s", r->name, err);
        } else {
                vmm_qemu.kill(&proc, SIGKILL);
                wait_pidfd(pidfd, KILL_WAIT_MS);
        }
        reap(pidfd);
}

/* Called with the VM's lock held and the row in hand. On failure the VM is
 * left in 'error' with last_error and nothing running. */
int vms_start_locked(struct vms *v, struct vm_row *r, const struct progress *pr, vm_error *e) {
        const struct config *c = v->d->config;
        struct boot_files bf = { 0 };
        struct vm_paths p;
        struct ipv4_subnet net;
        _cleanup_free_ char *tap = NULL, *err = NULL, *vmm = NULL, *vmm_why = NULL, *accel = NULL, *accel_why = NULL;
        _cleanup_free_ char *ak = NULL, *pubpath = xasprintf("%s.pub", c->ssh_key_path), *ip_cidr = NULL;
        _cleanup_json_ json_t *health = NULL;
        size_t len;
        pid_t pid = 0;
        int rc;

        vm_paths_init(v, r, &p);
        store_vm_set_state(v->d->store, r->id, "starting", NULL);
        rc = vms_resolve_boot(v, r->image_id, &bf, e);
        if (rc < 0)
                goto fail;
        daemon_vmm_choice(v->d, &vmm, &vmm_why, &accel, &accel_why);
        if (strcmp(vmm, "qemu") != 0) {
                rc = vm_fail(e, ART_ERR_FAILED, -EOPNOTSUPP, "VMM %s is not implemented yet (set vmm = \"qemu\")", vmm);
                goto fail;
        }
        if (ipv4_subnet_init(&net, c->bridge_ip, (int) c->cidr, &err) < 0) {
                rc = vm_fail(e, ART_ERR_FAILED, -EINVAL, "%s", err);
                goto fail;
        }
        if (mkdir_p(p.run, 0700) < 0) {
                rc = vm_fail(e, ART_ERR_FAILED, -errno, "cannot create %s: %s", p.run, strerror(errno));
                goto fail;
        }

        progress_stage(pr, "network", "bridge %s, TAP for %s", c->bridge_name, r->guest_ip);
        if ((rc = priv_bridge_ensure(c->bridge_name, c->bridge_ip, (int) c->cidr, &err)) < 0) {
                rc = vm_fail(e, ART_ERR_FAILED, rc, "bridge %s: %s", c->bridge_name, err);
                goto fail;
        }
        if (strcmp(c->dns_listen, "off") != 0 && !atomic_exchange(&v->dns_routed, true)) {
                int dr = priv_dns_route(c->bridge_name, c->dns_listen, &err);
                if (dr < 0)
                        log_warn("routing ~vm to %s on %s with resolvectl: %s", c->dns_listen, c->bridge_name, err);
                else if (dr == 0)
                        log_info("systemd-resolved routes ~vm to %s on %s", c->dns_listen, c->bridge_name);
                free(TAKE_PTR(err));
        }
        if (tap_pool_take(&v->pool, &tap)) {
                vms_hk_kick(v);
        } else {
                tap = tap_name(r->id);
                priv_tap_delete(tap, &err); /* a leftover from a crash */
                free(err);
                err = NULL;
                rc = priv_tap_create(tap, c->bridge_name, &err);
        }
        if (rc < 0) {
                rc = vm_fail(e, ART_ERR_FAILED, rc, "%s", err);
                free(TAKE_PTR(tap));
                goto fail;
        }
        {
                _cleanup_json_ json_t *td = json_pack("{s:s, s:b}", "tap", tap, "nat", r->nat);
                _cleanup_free_ char *text = json_dump_compact(td);
                store_vm_set_teardown(v->d->store, r->id, text);
        }
        if ((rc = priv_antispoof_enable(r->id, tap, r->guest_ip, &err)) < 0) {
                rc = vm_fail(e, ART_ERR_FAILED, rc, "address guard: %s", err);
                goto fail;
        }
        if (r->nat && (rc = priv_nat_enable(r->id, tap, r->guest_ip, c->bridge_name, &err)) < 0) {
                rc = vm_fail(e, ART_ERR_FAILED, rc, "NAT: %s", err);
                goto fail;
        }
        if (progress_cancelled(pr)) {
                rc = vm_fail(e, ART_ERR_FAILED, -ECANCELED, "cancelled");
                goto fail;
        }

        progress_stage(pr, "boot", "%s, %s", vmm, accel);
        if (read_file(pubpath, 1 << 16, &ak, &len) < 0) {
                rc = vm_fail(e, ART_ERR_FAILED, -ENOENT, "cannot read %s", pubpath);
                goto fail;
        }
        struct guestcfg g = { .hostname = r->name, .ip = r->guest_ip, .dns = c->default_dns,
                              .host_key_dir = p.hostkey, .authorized_keys = ak };
        if ((rc = guestcfg_write(&g, p.cpio, &err)) < 0) {
                rc = vm_fail(e, ART_ERR_FAILED, rc, "guest configuration: %s", err);
                goto fail;
        }
        if ((rc = concat_files(bf.initramfs, p.cpio, p.initrd)) < 0) {
                rc = vm_fail(e, ART_ERR_FAILED, rc, "writing %s: %s", p.initrd, strerror(-rc));
                goto fail;
        }
        rename(p.console, p.console_prev);
        unlink(p.qmp);
        unlink(p.agent);
        ip_cidr = xasprintf("%s/%d", r->guest_ip, net.prefix);
        struct vm_boot b = {
                .id = r->id, .name = r->name, .vcpu = (int) r->vcpu, .memory_mib = (int) r->memory_mib,
                .accel = accel, .tsc_khz = host_tsc_khz(), .kernel = bf.kernel, .initrd = p.initrd,
                .init_mode = bf.init_mode, .root_disk = p.overlay, .work_disk = p.work, .net = VM_NET_TAP, .tap = tap,
                .mac = r->mac, .ip_cidr = ip_cidr, .gateway = c->bridge_ip, .qmp_socket = p.qmp,
                .agent_socket = p.agent, .console_log = p.console,
        };
        struct vm_proc proc;
        if ((rc = vmm_qemu.start(&b, c->qemu_bin, &proc, &err)) < 0) {
                rc = vm_fail(e, ART_ERR_FAILED, rc, "%s", err);
                goto fail;
        }
        pid = proc.pid;
        write_handles(v, r, &p, pid, tap);
        watch_add(v, r->id, pid);

        progress_stage(pr, "wait for agent", NULL);
        struct agent_wait w = { .abort_fd = proc.pidfd, .cancelled = agent_cancelled, .ud = (void *) pr };
        rc = agent_call(p.agent, "health", AGENT_BOOT_TIMEOUT_MS, &w, &health, &err);
        if (rc == 0 && !json_is_true(json_object_get(health, "sshd_listening"))) {
                progress_stage(pr, "wait for ssh", NULL);
                for (int i = 0; i < 600 && rc == 0; i++) {
                        json_decref(health);
                        health = NULL;
                        if (wait_pidfd(proc.pidfd, 100))
                                break;
                        rc = agent_call(p.agent, "health", 5000, &w, &health, &err);
                        if (rc == 0 && json_is_true(json_object_get(health, "sshd_listening")))
                                break;
                }
                if (rc == 0 && !json_is_true(json_object_get(health, "sshd_listening"))) {
                        rc = -ETIMEDOUT;
                        err = xstrdup("sshd did not start listening in the guest");
                }
        } else if (rc == 0)
                progress_stage(pr, "wait for ssh", "sshd already listening");
        bool vmm_gone = rc < 0 && wait_pidfd(proc.pidfd, 0);
        if (proc.pidfd >= 0)
                close(proc.pidfd);
        if (rc < 0) {
                if (progress_cancelled(pr))
                        rc = vm_fail(e, ART_ERR_FAILED, -ECANCELED, "cancelled");
                else if (vmm_gone)
                        rc = vm_fail(e, ART_ERR_FAILED, -EIO, "qemu exited while the guest booted (console: %s)", p.console);
                else
                        rc = vm_fail(e, ART_ERR_FAILED, rc, "%s (console: %s)", err, p.console);
                goto fail;
        }
        store_vm_set_state(v->d->store, r->id, "running", NULL);
        store_vm_touch(v->d->store, r->id);
        vms_boot_files_done(&bf);
        vm_paths_done(&p);
        return 0;

fail:
        if (pid > 0)
                stop_vmm(v, r, &p, pid, false);
        release_runtime(v, r, &p, tap);
        store_vm_set_state(v->d->store, r->id, "error", e->msg);
        log_warn("vm %s: start failed: %s", r->name, strempty(e->msg));
        vms_boot_files_done(&bf);
        vm_paths_done(&p);
        return rc;
}

bool vm_state_active(const char *state) {
        return strcmp(state, "running") == 0 || strcmp(state, "starting") == 0 || strcmp(state, "stopping") == 0;
}

/* The VMM pid of a VM if it is running (and really ours), else 0. */
pid_t vms_live_pid(struct vms *v, const struct vm_row *r, const struct vm_paths *p, char **ret_tap) {
        struct vm_handle h;
        pid_t pid = 0;
        *ret_tap = NULL;
        if (handle_get(v, r->id, &h)) {
                pid = h.pid;
                *ret_tap = *h.tap ? xstrdup(h.tap) : NULL;
        } else
                read_handles(r, p, &pid, ret_tap);
        if (pid > 0 && !vmm_qemu.owns(pid, v->d->config->qemu_bin, r->id))
                pid = 0;
        return pid;
}

int vms_stop_locked(struct vms *v, struct vm_row *r, bool graceful, vm_error *e) {
        struct vm_paths p;
        _cleanup_free_ char *tap = NULL;
        vm_paths_init(v, r, &p);
        pid_t pid = vms_live_pid(v, r, &p, &tap);
        if (pid > 0) {
                store_vm_set_state(v->d->store, r->id, "stopping", NULL);
                stop_vmm(v, r, &p, pid, graceful);
                if (vmm_qemu.owns(pid, v->d->config->qemu_bin, r->id)) {
                        store_vm_set_state(v->d->store, r->id, "running", NULL);
                        vm_paths_done(&p);
                        return vm_fail(e, ART_ERR_FAILED, -EBUSY, "vm %s: its VMM (pid %d) did not exit", r->name, (int) pid);
                }
        }
        release_runtime(v, r, &p, tap);
        store_vm_set_state(v->d->store, r->id, "stopped", NULL);
        vm_paths_done(&p);
        (void) e;
        return 0;
}

/* Removes every trace of a VM whose VMM is not running: files, runtime
 * dir, known_hosts entries, the row. */
int vms_destroy_locked(struct vms *v, const struct vm_row *r, vm_error *e) {
        struct vm_paths p;
        _cleanup_free_ char *kh = known_hosts_path(v), *patterns = vm_kh_patterns(r), *tap = NULL;
        vm_paths_init(v, r, &p);
        pid_t pid = vms_live_pid(v, r, &p, &tap);
        if (pid > 0) {
                stop_vmm(v, r, &p, pid, false);
        }
        release_runtime(v, r, &p, tap);
        rm_rf(p.dir);
        rm_rf(p.run);
        pthread_mutex_lock(&v->kh_mu);
        known_hosts_remove(kh, patterns);
        pthread_mutex_unlock(&v->kh_mu);
        int rc = store_vm_delete(v->d->store, r->id);
        vm_paths_done(&p);
        if (rc < 0 && rc != -ENOENT)
                return vm_fail(e, ART_ERR_FAILED, rc, "deleting vm %s: %s", r->name, strerror(-rc));
        return 0;
}

/* ---- lifecycle commands --------------------------------------------------- */

/* Resolves ref, takes the VM's lock, re-reads the row (it may have changed
 * or gone while we waited). */
static int lock_vm(struct vms *v, const char *ref, struct vm_row *row, struct vm_lock **ret_lock, vm_error *e) {
        struct vm_row first;
        int r = vms_get_row(v, ref, &first, e);
        if (r < 0)
                return r;
        struct vm_lock *l = vms_lock(v, first.id);
        r = store_vm_get(v->d->store, first.id, row);
        vm_row_done(&first);
        if (r < 0) {
                vms_unlock(v, l);
                return vm_fail(e, ART_ERR_NOT_FOUND, r, "vm '%s' not found", ref);
        }
        *ret_lock = l;
        return 0;
}

int vm_list(struct vms *v, json_t **ret, vm_error *e) {
        struct vm_row *rows;
        size_t n;
        int r = store_vm_list(v->d->store, &rows, &n);
        if (r < 0)
                return vm_fail(e, ART_ERR_FAILED, r, "listing vms: %s", strerror(-r));
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(a, vm_json(v, &rows[i]));
        vm_rows_free(rows, n);
        *ret = json_pack("{s:o}", "vms", a);
        return 0;
}

int vm_show(struct vms *v, const char *ref, json_t **ret, vm_error *e) {
        struct vm_row r;
        int rc = vms_get_row(v, ref, &r, e);
        if (rc < 0)
                return rc;
        *ret = vm_json(v, &r);
        vm_row_done(&r);
        return 0;
}

enum lifecycle_op { LC_START, LC_STOP, LC_RESTART, LC_DELETE };

/* start, stop, restart and delete: one VM, under its lock, from the row
 * re-read once the lock is held. */
static int lifecycle(struct vms *v, const char *ref, enum lifecycle_op op, const struct progress *p, json_t **ret,
                     vm_error *e) {
        struct vm_row r;
        struct vm_lock *l;
        int rc = lock_vm(v, ref, &r, &l, e);
        if (rc < 0)
                return rc;
        if ((op == LC_START || op == LC_DELETE) && vms_create_in_flight(v, r.id)) {
                rc = vm_fail(e, ART_ERR_BAD_REQUEST, -EBUSY, "vm %s is still being created%s", r.name,
                             op == LC_DELETE ? " (cancel it first)" : "");
                goto out;
        }
        if (op == LC_START && vm_state_active(r.state)) {
                struct vm_paths pp;
                _cleanup_free_ char *tap = NULL;
                vm_paths_init(v, &r, &pp);
                pid_t pid = vms_live_pid(v, &r, &pp, &tap);
                vm_paths_done(&pp);
                if (pid > 0) {
                        rc = vm_fail(e, ART_ERR_BAD_REQUEST, -EALREADY, "vm %s is already running", r.name);
                        goto out;
                }
        }
        if (op == LC_STOP || op == LC_RESTART || (op == LC_DELETE && vm_state_active(r.state))) {
                progress_stage(p, "stop", "%s", r.name);
                rc = vms_stop_locked(v, &r, true, e);
        }
        if (rc == 0 && (op == LC_START || op == LC_RESTART))
                rc = vms_start_locked(v, &r, p, e);
        if (rc == 0 && op == LC_DELETE) {
                progress_stage(p, "delete", "%s", r.name);
                rc = vms_destroy_locked(v, &r, e);
                if (rc == 0)
                        *ret = json_pack("{s:s, s:s, s:b}", "id", r.id, "name", r.name, "deleted", true);
        } else if (rc == 0)
                *ret = vm_json_by_id(v, r.id);
out:
        vms_unlock(v, l);
        vm_row_done(&r);
        return rc;
}

int vm_start(struct vms *v, const char *ref, const struct progress *p, json_t **ret, vm_error *e) {
        return lifecycle(v, ref, LC_START, p, ret, e);
}

int vm_stop(struct vms *v, const char *ref, const struct progress *p, json_t **ret, vm_error *e) {
        return lifecycle(v, ref, LC_STOP, p, ret, e);
}

int vm_restart(struct vms *v, const char *ref, const struct progress *p, json_t **ret, vm_error *e) {
        return lifecycle(v, ref, LC_RESTART, p, ret, e);
}

int vm_delete(struct vms *v, const char *ref, const struct progress *p, json_t **ret, vm_error *e) {
        return lifecycle(v, ref, LC_DELETE, p, ret, e);
}

int vm_kill(struct vms *v, const char *ref, int sig, json_t **ret, vm_error *e) {
        struct vm_row r;
        struct vm_lock *l;
        struct vm_paths p;
        _cleanup_free_ char *tap = NULL;
        int rc = lock_vm(v, ref, &r, &l, e);
        if (rc < 0)
                return rc;
        vm_paths_init(v, &r, &p);
        pid_t pid = vms_live_pid(v, &r, &p, &tap);
        if (pid <= 0) {
                rc = vm_fail(e, ART_ERR_BAD_REQUEST, -ESRCH, "vm %s is not running", r.name);
        } else {
                _cleanup_close_ int pidfd = (int) pidfd_open(pid, 0);
                struct vm_proc proc = { .pid = pid, .pidfd = pidfd };
                rc = vmm_qemu.kill(&proc, sig);
                if (rc < 0)
                        rc = vm_fail(e, ART_ERR_FAILED, rc, "signal %d to pid %d: %s", sig, (int) pid, strerror(-rc));
                else if (!wait_pidfd(pidfd, KILL_WAIT_MS))
                        rc = vm_fail(e, ART_ERR_FAILED, -EBUSY, "vm %s: pid %d still running %d s after signal %d", r.name,
                                  (int) pid, KILL_WAIT_MS / 1000, sig);
                else {
                        reap(pidfd);
                        release_runtime(v, &r, &p, tap);
                        store_vm_set_state(v->d->store, r.id, "stopped", NULL);
                        *ret = vm_json_by_id(v, r.id);
                }
        }
        vm_paths_done(&p);
        vms_unlock(v, l);
        vm_row_done(&r);
        return rc;
}

int vm_set(struct vms *v, const char *ref, const struct vm_set_req *req, json_t **ret, vm_error *e) {
        struct vm_row r;
        struct vm_lock *l;
        _cleanup_free_ char *err = NULL;
        if (req->vcpu_set && (req->vcpu <= 0 || req->vcpu > 64))
                return vm_fail(e, ART_ERR_BAD_REQUEST, -EINVAL, "vcpu must be between 1 and 64 (got %lld)",
                            (long long) req->vcpu);
        if (req->memory_set && req->memory_mib < 128)
                return vm_fail(e, ART_ERR_BAD_REQUEST, -EINVAL, "memory must be at least 128 MiB (got %lld)",
                            (long long) req->memory_mib);
        if (req->disk_size_bytes < 0 || (uint64_t) req->disk_size_bytes > CONFIG_DISK_SIZE_MAX)
                return vm_fail(e, ART_ERR_BAD_REQUEST, -EINVAL, "disk size must be between 1 byte and 128 GiB");
        int rc = lock_vm(v, ref, &r, &l, e);
        if (rc < 0)
                return rc;
        if (vm_state_active(r.state)) {
                rc = vm_fail(e, ART_ERR_BAD_REQUEST, -EBUSY, "vm %s is %s; stop it first (banger vm stop %s)", r.name,
                          r.state, r.name);
                goto out;
        }
        if (req->disk_size_bytes && req->disk_size_bytes < r.disk_size_bytes) {
                rc = vm_fail(e, ART_ERR_BAD_REQUEST, -EINVAL,
                          "vm %s: shrinking the work disk (%lld -> %lld bytes) is not supported", r.name,
                          (long long) r.disk_size_bytes, (long long) req->disk_size_bytes);
                goto out;
        }
        if (req->disk_size_bytes && req->disk_size_bytes > r.disk_size_bytes) {
                _cleanup_free_ char *work = path_join(r.vm_dir, "work.ext4");
                rc = workdisk_grow(work, (uint64_t) req->disk_size_bytes, &err);
                if (rc < 0) {
                        rc = vm_fail(e, ART_ERR_FAILED, rc, "growing the work disk: %s", err);
                        goto out;
                }
                r.disk_size_bytes = req->disk_size_bytes;
        }
        if (req->vcpu_set)
                r.vcpu = req->vcpu;
        if (req->memory_set)
                r.memory_mib = req->memory_mib;
        if (req->nat >= 0)
                r.nat = req->nat != 0;
        rc = store_vm_update(v->d->store, &r);
        if (rc < 0)
                rc = vm_fail(e, ART_ERR_FAILED, rc, "updating vm %s: %s", r.name, strerror(-rc));
        else
                *ret = vm_json_by_id(v, r.id);
out:
        vms_unlock(v, l);
        vm_row_done(&r);
        return rc;
}

int vm_agent(struct vms *v, const char *ref, const char *method, json_t **ret, vm_error *e) {
        struct vm_row r;
        struct vm_paths p;
        _cleanup_free_ char *err = NULL, *tap = NULL;
        int rc = vms_get_row(v, ref, &r, e);
        if (rc < 0)
                return rc;
        vm_paths_init(v, &r, &p);
        if (vms_live_pid(v, &r, &p, &tap) <= 0)
                rc = vm_fail(e, ART_ERR_BAD_REQUEST, -ESRCH, "vm %s is not running (state %s)", r.name, r.state);
        else if ((rc = agent_call(p.agent, method, 10000, NULL, ret, &err)) < 0)
                rc = vm_fail(e, ART_ERR_FAILED, rc, "vm %s: %s", r.name, err);
        else
                store_vm_touch(v->d->store, r.id);
        vm_paths_done(&p);
        vm_row_done(&r);
        return rc;
}

int vms_dns_lookup(void *ud, const char *label, uint32_t *ret_ip) {
        struct vms *v = ud;
        struct vm_row r;
        int found = 0;
        /* exact names only (store_vm_get also takes id prefixes) */
        if (store_vm_get(v->d->store, label, &r) < 0)
                return 0;
        if (strcmp(r.name, label) == 0 && strcmp(r.state, "running") == 0 && r.guest_ip &&
            ipv4_parse(r.guest_ip, ret_ip) == 0)
                found = 1;
        vm_row_done(&r);
        return found;
}

int vm_touch(struct vms *v, const char *ref, vm_error *e) {
        struct vm_row r;
        int rc = vms_get_row(v, ref, &r, e);
        if (rc < 0)
                return rc;
        rc = store_vm_touch(v->d->store, r.id);
        vm_row_done(&r);
        return rc < 0 ? vm_fail(e, ART_ERR_FAILED, rc, "touch: %s", strerror(-rc)) : 0;
}

/* ---- init, reconcile, done -------------------------------------------------- */

int vms_init(struct vms *v, struct daemon *d, char **ret_err) {
        *v = (struct vms) { .d = d, .ep_fd = -1, .wake_fd = -1 };
        pthread_mutex_init(&v->create_mu, NULL);
        pthread_mutex_init(&v->set_mu, NULL);
        pthread_mutex_init(&v->handles_mu, NULL);
        pthread_mutex_init(&v->creates_mu, NULL);
        pthread_mutex_init(&v->kh_mu, NULL);
        pthread_cond_init(&v->creates_cond, NULL);
        pthread_mutex_init(&v->hk_mu, NULL);
        tap_pool_init(&v->pool, (size_t) d->config->tap_pool_size, d->config->bridge_name, d->config->bridge_ip,
                      (int) d->config->cidr);
        pthread_mutex_init(&v->stats_mu, NULL);
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&v->hk_cond, &ca);
        pthread_condattr_destroy(&ca);
        v->ep_fd = epoll_create1(EPOLL_CLOEXEC);
        v->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (v->ep_fd < 0 || v->wake_fd < 0) {
                *ret_err = xasprintf("vm service: %s", strerror(errno));
                return -errno;
        }
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
        epoll_ctl(v->ep_fd, EPOLL_CTL_ADD, v->wake_fd, &ev);
        if (pthread_create(&v->watcher, NULL, watcher_main, v) != 0) {
                *ret_err = xstrdup("vm service: cannot start the exit watcher");
                return -EAGAIN;
        }
        v->watcher_started = true;
        return 0;
}

void vms_reconcile(struct vms *v) {
        struct vm_row *rows;
        size_t n;
        if (store_vm_list(v->d->store, &rows, &n) < 0) {
                log_warn("reconcile: cannot list vms");
                return;
        }
        for (size_t i = 0; i < n; i++) {
                struct vm_row *r = &rows[i];
                struct vm_lock *l = vms_lock(v, r->id);
                struct vm_paths p;
                _cleanup_free_ char *tap = NULL;
                pid_t pid;
                vm_paths_init(v, r, &p);
                read_handles(r, &p, &pid, &tap);
                if (pid <= 0 || !vmm_qemu.owns(pid, v->d->config->qemu_bin, r->id))
                        pid = vm_state_active(r->state) ? find_vmm(v, r->id) : 0;
                if (pid > 0) {
                        if (!tap) {
                                tap = tap_name(r->id);
                                if (!priv_link_exists(tap))
                                        free(TAKE_PTR(tap));
                        }
                        handle_put(v, r->id, pid, tap);
                        watch_add(v, r->id, pid);
                        if (strcmp(r->state, "running") != 0)
                                store_vm_set_state(v->d->store, r->id, "running", NULL);
                        log_info("reconcile: vm %s is running (pid %d); adopted", r->name, (int) pid);
                } else if (vm_state_active(r->state) || r->teardown_json) {
                        release_runtime(v, r, &p, tap);
                        if (vm_state_active(r->state))
                                store_vm_set_state(v->d->store, r->id, "stopped", NULL);
                        log_info("reconcile: vm %s is not running; cleaned up and marked stopped", r->name);
                }
                vm_paths_done(&p);
                vms_unlock(v, l);
        }
        vm_rows_free(rows, n);
}

void vms_done(struct vms *v) {
        if (v->dns_routed)
                priv_dns_unroute(v->d->config->bridge_name);
        vms_housekeeping_stop(v); /* sets `stopping` */
        vms_creates_done(v);
        if (v->watcher_started) {
                uint64_t one = 1;
                if (write(v->wake_fd, &one, sizeof(one)) < 0)
                        log_warn("vm service: waking the watcher: %s", strerror(errno));
                pthread_join(v->watcher, NULL);
        }
        while (v->watches) {
                struct watch *w = v->watches;
                v->watches = w->next;
                close(w->pidfd);
                free(w);
        }
        while (v->handles) {
                struct vm_handle *h = v->handles;
                v->handles = h->next;
                free(h);
        }
        if (v->ep_fd >= 0)
                close(v->ep_fd);
        if (v->wake_fd >= 0)
                close(v->wake_fd);
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
