/* SPDX-License-Identifier: MIT */
/*
 * The image registry. Managed images live in <state>/images/<id>/
 * (rootfs.ext4, work-seed.ext4, manifest.json) and are banger's to delete;
 * registered images point at host paths banger never touches. Every
 * mutation of the registry commits under image_ops_mu; long work (builds,
 * downloads, copies) is staged outside it and renamed into place.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts.h"
#include "bundle.h"
#include "clock.h"
#include "fetch.h"
#include "fsutil.h"
#include "image_manifest.h"
#include "imagebuild.h"
#include "jsonx.h"
#include "log.h"
#include "macro.h"
#include "parse.h"
#include "sha256.h"
#include "store/store_artifacts.h"
#include "strbuf.h"
#include "testhook.h"

extern const char image_catalog_json[];

json_t *image_catalog(void) {
        json_t *j = json_loads(image_catalog_json, 0, NULL);
        return j ? j : json_pack("{s:i, s:[]}", "version", 1, "images");
}

static uint64_t disk_usage(const char *path) {
        struct stat st;
        return path && stat(path, &st) == 0 ? (uint64_t) st.st_blocks * 512 : 0;
}

static json_t *image_json(const struct image_row *r) {
        json_t *j = json_pack("{s:s, s:s, s:b, s:s, s:s, s:I, s:s, s:s}", "id", r->id, "name", r->name, "managed",
                              r->managed, "rootfs_path", r->rootfs_path, "init_mode", r->init_mode,
                              "rootfs_size_bytes", (json_int_t) r->rootfs_size_bytes, "source", r->source,
                              "created_at", r->created_at);
        json_object_set_new(j, "work_seed_path", r->work_seed_path ? json_string(r->work_seed_path) : json_null());
        json_object_set_new(j, "kernel_ref", r->kernel_name ? json_string(r->kernel_name) : json_null());
        json_object_set_new(j, "kernel_path", r->kernel_path ? json_string(r->kernel_path) : json_null());
        json_object_set_new(j, "initrd_path", r->initrd_path ? json_string(r->initrd_path) : json_null());
        json_object_set_new(j, "disk_usage_bytes",
                            json_integer((json_int_t) (disk_usage(r->rootfs_path) + disk_usage(r->work_seed_path))));
        return j;
}

int image_show(struct artifacts *a, const char *name, json_t **ret, struct op_error *err) {
        struct image_row r;
        int rc = store_image_get(a->store, name, &r);
        if (rc == -ENOENT)
                return op_fail_as(err, RPC_NOT_FOUND, rc, "image '%s' not found", name);
        if (rc < 0)
                return op_fail(err, rc, "reading image '%s' failed", name);
        *ret = image_json(&r);
        /* a pulled OCI image: its source, manifest digest and run config */
        _cleanup_free_ char *dir = r.managed ? xstrdup(r.rootfs_path) : NULL, *text = NULL;
        char *slash = dir ? strrchr(dir, '/') : NULL;
        size_t len = 0;
        if (slash) {
                *slash = '\0';
                _cleanup_free_ char *mpath = path_join(dir, "manifest.json");
                _cleanup_json_ json_t *m = read_file_nofollow(mpath, 16u << 20, &text, &len) == 0
                                                   ? json_loadb(text, len, 0, NULL) : NULL;
                json_t *oci = json_object_get(m, "oci");
                if (json_is_object(oci))
                        json_object_set(*ret, "oci", oci);
        }
        image_row_done(&r);
        return 0;
}

int image_list(struct artifacts *a, bool available, json_t **ret, struct op_error *err) {
        struct image_row *rows = NULL;
        size_t n = 0;
        json_t *out = json_array();
        int rc = store_image_list(a->store, &rows, &n);

        if (rc < 0) {
                json_decref(out);
                return op_fail(err, rc, "listing images failed");
        }
        for (size_t i = 0; i < n; i++) {
                json_t *j = image_json(&rows[i]);
                json_object_set_new(j, "state", json_string("present"));
                json_array_append_new(out, j);
        }
        if (available) {
                _cleanup_json_ json_t *c = image_catalog();
                size_t i;
                json_t *e;
                json_array_foreach(json_object_get(c, "images"), i, e) {
                        const char *nm = json_string_value(json_object_get(e, "name"));
                        bool have = false;
                        for (size_t k = 0; k < n; k++)
                                have |= strcmp(rows[k].name, nm) == 0;
                        if (!have)
                                json_array_append_new(
                                        out, json_pack("{s:s, s:s, s:s, s:O, s:O, s:O, s:s}", "name", nm, "state",
                                                       "available", "kind", json_string_value(json_object_get(e, "kind")),
                                                       "init_mode", json_object_get(e, "init_mode"), "kernel_ref",
                                                       json_object_get(e, "kernel_ref"), "size_bytes",
                                                       json_object_get(e, "size_bytes"), "description",
                                                       json_string_value(json_object_get(e, "description"))));
                }
        }
        for (size_t i = 0; i < n; i++)
                image_row_done(&rows[i]);
        free(rows);
        *ret = out;
        return 0;
}

/* The referenced kernel must be present; catalog kernels are pulled. */
int image_ensure_kernel(struct artifacts *a, const char *kernel_ref, const struct progress *p, struct op_error *err) {
        struct kernel_row kr;
        json_t *k = NULL;

        if (!kernel_ref)
                return 0;
        if (store_kernel_get(a->store, kernel_ref, &kr) == 0) {
                kernel_row_done(&kr);
                return 0;
        }
        progress_stage(p, "kernel", "pulling %s", kernel_ref);
        int r = kernel_pull(a, kernel_ref, false, p, &k, err);
        json_decref(k);
        if (r < 0 && err && err->code == RPC_NOT_FOUND)
                return op_fail(err, r, "the image needs kernel '%s', which is neither present nor in the "
                                                        "catalog (banger kernel import %s --from DIR)",
                                kernel_ref, kernel_ref);
        return r;
}

/* Moves a complete staging dir into images/<id> and records the row. */
int image_commit(struct artifacts *a, const char *staging, struct image_row *row, struct op_error *err) {
        _cleanup_free_ char *dir = NULL;
        struct image_row existing;
        int r;

        row->id = random_hex(8);
        if (!row->id)
                return op_fail(err, -EIO, "no randomness for an image id");
        dir = path_join(a->layout->images_dir, row->id);
        row->rootfs_path = path_join(dir, "rootfs.ext4");
        _cleanup_free_ char *seed = path_join(staging, "work-seed.ext4");
        row->work_seed_path = access(seed, F_OK) == 0 ? path_join(dir, "work-seed.ext4") : NULL;
        row->created_at = now_rfc3339();

        pthread_mutex_lock(&a->image_ops_mu);
        if (store_image_get(a->store, row->name, &existing) == 0) {
                image_row_done(&existing);
                pthread_mutex_unlock(&a->image_ops_mu);
                return op_fail_as(err, RPC_ALREADY_EXISTS, -EEXIST, "image '%s' already exists", row->name);
        }
        r = rename(staging, dir) < 0 ? -errno : 0;
        test_crash_point("image:moved"); /* a dir without a row: the start-up sweep's */
        if (r == 0) {
                r = store_image_insert(a->store, row);
                if (r < 0)
                        rename(dir, staging);
        }
        pthread_mutex_unlock(&a->image_ops_mu);
        if (r < 0)
                return op_fail(err, r, "registering image '%s' failed: %s", row->name, strerror(-r));
        return 0;
}

static void drop_scratch(const char *staging) {
        static const char *const scratch[] = { "bundle.tar.zst", "build.log", "debian.tar" };
        for (size_t i = 0; i < ELEMENTSOF(scratch); i++) {
                _cleanup_free_ char *p = path_join(staging, scratch[i]);
                unlink(p);
        }
}

static int pull_recipe(struct artifacts *a, const char *name, json_t *entry, const char *staging,
                       const struct progress *p, struct op_error *err) {
        _cleanup_json_ json_t *m = NULL;
        const char *kind = json_string_value(json_object_get(entry, "kind"));
        const char *kref = json_string_value(json_object_get(entry, "kernel_ref"));
        int r;

        if (strcmp(kind, "debian") == 0 && (r = imagebuild_possible(a, err)) < 0) /* before any download */
                return r;
        r = image_ensure_kernel(a, kref, p, err);
        if (r < 0)
                return r;
        if (strcmp(kind, "debian") == 0) {
                r = imagebuild_debian(a, entry, staging, p, &m, err);
        } else if (strcmp(kind, "bundle") == 0) {
                const char *url = json_string_value(json_object_get(entry, "url"));
                const char *sha = json_string_value(json_object_get(entry, "sha256"));
                _cleanup_free_ char *bpath = path_join(staging, "bundle.tar.zst");
                struct image_manifest im = { 0 };
                progress_stage(p, "download", "%s", url);
                struct fetch_opts o = { .url = url, .expect_sha256 = sha, .progress = NULL, .ud = NULL };
                r = fetch_to_file(&o, bpath, NULL, err);
                if (r == 0)
                        r = bundle_read(bpath, staging, sha, p, &im, err);
                image_manifest_done(&im);
                if (r < 0)
                        return r;
        } else
                return op_fail(err, -EINVAL, "catalog entry '%s' has unknown kind '%s'", name, kind);
        if (r < 0)
                return r;
        drop_scratch(staging);
        const char *entry_name = json_string_value(json_object_get(entry, "name"));
        struct image_row row = { .name = xstrdup(name), .managed = true, .kernel_name = kref ? xstrdup(kref) : NULL,
                                 .init_mode = xstrdup(json_string_value(json_object_get(entry, "init_mode"))),
                                 /* the catalog entry's name, whatever --name said */
                                 .source = xasprintf("catalog:%s", entry_name ? entry_name : name) };
        _cleanup_free_ char *rootfs = path_join(staging, "rootfs.ext4");
        struct stat st;
        row.rootfs_size_bytes = stat(rootfs, &st) == 0 ? st.st_size : 0;
        r = image_commit(a, staging, &row, err);
        image_row_done(&row);
        return r;
}

static bool is_url(const char *s) {
        return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

static int pull_bundle(struct artifacts *a, const char *ref, const char *name_override, const char *staging,
                       const struct progress *p, char **ret_name, struct op_error *err) {
        _cleanup_free_ char *bpath = NULL;
        struct image_manifest im = { 0 };
        int r;

        if (is_url(ref)) {
                bpath = path_join(staging, "bundle.tar.zst");
                progress_stage(p, "download", "%s", ref);
                struct fetch_opts o = { .url = ref };
                r = fetch_to_file(&o, bpath, NULL, err);
                if (r < 0)
                        return r;
        } else {
                if (ref[0] != '/' || access(ref, R_OK) < 0)
                        return op_fail_as(err, RPC_BAD_REQUEST, -ENOENT, "bundle %s: %s", ref,
                                        ref[0] != '/' ? "path must be absolute" : strerror(errno));
                bpath = xstrdup(ref);
        }
        progress_stage(p, "import", "%s", ref);
        r = bundle_read(bpath, staging, NULL, p, &im, err);
        if (r < 0) /* a bad bundle is the caller's */
                return r == -ECANCELED ? r : op_recode(err, RPC_BAD_REQUEST);
        const char *name = name_override ? name_override : im.name;
        r = image_ensure_kernel(a, im.kernel_ref, p, err);
        if (r == 0) {
                drop_scratch(staging);
                _cleanup_free_ char *rootfs = path_join(staging, "rootfs.ext4");
                struct stat st;
                struct image_row row = { .name = xstrdup(name), .managed = true,
                                         .kernel_name = im.kernel_ref ? xstrdup(im.kernel_ref) : NULL,
                                         .init_mode = xstrdup(im.init_mode), .source = xasprintf("bundle:%s", ref),
                                         .rootfs_size_bytes = stat(rootfs, &st) == 0 ? st.st_size : 0 };
                r = image_commit(a, staging, &row, err);
                image_row_done(&row);
        }
        if (r == 0)
                *ret_name = xstrdup(name);
        image_manifest_done(&im);
        return r;
}

static bool ends_with(const char *s, const char *suffix) {
        size_t n = strlen(s), k = strlen(suffix);
        return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Not a bundle, not a catalog name: an OCI source (a bare word is only ever
 * a catalog name; Docker Hub's images are named with a tag or a path). */
static bool is_oci(const char *ref) {
        return oci_source_is_local(ref) || strpbrk(ref, "/:@");
}

int image_pull(struct artifacts *a, const char *ref, const struct oci_pull_opts *o, const struct progress *p,
               json_t **ret, struct op_error *err) {
        _cleanup_json_ json_t *entry = NULL;
        _cleanup_free_ char *key = NULL, *staging = NULL, *name = NULL;
        const char *name_override = o->name;
        bool bundle = !oci_source_is_local(ref) && (is_url(ref) || ref[0] == '/' || ends_with(ref, ".tar.zst"));
        struct image_row row;
        int rc = 0;

        if (!bundle && is_oci(ref))
                return oci_pull(a, ref, o, p, ret, err);

        if (name_override && !string_is_dns_label(name_override))
                return op_fail_as(err, RPC_BAD_REQUEST, -EINVAL, "image name '%s' is not a DNS label", name_override);
        if (!bundle) {
                _cleanup_json_ json_t *cat = image_catalog();
                entry = catalog_find(cat, "images", ref);
                if (!entry) {
                        _cleanup_free_ char *names = catalog_names(cat, "images");
                        return op_fail_as(err, RPC_NOT_FOUND, -ENOENT,
                                        "no image '%s' in the catalog (available: %s; or give a .tar.zst path or "
                                        "URL, or an OCI image: docker.io/library/%s, %s:latest, oci:DIR)",
                                        ref, names, ref, ref);
                }
                name = xstrdup(name_override ? name_override : ref);
        }
        key = xasprintf("image:%s", bundle ? ref : name);
        if (!inflight_begin(a, key, p, &rc, err)) {
                if (rc < 0 || bundle)
                        return rc < 0 ? rc : op_fail_as(err, RPC_ALREADY_EXISTS, -EEXIST, "%s was imported by a concurrent request", ref);
                return image_show(a, name, ret, err);
        }
        if (!bundle && store_image_get(a->store, name, &row) == 0) {
                image_row_done(&row);
                inflight_end(a, key, 0, NULL);
                rc = image_show(a, name, ret, err);
                if (rc == 0)
                        json_object_set_new(*ret, "already_pulled", json_true());
                return rc;
        }
        staging = staging_dir(a->layout->images_dir, bundle ? "bundle" : name);
        if (mkdir_p(staging, 0700) < 0)
                rc = op_fail(err, -EIO, "cannot create %s", staging);
        if (rc == 0 && bundle)
                rc = pull_bundle(a, ref, name_override, staging, p, &name, err);
        else if (rc == 0)
                rc = pull_recipe(a, name, entry, staging, p, err);
        if (rc < 0)
                (void) rm_rf(staging);
        inflight_end(a, key, rc, err);
        if (rc < 0)
                return rc;
        rc = image_show(a, name, ret, err);
        if (rc == 0)
                json_object_set_new(*ret, "already_pulled", json_false());
        return rc;
}

static int check_file(const char *what, const char *path, struct op_error *err) {
        struct stat st;
        if (!path)
                return 0;
        if (path[0] != '/')
                return op_fail_as(err, RPC_BAD_REQUEST, -EINVAL, "%s must be an absolute path", what);
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || access(path, R_OK) < 0)
                return op_fail_as(err, RPC_BAD_REQUEST, -ENOENT, "%s %s is not a readable file", what, path);
        return 0;
}

int image_register(struct artifacts *a, json_t *params, json_t **ret, struct op_error *err) {
        const char *name = json_string_value(json_object_get(params, "name"));
        const char *rootfs = json_string_value(json_object_get(params, "rootfs"));
        const char *seed = json_string_value(json_object_get(params, "work_seed"));
        const char *kernel = json_string_value(json_object_get(params, "kernel"));
        const char *initrd = json_string_value(json_object_get(params, "initrd"));
        const char *kref = json_string_value(json_object_get(params, "kernel_ref"));
        const char *mode = json_string_value(json_object_get(params, "init_mode"));
        const char *modules = json_string_value(json_object_get(params, "modules"));
        struct kernel_row kr;
        struct image_row old;
        struct stat st;
        int r;

        if (!name || !string_is_dns_label(name))
                return op_fail_as(err, RPC_BAD_REQUEST, -EINVAL, "image name '%s' is not a DNS label", name ? name : "");
        if (!!kernel == !!kref)
                return op_fail_as(err, RPC_BAD_REQUEST, -EINVAL, "give exactly one of --kernel or --kernel-ref");
        if (initrd && !kernel)
                return op_fail_as(err, RPC_BAD_REQUEST, -EINVAL, "--initrd goes with --kernel");
        if (modules && !kernel)
                return op_fail_as(err, RPC_BAD_REQUEST, -EINVAL,
                                  "--modules goes with --kernel (a --kernel-ref kernel has its own modules)");
        if (modules && initrd)
                return op_fail_as(err, RPC_BAD_REQUEST, -EINVAL,
                                  "--modules builds banger's initramfs from the module tree: leave out --initrd");
        if (mode && strcmp(mode, "systemd") != 0 && strcmp(mode, "fast") != 0)
                return op_fail_as(err, RPC_BAD_REQUEST, -EINVAL, "--init-mode must be systemd or fast");
        if ((r = check_file("--rootfs", rootfs, err)) < 0 || (r = check_file("--work-seed", seed, err)) < 0 ||
            (r = check_file("--kernel", kernel, err)) < 0 || (r = check_file("--initrd", initrd, err)) < 0)
                return r;
        if (!rootfs)
                return op_fail_as(err, RPC_BAD_REQUEST, -EINVAL, "--rootfs is required");
        if (kref) {
                if (store_kernel_get(a->store, kref, &kr) < 0)
                        return op_fail_as(err, RPC_NOT_FOUND, -ENOENT,
                                        "kernel '%s' is not present (banger kernel pull/import it first)", kref);
                kernel_row_done(&kr);
        }
        if (store_image_get(a->store, name, &old) == 0) {
                image_row_done(&old);
                return op_fail_as(err, RPC_ALREADY_EXISTS, -EEXIST, "image '%s' already exists", name);
        }
        if (modules) {
                /* the file and the tree become a kernel named after the image,
                 * booted like an imported one (banger's initramfs) */
                if ((r = kernel_import_file(a, name, kernel, modules, err)) < 0)
                        return op_prefix(err, "image '%s'", name);
                kref = name;
                kernel = NULL;
        }
        _cleanup_free_ char *id = random_hex(8), *now = now_rfc3339();
        struct image_row row = { .id = id, .name = (char *) name, .managed = false, .rootfs_path = (char *) rootfs,
                                 .work_seed_path = (char *) seed, .kernel_name = (char *) kref,
                                 .kernel_path = (char *) kernel, .initrd_path = (char *) initrd,
                                 .init_mode = (char *) (mode ? mode : "systemd"),
                                 .rootfs_size_bytes = stat(rootfs, &st) == 0 ? st.st_size : 0,
                                 .source = (char *) "register", .created_at = now };
        pthread_mutex_lock(&a->image_ops_mu);
        r = store_image_insert(a->store, &row);
        pthread_mutex_unlock(&a->image_ops_mu);
        if (r < 0 && modules && kernel_delete(a, name, NULL) < 0)
                log_warn("image register: cannot remove kernel '%s' made for it", name);
        if (r == -EEXIST)
                return op_fail_as(err, RPC_ALREADY_EXISTS, r, "image '%s' already exists", name);
        if (r < 0)
                return op_fail(err, r, "registering image '%s' failed", name);
        return image_show(a, name, ret, err);
}

int image_promote(struct artifacts *a, const char *name, const struct progress *p, json_t **ret,
                  struct op_error *err) {
        _cleanup_free_ char *key = xasprintf("image:%s", name), *staging = NULL, *dir = NULL;
        struct image_row row;
        int rc = 0;

        if (!inflight_begin(a, key, p, &rc, err))
                return rc < 0 ? rc : image_show(a, name, ret, err);
        rc = store_image_get(a->store, name, &row);
        if (rc < 0) {
                rc = op_fail_as(err, rc == -ENOENT ? RPC_NOT_FOUND : RPC_OPERATION_FAILED, rc, "image '%s' not found",
                                name);
                inflight_end(a, key, rc, err);
                return rc;
        }
        if (row.managed) {
                image_row_done(&row);
                inflight_end(a, key, 0, NULL);
                return image_show(a, name, ret, err);
        }
        staging = staging_dir(a->layout->images_dir, name);
        dir = path_join(a->layout->images_dir, row.id);
        if (mkdir_p(staging, 0700) < 0)
                rc = op_fail(err, -errno, "cannot create %s: %s", staging, strerror(errno));
        const char *const files[][2] = { { row.rootfs_path, "rootfs.ext4" }, { row.work_seed_path, "work-seed.ext4" },
                                         { row.kernel_path, "vmlinuz" }, { row.initrd_path, "initrd.img" } };
        char *newp[4] = { NULL, NULL, NULL, NULL };
        for (size_t i = 0; i < ELEMENTSOF(files) && rc == 0; i++) {
                if (!files[i][0])
                        continue;
                progress_stage(p, "copy", "%s", files[i][0]);
                _cleanup_free_ char *to = path_join(staging, files[i][1]);
                int r = copy_file_sparse(files[i][0], to, 0644);
                if (r < 0)
                        rc = op_fail(err, r, "copying %s: %s", files[i][0], strerror(-r));
                newp[i] = path_join(dir, files[i][1]);
        }
        if (rc == 0) {
                pthread_mutex_lock(&a->image_ops_mu);
                rc = rename(staging, dir) < 0 ? -errno : 0;
                if (rc == 0) {
                        struct image_row upd = row;
                        upd.managed = true;
                        upd.rootfs_path = newp[0];
                        upd.work_seed_path = newp[1];
                        upd.kernel_path = newp[2];
                        upd.initrd_path = newp[3];
                        upd.source = xasprintf("promoted:%s", row.source);
                        rc = store_image_update(a->store, &upd);
                        free(upd.source);
                        if (rc < 0)
                                rename(dir, staging);
                }
                pthread_mutex_unlock(&a->image_ops_mu);
                if (rc < 0)
                        op_fail(err, rc, "promoting image '%s' failed", name);
        }
        for (size_t i = 0; i < 4; i++)
                free(newp[i]);
        if (rc < 0)
                (void) rm_rf(staging);
        image_row_done(&row);
        inflight_end(a, key, rc, err);
        return rc < 0 ? rc : image_show(a, name, ret, err);
}

int image_delete(struct artifacts *a, const char *name, struct op_error *err) {
        struct image_row row;
        int refs = 0, r;
        _cleanup_free_ char *dir = NULL, *aside = staging_dir(a->layout->images_dir, "rm");

        pthread_mutex_lock(&a->image_ops_mu);
        r = store_image_get(a->store, name, &row);
        if (r < 0) {
                pthread_mutex_unlock(&a->image_ops_mu);
                return op_fail_as(err, r == -ENOENT ? RPC_NOT_FOUND : RPC_OPERATION_FAILED, r, "image '%s' not found",
                                  name);
        }
        r = store_image_vm_refs(a->store, row.id, &refs);
        if (r == 0 && refs > 0) {
                pthread_mutex_unlock(&a->image_ops_mu);
                image_row_done(&row);
                return op_fail(err, -EBUSY, "image '%s' is used by %d VM(s); delete them first", name,
                                refs);
        }
        r = store_image_delete(a->store, row.id);
        if (r == 0 && row.managed) {
                dir = path_join(a->layout->images_dir, row.id);
                if (rename(dir, aside) < 0 && errno != ENOENT)
                        log_warn("cannot move %s aside: %s", dir, strerror(errno));
        }
        pthread_mutex_unlock(&a->image_ops_mu);
        image_row_done(&row);
        if (r < 0)
                return op_fail(err, r, "deleting image '%s' failed", name);
        rm_rf(aside);
        return 0;
}

int image_export(struct artifacts *a, const char *name, const char *out, const struct progress *p, json_t **ret,
                 struct op_error *err) {
        struct image_row row;
        _cleanup_free_ char *text = NULL;
        char rsha[65], ssha[65] = "";
        int r;

        if (!out || out[0] != '/')
                return op_fail_as(err, RPC_BAD_REQUEST, -EINVAL, "the output path must be absolute");
        r = store_image_get(a->store, name, &row);
        if (r < 0)
                return op_fail_as(err, r == -ENOENT ? RPC_NOT_FOUND : RPC_OPERATION_FAILED, r, "image '%s' not found",
                                  name);
        progress_stage(p, "hash", "%s", row.rootfs_path);
        r = sha256_file_hex(row.rootfs_path, rsha);
        if (r == 0 && row.work_seed_path)
                r = sha256_file_hex(row.work_seed_path, ssha);
        if (r < 0) {
                image_row_done(&row);
                return op_fail(err, r, "reading the image files: %s", strerror(-r));
        }
        json_t *m = json_pack("{s:i, s:s, s:s, s:s, s:I}", "format", 1, "name", row.name, "init_mode", row.init_mode,
                              "rootfs_sha256", rsha, "rootfs_size_bytes", (json_int_t) row.rootfs_size_bytes);
        if (row.kernel_name)
                json_object_set_new(m, "kernel_ref", json_string(row.kernel_name));
        if (ssha[0])
                json_object_set_new(m, "work_seed_sha256", json_string(ssha));
        text = json_dumps(m, JSON_INDENT(2) | JSON_SORT_KEYS);
        json_decref(m);
        progress_stage(p, "export", "%s -> %s", row.name, out);
        r = bundle_write(out, text, row.rootfs_path, row.work_seed_path, p, err);
        image_row_done(&row);
        if (r < 0)
                return r;
        struct stat st;
        *ret = json_pack("{s:s, s:s, s:I}", "name", name, "path", out,
                         "size_bytes", (json_int_t) (stat(out, &st) == 0 ? st.st_size : 0));
        return 0;
}
