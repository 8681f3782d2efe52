/* SPDX-License-Identifier: MIT */
/*
 * Templates for warm starts (docs/ARCHITECTURE.md, "Warm start"): a guest
 * booted without any identity (no address, no hostname, no host key, the
 * work and repo disks attached, blank and never mounted), paused once its
 * agent answers, its device state, RAM and root overlay saved under
 *   <state>/templates/<key>/         state, ram, root.qcow2, meta.json, console.log
 * Its RAM is a file (`ram`, mapped shared while it runs, so the saved state
 * leaves it out); a VM resumed from it maps that file privately (pages are
 * read when the guest touches them and copied when it writes them: a
 * restore moves no RAM, and warm VMs share the pages they only read).
 *   <state>/templates/.building-<key>/   while one is built (pid: its VMM)
 * The key hashes everything the saved state depends on: the image (id, rootfs
 * size and mtime), kernel and initramfs (path, mtime: banger-init's build is
 * in the initramfs's name), init mode, vCPUs, memory, work disk and overlay
 * sizes (the guest read the disks' capacities), accelerator, the VMM binary,
 * the host TSC frequency and banger's version. A new VM whose key matches
 * resumes from it (start.c) and is re-identified (identity.c).
 *
 * Builds run in the background, one thread each (at most TPL_MAX_BUILDS),
 * their VMM at a lower priority; a failed key is not tried again for
 * TPL_RETRY_MS. A daemon that dies mid-build leaves a .building dir: its VMM
 * is killed and the dir removed at the next start (vms_tpl_sweep).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "jsonx.h"
#include "log.h"
#include "sha256.h"
#include "store/store_artifacts.h"
#include "strbuf.h"
#include "testhook.h"
#include "version.h"
#include "vms_internal.h"

#define TPL_BUILDING ".building-"
#define TPL_MAX_BUILDS 2
#define TPL_RETRY_MS (10 * 60 * 1000)
#define TPL_FAILED_MAX 8

struct vm_templates {
        pthread_mutex_t mu; /* a leaf: nothing else is taken while it is held */
        pthread_cond_t cond;
        char building[TPL_MAX_BUILDS][65];
        int builds;
        struct {
                char key[65];
                int64_t at;
        } failed[TPL_FAILED_MAX];
        size_t n_failed;
};

void vms_tpl_init(struct vms *v) {
        v->tpl = xcalloc(1, sizeof(*v->tpl));
        pthread_mutex_init(&v->tpl->mu, NULL);
        pthread_cond_init(&v->tpl->cond, NULL);
}

/* Shutdown: builds see `stopping`, kill their VMM and clean up; waited for. */
void vms_tpl_done(struct vms *v) {
        if (!v->tpl)
                return;
        pthread_mutex_lock(&v->tpl->mu);
        while (v->tpl->builds > 0)
                pthread_cond_wait(&v->tpl->cond, &v->tpl->mu);
        pthread_mutex_unlock(&v->tpl->mu);
        pthread_mutex_destroy(&v->tpl->mu);
        pthread_cond_destroy(&v->tpl->cond);
        free(v->tpl);
        v->tpl = NULL;
}

static char *tpl_root(struct vms *v) {
        return path_join(v->deps.layout->state_dir, "templates");
}

void tpl_spec_done(struct tpl_spec *s) {
        free(s->image_id);
        free(s->rootfs);
        free(s->kernel);
        free(s->initramfs);
        free(s->modules_disk);
        free(s->init_mode);
        free(s->accel);
        *s = (struct tpl_spec) { 0 };
}

static void stamp(struct strbuf *sb, const char *what, const char *path) {
        struct stat st;
        if (path && stat(path, &st) == 0)
                strbuf_addf(sb, "%s=%s %lld %lld.%09ld\n", what, path, (long long) st.st_size, (long long) st.st_mtim.tv_sec,
                            st.st_mtim.tv_nsec);
        else
                strbuf_addf(sb, "%s=%s missing\n", what, strempty(path));
}

/* name as exec finds it on PATH (the VMM's binary: its identity is in the key). */
static char *resolve_bin(const char *name) {
        if (strchr(name, '/'))
                return xstrdup(name);
        _cleanup_free_ char *path = xstrdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
        char *save = NULL;
        for (char *d = strtok_r(path, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
                _cleanup_free_ char *f = path_join(d, name);
                if (access(f, X_OK) == 0)
                        return TAKE_PTR(f);
        }
        return xstrdup(name);
}

/* The key of s's inputs as they are now (the files' sizes and mtimes). */
static void key_of(struct vms *v, const struct tpl_spec *s, char out[65]) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        _cleanup_free_ char *bin = resolve_bin(s->vmm->bin);
        strbuf_addf(&sb, "banger-template 2\nimage=%s\n", s->image_id);
        stamp(&sb, "rootfs", s->rootfs);
        stamp(&sb, "kernel", s->kernel);
        stamp(&sb, "initramfs", s->initramfs);
        stamp(&sb, "modules", s->modules_disk); /* the guest mounted it */
        stamp(&sb, "vmm", bin);
        strbuf_addf(&sb, "init=%s\nvcpu=%lld\nmemory=%lld\ndisk=%lld\noverlay=%lld\naccel=%s\nbackend=%s\ntsc=%u\n"
                         "banger=%s %s\n",
                    s->init_mode, (long long) s->vcpu, (long long) s->memory_mib, (long long) s->disk_bytes,
                    (long long) s->overlay_bytes, s->accel, s->vmm->backend->name, v->deps.tsc_khz, banger_version(),
                    banger_commit());
        sha256_buf_hex(sb.buf, sb.len, out);
}

void vms_tpl_spec(struct vms *v, const struct vm_row *r, const struct boot_files *bf, const char *accel,
                  const struct vmm_entry *vmm, struct tpl_spec *s) {
        *s = (struct tpl_spec) { .image_id = xstrdup(r->image_id), .rootfs = xstrdup(bf->rootfs),
                                 .kernel = xstrdup(bf->kernel), .initramfs = xstrdup(bf->initramfs),
                                 .modules_disk = bf->modules_disk ? xstrdup(bf->modules_disk) : NULL,
                                 .init_mode = xstrdup(bf->init_mode), .accel = xstrdup(accel), .vmm = vmm,
                                 .vcpu = r->vcpu, .memory_mib = r->memory_mib, .disk_bytes = r->disk_size_bytes,
                                 .overlay_bytes = r->system_overlay_size_bytes };
        key_of(v, s, s->key);
}

/* A ready template's dir (malloc'd), or NULL. */
char *vms_tpl_find(struct vms *v, const char *key) {
        _cleanup_free_ char *root = tpl_root(v), *dir = path_join(root, key);
        _cleanup_free_ char *state = path_join(dir, "state"), *rootq = path_join(dir, "root.qcow2");
        _cleanup_free_ char *meta = path_join(dir, "meta.json"), *ram = path_join(dir, "ram");
        struct stat a, b, c, d;
        if (lstat(state, &a) < 0 || lstat(rootq, &b) < 0 || lstat(meta, &c) < 0 || lstat(ram, &d) < 0 ||
            !S_ISREG(a.st_mode) || !S_ISREG(b.st_mode) || !S_ISREG(c.st_mode) || !S_ISREG(d.st_mode) || a.st_size == 0)
                return NULL;
        return TAKE_PTR(dir);
}

/* ---- building one ---------------------------------------------------------- */

struct build {
        struct vms *v;
        struct tpl_spec s;
        char *stage, *run, *work, *repo;
        char id[32];
        struct vm_boot b;
        struct vm_proc proc;
        int64_t t0;
};

static bool build_stopping(void *ud) {
        return ((struct build *) ud)->v->stopping;
}

/* Disks and sockets for a boot without identity. */
static int build_files(struct build *t, struct op_error *e) {
        _cleanup_free_ char *root = tpl_root(t->v), *base = xasprintf(TPL_BUILDING "%s", t->s.key);
        t->stage = path_join(root, base);
        t->run = xasprintf("%s/templates/%.12s", t->v->deps.layout->runtime_dir, t->s.key);
        t->work = path_join(t->stage, "work.img");
        t->repo = path_join(t->stage, "repo.img");
        rm_rf(t->stage);
        rm_rf(t->run);
        if (mkdir_p(root, 0700) < 0 || mkdir(t->stage, 0700) < 0 || mkdir_p(t->run, 0700) < 0)
                return op_fail(e, -errno, "cannot create %s: %s", t->stage, strerror(errno));
        _cleanup_free_ char *overlay = path_join(t->stage, "root.qcow2");
        int rc = vm_overlay_create(overlay, t->s.rootfs, (uint64_t) t->s.overlay_bytes, e);
        if (rc < 0)
                return rc;
        /* the guest reads the work and repo disks' sizes once; never mounts them */
        const char *blank[] = { t->work, t->repo };
        for (size_t i = 0; i < ELEMENTSOF(blank); i++) {
                _cleanup_close_ int fd = open(blank[i], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0 || ftruncate(fd, t->s.disk_bytes) < 0)
                        return op_fail(e, -errno, "cannot create %s: %s", blank[i], strerror(errno));
        }
        return 0;
}

static int build_boot(struct build *t, struct op_error *e) {
        _cleanup_free_ char *pidf = path_join(t->stage, "pid");
        snprintf(t->id, sizeof(t->id), "tpl-%.12s", t->s.key);
        t->b = (struct vm_boot) {
                .id = t->id, .name = "banger", .vcpu = (int) t->s.vcpu, .memory_mib = (int) t->s.memory_mib,
                .accel = t->s.accel, .tsc_khz = t->v->deps.tsc_khz, .kernel = t->s.kernel, .initrd = t->s.initramfs,
                .modules_disk = t->s.modules_disk, .init_mode = t->s.init_mode, .root_disk = path_join(t->stage, "root.qcow2"), .work_disk = t->work,
                .repo_disk = t->repo, .ram_file = path_join(t->stage, "ram"), .ram_file_shared = true,
                .net = VM_NET_DETACHED, .qmp_socket = path_join(t->run, "qmp.sock"),
                .agent_socket = path_join(t->run, "agent.sock"), .console_log = path_join(t->stage, "console.log"),
                .generic = true,
        };
        int rc = t->s.vmm->backend->start(&t->b, t->s.vmm->bin, &t->proc, e);
        if (rc < 0) {
                t->proc = (struct vm_proc) { .pid = 0, .pidfd = -1 };
                return rc;
        }
        /* the user's VMs first: the template waits for spare cycles */
        if (setpriority(PRIO_PROCESS, (id_t) t->proc.pid, 10) < 0)
                log_info("template %.12s: cannot lower its priority: %s", t->s.key, strerror(errno));
        _cleanup_free_ char *pid = xasprintf("%d\n", (int) t->proc.pid);
        rc = write_file_atomic(pidf, pid, strlen(pid), 0600);
        return rc < 0 ? op_fail(e, rc, "writing %s: %s", pidf, strerror(-rc)) : 0;
}

/* The agent answers: the guest is as far as a template goes. */
static int build_wait(struct build *t, struct op_error *e) {
        struct agent_wait w = { .abort_fd = t->proc.pidfd, .cancelled = build_stopping, .ud = t };
        int64_t deadline = t->v->deps.mono_ms() + t->v->deps.agent_boot_timeout_ms;
        int rc;
        do {
                _cleanup_json_ json_t *h = NULL;
                op_error_done(e);
                rc = t->v->deps.agent_call(t->v->deps.agent_ud, t->b.agent_socket, "health", 10000, &w, &h, e);
                if (rc == 0 && !json_is_true(json_object_get(h, "identify")))
                        return op_fail(e, -EOPNOTSUPP, "the image's agent cannot re-identify a guest (pull it again)");
        } while (rc == -ETIMEDOUT && t->v->deps.mono_ms() < deadline && !pidfd_wait(t->proc.pidfd, 0) &&
                 !t->v->stopping);
        if (rc < 0)
                return op_prefix(e, "waiting for the template's agent");
        if (strcmp(t->s.init_mode, "systemd") != 0)
                return 0;
        /* systemd boots on after the agent answers: a template of a settled
         * system leaves warm VMs nothing to finish ("degraded" is fine: sshd
         * cannot start without a host key) */
        static const char *const settle[] = { "/bin/systemctl", "is-system-running", "--wait", NULL };
        struct vm_paths p = { .agent = (char *) t->b.agent_socket };
        int status = 0;
        _cleanup_op_error_ struct op_error se = OP_ERROR_INIT;
        if (vms_agent_run(t->v, &p, settle, -1, -1, -1, 300000, &status, &se) < 0)
                log_info("template %.12s: systemd did not say it settled: %s", t->s.key, op_error_message(&se));
        return 0;
}

static int build_save(struct build *t, struct op_error *e) {
        _cleanup_free_ char *state = path_join(t->stage, "state"), *meta = path_join(t->stage, "meta.json");
        _cleanup_close_ int fd = open(state, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return op_fail(e, -errno, "cannot create %s: %s", state, strerror(errno));
        int rc = t->s.vmm->backend->snapshot(&t->b, fd, VM_STATE_TIMEOUT_MS, e);
        test_crash_point("template:saved");
        if (rc == 0 && fsync(fd) < 0)
                rc = op_fail(e, -errno, "writing %s: %s", state, strerror(errno));
        if (rc < 0)
                return rc;
        t->s.vmm->backend->kill(&t->proc, SIGKILL);
        pidfd_wait(t->proc.pidfd, VM_KILL_WAIT_MS);
        pidfd_reap(t->proc.pidfd);
        close(t->proc.pidfd);
        t->proc = (struct vm_proc) { .pid = 0, .pidfd = -1 };
        struct stat st;
        _cleanup_json_ json_t *m = json_pack(
                "{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:s, s:s, s:I, s:I, s:I, s:s}", "key", t->s.key, "image_id",
                t->s.image_id, "rootfs", t->s.rootfs, "kernel", t->s.kernel, "initramfs", t->s.initramfs, "init_mode",
                t->s.init_mode, "vcpu", (json_int_t) t->s.vcpu, "memory_mib", (json_int_t) t->s.memory_mib,
                "disk_size_bytes", (json_int_t) t->s.disk_bytes, "system_overlay_size_bytes",
                (json_int_t) t->s.overlay_bytes, "accel", t->s.accel, "backend", t->s.vmm->backend->name, "created_at",
                (json_int_t) (t->v->deps.wall_ms() / 1000), "build_ms", (json_int_t) (t->v->deps.mono_ms() - t->t0),
                "state_bytes", (json_int_t) (stat(state, &st) == 0 ? st.st_size : 0), "modules_disk",
                strempty(t->s.modules_disk));
        _cleanup_free_ char *text = json_dumps(m, JSON_INDENT(2));
        unlink(t->work);
        unlink(t->repo);
        _cleanup_free_ char *pidf = path_join(t->stage, "pid"), *root = tpl_root(t->v), *fin = path_join(root, t->s.key);
        unlink(pidf);
        rc = write_file_atomic(meta, text, strlen(text), 0600);
        if (rc == 0 && rename(t->stage, fin) < 0)
                rc = -errno;
        return rc < 0 ? op_fail(e, rc, "saving template %.12s: %s", t->s.key, strerror(-rc)) : 0;
}

static void build_free(struct build *t) {
        if (t->proc.pid > 0) {
                t->s.vmm->backend->kill(&t->proc, SIGKILL);
                pidfd_wait(t->proc.pidfd, VM_KILL_WAIT_MS);
                pidfd_reap(t->proc.pidfd);
        }
        if (t->proc.pidfd >= 0)
                close(t->proc.pidfd);
        if (t->stage)
                rm_rf(t->stage);
        if (t->run)
                rm_rf(t->run);
        free((char *) t->b.root_disk);
        free((char *) t->b.ram_file);
        free((char *) t->b.qmp_socket);
        free((char *) t->b.agent_socket);
        free((char *) t->b.console_log);
        free(t->stage);
        free(t->run);
        free(t->work);
        free(t->repo);
}

static int build(struct build *t, struct op_error *e) {
        int rc = build_files(t, e);
        if (rc == 0)
                rc = build_boot(t, e);
        if (rc == 0)
                rc = build_wait(t, e);
        if (rc == 0 && t->v->stopping)
                rc = op_fail(e, -ECANCELED, "the daemon is stopping");
        if (rc == 0)
                rc = build_save(t, e);
        return rc;
}

static void building_del(struct vms *v, const char *key, bool failed) {
        struct vm_templates *T = v->tpl;
        pthread_mutex_lock(&T->mu);
        for (int i = 0; i < TPL_MAX_BUILDS; i++)
                if (strcmp(T->building[i], key) == 0)
                        T->building[i][0] = '\0';
        if (failed) {
                size_t i = T->n_failed < TPL_FAILED_MAX ? T->n_failed++ : (size_t) (v->deps.mono_ms() % TPL_FAILED_MAX);
                snprintf(T->failed[i].key, sizeof(T->failed[i].key), "%s", key);
                T->failed[i].at = v->deps.mono_ms();
        }
        T->builds--;
        pthread_cond_broadcast(&T->cond);
        pthread_mutex_unlock(&T->mu);
}

static void *build_main(void *arg) {
        struct build *t = arg;
        _cleanup_op_error_ struct op_error e = OP_ERROR_INIT;
        t->t0 = t->v->deps.mono_ms();
        int rc = build(t, &e);
        if (rc == 0) {
                log_info("template %.12s: built in %lld ms", t->s.key, (long long) (t->v->deps.mono_ms() - t->t0));
                free(TAKE_PTR(t->stage)); /* renamed: not to be removed */
        } else if (rc != -ECANCELED)
                log_warn("template %.12s: %s (new VMs boot cold)", t->s.key, op_error_message(&e));
        char key[65];
        memcpy(key, t->s.key, sizeof(key));
        struct vms *v = t->v;
        build_free(t);
        tpl_spec_done(&t->s);
        free(t);
        building_del(v, key, rc < 0 && rc != -ECANCELED);
        return NULL;
}

/* May a build of key start now? Claims a slot when it may. */
static bool building_add(struct vms *v, const char *key) {
        struct vm_templates *T = v->tpl;
        pthread_mutex_lock(&T->mu);
        bool ok = !v->stopping && T->builds < TPL_MAX_BUILDS;
        for (int i = 0; ok && i < TPL_MAX_BUILDS; i++)
                ok = strcmp(T->building[i], key) != 0;
        for (size_t i = 0; ok && i < T->n_failed; i++)
                ok = strcmp(T->failed[i].key, key) != 0 || v->deps.mono_ms() - T->failed[i].at > TPL_RETRY_MS;
        for (int i = 0; ok && i < TPL_MAX_BUILDS; i++)
                if (!T->building[i][0]) {
                        snprintf(T->building[i], sizeof(T->building[i]), "%s", key);
                        T->builds++;
                        break;
                }
        pthread_mutex_unlock(&T->mu);
        return ok;
}

void vms_tpl_kick(struct vms *v, struct tpl_spec *s) {
        _cleanup_free_ char *have = vms_tpl_find(v, s->key);
        if (have || !building_add(v, s->key)) {
                tpl_spec_done(s);
                return;
        }
        struct build *t = xcalloc(1, sizeof(*t));
        *t = (struct build) { .v = v, .s = *s, .proc = { .pid = 0, .pidfd = -1 } };
        *s = (struct tpl_spec) { 0 };
        pthread_t th;
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        log_info("template %.12s: building in the background", t->s.key);
        if (pthread_create(&th, &a, build_main, t) != 0) {
                char key[65];
                memcpy(key, t->s.key, sizeof(key));
                tpl_spec_done(&t->s);
                free(t);
                building_del(v, key, true);
        }
        pthread_attr_destroy(&a);
}

/* ---- what is there: sweep, list, remove ------------------------------------- */

static bool is_key(const char *s) {
        return strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

/* A ready template's meta.json as a spec (vmm from its backend's name). */
static int meta_spec(struct vms *v, const char *dir, struct tpl_spec *s, json_t **ret_meta) {
        _cleanup_free_ char *path = path_join(dir, "meta.json"), *text = NULL;
        size_t len;
        int rc = read_file_nofollow(path, 64u << 10, &text, &len);
        if (rc < 0)
                return rc;
        json_t *m = json_loadb(text, len, 0, NULL);
        const char *strs[] = { "key", "image_id", "rootfs", "kernel", "initramfs", "init_mode", "accel", "backend" };
        for (size_t i = 0; i < ELEMENTSOF(strs); i++)
                if (!json_is_string(json_object_get(m, strs[i]))) {
                        json_decref(m);
                        return -EBADMSG;
                }
#define S(k) xstrdup(json_string_value(json_object_get(m, k)))
#define I(k) (int64_t) json_integer_value(json_object_get(m, k))
        *s = (struct tpl_spec) { .image_id = S("image_id"), .rootfs = S("rootfs"), .kernel = S("kernel"),
                                 .initramfs = S("initramfs"), .init_mode = S("init_mode"), .accel = S("accel"),
                                 .vmm = vms_vmm_by_name(v, json_string_value(json_object_get(m, "backend"))),
                                 .vcpu = I("vcpu"), .memory_mib = I("memory_mib"), .disk_bytes = I("disk_size_bytes"),
                                 .overlay_bytes = I("system_overlay_size_bytes") };
        const char *mods = json_string_value(json_object_get(m, "modules_disk"));
        s->modules_disk = mods && *mods ? xstrdup(mods) : NULL;
#undef S
#undef I
        snprintf(s->key, sizeof(s->key), "%s", json_string_value(json_object_get(m, "key")));
        *ret_meta = m;
        return 0;
}

/* Its image is gone, or what it was made from changed since: never used again. */
static bool stale(struct vms *v, const char *dir, const char *name, json_t **ret_meta) {
        struct tpl_spec s = { 0 };
        struct image_row img = { 0 };
        char now[65];
        *ret_meta = NULL;
        if (meta_spec(v, dir, &s, ret_meta) < 0)
                return true;
        bool gone = store_image_get(v->deps.store, s.image_id, &img) < 0;
        image_row_done(&img);
        key_of(v, &s, now);
        bool st = gone || strcmp(s.key, name) != 0 || strcmp(now, name) != 0;
        tpl_spec_done(&s);
        return st;
}

static void remove_dir(const char *root, const char *name, const char *why) {
        /* renamed first: a create about to use it sees it gone at once */
        _cleanup_free_ char *dir = path_join(root, name), *tmp = xasprintf("%s/.removing-%s", root, name);
        int rc = rename(dir, tmp) < 0 ? -errno : rm_rf(tmp);
        if (rc < 0)
                log_warn("template %.12s: cannot remove it: %s", name, strerror(-rc));
        else
                log_info("template %.12s: removed (%s)", name, why);
}

/* A build the daemon died in: its VMM (re-identified by its command line) is killed. */
static void sweep_building(struct vms *v, const char *root, const char *name) {
        _cleanup_free_ char *dir = path_join(root, name), *pidf = path_join(dir, "pid"), *text = NULL;
        _cleanup_free_ char *id = xasprintf("tpl-%.12s", name + strlen(TPL_BUILDING));
        _cleanup_free_ char *run = xasprintf("%s/templates/%.12s", v->deps.layout->runtime_dir, name + strlen(TPL_BUILDING));
        size_t len;
        long pid = read_file_nofollow(pidf, 64, &text, &len) == 0 ? strtol(text, NULL, 10) : 0;
        for (size_t i = 0; pid > 1 && i < v->deps.n_vmms; i++)
                if (v->deps.vmms[i].backend->owns((pid_t) pid, v->deps.vmms[i].bin, id)) {
                        struct vm_proc p = { .pid = (pid_t) pid, .pidfd = -1 };
                        v->deps.vmms[i].backend->kill(&p, SIGKILL);
                        log_info("template %.12s: killed the VMM (pid %ld) of a build cut short", id + 4, pid);
                }
        rm_rf(dir);
        rm_rf(run);
}

void vms_tpl_sweep(struct vms *v, bool at_start) {
        _cleanup_free_ char *root = tpl_root(v);
        _cleanup_(closedirp) DIR *d = opendir(root);
        struct dirent *de;
        while (d && (de = readdir(d))) {
                json_t *m = NULL;
                _cleanup_free_ char *dir = path_join(root, de->d_name);
                if (strncmp(de->d_name, TPL_BUILDING, strlen(TPL_BUILDING)) == 0 && at_start)
                        sweep_building(v, root, de->d_name);
                else if (strncmp(de->d_name, ".removing-", 10) == 0) {
                        _cleanup_free_ char *p = path_join(root, de->d_name);
                        rm_rf(p);
                } else if (is_key(de->d_name) && stale(v, dir, de->d_name, &m))
                        remove_dir(root, de->d_name, "its image or kernel changed or is gone");
                json_decref(m);
        }
}

static json_t *tpl_json(struct vms *v, const char *root, const char *name, bool building) {
        _cleanup_free_ char *dir = path_join(root, name);
        json_t *m = NULL;
        bool st = !building && stale(v, dir, name, &m);
        json_t *j = m ? m : json_object();
        struct image_row img = { 0 };
        const char *iid = json_string_value(json_object_get(j, "image_id"));
        if (iid && store_image_get(v->deps.store, iid, &img) == 0)
                json_object_set_new(j, "image", json_string(img.name));
        image_row_done(&img);
        json_object_set_new(j, "key", json_string(building ? name + strlen(TPL_BUILDING) : name));
        json_object_set_new(j, "state", json_string(building ? "building" : st ? "stale" : "ready"));
        json_object_set_new(j, "bytes", json_integer((json_int_t) dir_size(dir, true)));
        return j;
}

int vm_template_list(struct vms *v, json_t **ret, struct op_error *e) {
        _cleanup_free_ char *root = tpl_root(v);
        _cleanup_(closedirp) DIR *d = opendir(root);
        struct dirent *de;
        json_t *arr = json_array();
        (void) e;
        while (d && (de = readdir(d))) {
                bool building = strncmp(de->d_name, TPL_BUILDING, strlen(TPL_BUILDING)) == 0;
                if (building || is_key(de->d_name))
                        json_array_append_new(arr, tpl_json(v, root, de->d_name, building));
        }
        *ret = json_pack("{s:o}", "templates", arr);
        return 0;
}

/* keys: full or a unique prefix (at least 6 hex digits); NULL: every ready one
 * (stale only, when only_stale). */
int vm_template_rm(struct vms *v, const char *prefix, bool only_stale, json_t **ret, struct op_error *e) {
        _cleanup_free_ char *root = tpl_root(v);
        _cleanup_(closedirp) DIR *d = opendir(root);
        struct dirent *de;
        json_t *gone = json_array();
        uint64_t bytes = 0;
        if (prefix && (strlen(prefix) < 6 || strspn(prefix, "0123456789abcdef") != strlen(prefix))) {
                json_decref(gone);
                return op_bad_request(e, "'%s' is not a template key (6 to 64 hex digits; banger template list)", prefix);
        }
        while (d && (de = readdir(d))) {
                json_t *m = NULL;
                _cleanup_free_ char *dir = path_join(root, de->d_name);
                if (!is_key(de->d_name) || (prefix && strncmp(de->d_name, prefix, strlen(prefix)) != 0))
                        continue;
                bool st = stale(v, dir, de->d_name, &m);
                json_decref(m);
                if (only_stale && !st)
                        continue;
                bytes += dir_size(dir, true);
                json_array_append_new(gone, json_string(de->d_name));
        }
        if (prefix && json_array_size(gone) != 1) {
                size_t n = json_array_size(gone);
                json_decref(gone);
                return n ? op_bad_request(e, "'%s' names %zu templates; give more of the key", prefix, n)
                         : op_not_found(e, "no template '%s' (banger template list)", prefix);
        }
        size_t i;
        json_t *k;
        json_array_foreach(gone, i, k)
                remove_dir(root, json_string_value(k), prefix ? "banger template rm" : "banger template prune");
        *ret = json_pack("{s:o, s:I}", "removed", gone, "bytes_freed", (json_int_t) bytes);
        return 0;
}
