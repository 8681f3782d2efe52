/* SPDX-License-Identifier: MIT */
/*
 * A user's snapshots of a running VM: its RAM and device state and its disks
 * at one instant, and restoring them (docs/ARCHITECTURE.md, "Snapshots").
 *
 *   <vm_dir>/snapshots/<name>/      state, root.qcow2 (or root.cow), work.ext4, [repo.ext4], meta.json
 *   <vm_dir>/snapshots/.partial-<name>/   while one is written (a crash: removed)
 *   <vm_dir>/snapshots/.restoring   names the snapshot whose disks are being
 *                                   copied back (a crash: the copy is finished)
 *
 * Taking one: the guest is paused, its state written by the VMM (QMP
 * migrate to a file: the disks are flushed and quiet), the disks copied
 * (sparse), the guest resumed; the pause is what it costs. Restoring: the
 * running VMM is killed (its state is being replaced), the disks copied
 * back, a VMM started paused loads the state and resumes; the guest's clock
 * is then set from the host and host entropy mixed into its RNG.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "store/store_artifacts.h"
#include "jsonx.h"
#include "log.h"
#include "testhook.h"
#include "vmname.h"
#include "vms_internal.h"

#define SNAP_DIR "snapshots"
#define SNAP_PARTIAL ".partial-"
#define SNAP_RESTORING ".restoring"
#define SNAP_META_MAX (64u << 10)

/* The disks a snapshot holds: its file name, the VM's file, needed. */
struct snap_disk {
        const char *name;
        const char *vm_path;
        bool required;
};

/* A device-mapper root's COW file is only meaningful over the image's
 * rootfs: it is kept under its own name, so a snapshot of one kind of root
 * never restores into the other (the restore finds its file missing). */
static size_t snap_disks(const struct vm_paths *p, struct snap_disk out[3]) {
        out[0] = (struct snap_disk) { p->dm_root ? VM_ROOT_COW : "root.qcow2", p->overlay, true };
        out[1] = (struct snap_disk) { "work.ext4", p->work, true };
        out[2] = (struct snap_disk) { "repo.ext4", p->repo, false };
        return 3;
}

struct snap_meta {
        char *name, *image_id, *ip; /* ip: the guest's address then (a fork removes it) */
        int64_t created_at, vcpu, memory_mib, pause_ms, disk_bytes, overlay_bytes;
        bool repo;
        uint64_t state_bytes, bytes;
        enum agent_transport transport; /* the agent's device in the state (a restore must have the same) */
};

static void snap_meta_done(struct snap_meta *m) {
        free(m->name);
        free(m->image_id);
        free(m->ip);
        *m = (struct snap_meta) { 0 };
}

static json_t *snap_meta_json(const struct snap_meta *m) {
        json_t *j = json_pack("{s:s, s:I, s:I, s:I, s:s, s:b, s:I, s:I, s:I, s:I, s:I}", "name", m->name, "created_at",
                              (json_int_t) m->created_at, "vcpu", (json_int_t) m->vcpu, "memory_mib",
                              (json_int_t) m->memory_mib, "image_id", m->image_id, "repo_disk", m->repo, "state_bytes",
                              (json_int_t) m->state_bytes, "bytes", (json_int_t) m->bytes, "pause_ms",
                              (json_int_t) m->pause_ms, "disk_size_bytes", (json_int_t) m->disk_bytes,
                              "system_overlay_size_bytes", (json_int_t) m->overlay_bytes);
        if (m->ip)
                json_object_set_new(j, "ip", json_string(m->ip));
        json_object_set_new(j, "agent_transport", json_string(agent_transport_to_string(m->transport)));
        return j;
}

static char *snap_root(const struct vm_row *r) {
        return path_join(r->vm_dir, SNAP_DIR);
}

static int snap_name_check(const char *name, struct op_error *e) {
        _cleanup_free_ char *why = NULL;
        if (!name || vm_name_validate(name, &why) < 0)
                return op_bad_request(e, "invalid snapshot name '%s': %s", strempty(name),
                                      why ? why : "a name is needed");
        return 0;
}

/* meta.json of dir, checked: a file in the state dir is not trusted. */
static int snap_meta_read(const char *dir, const char *name, struct snap_meta *m, struct op_error *e) {
        _cleanup_free_ char *path = path_join(dir, "meta.json"), *text = NULL;
        size_t len;
        int rc = read_file_nofollow(path, SNAP_META_MAX, &text, &len);
        if (rc < 0)
                return op_fail(e, rc, "snapshot '%s': %s: %s", name, path, strerror(-rc));
        _cleanup_json_ json_t *j = json_loadb(text, len, 0, NULL);
        const char *n = json_string_value(json_object_get(j, "name"));
        const char *img = json_string_value(json_object_get(j, "image_id"));
        json_t *fields[] = { json_object_get(j, "created_at"), json_object_get(j, "vcpu"),
                             json_object_get(j, "memory_mib"), json_object_get(j, "state_bytes"),
                             json_object_get(j, "bytes"), json_object_get(j, "pause_ms") };
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                if (!json_is_integer(fields[i]) || json_integer_value(fields[i]) < 0)
                        return op_fail(e, -EBADMSG, "snapshot '%s': %s is damaged", name, path);
        /* older snapshots say nothing: QEMU VMs had only virtio-serial then */
        const char *at = json_string_value(json_object_get(j, "agent_transport"));
        enum agent_transport transport = AGENT_TRANSPORT_VIRTIO_SERIAL;
        if (!n || strcmp(n, name) != 0 || !img || !json_is_boolean(json_object_get(j, "repo_disk")) ||
            (at && agent_transport_from_string(at, &transport) < 0))
                return op_fail(e, -EBADMSG, "snapshot '%s': %s is damaged", name, path);
        *m = (struct snap_meta) {
                .name = xstrdup(n), .image_id = xstrdup(img), .created_at = json_integer_value(fields[0]),
                .vcpu = json_integer_value(fields[1]), .memory_mib = json_integer_value(fields[2]),
                .state_bytes = (uint64_t) json_integer_value(fields[3]), .bytes = (uint64_t) json_integer_value(fields[4]),
                .pause_ms = json_integer_value(fields[5]), .repo = json_is_true(json_object_get(j, "repo_disk")),
                .disk_bytes = json_integer_value(json_object_get(j, "disk_size_bytes")),
                .overlay_bytes = json_integer_value(json_object_get(j, "system_overlay_size_bytes")),
                .transport = transport,
        };
        const char *ip = json_string_value(json_object_get(j, "ip"));
        struct in_addr a;
        if (ip && inet_pton(AF_INET, ip, &a) == 1) /* written by us, still checked */
                m->ip = xstrdup(ip);
        return 0;
}

static int copy_disk(const char *from, const char *to, struct op_error *e) {
        int rc = copy_file_sparse(from, to, 0600);
        return rc < 0 ? op_fail(e, rc, "copying %s to %s: %s", from, to, strerror(-rc)) : 0;
}

/* ---- taking one ------------------------------------------------------------ */

struct take {
        struct vms *v;
        const struct vm_row *r;
        const struct vm_paths *p;
        const struct progress *pr;
        const char *stage;
        struct snap_meta m;
};

/* The disks into the staging dir, while the guest is paused. */
static int take_disks(struct take *t, struct op_error *e) {
        struct snap_disk d[3];
        size_t n = snap_disks(t->p, d);
        progress_stage(t->pr, "disks", "copying the disks");
        for (size_t i = 0; i < n; i++) {
                if (!d[i].required && !vm_has_repo_disk(t->p))
                        continue;
                _cleanup_free_ char *to = path_join(t->stage, d[i].name);
                int rc = copy_disk(d[i].vm_path, to, e);
                if (rc < 0)
                        return rc;
                t->m.repo |= !d[i].required;
        }
        return 0;
}

/* The guest's filesystems frozen (banger-agent --freeze) for as long as the
 * snapshot runs: no write and no block I/O in flight while it is paused and
 * its disks are copied (clean filesystems in the copies, too). The freeze
 * ends when its stdin is closed; the agent thaws on its own if we die. */
struct freeze {
        struct vms *v;
        const struct vm_paths *p;
        int in[2], out[2];
        pthread_t th;
        int rc, status;
        bool on;
};

static void *freeze_main(void *arg) {
        struct freeze *f = arg;
        static const char *const argv[] = { "/usr/local/bin/banger-agent", "--freeze", NULL };
        /* bounded: a guest that stops answering cannot keep the VM's lock (its
         * watchdog thaws it at 60 s anyway) */
        f->rc = vms_agent_run(f->v, f->p, argv, f->in[0], f->out[1], -1, VM_STATE_TIMEOUT_MS + 60000, &f->status, NULL);
        close(f->out[1]); /* the reader sees the end */
        return NULL;
}

static void freeze_end(struct freeze *f) {
        if (!f->on)
                return;
        close(f->in[1]); /* EOF: the guest thaws */
        pthread_join(f->th, NULL);
        close(f->in[0]);
        close(f->out[0]);
        f->on = false;
}

/* true once "frozen" came back (at most 10 s); else nothing stays frozen. */
static bool freeze_begin(struct vms *v, const struct vm_paths *p, struct freeze *f) {
        char line[64] = "";
        *f = (struct freeze) { .v = v, .p = p, .in = { -1, -1 }, .out = { -1, -1 } };
        if (!v->deps.agent_exec || !vms_agent_has(v, p, "freeze"))
                return false;
        if (pipe2(f->in, O_CLOEXEC) < 0 || pipe2(f->out, O_CLOEXEC) < 0 ||
            pthread_create(&f->th, NULL, freeze_main, f) != 0) {
                int fds[] = { f->in[0], f->in[1], f->out[0], f->out[1] };
                for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                        if (fds[i] >= 0)
                                close(fds[i]);
                return false;
        }
        f->on = true;
        struct pollfd pf = { .fd = f->out[0], .events = POLLIN };
        ssize_t n = poll(&pf, 1, 10000) > 0 ? read(f->out[0], line, sizeof(line) - 1) : -1;
        if (n > 0 && strncmp(line, "frozen", 6) == 0)
                return true;
        freeze_end(f);
        return false;
}

/* Pause, state, disks, resume (always, once paused). */
static int take_paused(struct take *t, const struct vmm_entry *m, struct op_error *e) {
        _cleanup_free_ char *state = path_join(t->stage, "state");
        _cleanup_close_ int fd = open(state, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return op_fail(e, -errno, "cannot create %s: %s", state, strerror(errno));
        struct vm_boot b = { .id = t->r->id, .qmp_socket = t->p->qmp };
        struct freeze fz;
        progress_stage(t->pr, "freeze", "the guest's filesystems");
        if (!freeze_begin(t->v, t->p, &fz))
                log_info("vm %s: its filesystems are not frozen for the snapshot (an older agent?)", t->r->name);
        int64_t t0 = t->v->deps.mono_ms();
        progress_stage(t->pr, "pause", "saving RAM and device state");
        int rc = m->backend->snapshot(&b, fd, VM_STATE_TIMEOUT_MS, e);
        test_crash_point("snapshot:paused");
        if (rc == 0 && fsync(fd) < 0)
                rc = op_fail(e, -errno, "writing %s: %s", state, strerror(errno));
        if (rc == 0)
                rc = take_disks(t, e);
        _cleanup_op_error_ struct op_error re = OP_ERROR_INIT;
        if (m->backend->resume(&b, &re) < 0) {
                log_warn("vm %s: resuming after a snapshot: %s", t->r->name, op_error_message(&re));
                if (rc == 0)
                        rc = op_fail(e, -EIO, "resuming the guest: %s", op_error_message(&re));
        }
        t->m.pause_ms = t->v->deps.mono_ms() - t0;
        freeze_end(&fz);
        struct stat st;
        t->m.state_bytes = stat(state, &st) == 0 ? (uint64_t) st.st_size : 0;
        return rc;
}

static int take_locked(struct vms *v, const struct vm_row *r, const char *name, const struct progress *pr,
                       json_t **ret, struct op_error *e) {
        struct vm_paths p;
        struct vm_handles h;
        vm_paths_init(v, r, &p);
        _cleanup_free_ char *root = snap_root(r), *final = path_join(root, name);
        _cleanup_free_ char *base = xasprintf(SNAP_PARTIAL "%s", name), *stage = path_join(root, base);
        struct take t = { .v = v, .r = r, .p = &p, .pr = pr, .stage = stage };
        struct stat st;
        int rc = 0;
        if (vms_live_pid(v, r, &p, &h) <= 0)
                rc = op_fail_as(e, RPC_BAD_REQUEST, -ESRCH,
                                "vm %s is not running (state %s); snapshots are taken of running VMs", r->name, r->state);
        else if (lstat(final, &st) == 0)
                rc = op_fail_as(e, RPC_BAD_REQUEST, -EEXIST, "vm %s already has a snapshot '%s' (banger vm snapshot rm %s %s)",
                                r->name, name, r->name, name);
        else if (mkdir_p(root, 0700) < 0 || (rm_rf(stage), mkdir(stage, 0700) < 0))
                rc = op_fail(e, -errno, "cannot create %s: %s", stage, strerror(errno));
        if (rc == 0)
                rc = take_paused(&t, vms_vmm_by_name(v, h.vmm), e);
        if (rc == 0) {
                t.m.name = xstrdup(name);
                t.m.image_id = xstrdup(r->image_id);
                t.m.created_at = v->deps.wall_ms() / 1000;
                t.m.vcpu = r->vcpu;
                t.m.memory_mib = r->memory_mib;
                t.m.disk_bytes = r->disk_size_bytes;
                t.m.overlay_bytes = r->system_overlay_size_bytes;
                t.m.ip = r->guest_ip ? xstrdup(r->guest_ip) : NULL;
                t.m.transport = h.vsock_cid ? AGENT_TRANSPORT_VSOCK : AGENT_TRANSPORT_VIRTIO_SERIAL;
                t.m.bytes = dir_size(stage, true);
                _cleanup_json_ json_t *j = snap_meta_json(&t.m);
                _cleanup_free_ char *text = json_dumps(j, JSON_INDENT(2)), *mp = path_join(stage, "meta.json");
                rc = write_file_atomic(mp, text, strlen(text), 0600);
                if (rc < 0 || rename(stage, final) < 0)
                        rc = op_fail(e, rc < 0 ? rc : -errno, "saving snapshot '%s': %s", name,
                                     strerror(rc < 0 ? -rc : errno));
        }
        if (rc < 0)
                rm_rf(stage);
        else
                *ret = snap_meta_json(&t.m);
        snap_meta_done(&t.m);
        vm_paths_done(&p);
        return rc;
}

/* "snap-YYYYMMDD-HHMMSS" (UTC) when the user names none. */
static char *default_name(struct vms *v) {
        time_t now = (time_t) (v->deps.wall_ms() / 1000);
        struct tm tm;
        char buf[32];
        gmtime_r(&now, &tm);
        strftime(buf, sizeof(buf), "snap-%Y%m%d-%H%M%S", &tm);
        return xstrdup(buf);
}

int vm_snapshot_create(struct vms *v, const char *ref, const char *name, const struct progress *pr, json_t **ret,
                       struct op_error *e) {
        _cleanup_free_ char *dflt = name && *name ? NULL : default_name(v);
        const char *n = dflt ? dflt : name;
        struct vm_row r;
        struct vm_lock *l;
        int rc = snap_name_check(n, e);
        if (rc < 0 || (rc = vms_lock_row(v, ref, &r, &l, e)) < 0)
                return rc;
        if (vms_create_in_flight(v, r.id))
                rc = op_fail_as(e, RPC_BAD_REQUEST, -EBUSY, "vm %s is still being created", r.name);
        else
                rc = take_locked(v, &r, n, pr, ret, e);
        vms_unlock(v, l);
        vm_row_done(&r);
        return rc;
}

/* ---- restoring one ----------------------------------------------------------- */

/* The disks of snapshot dir back in place (the VM's VMM is gone). */
static int put_disks(const char *dir, const struct snap_meta *m, const struct vm_paths *p, struct op_error *e) {
        struct snap_disk d[3];
        size_t n = snap_disks(p, d);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *from = path_join(dir, d[i].name);
                if (!d[i].required && !m->repo) {
                        if (unlink(d[i].vm_path) < 0 && errno != ENOENT)
                                return op_fail(e, -errno, "removing %s: %s", d[i].vm_path, strerror(errno));
                        continue;
                }
                int rc = copy_disk(from, d[i].vm_path, e);
                if (rc < 0)
                        return rc;
        }
        return 0;
}

/* Every file of the snapshot there, regular, not a symlink. */
static int snap_files_check(const char *dir, const struct snap_meta *m, const struct vm_paths *p, struct op_error *e) {
        struct snap_disk d[3];
        size_t n = snap_disks(p, d);
        const char *names[4] = { "state" };
        size_t k = 1;
        for (size_t i = 0; i < n; i++)
                if (d[i].required || m->repo)
                        names[k++] = d[i].name;
        for (size_t i = 0; i < k; i++) {
                _cleanup_free_ char *f = path_join(dir, names[i]);
                struct stat st;
                if (lstat(f, &st) < 0 || !S_ISREG(st.st_mode))
                        return op_fail(e, -EBADMSG, "snapshot '%s' is incomplete: %s is missing or not a regular file",
                                       m->name, f);
        }
        return 0;
}

/* After a restore: the clock from the host (the guest's stood still since
 * the snapshot), fresh host entropy credited to its RNG and the CRNG
 * reseeded (two restores of one snapshot must not share a random future).
 * Agents older than --identify get the clock through a shell and the
 * entropy mixed in, uncredited. Failures are logged. */
static void settle_guest(struct vms *v, const struct vm_row *r, const struct vm_paths *p) {
        uint8_t seed[64];
        int pfd[2], status = 0;
        _cleanup_op_error_ struct op_error err = OP_ERROR_INIT;
        if (vms_agent_has(v, p, "identify")) {
                struct vm_identify q = { .full = false };
                if (vms_identify(v, r, p, &q, &err) < 0)
                        log_warn("vm %s: setting the restored guest's clock: %s", r->name, op_error_message(&err));
                return;
        }
        if (getrandom(seed, sizeof(seed), 0) != (ssize_t) sizeof(seed) || pipe2(pfd, O_CLOEXEC) < 0) {
                log_warn("vm %s: no entropy or pipe for the restored guest", r->name);
                return;
        }
        int64_t now = v->deps.wall_ms();
        _cleanup_free_ char *script = xasprintf("date -u -s @%lld.%03d >/dev/null; head -c %zu >/dev/urandom",
                                                (long long) (now / 1000), (int) (now % 1000), sizeof(seed));
        int wr = write_all(pfd[1], seed, sizeof(seed)); /* 64 bytes: the pipe holds them */
        close(pfd[1]);
        if (wr < 0)
                log_warn("vm %s: no entropy for the restored guest: %s", r->name, strerror(-wr));
        int rc = workspace_agent_script(v, p, script, pfd[0], -1, -1, 10000, &status, &err);
        close(pfd[0]);
        if (rc != 0 || status != 0)
                log_warn("vm %s: setting the restored guest's clock: %s", r->name,
                         rc < 0 ? op_error_message(&err) : rc > 0 ? "the agent cannot run commands" : "the command failed");
}

static int restore_locked(struct vms *v, struct vm_row *r, const char *name, const struct progress *pr, json_t **ret,
                          struct op_error *e) {
        _cleanup_free_ char *root = snap_root(r), *dir = path_join(root, name), *mark = path_join(root, SNAP_RESTORING);
        _cleanup_free_ char *state = path_join(dir, "state");
        struct snap_meta m = { 0 };
        struct vm_paths p;
        struct stat st;
        vm_paths_init(v, r, &p);
        int rc = lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode)
                         ? op_not_found(e, "vm %s has no snapshot '%s' (banger vm snapshot list %s)", r->name, name, r->name)
                         : snap_meta_read(dir, name, &m, e);
        if (rc == 0 && (m.vcpu != r->vcpu || m.memory_mib != r->memory_mib))
                rc = op_bad_request(e, "snapshot '%s' was taken with %lld vCPU and %lld MiB; vm %s has %lld and %lld now "
                                    "(banger vm set %s --vcpu %lld --memory %lld, then restore)",
                                    name, (long long) m.vcpu, (long long) m.memory_mib, r->name, (long long) r->vcpu,
                                    (long long) r->memory_mib, r->name, (long long) m.vcpu, (long long) m.memory_mib);
        if (rc == 0)
                rc = snap_files_check(dir, &m, &p, e);
        _cleanup_close_ int fd = rc == 0 ? open(state, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
        if (rc == 0 && fd < 0)
                rc = op_fail(e, -errno, "cannot open %s: %s", state, strerror(errno));
        if (rc == 0 && vm_state_active(r->state)) {
                progress_stage(pr, "stop", "%s (its running state is replaced)", r->name);
                rc = vms_stop_locked(v, r, false, e);
        }
        if (rc == 0) {
                progress_stage(pr, "disks", "copying the snapshot's disks back");
                rc = write_file_atomic(mark, name, strlen(name), 0600);
                if (rc < 0)
                        rc = op_fail(e, rc, "cannot write %s: %s", mark, strerror(-rc));
        }
        if (rc == 0 && (rc = put_disks(dir, &m, &p, e)) == 0) {
                test_crash_point("restore:disks");
                unlink(mark);
                struct vm_start_opts o = { .state_fd = fd, .saved_transport = m.transport };
                rc = vms_start_opts_locked(v, r, pr, &o, e);
        }
        if (rc == 0) {
                settle_guest(v, r, &p);
                *ret = vm_json_by_id(v, r->id);
                json_object_set_new(*ret, "restored", json_string(name));
        }
        snap_meta_done(&m);
        vm_paths_done(&p);
        return rc;
}

int vm_snapshot_restore(struct vms *v, const char *ref, const char *name, const struct progress *pr, json_t **ret,
                        struct op_error *e) {
        struct vm_row r;
        struct vm_lock *l;
        int rc = snap_name_check(name, e);
        if (rc < 0 || (rc = vms_lock_row(v, ref, &r, &l, e)) < 0)
                return rc;
        if (vms_create_in_flight(v, r.id))
                rc = op_fail_as(e, RPC_BAD_REQUEST, -EBUSY, "vm %s is still being created", r.name);
        else
                rc = restore_locked(v, &r, name, pr, ret, e);
        vms_unlock(v, l);
        vm_row_done(&r);
        return rc;
}

/* ---- listing and removing ----------------------------------------------------- */

static int by_created(const void *a, const void *b) {
        json_t *x = *(json_t *const *) a, *y = *(json_t *const *) b;
        json_int_t cx = json_integer_value(json_object_get(x, "created_at"));
        json_int_t cy = json_integer_value(json_object_get(y, "created_at"));
        return cx < cy ? -1 : cx > cy ? 1 : strcmp(json_string_value(json_object_get(x, "name")),
                                                    json_string_value(json_object_get(y, "name")));
}

/* The VM's snapshots, oldest first; a damaged one is listed as such. */
static json_t *snap_list(const struct vm_row *r) {
        _cleanup_free_ char *root = snap_root(r);
        _cleanup_(closedirp) DIR *d = opendir(root);
        json_t *arr = json_array();
        struct dirent *de;
        while (d && (de = readdir(d))) {
                struct snap_meta m;
                _cleanup_free_ char *dir = path_join(root, de->d_name);
                struct stat st;
                if (de->d_name[0] == '.' || lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
                        continue;
                if (snap_meta_read(dir, de->d_name, &m, NULL) < 0) {
                        json_array_append_new(arr, json_pack("{s:s, s:I, s:b}", "name", de->d_name, "created_at",
                                                             (json_int_t) 0, "damaged", true));
                        continue;
                }
                json_array_append_new(arr, snap_meta_json(&m));
                snap_meta_done(&m);
        }
        size_t n = json_array_size(arr);
        json_t **items = xmalloc((n ? n : 1) * sizeof(*items));
        for (size_t i = 0; i < n; i++)
                items[i] = json_incref(json_array_get(arr, i));
        qsort(items, n, sizeof(*items), by_created);
        json_array_clear(arr);
        for (size_t i = 0; i < n; i++)
                json_array_append_new(arr, items[i]);
        free(items);
        return arr;
}

int vm_snapshot_list(struct vms *v, const char *ref, json_t **ret, struct op_error *e) {
        struct vm_row r;
        int rc = vms_get_row(v, ref, &r, e);
        if (rc < 0)
                return rc;
        *ret = json_pack("{s:s, s:o}", "vm", r.name, "snapshots", snap_list(&r));
        vm_row_done(&r);
        return 0;
}

int vm_snapshot_delete(struct vms *v, const char *ref, const char *name, json_t **ret, struct op_error *e) {
        struct vm_row r;
        struct vm_lock *l;
        struct stat st;
        int rc = snap_name_check(name, e);
        if (rc < 0 || (rc = vms_lock_row(v, ref, &r, &l, e)) < 0)
                return rc;
        _cleanup_free_ char *root = snap_root(&r), *dir = path_join(root, name);
        if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
                rc = op_not_found(e, "vm %s has no snapshot '%s'", r.name, name);
        else {
                uint64_t bytes = dir_size(dir, true);
                rc = rm_rf(dir);
                if (rc < 0)
                        rc = op_fail(e, rc, "removing %s: %s", dir, strerror(-rc));
                else
                        *ret = json_pack("{s:s, s:s, s:b, s:I}", "vm", r.name, "name", name, "deleted", true,
                                         "bytes_freed", (json_int_t) bytes);
        }
        vms_unlock(v, l);
        vm_row_done(&r);
        return rc;
}

/* ---- a fork: a new VM from another's snapshot ------------------------------------ */

void vm_fork_done(struct vm_fork *f) {
        free(f->dir);
        free(f->image_id);
        free(f->ip);
        *f = (struct vm_fork) { 0 };
}

int vms_fork_resolve(struct vms *v, const char *spec, struct vm_fork *ret, struct op_error *e) {
        const char *colon = strrchr(spec, ':');
        if (!colon || colon == spec || !colon[1])
                return op_bad_request(e, "--from-snapshot wants VM:NAME, not '%s'", spec);
        _cleanup_free_ char *ref = xstrndup(spec, (size_t) (colon - spec));
        const char *name = colon + 1;
        struct vm_row r;
        struct snap_meta m = { 0 };
        struct image_row img = { 0 };
        int rc = snap_name_check(name, e);
        if (rc < 0 || (rc = vms_get_row(v, ref, &r, e)) < 0)
                return rc;
        _cleanup_free_ char *root = snap_root(&r), *dir = path_join(root, name);
        struct vm_paths p;
        struct stat st;
        vm_paths_init(v, &r, &p);
        rc = lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode)
                     ? op_not_found(e, "vm %s has no snapshot '%s' (banger vm snapshot list %s)", r.name, name, r.name)
                     : snap_meta_read(dir, name, &m, e);
        if (rc == 0)
                rc = snap_files_check(dir, &m, &p, e);
        if (rc == 0 && r.firecracker)
                rc = op_bad_request(e, "vm %s runs on firecracker, whose saved state names the VM's own disks and "
                                       "sockets: it can be restored (vm restore), not forked", r.name);
        else if (rc == 0 && !m.ip && r.user_net)
                rc = op_bad_request(e, "snapshot '%s' of vm %s is of a user-mode VM: forks resume on the bridge "
                                       "(vm restore %s %s puts the VM itself back)", name, r.name, r.name, name);
        else if (rc == 0 && (!m.ip || m.disk_bytes <= 0 || m.overlay_bytes <= 0))
                rc = op_bad_request(e, "snapshot '%s' of vm %s predates forks (take a new one)", name, r.name);
        if (rc == 0 && store_image_get(v->deps.store, m.image_id, &img) < 0)
                rc = op_not_found(e, "the image of snapshot '%s' of vm %s is gone", name, r.name);
        if (rc == 0)
                *ret = (struct vm_fork) { .dir = TAKE_PTR(dir), .image_id = xstrdup(m.image_id), .ip = xstrdup(m.ip),
                                          .vcpu = m.vcpu, .memory_mib = m.memory_mib, .disk_bytes = m.disk_bytes,
                                          .overlay_bytes = m.overlay_bytes, .repo = m.repo,
                                          .transport = m.transport };
        image_row_done(&img);
        snap_meta_done(&m);
        vm_paths_done(&p);
        vm_row_done(&r);
        return rc;
}

int vms_fork_disks(struct vms *v, const struct vm_row *r, const struct vm_fork *f, struct op_error *e) {
        struct snap_meta m = { .name = (char *) "fork", .repo = f->repo };
        struct vm_paths p;
        vm_paths_init(v, r, &p);
        int rc = mkdir_p(p.dir, 0700) < 0 ? op_fail(e, -errno, "cannot create %s: %s", p.dir, strerror(errno))
                                          : put_disks(f->dir, &m, &p, e);
        if (rc == 0)
                rc = vms_pin_host_key(v, r, &p, e);
        vm_paths_done(&p);
        return rc;
}

/* ---- after a crash ------------------------------------------------------------ */

void vms_snapshots_recover(struct vms *v, const struct vm_row *r, bool running) {
        _cleanup_free_ char *root = snap_root(r), *mark = path_join(root, SNAP_RESTORING), *name = NULL;
        _cleanup_(closedirp) DIR *d = opendir(root);
        struct dirent *de;
        bool partial = false;
        size_t len;
        while (d && (de = readdir(d))) {
                if (strncmp(de->d_name, SNAP_PARTIAL, strlen(SNAP_PARTIAL)) != 0)
                        continue;
                _cleanup_free_ char *path = path_join(root, de->d_name);
                log_info("vm %s: removing the half-written snapshot %s", r->name, path);
                rm_rf(path);
                partial = true;
        }
        /* a snapshot in progress paused the guest: it runs again */
        if (partial && running) {
                struct vm_paths p;
                _cleanup_free_ char *out = NULL;
                _cleanup_op_error_ struct op_error err = OP_ERROR_INIT;
                vm_paths_init(v, r, &p);
                if (qmp_command(p.qmp, "cont", 5000, &out, &err) < 0)
                        log_warn("vm %s: resuming the guest a snapshot paused: %s", r->name, op_error_message(&err));
                vm_paths_done(&p);
        }
        if (read_file_nofollow(mark, 256, &name, &len) < 0)
                return;
        struct snap_meta m = { 0 };
        struct vm_paths p;
        _cleanup_free_ char *dir = NULL;
        _cleanup_op_error_ struct op_error err = OP_ERROR_INIT;
        vm_paths_init(v, r, &p);
        if (snap_name_check(name, &err) == 0 && (dir = path_join(root, name)) &&
            snap_meta_read(dir, name, &m, &err) == 0 && snap_files_check(dir, &m, &p, &err) == 0 &&
            put_disks(dir, &m, &p, &err) == 0)
                log_info("vm %s: finished copying back the disks of snapshot '%s'", r->name, name);
        else
                log_warn("vm %s: an interrupted restore of '%s': %s", r->name, name, op_error_message(&err));
        unlink(mark);
        snap_meta_done(&m);
        vm_paths_done(&p);
}
