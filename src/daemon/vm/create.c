/* SPDX-License-Identifier: MIT */
/*
 * VM creation: the asynchronous create operations (vm.create.begin,
 * status, cancel), the reservation under create_vm_mu, and the per-VM disks,
 * keys and files prepared before the first boot. A cancel, or a failure
 * before the VM could boot, removes everything; a failed boot keeps the VM
 * in 'error' (vms_start_locked has released what it ran).
 */
#include "clock.h"
#include "vms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "fsutil.h"
#include "ipnet.h"
#include "jsonx.h"
#include "log.h"
#include "proc_spawn.h"
#include "store/store_artifacts.h"
#include "store/store_vms.h"
#include "strbuf.h"
#include "vm/guestcfg.h"
#include "vm/workdisk.h"
#include "vmm/vmm.h"
#include "vmname.h"
#include "vms_internal.h"

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
        _cleanup_free_ char *pubpath = xasprintf("%s.pub", c->ssh_key_path), *patterns = vm_kh_patterns(r);
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
                o->stages[o->n_stages - 1].detail = detail && *detail ? xstrdup(detail) : NULL;
        } else if (o->n_stages < MAX_STAGES) {
                if (o->n_stages > 0)
                        o->stages[o->n_stages - 1].end_ms = now;
                o->stages[o->n_stages].name = xstrdup(name);
                o->stages[o->n_stages].detail = detail && *detail ? xstrdup(detail) : NULL;
                o->stages[o->n_stages].start_ms = now;
                o->n_stages++;
        }
        pthread_mutex_unlock(&o->v->creates_mu);
        opstate_set_stage(&o->v->d->ops, o->op_id, name);
        log_info("create %s: %s%s%s", strempty(o->vm_name), name, detail && *detail ? ": " : "", strempty(detail));
}

static bool op_cancelled(void *ud) {
        struct create_op *o = ud;
        pthread_mutex_lock(&o->v->creates_mu);
        bool c = o->cancel || o->v->stopping;
        pthread_mutex_unlock(&o->v->creates_mu);
        return c;
}

static char *default_image(struct vms *v, const char *requested) {
        return xstrdup(requested && *requested ? requested : v->d->config->default_image_name);
}

/* The image row for `ref`, pulling it from the catalog when it is a catalog
 * name not yet present. */
static int ensure_image(struct vms *v, const char *ref, const struct progress *pr, struct image_row *ret, vm_error *e) {
        int r = store_image_get(v->d->store, ref, ret);
        if (r == 0)
                return 0;
        progress_stage(pr, "pull image", "%s from the image catalog", ref);
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
        struct progress pr = { op_stage, NULL, op_cancelled, o };
        const struct config *c = v->d->config;
        vm_error e = { 0 };
        struct image_row img = { 0 };
        struct boot_files bf = { 0 };
        struct vm_row row = { 0 };
        struct vm_lock *l = NULL;
        bool inserted = false;
        int rc;

        log_set_op_id(o->op_id);
        _cleanup_free_ char *image_ref = default_image(v, o->req.image);

        progress_stage(&pr, "resolve image", "%s", image_ref);
        rc = ensure_image(v, image_ref, &pr, &img, &e);
        if (rc < 0)
                goto done;
        rc = vms_resolve_boot(v, img.id, &bf, &e);
        if (rc < 0)
                goto done;
        if (progress_cancelled(&pr)) {
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
        l = vms_lock(v, o->vm_id);
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

        progress_stage(&pr, "prepare disks", "%s overlay on %s, work disk", img.name, row.guest_ip);
        rc = prepare_disks(v, &row, &bf, &e);
        if (rc < 0)
                goto done;
        if (progress_cancelled(&pr)) {
                rc = vm_fail(&e, ART_ERR_FAILED, -ECANCELED, "cancelled");
                goto done;
        }
        if (!o->req.no_start) {
                rc = vms_start_locked(v, &row, &pr, &e);
                if (rc < 0 && progress_cancelled(&pr))
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
                        if (vms_destroy_locked(v, &row, &e2) < 0)
                                log_warn("create %s: cleanup: %s", o->vm_name, strempty(e2.msg));
                        art_error_done(&e2);
                }
        }
        if (l)
                vms_unlock(v, l);
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
        vms_boot_files_done(&bf);
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
        image = default_image(v, req->image);
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

bool vms_create_in_flight(struct vms *v, const char *id) {
        bool busy = false;
        pthread_mutex_lock(&v->creates_mu);
        for (struct create_op *o = v->creates; o; o = o->next)
                if (o->state == OP_RUNNING && strcmp(o->vm_id, id) == 0)
                        busy = true;
        pthread_mutex_unlock(&v->creates_mu);
        return busy;
}

void vms_creates_done(struct vms *v) {
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
}
