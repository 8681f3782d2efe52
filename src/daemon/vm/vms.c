/* SPDX-License-Identifier: MIT */
/*
 * The VM service (vms.h has the locking rules). Every path that creates
 * something undoes it on failure: QEMU processes, TAPs, files, rows.
 */
#include "vms.h"

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
#include <dirent.h>
#include <time.h>

#include "accel.h"
#include "daemon.h"
#include "fsutil.h"
#include "ids.h"
#include "ipnet.h"
#include "jsonx.h"
#include "log.h"
#include "macro.h"
#include "priv.h"
#include "proc_spawn.h"
#include "store/store_artifacts.h"
#include "store/store_vms.h"
#include "strbuf.h"
#include "vm/agent_client.h"
#include "vm/guestcfg.h"
#include "vm/workdisk.h"
#include "vmm/vmm.h"
#include "vmname.h"
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

static struct vm_lock *vm_lock_acquire(struct vms *v, const char *id) {
        return lockset_acquire(v, &v->locks, id);
}

static void vm_lock_release(struct vms *v, struct vm_lock *l) {
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
DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

static struct watch *watches; /* guarded by handles_mu; one vms per process */

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

static bool tap_in_use(void *ud, const char *name) {
        struct vms *v = ud;
        bool used = false;
        pthread_mutex_lock(&v->handles_mu);
        for (struct vm_handle *h = v->handles; h; h = h->next)
                used |= strcmp(h->tap, name) == 0;
        pthread_mutex_unlock(&v->handles_mu);
        return used;
}

/* Wakes the housekeeping thread (TAP pool refill). */
static void hk_kick(struct vms *v) {
        pthread_mutex_lock(&v->hk_mu);
        v->hk_kicked = true;
        pthread_cond_broadcast(&v->hk_cond);
        pthread_mutex_unlock(&v->hk_mu);
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

static char *kh_patterns(const struct vm_row *r) {
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
        w->next = watches;
        watches = w;
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
                        for (struct watch **p = &watches; *p; p = &(*p)->next)
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
        struct vm_lock *l = vm_lock_acquire(v, id);
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
        vm_lock_release(v, l);
}

/* ---- boot files of an image --------------------------------------------- */

struct boot_files {
        char *kernel, *initramfs, *rootfs, *work_seed, *init_mode;
        uint64_t rootfs_size;
};

static void boot_files_done(struct boot_files *b) {
        free(b->kernel);
        free(b->initramfs);
        free(b->rootfs);
        free(b->work_seed);
        free(b->init_mode);
}

static int resolve_boot(struct vms *v, const char *image_id, struct boot_files *b, vm_error *e) {
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

/* ---- progress ------------------------------------------------------------- */

static void stage(const struct progress *p, const char *name, const char *fmt, ...) _printf_(3, 4);
static void stage(const struct progress *p, const char *name, const char *fmt, ...) {
        _cleanup_free_ char *detail = NULL;
        va_list ap;
        if (!p || !p->stage)
                return;
        if (fmt) {
                va_start(ap, fmt);
                if (vasprintf(&detail, fmt, ap) < 0)
                        detail = NULL;
                va_end(ap);
        }
        p->stage(p->ud, name, detail);
}

static bool cancelled(const struct progress *p) {
        return p && p->cancelled && p->cancelled(p->ud);
}

static bool agent_cancelled(void *ud) {
        return cancelled(ud);
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
static int start_locked(struct vms *v, struct vm_row *r, const struct progress *pr, vm_error *e) {
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
        rc = resolve_boot(v, r->image_id, &bf, e);
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

        stage(pr, "network", "bridge %s, TAP for %s", c->bridge_name, r->guest_ip);
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
                hk_kick(v);
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
        if (cancelled(pr)) {
                rc = vm_fail(e, ART_ERR_FAILED, -ECANCELED, "cancelled");
                goto fail;
        }

        stage(pr, "boot", "%s, %s", vmm, accel);
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

        stage(pr, "wait for agent", NULL);
        struct agent_wait w = { .abort_fd = proc.pidfd, .cancelled = agent_cancelled, .ud = (void *) pr };
        rc = agent_call(p.agent, "health", AGENT_BOOT_TIMEOUT_MS, &w, &health, &err);
        if (rc == 0 && !json_is_true(json_object_get(health, "sshd_listening"))) {
                stage(pr, "wait for ssh", NULL);
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
                stage(pr, "wait for ssh", "sshd already listening");
        bool vmm_gone = rc < 0 && wait_pidfd(proc.pidfd, 0);
        if (proc.pidfd >= 0)
                close(proc.pidfd);
        if (rc < 0) {
                if (cancelled(pr))
                        rc = vm_fail(e, ART_ERR_FAILED, -ECANCELED, "cancelled");
                else if (vmm_gone)
                        rc = vm_fail(e, ART_ERR_FAILED, -EIO, "qemu exited while the guest booted (console: %s)", p.console);
                else
                        rc = vm_fail(e, ART_ERR_FAILED, rc, "%s (console: %s)", err, p.console);
                goto fail;
        }
        store_vm_set_state(v->d->store, r->id, "running", NULL);
        store_vm_touch(v->d->store, r->id);
        boot_files_done(&bf);
        vm_paths_done(&p);
        return 0;

fail:
        if (pid > 0)
                stop_vmm(v, r, &p, pid, false);
        release_runtime(v, r, &p, tap);
        store_vm_set_state(v->d->store, r->id, "error", e->msg);
        log_warn("vm %s: start failed: %s", r->name, strempty(e->msg));
        boot_files_done(&bf);
        vm_paths_done(&p);
        return rc;
}

static bool is_active(const char *state) {
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

static int stop_locked(struct vms *v, struct vm_row *r, bool graceful, vm_error *e) {
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

/* ---- prepare (create) ---------------------------------------------------- */

static char *git_global(const char *key) {
        char *argv[] = { (char *) "git", (char *) "config", (char *) "--global", (char *) "--get", (char *) key, NULL };
        struct spawn_opts o = { .capture_stdout = true, .capture_stderr = true, .timeout_ms = 5000 };
        struct spawn_result res = { 0 };
        char *out = NULL;
        if (spawn_run(argv, &o, &res) == 0 && res.exit_code == 0 && res.out_len > 0) {
                res.out[strcspn(res.out, "\n")] = '\0';
                if (*res.out && !strpbrk(res.out, "\"\\"))
                        out = xstrdup(res.out);
        }
        spawn_result_done(&res);
        return out;
}

/* A [[file_sync]] entry: a file (with the entry's mode), or a directory
 * copied recursively (files keep their own permission bits). Missing host
 * paths are skipped; symlinks are not followed below the top. */
static int sync_path(const char *image, const char *host, const char *guest, unsigned mode, int depth, char **ret_err) {
        struct stat st;
        if ((depth == 0 ? stat(host, &st) : lstat(host, &st)) < 0) {
                if (depth == 0)
                        log_info("file_sync %s skipped: %s", host, strerror(errno));
                return 0;
        }
        if (S_ISREG(st.st_mode)) {
                _cleanup_free_ char *data = NULL;
                size_t len;
                int r = read_file(host, 256u << 20, &data, &len);
                if (r < 0) {
                        *ret_err = xasprintf("reading %s: %s", host, strerror(-r));
                        return r;
                }
                return workdisk_write_file(image, guest, data, len, depth == 0 ? mode : (st.st_mode & 0777), 0, 0,
                                           ret_err);
        }
        if (!S_ISDIR(st.st_mode) || depth > 16)
                return 0;
        _cleanup_(closedirp) DIR *d = opendir(host);
        struct dirent *de;
        int r = 0;
        while (d && r == 0 && (de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                _cleanup_free_ char *h = path_join(host, de->d_name), *g = path_join(guest, de->d_name);
                r = sync_path(image, h, g, mode, depth + 1, ret_err);
        }
        return r;
}

static int prepare_disks(struct vms *v, const struct vm_row *r, const struct boot_files *bf, vm_error *e) {
        const struct config *c = v->d->config;
        struct vm_paths p;
        _cleanup_free_ char *err = NULL, *ak = NULL, *hostpub = NULL, *kh = known_hosts_path(v);
        _cleanup_free_ char *pubpath = xasprintf("%s.pub", c->ssh_key_path), *patterns = kh_patterns(r);
        _cleanup_free_ char *gname = NULL, *gmail = NULL, *hostpub_path = NULL;
        size_t len;
        int rc = 0;

        vm_paths_init(v, r, &p);
        if (mkdir_p(p.dir, 0700) < 0) {
                rc = vm_fail(e, ART_ERR_FAILED, -errno, "cannot create %s: %s", p.dir, strerror(errno));
                goto out;
        }
        if ((rc = ssh_user_key_ensure(c->ssh_key_path, &err)) < 0 ||
            (rc = read_file(pubpath, 1 << 16, &ak, &len)) < 0) {
                rc = vm_fail(e, ART_ERR_FAILED, rc, "ssh key %s: %s", c->ssh_key_path, err ? err : strerror(-rc));
                goto out;
        }
        if ((rc = vm_overlay_create(p.overlay, bf->rootfs, (uint64_t) r->system_overlay_size_bytes, &err)) < 0) {
                rc = vm_fail(e, ART_ERR_FAILED, rc, "system overlay: %s", err);
                goto out;
        }
        if ((rc = workdisk_create(p.work, (uint64_t) r->disk_size_bytes, bf->work_seed, &err)) < 0 ||
            (rc = workdisk_write_file(p.work, "/.ssh/authorized_keys", ak, len, 0600, 0, 0, &err)) < 0) {
                rc = vm_fail(e, ART_ERR_FAILED, rc, "work disk: %s", err);
                goto out;
        }
        gname = git_global("user.name");
        gmail = git_global("user.email");
        if (gname || gmail) {
                struct strbuf sb = STRBUF_INIT;
                strbuf_addstr(&sb, "[user]\n");
                if (gname)
                        strbuf_addf(&sb, "\tname = %s\n", gname);
                if (gmail)
                        strbuf_addf(&sb, "\temail = %s\n", gmail);
                rc = workdisk_write_file(p.work, "/.gitconfig", sb.buf, sb.len, 0644, 0, 0, &err);
                strbuf_release(&sb);
                if (rc < 0) {
                        rc = vm_fail(e, ART_ERR_FAILED, rc, "work disk .gitconfig: %s", err);
                        goto out;
                }
        }
        for (size_t i = 0; i < c->n_file_sync; i++) {
                const struct file_sync_entry *f = &c->file_sync[i];
                /* guest paths are under /root/, which is the work disk's / */
                if ((rc = sync_path(p.work, f->host, f->guest + strlen("/root"), f->mode, 0, &err)) < 0) {
                        rc = vm_fail(e, ART_ERR_FAILED, rc, "file_sync %s -> %s: %s", f->host, f->guest, err);
                        goto out;
                }
        }
        if ((rc = ssh_host_key_ensure(p.hostkey, r->name, &err)) < 0) {
                rc = vm_fail(e, ART_ERR_FAILED, rc, "host key: %s", err);
                goto out;
        }
        hostpub_path = path_join(p.hostkey, "ssh_host_ed25519_key.pub");
        if ((rc = read_file(hostpub_path, 1 << 16, &hostpub, &len)) < 0) {
                rc = vm_fail(e, ART_ERR_FAILED, rc, "reading %s", hostpub_path);
                goto out;
        }
        pthread_mutex_lock(&v->kh_mu);
        rc = known_hosts_set(kh, patterns, hostpub);
        pthread_mutex_unlock(&v->kh_mu);
        if (rc < 0)
                rc = vm_fail(e, ART_ERR_FAILED, rc, "writing %s: %s", kh, strerror(-rc));
out:
        vm_paths_done(&p);
        return rc;
}

/* Removes every trace of a VM whose VMM is not running: files, runtime
 * dir, known_hosts entries, the row. */
static int destroy_locked(struct vms *v, const struct vm_row *r, vm_error *e) {
        struct vm_paths p;
        _cleanup_free_ char *kh = known_hosts_path(v), *patterns = kh_patterns(r), *tap = NULL;
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

/* ---- async create --------------------------------------------------------- */

#define MAX_STAGES 16

struct create_op {
        char op_id[32];
        char *vm_id, *vm_name;
        struct vm_create_req req; /* strings owned */
        struct {
                char *name, *detail;
                int64_t start_ms, end_ms;
        } stages[MAX_STAGES];
        size_t n_stages;
        enum op_state state;
        char *error;
        enum art_err error_kind;
        bool cancel;
        int64_t started_ms, finished_ms;
        struct vms *v;
        struct create_op *next;
};

static void create_op_free(struct create_op *o) {
        free(o->vm_id);
        free(o->vm_name);
        free((char *) o->req.name);
        free((char *) o->req.image);
        for (size_t i = 0; i < o->n_stages; i++) {
                free(o->stages[i].name);
                free(o->stages[i].detail);
        }
        free(o->error);
        free(o);
}

static void op_stage(void *ud, const char *name, const char *detail) {
        struct create_op *o = ud;
        int64_t now = mono_ms_now();
        pthread_mutex_lock(&o->v->creates_mu);
        if (o->n_stages > 0 && strcmp(o->stages[o->n_stages - 1].name, name) == 0) {
                free(o->stages[o->n_stages - 1].detail);
                o->stages[o->n_stages - 1].detail = detail ? xstrdup(detail) : NULL;
        } else if (o->n_stages < MAX_STAGES) {
                if (o->n_stages > 0)
                        o->stages[o->n_stages - 1].end_ms = now;
                o->stages[o->n_stages].name = xstrdup(name);
                o->stages[o->n_stages].detail = detail ? xstrdup(detail) : NULL;
                o->stages[o->n_stages].start_ms = now;
                o->n_stages++;
        }
        pthread_mutex_unlock(&o->v->creates_mu);
        opstate_set_stage(&o->v->d->ops, o->op_id, name);
        log_info("create %s: %s%s%s", strempty(o->vm_name), name, detail ? ": " : "", strempty(detail));
}

static bool op_cancelled(void *ud) {
        struct create_op *o = ud;
        pthread_mutex_lock(&o->v->creates_mu);
        bool c = o->cancel || o->v->stopping;
        pthread_mutex_unlock(&o->v->creates_mu);
        return c;
}

static void op_bytes(void *ud, const char *stage_name, uint64_t done, uint64_t total) {
        (void) ud;
        (void) stage_name;
        (void) done;
        (void) total;
}

static int default_image(struct vms *v, const char *requested, char **ret) {
        *ret = xstrdup(requested && *requested ? requested : v->d->config->default_image_name);
        return 0;
}

/* The image row for `ref`, pulling it from the catalog when it is a catalog
 * name not yet present. */
static int ensure_image(struct vms *v, const char *ref, const struct progress *pr, struct image_row *ret, vm_error *e) {
        int r = store_image_get(v->d->store, ref, ret);
        if (r == 0)
                return 0;
        stage(pr, "pull image", "%s from the image catalog", ref);
        _cleanup_json_ json_t *res = NULL;
        r = image_pull(&v->d->artifacts, ref, NULL, pr, &res, e);
        if (r < 0)
                return r;
        r = store_image_get(v->d->store, ref, ret);
        return r < 0 ? vm_fail(e, ART_ERR_FAILED, r, "image '%s' vanished after its pull", ref) : 0;
}

static bool image_known(struct vms *v, const char *ref) {
        struct image_row img;
        if (store_image_get(v->d->store, ref, &img) == 0) {
                image_row_done(&img);
                return true;
        }
        _cleanup_json_ json_t *cat = image_catalog();
        _cleanup_json_ json_t *ent = catalog_find(cat, "images", ref);
        return ent != NULL;
}

static void *create_main(void *arg) {
        struct create_op *o = arg;
        struct vms *v = o->v;
        struct progress pr = { op_stage, op_bytes, op_cancelled, o };
        const struct config *c = v->d->config;
        vm_error e = { 0 };
        struct image_row img = { 0 };
        struct boot_files bf = { 0 };
        struct vm_row row = { 0 };
        struct vm_lock *l = NULL;
        bool inserted = false;
        int rc;

        log_set_op_id(o->op_id);
        _cleanup_free_ char *image_ref = NULL;
        default_image(v, o->req.image, &image_ref);

        stage(&pr, "resolve image", "%s", image_ref);
        rc = ensure_image(v, image_ref, &pr, &img, &e);
        if (rc < 0)
                goto done;
        rc = resolve_boot(v, img.id, &bf, &e);
        if (rc < 0)
                goto done;
        if (cancelled(&pr)) {
                rc = vm_fail(&e, ART_ERR_FAILED, -ECANCELED, "cancelled");
                goto done;
        }
        uint64_t overlay = o->req.system_overlay_size_bytes ? (uint64_t) o->req.system_overlay_size_bytes
                                                            : c->system_overlay_size_bytes;
        if (overlay < bf.rootfs_size) {
                if (o->req.system_overlay_size_bytes) {
                        rc = vm_fail(&e, ART_ERR_BAD_REQUEST, -EINVAL,
                                  "system overlay size %llu bytes is smaller than image '%s' (%llu bytes)",
                                  (unsigned long long) overlay, img.name, (unsigned long long) bf.rootfs_size);
                        goto done;
                }
                overlay = bf.rootfs_size;
        }

        /* reservation: the VM's lock first (order), then create_mu */
        l = vm_lock_acquire(v, o->vm_id);
        pthread_mutex_lock(&v->create_mu);
        {
                struct vm_row *rows = NULL, other;
                size_t n = 0;
                if (store_vm_get(v->d->store, o->vm_name, &other) == 0) {
                        vm_row_done(&other);
                        rc = vm_fail(&e, ART_ERR_EXISTS, -EEXIST, "vm name '%s' is already in use", o->vm_name);
                } else if ((rc = store_vm_list(v->d->store, &rows, &n)) < 0) {
                        rc = vm_fail(&e, ART_ERR_FAILED, rc, "listing vms");
                } else {
                        const char **used = xcalloc(n + 1, sizeof(char *));
                        for (size_t i = 0; i < n; i++)
                                used[i] = rows[i].guest_ip;
                        struct ipv4_subnet net;
                        _cleanup_free_ char *err = NULL;
                        uint32_t a;
                        char ip[16], mac[18];
                        if (ipv4_subnet_init(&net, c->bridge_ip, (int) c->cidr, &err) < 0)
                                rc = vm_fail(&e, ART_ERR_FAILED, -EINVAL, "%s", err);
                        else if (ipv4_alloc_lowest(&net, used, n, &a) < 0)
                                rc = vm_fail(&e, ART_ERR_FAILED, -ENOSPC, "no free guest address left in %s/%d", c->bridge_ip,
                                          (int) c->cidr);
                        else {
                                ipv4_format(a, ip);
                                mac_for_ipv4(a, mac);
                                _cleanup_free_ char *dir = path_join(v->d->layout.vms_dir, o->vm_id);
                                row = (struct vm_row) {
                                        .id = xstrdup(o->vm_id), .name = xstrdup(o->vm_name), .image_id = xstrdup(img.id),
                                        .state = xstrdup("created"), .vcpu = o->req.vcpu ? o->req.vcpu : c->vcpu,
                                        .memory_mib = o->req.memory_mib ? o->req.memory_mib : c->memory_mib,
                                        .disk_size_bytes = o->req.disk_size_bytes ? o->req.disk_size_bytes
                                                                                  : (int64_t) c->disk_size_bytes,
                                        .system_overlay_size_bytes = (int64_t) overlay, .nat = o->req.nat,
                                        .guest_ip = xstrdup(ip), .mac = xstrdup(mac), .vm_dir = TAKE_PTR(dir),
                                };
                                rc = store_vm_insert(v->d->store, &row);
                                if (rc < 0)
                                        rc = vm_fail(&e, rc == -EEXIST ? ART_ERR_EXISTS : ART_ERR_FAILED, rc,
                                                  rc == -EEXIST ? "vm name '%s' is already in use" : "storing vm '%s'",
                                                  o->vm_name);
                                else
                                        inserted = true;
                        }
                        free(used);
                        vm_rows_free(rows, n);
                }
        }
        pthread_mutex_unlock(&v->create_mu);
        if (rc < 0)
                goto done;

        stage(&pr, "prepare disks", "%s overlay on %s, work disk", img.name, row.guest_ip);
        rc = prepare_disks(v, &row, &bf, &e);
        if (rc < 0)
                goto done;
        if (cancelled(&pr)) {
                rc = vm_fail(&e, ART_ERR_FAILED, -ECANCELED, "cancelled");
                goto done;
        }
        if (!o->req.no_start) {
                rc = start_locked(v, &row, &pr, &e);
                if (rc < 0 && cancelled(&pr))
                        rc = vm_fail(&e, ART_ERR_FAILED, -ECANCELED, "cancelled");
        }

done:
        if (rc < 0 && inserted) {
                /* Cancelled, or failed before the VM could boot: leave nothing.
                 * A failed boot keeps the VM (state error) for `vm logs`. */
                struct vm_row cur;
                bool boot_failed = store_vm_get(v->d->store, o->vm_id, &cur) == 0 && strcmp(cur.state, "error") == 0;
                if (boot_failed)
                        vm_row_done(&cur);
                if (rc == -ECANCELED || !boot_failed) {
                        vm_error e2 = { 0 };
                        if (destroy_locked(v, &row, &e2) < 0)
                                log_warn("create %s: cleanup: %s", o->vm_name, strempty(e2.msg));
                        art_error_done(&e2);
                }
        }
        if (l)
                vm_lock_release(v, l);
        pthread_mutex_lock(&v->creates_mu);
        int64_t now = mono_ms_now();
        if (o->n_stages > 0)
                o->stages[o->n_stages - 1].end_ms = now;
        o->state = rc == 0 ? OP_DONE : rc == -ECANCELED ? OP_CANCELLED : OP_FAILED;
        o->error = rc < 0 ? xstrdup(strempty(e.msg)) : NULL;
        o->error_kind = e.kind;
        o->finished_ms = now;
        pthread_mutex_unlock(&v->creates_mu);
        opstate_finish(&v->d->ops, o->op_id, o->state, o->error);
        if (rc == 0)
                log_info("create %s: done", o->vm_name);
        else
                log_warn("create %s: %s", o->vm_name, strempty(e.msg));
        art_error_done(&e);
        image_row_done(&img);
        boot_files_done(&bf);
        vm_row_done(&row);
        pthread_mutex_lock(&v->creates_mu);
        v->create_workers--;
        pthread_cond_broadcast(&v->creates_cond);
        pthread_mutex_unlock(&v->creates_mu);
        return NULL;
}

int vm_create_begin(struct vms *v, const char *op_id, const struct vm_create_req *req, json_t **ret, vm_error *e) {
        const struct config *c = v->d->config;
        _cleanup_free_ char *name = NULL, *err = NULL, *image = NULL;

        if (req->vcpu_set && req->vcpu <= 0)
                return vm_fail(e, ART_ERR_BAD_REQUEST, -EINVAL, "vcpu must be > 0 (got %lld)", (long long) req->vcpu);
        if (req->memory_set && req->memory_mib <= 0)
                return vm_fail(e, ART_ERR_BAD_REQUEST, -EINVAL, "memory must be > 0 (got %lld MiB)",
                            (long long) req->memory_mib);
        if (req->vcpu > 64)
                return vm_fail(e, ART_ERR_BAD_REQUEST, -EINVAL, "vcpu %lld is more than 64", (long long) req->vcpu);
        if (req->memory_set && req->memory_mib < 128)
                return vm_fail(e, ART_ERR_BAD_REQUEST, -EINVAL, "memory %lld MiB is below the 128 MiB minimum",
                            (long long) req->memory_mib);
        if (req->disk_size_bytes < 0 || (uint64_t) req->disk_size_bytes > CONFIG_DISK_SIZE_MAX)
                return vm_fail(e, ART_ERR_BAD_REQUEST, -EINVAL, "disk size must be between 1 byte and 128 GiB");
        if (req->system_overlay_size_bytes < 0 || (uint64_t) req->system_overlay_size_bytes > CONFIG_DISK_SIZE_MAX)
                return vm_fail(e, ART_ERR_BAD_REQUEST, -EINVAL, "system overlay size must be between 1 byte and 128 GiB");
        if (req->name && *req->name) {
                if (vm_name_validate(req->name, &err) < 0)
                        return vm_fail(e, ART_ERR_BAD_REQUEST, -EINVAL, "%s", err);
                name = xstrdup(req->name);
        }
        default_image(v, req->image, &image);
        if (!image_known(v, image))
                return vm_fail(e, ART_ERR_NOT_FOUND, -ENOENT,
                            "image '%s' not found locally or in the catalog (see: banger image list --available)", image);
        if (v->stopping)
                return vm_fail(e, ART_ERR_FAILED, -ESHUTDOWN, "the daemon is shutting down");

        /* name: given (must be free now; the reservation re-checks) or generated */
        pthread_mutex_lock(&v->create_mu);
        struct vm_row other;
        if (name && store_vm_get(v->d->store, name, &other) == 0) {
                bool exact = strcmp(other.name, name) == 0;
                vm_row_done(&other);
                if (exact) {
                        pthread_mutex_unlock(&v->create_mu);
                        return vm_fail(e, ART_ERR_EXISTS, -EEXIST, "vm name '%s' is already in use", name);
                }
        }
        for (int i = 0; !name && i < 100; i++) {
                char *cand = vm_name_generate();
                if (store_vm_get(v->d->store, cand, &other) == 0) {
                        vm_row_done(&other);
                        free(cand);
                } else
                        name = cand;
        }
        pthread_mutex_unlock(&v->create_mu);
        if (!name)
                return vm_fail(e, ART_ERR_FAILED, -EEXIST, "could not generate a free vm name");

        struct create_op *o = xcalloc(1, sizeof(*o));
        snprintf(o->op_id, sizeof(o->op_id), "%s", op_id);
        o->v = v;
        o->vm_id = vm_id_generate();
        o->vm_name = TAKE_PTR(name);
        o->req = *req;
        o->req.name = xstrdup(o->vm_name);
        o->req.image = xstrdup(image);
        o->state = OP_RUNNING;
        o->started_ms = mono_ms_now();
        opstate_begin(&v->d->ops, op_id, "vm.create", o->vm_name);

        pthread_mutex_lock(&v->creates_mu);
        o->next = v->creates;
        v->creates = o;
        v->create_workers++;
        pthread_mutex_unlock(&v->creates_mu);

        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int r = pthread_create(&t, &attr, create_main, o);
        pthread_attr_destroy(&attr);
        if (r != 0) {
                pthread_mutex_lock(&v->creates_mu);
                o->state = OP_FAILED;
                o->error = xstrdup("cannot start a worker thread");
                v->create_workers--;
                pthread_mutex_unlock(&v->creates_mu);
                opstate_finish(&v->d->ops, op_id, OP_FAILED, o->error);
                return vm_fail(e, ART_ERR_FAILED, -r, "cannot start a worker thread");
        }
        (void) c;
        *ret = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I}", "op_id", op_id, "id", o->vm_id, "name", o->req.name, "vcpu",
                         (json_int_t) (req->vcpu ? req->vcpu : c->vcpu), "memory_mib",
                         (json_int_t) (req->memory_mib ? req->memory_mib : c->memory_mib), "disk_size_bytes",
                         (json_int_t) (req->disk_size_bytes ? req->disk_size_bytes : (int64_t) c->disk_size_bytes));
        json_object_set_new(*ret, "image", json_string(image));
        return 0;
}

static struct create_op *find_op(struct vms *v, const char *op_id) {
        for (struct create_op *o = v->creates; o; o = o->next)
                if (strcmp(o->op_id, op_id) == 0)
                        return o;
        return NULL;
}

/* Drops finished create ops after 10 minutes (creates_mu held). */
static void prune_ops(struct vms *v) {
        int64_t now = mono_ms_now();
        for (struct create_op **p = &v->creates; *p;) {
                struct create_op *o = *p;
                if (o->state != OP_RUNNING && now - o->finished_ms > 600000) {
                        *p = o->next;
                        create_op_free(o);
                } else
                        p = &o->next;
        }
}

int vm_create_status(struct vms *v, const char *op_id, json_t **ret, vm_error *e) {
        _cleanup_free_ char *vm_id = NULL;
        pthread_mutex_lock(&v->creates_mu);
        prune_ops(v);
        struct create_op *o = find_op(v, op_id);
        if (!o) {
                pthread_mutex_unlock(&v->creates_mu);
                return vm_fail(e, ART_ERR_NOT_FOUND, -ENOENT, "no create operation %s", op_id);
        }
        int64_t now = mono_ms_now();
        json_t *stages = json_array();
        for (size_t i = 0; i < o->n_stages; i++) {
                int64_t end = o->stages[i].end_ms ? o->stages[i].end_ms : now;
                json_t *s = json_pack("{s:s, s:I, s:b}", "name", o->stages[i].name, "elapsed_ms",
                                      (json_int_t) (end - o->stages[i].start_ms), "done", o->stages[i].end_ms != 0);
                if (o->stages[i].detail)
                        json_object_set_new(s, "detail", json_string(o->stages[i].detail));
                json_array_append_new(stages, s);
        }
        *ret = json_pack("{s:s, s:s, s:s, s:s, s:b, s:o, s:I}", "op_id", o->op_id, "id", o->vm_id, "name", o->vm_name,
                         "state", op_state_to_string(o->state), "done", o->state != OP_RUNNING, "stages", stages,
                         "elapsed_ms", (json_int_t) ((o->finished_ms ? o->finished_ms : now) - o->started_ms));
        if (o->error) {
                static const char *const kinds[] = { "failed", "not_found", "exists", "bad_request" };
                json_object_set_new(*ret, "error", json_string(o->error));
                json_object_set_new(*ret, "error_kind",
                                    json_string(o->error_kind <= ART_ERR_BAD_REQUEST ? kinds[o->error_kind] : "failed"));
        }
        bool done = o->state == OP_DONE;
        vm_id = xstrdup(o->vm_id);
        pthread_mutex_unlock(&v->creates_mu);
        if (done)
                json_object_set_new(*ret, "vm", vm_json_by_id(v, vm_id));
        return 0;
}

int vm_create_cancel(struct vms *v, const char *op_id, json_t **ret, vm_error *e) {
        pthread_mutex_lock(&v->creates_mu);
        struct create_op *o = find_op(v, op_id);
        bool running = o && o->state == OP_RUNNING;
        if (o)
                o->cancel = true;
        pthread_mutex_unlock(&v->creates_mu);
        if (!o)
                return vm_fail(e, ART_ERR_NOT_FOUND, -ENOENT, "no create operation %s", op_id);
        opstate_request_cancel(&v->d->ops, op_id);
        *ret = json_pack("{s:s, s:b}", "op_id", op_id, "cancel_requested", running);
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
        struct vm_lock *l = vm_lock_acquire(v, first.id);
        r = store_vm_get(v->d->store, first.id, row);
        vm_row_done(&first);
        if (r < 0) {
                vm_lock_release(v, l);
                return vm_fail(e, ART_ERR_NOT_FOUND, r, "vm '%s' not found", ref);
        }
        *ret_lock = l;
        return 0;
}

static bool create_in_flight(struct vms *v, const char *id) {
        bool busy = false;
        pthread_mutex_lock(&v->creates_mu);
        for (struct create_op *o = v->creates; o; o = o->next)
                if (o->state == OP_RUNNING && strcmp(o->vm_id, id) == 0)
                        busy = true;
        pthread_mutex_unlock(&v->creates_mu);
        return busy;
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

int vm_start(struct vms *v, const char *ref, const struct progress *p, json_t **ret, vm_error *e) {
        struct vm_row r;
        struct vm_lock *l;
        int rc = lock_vm(v, ref, &r, &l, e);
        if (rc < 0)
                return rc;
        if (is_active(r.state)) {
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
        if (create_in_flight(v, r.id)) {
                rc = vm_fail(e, ART_ERR_BAD_REQUEST, -EBUSY, "vm %s is still being created", r.name);
                goto out;
        }
        rc = start_locked(v, &r, p, e);
        if (rc == 0)
                *ret = vm_json_by_id(v, r.id);
out:
        vm_lock_release(v, l);
        vm_row_done(&r);
        return rc;
}

int vm_stop(struct vms *v, const char *ref, const struct progress *p, json_t **ret, vm_error *e) {
        struct vm_row r;
        struct vm_lock *l;
        int rc = lock_vm(v, ref, &r, &l, e);
        if (rc < 0)
                return rc;
        stage(p, "stop", "%s", r.name);
        rc = stop_locked(v, &r, true, e);
        if (rc == 0)
                *ret = vm_json_by_id(v, r.id);
        vm_lock_release(v, l);
        vm_row_done(&r);
        return rc;
}

int vm_restart(struct vms *v, const char *ref, const struct progress *p, json_t **ret, vm_error *e) {
        struct vm_row r;
        struct vm_lock *l;
        int rc = lock_vm(v, ref, &r, &l, e);
        if (rc < 0)
                return rc;
        stage(p, "stop", "%s", r.name);
        rc = stop_locked(v, &r, true, e);
        if (rc == 0)
                rc = start_locked(v, &r, p, e);
        if (rc == 0)
                *ret = vm_json_by_id(v, r.id);
        vm_lock_release(v, l);
        vm_row_done(&r);
        return rc;
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
        vm_lock_release(v, l);
        vm_row_done(&r);
        return rc;
}

int vm_delete(struct vms *v, const char *ref, const struct progress *p, json_t **ret, vm_error *e) {
        struct vm_row r;
        struct vm_lock *l;
        int rc = lock_vm(v, ref, &r, &l, e);
        if (rc < 0)
                return rc;
        if (create_in_flight(v, r.id)) {
                rc = vm_fail(e, ART_ERR_BAD_REQUEST, -EBUSY, "vm %s is still being created (cancel it first)", r.name);
                goto out;
        }
        if (is_active(r.state)) {
                stage(p, "stop", "%s", r.name);
                rc = stop_locked(v, &r, true, e);
                if (rc < 0)
                        goto out;
        }
        stage(p, "delete", "%s", r.name);
        rc = destroy_locked(v, &r, e);
        if (rc == 0)
                *ret = json_pack("{s:s, s:s, s:b}", "id", r.id, "name", r.name, "deleted", true);
out:
        vm_lock_release(v, l);
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
        if (is_active(r.state)) {
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
        vm_lock_release(v, l);
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

/* ---- stats and the stale sweep ----------------------------------------------- */

struct vm_stats {
        char id[17];
        json_t *last;                        /* the JSON vm stats serves */
        uint64_t guest_total, guest_idle;    /* previous agent sample (jiffies) */
        uint64_t host_cpu_ticks;             /* previous VMM utime+stime */
        int64_t at_ms;                       /* when that sample was taken */
        struct vm_stats *next;
};

static uint64_t allocated(const char *path) {
        struct stat st;
        return stat(path, &st) == 0 ? (uint64_t) st.st_blocks * 512 : 0;
}

/* utime+stime (clock ticks) and VmRSS (KiB) of pid. */
static void proc_usage(pid_t pid, uint64_t *ret_ticks, uint64_t *ret_rss_kib) {
        _cleanup_free_ char *p = xasprintf("/proc/%d/stat", (int) pid), *q = xasprintf("/proc/%d/status", (int) pid);
        _cleanup_free_ char *text = NULL, *status = NULL;
        size_t len;
        *ret_ticks = *ret_rss_kib = 0;
        if (read_file(p, 1 << 16, &text, &len) == 0) {
                const char *rp = strrchr(text, ')'); /* after "(comm)": state is field 3, utime 14, stime 15 */
                unsigned long long ut = 0, st = 0;
                if (rp && sscanf(rp + 2, "%*c %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu", &ut, &st) == 2)
                        *ret_ticks = ut + st;
        }
        if (read_file(q, 1 << 16, &status, &len) == 0) {
                const char *r = strstr(status, "VmRSS:");
                unsigned long long kib = 0;
                if (r && sscanf(r, "VmRSS: %llu", &kib) == 1)
                        *ret_rss_kib = kib;
        }
}

/* One sample of a running VM, with rates against the previous one. Called
 * with the VM's lock held. */
static json_t *collect_stats_locked(struct vms *v, const struct vm_row *r, pid_t pid) {
        struct vm_paths p;
        vm_paths_init(v, r, &p);
        int64_t now = mono_ms_now();
        long hz = sysconf(_SC_CLK_TCK);
        uint64_t ticks, rss;
        proc_usage(pid, &ticks, &rss);
        _cleanup_json_ json_t *g = NULL;
        _cleanup_free_ char *err = NULL;
        struct agent_wait w = { .abort_fd = -1 };
        int ar = agent_call(p.agent, "stats", 3000, &w, &g, &err);

        pthread_mutex_lock(&v->stats_mu);
        struct vm_stats *s;
        for (s = v->stats; s; s = s->next)
                if (strcmp(s->id, r->id) == 0)
                        break;
        if (!s) {
                s = xcalloc(1, sizeof(*s));
                snprintf(s->id, sizeof(s->id), "%s", r->id);
                s->next = v->stats;
                v->stats = s;
        }
        _cleanup_free_ char *at = now_rfc3339();
        json_t *host = json_pack("{s:i, s:I, s:I}", "pid", (int) pid, "rss_kib", (json_int_t) rss, "cpu_time_ms",
                                 (json_int_t) (hz > 0 ? ticks * 1000 / (uint64_t) hz : 0));
        if (s->at_ms && now > s->at_ms && ticks >= s->host_cpu_ticks && hz > 0)
                json_object_set_new(host, "cpu_percent",
                                    json_real(100.0 * (double) (ticks - s->host_cpu_ticks) * 1000.0 / (double) hz /
                                              (double) (now - s->at_ms)));
        json_t *guest = json_object();
        if (ar == 0) {
                json_t *cpu = json_object_get(g, "cpu"), *mem = json_object_get(g, "memory");
                uint64_t total = (uint64_t) json_integer_value(json_object_get(cpu, "total"));
                uint64_t idle = (uint64_t) json_integer_value(json_object_get(cpu, "idle"));
                json_object_set(guest, "memory", mem);
                json_object_set_new(guest, "ncpu", json_integer(json_integer_value(json_object_get(cpu, "ncpu"))));
                if (s->guest_total && total > s->guest_total && idle >= s->guest_idle)
                        json_object_set_new(guest, "cpu_percent",
                                            json_real(100.0 * (1.0 - (double) (idle - s->guest_idle) /
                                                                         (double) (total - s->guest_total))));
                s->guest_total = total;
                s->guest_idle = idle;
        } else
                json_object_set_new(guest, "error", json_string(strempty(err)));
        s->host_cpu_ticks = ticks;
        s->at_ms = now;
        json_decref(s->last);
        s->last = json_pack("{s:s, s:s, s:s, s:o, s:o, s:{s:I, s:I}}", "id", r->id, "name", r->name, "collected_at", at,
                            "guest", guest, "host", host, "disk", "overlay_bytes", (json_int_t) allocated(p.overlay),
                            "work_bytes", (json_int_t) allocated(p.work));
        json_t *copy = json_deep_copy(s->last);
        pthread_mutex_unlock(&v->stats_mu);
        vm_paths_done(&p);
        return copy;
}

static void stats_drop(struct vms *v, const char *id) {
        pthread_mutex_lock(&v->stats_mu);
        for (struct vm_stats **p = &v->stats; *p; p = &(*p)->next)
                if (strcmp((*p)->id, id) == 0) {
                        struct vm_stats *s = *p;
                        *p = s->next;
                        json_decref(s->last);
                        free(s);
                        break;
                }
        pthread_mutex_unlock(&v->stats_mu);
}

int vm_stats(struct vms *v, const char *ref, json_t **ret, vm_error *e) {
        struct vm_row r;
        int rc = vms_get_row(v, ref, &r, e);
        if (rc < 0)
                return rc;
        pthread_mutex_lock(&v->stats_mu);
        for (struct vm_stats *s = v->stats; s; s = s->next)
                if (strcmp(s->id, r.id) == 0 && s->last)
                        *ret = json_deep_copy(s->last);
        pthread_mutex_unlock(&v->stats_mu);
        if (!*ret) {
                struct vm_lock *l = vm_lock_acquire(v, r.id);
                struct vm_paths p;
                _cleanup_free_ char *tap = NULL;
                vm_paths_init(v, &r, &p);
                pid_t pid = vms_live_pid(v, &r, &p, &tap);
                vm_paths_done(&p);
                if (pid > 0)
                        *ret = collect_stats_locked(v, &r, pid);
                else
                        rc = vm_fail(e, ART_ERR_BAD_REQUEST, -ESRCH, "vm %s is not running (state %s)", r.name, r.state);
                vm_lock_release(v, l);
        }
        vm_row_done(&r);
        return rc;
}

static int64_t parse_time_ms(const char *s) {
        struct tm tm = { 0 };
        if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm))
                return 0;
        return (int64_t) timegm(&tm) * 1000;
}

static void poll_stats(struct vms *v) {
        struct vm_row *rows;
        size_t n;
        if (store_vm_list(v->d->store, &rows, &n) < 0)
                return;
        for (size_t i = 0; i < n && !v->stopping; i++) {
                if (strcmp(rows[i].state, "running") != 0) {
                        stats_drop(v, rows[i].id);
                        continue;
                }
                struct vm_lock *l = vm_lock_acquire(v, rows[i].id);
                struct vm_row cur;
                if (store_vm_get(v->d->store, rows[i].id, &cur) == 0) {
                        struct vm_paths p;
                        _cleanup_free_ char *tap = NULL;
                        vm_paths_init(v, &cur, &p);
                        pid_t pid = strcmp(cur.state, "running") == 0 ? vms_live_pid(v, &cur, &p, &tap) : 0;
                        vm_paths_done(&p);
                        if (pid > 0)
                                json_decref(collect_stats_locked(v, &cur, pid));
                        vm_row_done(&cur);
                }
                vm_lock_release(v, l);
        }
        vm_rows_free(rows, n);
}

/* Stops running VMs idle (no SSH/exec/RPC activity, no start) for longer
 * than auto_stop_stale_after. */
static void sweep_stale(struct vms *v) {
        uint64_t limit = v->d->config->auto_stop_stale_after_ms;
        struct vm_row *rows;
        size_t n;
        if (!limit || store_vm_list(v->d->store, &rows, &n) < 0)
                return;
        for (size_t i = 0; i < n && !v->stopping; i++) {
                if (strcmp(rows[i].state, "running") != 0)
                        continue;
                struct vm_lock *l = vm_lock_acquire(v, rows[i].id);
                struct vm_row cur;
                if (store_vm_get(v->d->store, rows[i].id, &cur) == 0) {
                        int64_t touched = parse_time_ms(cur.last_touched_at), updated = parse_time_ms(cur.updated_at);
                        int64_t last = touched > updated ? touched : updated, idle = wall_ms() - last;
                        if (strcmp(cur.state, "running") == 0 && last > 0 && idle > (int64_t) limit) {
                                vm_error e = { 0 };
                                log_info("vm %s: idle for %lld s (auto_stop_stale_after is %llu s): stopping it", cur.name,
                                         (long long) (idle / 1000), (unsigned long long) (limit / 1000));
                                if (stop_locked(v, &cur, true, &e) < 0)
                                        log_warn("vm %s: auto-stop failed: %s", cur.name, strempty(e.msg));
                                else
                                        stats_drop(v, cur.id);
                                art_error_done(&e);
                        }
                        vm_row_done(&cur);
                }
                vm_lock_release(v, l);
        }
        vm_rows_free(rows, n);
}

static void *hk_main(void *arg) {
        struct vms *v = arg;
        const struct config *c = v->d->config;
        int64_t stats_every = (int64_t) c->stats_poll_interval_ms;
        int64_t limit = (int64_t) c->auto_stop_stale_after_ms;
        int64_t sweep_every = limit ? (limit / 3 < 1000 ? 1000 : limit / 3 > 60000 ? 60000 : limit / 3) : 0;
        int64_t next_stats = mono_ms_now() + stats_every, next_sweep = mono_ms_now() + sweep_every;
        int64_t next_refill_retry = 0;
        log_set_op_id("housekeeping");
        pthread_mutex_lock(&v->hk_mu);
        v->hk_kicked = v->pool.target > 0;
        while (!v->stopping) {
                if (v->hk_kicked) {
                        v->hk_kicked = false;
                        pthread_mutex_unlock(&v->hk_mu);
                        if (!tap_pool_refill(&v->pool, tap_in_use, v))
                                next_refill_retry = mono_ms_now() + 5000;
                        pthread_mutex_lock(&v->hk_mu);
                        continue;
                }
                int64_t now = mono_ms_now();
                if (next_refill_retry && now >= next_refill_retry) {
                        next_refill_retry = 0;
                        v->hk_kicked = true;
                        continue;
                }
                int64_t wake = next_stats;
                if (next_refill_retry && next_refill_retry < wake)
                        wake = next_refill_retry;
                if (sweep_every && next_sweep < wake)
                        wake = next_sweep;
                if (wake > now) {
                        struct timespec ts;
                        clock_gettime(CLOCK_MONOTONIC, &ts);
                        int64_t ns = (int64_t) ts.tv_nsec + (wake - now) % 1000 * 1000000;
                        ts.tv_sec += (time_t) ((wake - now) / 1000 + ns / 1000000000);
                        ts.tv_nsec = (long) (ns % 1000000000);
                        pthread_cond_timedwait(&v->hk_cond, &v->hk_mu, &ts);
                        continue;
                }
                pthread_mutex_unlock(&v->hk_mu);
                if (now >= next_stats) {
                        poll_stats(v);
                        next_stats = mono_ms_now() + stats_every;
                }
                if (sweep_every && now >= next_sweep) {
                        sweep_stale(v);
                        next_sweep = mono_ms_now() + sweep_every;
                }
                pthread_mutex_lock(&v->hk_mu);
        }
        pthread_mutex_unlock(&v->hk_mu);
        return NULL;
}

int vms_start_housekeeping(struct vms *v, char **ret_err) {
        const struct config *c = v->d->config;
        tap_pool_seed(&v->pool, tap_in_use, v);
        if (strcmp(c->dns_listen, "off") != 0 && priv_link_exists(c->bridge_name)) {
                _cleanup_free_ char *err = NULL;
                int dr = priv_dns_route(c->bridge_name, c->dns_listen, &err);
                if (dr < 0)
                        log_warn("routing ~vm to %s on %s with resolvectl: %s", c->dns_listen, c->bridge_name, err);
                else
                        v->dns_routed = dr == 0;
        }
        if (pthread_create(&v->hk_thread, NULL, hk_main, v) != 0) {
                *ret_err = xstrdup("vm service: cannot start the housekeeping thread");
                return -EAGAIN;
        }
        v->hk_started = true;
        return 0;
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
                struct vm_lock *l = vm_lock_acquire(v, r->id);
                struct vm_paths p;
                _cleanup_free_ char *tap = NULL;
                pid_t pid;
                vm_paths_init(v, r, &p);
                read_handles(r, &p, &pid, &tap);
                if (pid <= 0 || !vmm_qemu.owns(pid, v->d->config->qemu_bin, r->id))
                        pid = is_active(r->state) ? find_vmm(v, r->id) : 0;
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
                } else if (is_active(r->state) || r->teardown_json) {
                        release_runtime(v, r, &p, tap);
                        if (is_active(r->state))
                                store_vm_set_state(v->d->store, r->id, "stopped", NULL);
                        log_info("reconcile: vm %s is not running; cleaned up and marked stopped", r->name);
                }
                vm_paths_done(&p);
                vm_lock_release(v, l);
        }
        vm_rows_free(rows, n);
}

void vms_done(struct vms *v) {
        if (v->dns_routed)
                priv_dns_unroute(v->d->config->bridge_name);
        pthread_mutex_lock(&v->hk_mu);
        v->stopping = true;
        pthread_cond_broadcast(&v->hk_cond);
        pthread_mutex_unlock(&v->hk_mu);
        if (v->hk_started)
                pthread_join(v->hk_thread, NULL);
        pthread_mutex_lock(&v->creates_mu);
        for (struct create_op *o = v->creates; o; o = o->next)
                o->cancel = true;
        while (v->create_workers > 0)
                pthread_cond_wait(&v->creates_cond, &v->creates_mu);
        while (v->creates) {
                struct create_op *o = v->creates;
                v->creates = o->next;
                create_op_free(o);
        }
        pthread_mutex_unlock(&v->creates_mu);
        if (v->watcher_started) {
                uint64_t one = 1;
                if (write(v->wake_fd, &one, sizeof(one)) < 0)
                        log_warn("vm service: waking the watcher: %s", strerror(errno));
                pthread_join(v->watcher, NULL);
        }
        while (watches) {
                struct watch *w = watches;
                watches = w->next;
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
        while (v->stats) {
                struct vm_stats *st = v->stats;
                v->stats = st->next;
                json_decref(st->last);
                free(st);
        }
        pthread_mutex_destroy(&v->hk_mu);
        pthread_mutex_destroy(&v->stats_mu);
        tap_pool_done(&v->pool);
        pthread_cond_destroy(&v->hk_cond);
}
