/* SPDX-License-Identifier: MIT */
/*
 * The kernel store: <state>/kernels/<name>/ holds vmlinuz, vmlinux (PVH ELF
 * when the bzImage payload could be unpacked), config, modules/ (only what
 * banger-init loads, plus their dependencies), modules.order, modules.ext4
 * (the whole module tree for the guests' /lib/modules: modulesdisk.h) and
 * manifest.json. Catalog kernels are resolved from the Debian mirror at pull
 * time: InRelease (gpgv) -> Packages (SHA256 from Release) -> the versioned
 * linux-image .deb (SHA256 from Packages) -> libarchive. Imports (kernels
 * from elsewhere) are kernel_import.c; the steps both share are here.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive_path.h"
#include "artifacts.h"
#include "bzimage.h"
#include "clock.h"
#include "deb.h"
#include "debian.h"
#include "fetch.h"
#include "fsutil.h"
#include "initramfs.h"
#include "jsonx.h"
#include "log.h"
#include "macro.h"
#include "modinfo.h"
#include "modorder.h"
#include "modulesdisk.h"
#include "proc_spawn.h"
#include "sha256.h"
#include "store/store_artifacts.h"
#include "strbuf.h"
#include "testhook.h"

extern const char kernel_catalog_json[];

json_t *kernel_catalog(void) {
        json_t *j = json_loads(kernel_catalog_json, 0, NULL);
        return j ? j : json_pack("{s:i, s:[]}", "version", 1, "kernels");
}

bool kernel_name_valid(const char *name) {
        size_t n = name ? strlen(name) : 0;
        if (n == 0 || n > 64 || name[0] == '.' || name[0] == '-')
                return false;
        return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

char *kernel_dir(struct artifacts *a, const char *name) {
        return path_join(a->layout->kernels_dir, name);
}

static json_t *read_manifest(const char *dir) {
        _cleanup_free_ char *p = path_join(dir, "manifest.json"), *text = NULL;
        size_t len;
        if (read_file(p, 4u << 20, &text, &len) < 0)
                return NULL;
        return json_loadb(text, len, 0, NULL);
}

static json_t *kernel_json(struct artifacts *a, const struct kernel_row *r) {
        _cleanup_json_ json_t *m = read_manifest(r->dir);
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I}", "name", r->name, "distro", r->distro, "arch",
                              r->arch, "kernel_version", r->kernel_version, "source", r->source, "imported_at",
                              r->imported_at, "dir", r->dir, "size_bytes", (json_int_t) dir_size(r->dir, false));
        (void) a;
        static const char *const boot_files[] = { "vmlinux", "vmlinuz", "initrd.img" };
        for (size_t i = 0; i < ELEMENTSOF(boot_files); i++) {
                _cleanup_free_ char *p = path_join(r->dir, boot_files[i]);
                if (access(p, R_OK) == 0)
                        json_object_set_new(j, boot_files[i], json_string(p));
        }
        _cleanup_free_ char *mods = path_join(r->dir, MODULES_DISK_FILE);
        json_object_set_new(j, "modules_disk", access(mods, R_OK) == 0 ? json_string(mods) : json_null());
        if (m) {
                json_object_set(j, "pvh", json_object_get(m, "pvh") ? json_object_get(m, "pvh") : json_false());
                json_object_set(j, "modules", json_object_get(m, "modules_order"));
                json_object_set(j, "files", json_object_get(m, "files"));
                if (json_object_get(m, "package"))
                        json_object_set(j, "package", json_object_get(m, "package"));
                if (json_is_object(json_object_get(m, "build"))) /* built from source (kernel_build.c) */
                        json_object_set(j, "build", json_object_get(m, "build"));
        }
        return j;
}

/* kernel_show plus the initramfs for the current banger-init, built now if
 * needed: after a pull or import the kernel is ready to boot. */
int kernel_with_initramfs(struct artifacts *a, const char *name, json_t **ret, struct op_error *err) {
        _cleanup_free_ char *path = NULL;
        int r = kernel_initramfs(a, name, &path, err);
        if (r < 0)
                return r;
        r = kernel_show(a, name, ret, err);
        if (r == 0)
                json_object_set_new(*ret, "initramfs", json_string(path));
        return r;
}

int kernel_show(struct artifacts *a, const char *name, json_t **ret, struct op_error *err) {
        struct kernel_row r;
        int rc = store_kernel_get(a->store, name, &r);

        if (rc == -ENOENT)
                return op_fail_as(err, RPC_NOT_FOUND, rc, "kernel '%s' is not pulled or imported", name);
        if (rc < 0)
                return op_fail(err, rc, "reading kernel '%s' from the store failed", name);
        *ret = kernel_json(a, &r);
        kernel_row_done(&r);
        return 0;
}

int kernel_list(struct artifacts *a, bool available, json_t **ret, struct op_error *err) {
        struct kernel_row *rows = NULL;
        size_t n = 0;
        json_t *out = json_array();
        int rc = store_kernel_list(a->store, &rows, &n);

        if (rc < 0) {
                json_decref(out);
                return op_fail(err, rc, "listing kernels failed");
        }
        for (size_t i = 0; i < n; i++) {
                json_t *j = kernel_json(a, &rows[i]);
                json_object_set_new(j, "state", json_string("pulled"));
                json_array_append_new(out, j);
        }
        if (available) {
                _cleanup_json_ json_t *c = kernel_catalog();
                size_t i;
                json_t *e;
                json_array_foreach(json_object_get(c, "kernels"), i, e) {
                        const char *name = json_string_value(json_object_get(e, "name"));
                        bool pulled = false;
                        for (size_t k = 0; k < n; k++)
                                pulled |= strcmp(rows[k].name, name) == 0;
                        if (pulled)
                                continue;
                        json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:O, s:s, s:s, s:s}", "name", name, "distro",
                                                             json_string_value(json_object_get(e, "distro")), "arch",
                                                             json_string_value(json_object_get(e, "arch")), "size_bytes",
                                                             json_object_get(e, "size_bytes"), "state", "available",
                                                             "description",
                                                             json_string_value(json_object_get(e, "description")),
                                                             "kind", json_string_value(json_object_get(e, "kind"))));
                }
        }
        for (size_t i = 0; i < n; i++)
                kernel_row_done(&rows[i]);
        free(rows);
        *ret = out;
        return 0;
}

/* ---- pull ---------------------------------------------------------------- */

struct pull_ctx {
        struct artifacts *a;
        const struct progress *p;
        const char *stage;
};

static bool pull_cancel(void *ud) {
        struct pull_ctx *c = ud;
        return progress_cancelled(c->p);
}

static void pull_bytes(void *ud, uint64_t done, uint64_t total) {
        struct pull_ctx *c = ud;
        if (c->p && c->p->bytes)
                c->p->bytes(c->p->ud, c->stage, done, total);
}

struct want_ctx {
        char *version;     /* from boot/vmlinuz-<version> */
        char *mod_release; /* the one lib/modules/<release>/ of the package */
        bool mixed;        /* more than one release under lib/modules */
};

/* What the modules disk keeps of lib/modules/<release>/: the modules and the
 * lists depmod reads (regular files in every linux-image package; anything
 * else, such as the build/source links of a self-built kernel, stays out). */
static bool module_tree_file(const char *rest) {
        const char *base = strrchr(rest, '/') ? strrchr(rest, '/') + 1 : rest;
        if (strncmp(rest, "kernel/", 7) == 0)
                return fnmatch("*.ko", base, 0) == 0;
        return strcmp(rest, "modules.order") == 0 || strcmp(rest, "modules.builtin") == 0 ||
               strcmp(rest, "modules.builtin.modinfo") == 0;
}

/* p is "<prefix><name>" with no further '/' in name. */
static bool directly_in(const char *p, const char *prefix) {
        size_t n = strlen(prefix);
        if (strncmp(p, prefix, n) != 0)
                return false;
        for (const char *c = p + n; *c; c++)
                if (*c == '/')
                        return false;
        return true;
}

static char *want_kernel_file(const char *p, void *ud) {
        struct want_ctx *w = ud;

        if (directly_in(p, "boot/vmlinuz-")) {
                free(w->version);
                w->version = xstrdup(p + 13);
                return xstrdup("vmlinuz");
        }
        if (directly_in(p, "boot/config-"))
                return xstrdup("config");
        if (strncmp(p, "lib/modules/", 12) == 0) {
                const char *rel = p + 12, *slash = strchr(rel, '/');
                if (!slash || !module_tree_file(slash + 1))
                        return NULL;
                _cleanup_free_ char *release = xstrndup(rel, (size_t) (slash - rel));
                if (!w->mod_release)
                        w->mod_release = TAKE_PTR(release);
                else if (strcmp(w->mod_release, release) != 0) {
                        w->mixed = true;
                        return NULL;
                }
                if (!modules_release_valid(w->mod_release))
                        return NULL;
                return xasprintf("modroot/%s", p);
        }
        return NULL;
}

static void strip_ko(char *name) {
        size_t n = strlen(name);
        if (n > 3 && strcmp(name + n - 3, ".ko") == 0)
                name[n - 3] = '\0';
}

/* Reads deps of every .ko in src_dir, orders `wanted` + deps, moves those to
 * dst_dir, writes modules.order. Missing wanted modules are an error only
 * when `strict` (catalog kernels); imported kernels may have them built in. */
int kernel_select_modules(const char *src_dir, const char *dst_dir, const char *order_path, json_t *wanted, bool strict,
                          json_t **ret_order, struct op_error *err) {
        DIR *d = opendir(src_dir);
        struct dirent *de;
        char **names = NULL, **deps = NULL, **files = NULL;
        size_t n = 0;
        int rc = 0;

        *ret_order = json_array();
        if (!d)
                return errno == ENOENT && !strict ? 0 : op_fail(err, -errno, "no modules in %s", src_dir);
        while ((de = readdir(d))) {
                if (fnmatch("*.ko", de->d_name, 0) != 0)
                        continue;
                _cleanup_free_ char *p = path_join(src_dir, de->d_name);
                char *dep = NULL;
                if ((rc = modinfo_depends(p, &dep, err)) < 0)
                        break;
                names = xrealloc(names, (n + 1) * sizeof(char *));
                deps = xrealloc(deps, (n + 1) * sizeof(char *));
                files = xrealloc(files, (n + 1) * sizeof(char *));
                files[n] = xstrdup(de->d_name);
                names[n] = xstrdup(de->d_name);
                strip_ko(names[n]);
                deps[n] = dep;
                n++;
        }
        closedir(d);

        struct modnode *nodes = xcalloc(n + 1, sizeof(*nodes));
        const char **want = xcalloc(json_array_size(wanted) + 1, sizeof(char *));
        size_t nw = 0, i;
        json_t *w;
        for (i = 0; i < n; i++)
                nodes[i] = (struct modnode) { names[i], deps[i] };
        json_array_foreach(wanted, i, w) {
                const char *s = json_string_value(w);
                bool present = false;
                for (size_t k = 0; k < n; k++)
                        present |= modname_equal(names[k], s) != 0;
                if (present)
                        want[nw++] = s;
                else if (strict && rc == 0)
                        rc = op_fail(err, -ENOENT, "the kernel package has no module '%s'", s);
        }
        size_t *order = NULL, norder = 0;
        _cleanup_free_ char *e = NULL;
        if (rc == 0 && modorder_resolve(want, nw, nodes, n, &order, &norder, &e) < 0)
                rc = op_fail(err, -ENOENT, "%s", e);
        struct strbuf ofile = STRBUF_INIT;
        if (rc == 0 && norder && mkdir_p(dst_dir, 0755) < 0)
                rc = op_fail(err, -EIO, "cannot create %s", dst_dir);
        for (size_t k = 0; rc == 0 && k < norder; k++) {
                _cleanup_free_ char *from = path_join(src_dir, files[order[k]]), *to = path_join(dst_dir, files[order[k]]);
                if (rename(from, to) < 0)
                        rc = op_fail(err, -errno, "cannot move %s: %s", from, strerror(errno));
                strbuf_addf(&ofile, "%s\n", files[order[k]]);
                json_array_append_new(*ret_order, json_string(files[order[k]]));
        }
        if (rc == 0 && write_file_atomic(order_path, ofile.buf, ofile.len, 0644) < 0)
                rc = op_fail(err, -EIO, "cannot write %s", order_path);
        strbuf_release(&ofile);
        free(order);
        free(nodes);
        free(want);
        for (i = 0; i < n; i++) {
                free(names[i]);
                free(deps[i]);
                free(files[i]);
        }
        free(names);
        free(deps);
        free(files);
        return rc;
}

/* vmlinux from vmlinuz where the payload allows it; *ret_pvh tells PVH boot. */
int kernel_unpack_vmlinux(const char *staging, bool *ret_pvh, struct op_error *err) {
        _cleanup_free_ char *zp = path_join(staging, "vmlinuz"), *xp = path_join(staging, "vmlinux");
        _cleanup_free_ char *img = NULL;
        _cleanup_op_error_ struct op_error e = OP_ERROR_INIT;
        unsigned char *elf = NULL;
        size_t len, elen;
        int r;

        *ret_pvh = false;
        if (access(zp, F_OK) < 0)
                return 0;
        r = read_file(zp, 256u << 20, &img, &len);
        if (r < 0)
                return op_fail(err, r, "reading %s: %s", zp, strerror(-r));
        r = bzimage_extract_vmlinux((unsigned char *) img, len, &elf, &elen, ret_pvh, &e);
        if (r == -ENOTSUP) {
                log_info("kernel: %s; VMs will boot the bzImage", op_error_message(&e));
                return 0;
        }
        if (r < 0) {
                op_error_move(err, &e);
                return op_prefix(err, "%s", zp);
        }
        r = write_file_atomic(xp, elf, elen, 0644);
        free(elf);
        return r < 0 ? op_fail(err, r, "writing %s: %s", xp, strerror(-r)) : 0;
}

static int hash_tree(const char *dir, const char *rel, json_t *files) {
        _cleanup_free_ char *p = rel ? path_join(dir, rel) : xstrdup(dir);
        DIR *d = opendir(p);
        struct dirent *de;

        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.' || strcmp(de->d_name, "manifest.json") == 0 ||
                    strncmp(de->d_name, "initramfs-", 10) == 0)
                        continue;
                _cleanup_free_ char *r2 = rel ? xasprintf("%s/%s", rel, de->d_name) : xstrdup(de->d_name);
                _cleanup_free_ char *full = path_join(dir, r2);
                struct stat st;
                if (lstat(full, &st) < 0)
                        continue;
                if (S_ISDIR(st.st_mode))
                        hash_tree(dir, r2, files);
                else if (S_ISREG(st.st_mode)) {
                        char hex[65];
                        if (sha256_file_hex(full, hex) == 0)
                                json_object_set_new(files, r2, json_string(hex));
                }
        }
        closedir(d);
        return 0;
}

int kernel_write_manifest(const char *staging, json_t *m, struct op_error *err) {
        json_t *files = json_object();
        hash_tree(staging, NULL, files);
        json_object_set_new(m, "files", files);
        _cleanup_free_ char *p = path_join(staging, "manifest.json");
        _cleanup_free_ char *s = json_dumps(m, JSON_INDENT(2) | JSON_SORT_KEYS);
        int r = write_file_atomic(p, s, strlen(s), 0644);
        return r < 0 ? op_fail(err, r, "writing %s", p) : 0;
}

/* Moves staging into place and records the row; replaces an old kernel
 * (force) only after the new one is complete. Holds image_ops_mu. */
int kernel_commit(struct artifacts *a, const char *name, const char *staging, const struct kernel_row *row,
                         struct op_error *err) {
        _cleanup_free_ char *dst = kernel_dir(a, name);
        _cleanup_free_ char *old = staging_dir(a->layout->kernels_dir, "old");
        bool had = access(dst, F_OK) == 0;
        int r = 0;

        pthread_mutex_lock(&a->image_ops_mu);
        if (had && rename(dst, old) < 0)
                r = op_fail(err, -errno, "cannot move the old %s aside: %s", dst, strerror(errno));
        if (r == 0 && rename(staging, dst) < 0) {
                r = op_fail(err, -errno, "cannot move %s into place: %s", dst, strerror(errno));
                if (had)
                        rename(old, dst);
        }
        test_crash_point("kernel:moved");
        if (r == 0) {
                r = store_kernel_put(a->store, row);
                if (r < 0) {
                        rename(dst, staging);
                        if (had)
                                rename(old, dst);
                        op_fail(err, r, "recording kernel '%s' in the store failed", name);
                }
        }
        pthread_mutex_unlock(&a->image_ops_mu);
        if (had)
                rm_rf(old);
        return r;
}

/* Every .ko below dir into dst (flat); `link`: hard links (dir is ours, on
 * the same filesystem), else copies. */
int kernel_collect_ko(const char *dir, const char *dst, bool link_them) {
        DIR *d = opendir(dir);
        struct dirent *de;
        int r = 0;

        if (!d)
                return -errno;
        while (r == 0 && (de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                _cleanup_free_ char *p = path_join(dir, de->d_name);
                struct stat st;
                if (lstat(p, &st) < 0)
                        continue;
                if (S_ISDIR(st.st_mode))
                        r = kernel_collect_ko(p, dst, link_them);
                else if (S_ISREG(st.st_mode) && fnmatch("*.ko", de->d_name, 0) == 0) {
                        _cleanup_free_ char *to = path_join(dst, de->d_name);
                        r = link_them && link(p, to) == 0 ? 0 : copy_file_sparse(p, to, 0644);
                }
        }
        closedir(d);
        return r;
}


/* One kernel pull, step by step, into its staging dir. */
struct pull {
        struct artifacts *a;
        const char *name;
        json_t *entry;
        const struct progress *p;
        char *staging;
        struct pull_ctx pc;
        struct release rel;
        struct deb_package metap, imgp;
        char *image_pkg, *deb_url;
        struct want_ctx want;
        json_t *mod_order;
        bool pvh;
};

/* Signed Release -> Packages -> the meta package's linux-image-* dependency. */
static int pull_resolve(struct pull *k, struct op_error *err) {
        const char *mirror = config_live_get(k->a->config)->debian_mirror;
        const char *suite = json_string_value(json_object_get(k->entry, "suite"));
        const char *component = json_string_value(json_object_get(k->entry, "component"));
        const char *meta = json_string_value(json_object_get(k->entry, "meta_package"));
        const char *prefix = json_string_value(json_object_get(k->entry, "image_prefix"));
        _cleanup_free_ char *packages = NULL, *msg = NULL;
        size_t plen;
        progress_stage(k->p, "release", "%s/dists/%s/InRelease", mirror, suite);
        int r = mirror_verified_release(k->a, k->staging, mirror, suite, k->p, &k->rel, NULL, err);
        if (r < 0)
                return r;
        progress_stage(k->p, "index", "%s %s (signed %s)", suite, component, k->rel.date ? k->rel.date : "?");
        if ((r = mirror_fetch_packages(&k->rel, mirror, suite, component, k->p, &packages, &plen, err)) < 0)
                return r;
        if ((r = debian_packages_find(packages, plen, meta, &k->metap, &msg)) < 0)
                return op_fail(err, r, "%s", msg ? msg : "meta package not in the index");
        k->image_pkg = debian_depends_first_with_prefix(k->metap.depends, prefix);
        if (!k->image_pkg)
                return op_fail(err, -ENOENT, "%s %s depends on no %s* package", meta, k->metap.version, prefix);
        free(TAKE_PTR(msg));
        if ((r = debian_packages_find(packages, plen, k->image_pkg, &k->imgp, &msg)) < 0)
                return op_fail(err, r, "%s", msg ? msg : "kernel package not in the index");
        return 0;
}

/* The .deb, checked against the index, then its kernel and modules. */
static int pull_package(struct pull *k, struct op_error *err) {
        _cleanup_free_ char *deb = path_join(k->staging, "package.deb");
        int nwritten;
        k->deb_url = xasprintf("%s/%s", config_live_get(k->a->config)->debian_mirror, k->imgp.filename);
        progress_stage(k->p, "download", "%s %s (%llu MiB)", k->image_pkg, k->imgp.version,
                       (unsigned long long) (k->imgp.size >> 20));
        k->pc.stage = "download";
        struct fetch_opts o = { .url = k->deb_url, .expect_sha256 = k->imgp.sha256, .expect_size = k->imgp.size,
                                .progress = pull_bytes, .cancel = pull_cancel, .ud = &k->pc };
        int r = fetch_to_file(&o, deb, NULL, err);
        if (r < 0)
                return r;
        if (progress_cancelled(k->p))
                return op_fail(err, -ECANCELED, "kernel pull cancelled");
        progress_stage(k->p, "extract", "kernel and modules");
        r = deb_extract(deb, k->staging, want_kernel_file, &k->want, &nwritten, err);
        unlink(deb);
        if (r < 0)
                return op_prefix(err, "%s", k->imgp.filename);
        if (!k->want.version)
                return op_fail(err, -ENOENT, "%s contains no boot/vmlinuz-*", k->imgp.filename);
        return 0;
}

/* The package's lib/modules/<release>/ (in modroot/) becomes modules.ext4;
 * the initramfs's modules are copied out of it first. */
static int pull_modules(struct pull *k, struct op_error *err) {
        _cleanup_free_ char *all = path_join(k->staging, "all-modules"), *mods = path_join(k->staging, "modules");
        _cleanup_free_ char *order = path_join(k->staging, "modules.order"), *root = path_join(k->staging, "modroot");
        _cleanup_free_ char *disk = path_join(k->staging, MODULES_DISK_FILE);
        const char *rel = k->want.mod_release;
        if (k->want.mixed || !rel || !modules_release_valid(rel) || strcmp(rel, k->want.version) != 0)
                return op_fail(err, -EBADMSG, "%s: its modules are not one lib/modules/%s tree", k->imgp.filename,
                               k->want.version);
        _cleanup_free_ char *tree = xasprintf("%s/lib/modules/%s", root, rel);
        progress_stage(k->p, "modules", "resolving dependencies");
        int r = mkdir_p(all, 0755) < 0 ? -errno : kernel_collect_ko(tree, all, true);
        if (r < 0)
                return op_fail(err, r, "collecting the modules: %s", strerror(-r));
        r = kernel_select_modules(all, mods, order, json_object_get(k->entry, "modules"), true, &k->mod_order, err);
        rm_rf(all);
        if (r < 0)
                return r;
        progress_stage(k->p, "modules disk", "depmod and mkfs.ext4 of lib/modules/%s", rel);
        r = modules_disk_build(root, rel, disk, err);
        rm_rf(root);
        return r;
}

static int pull_boot_files(struct pull *k, struct op_error *err) {
        int r = pull_modules(k, err);
        if (r < 0)
                return r;
        progress_stage(k->p, "vmlinux", "unpacking the bzImage payload for PVH boot");
        return kernel_unpack_vmlinux(k->staging, &k->pvh, err);
}

static int pull_commit(struct pull *k, struct op_error *err) {
        const char *distro = json_string_value(json_object_get(k->entry, "distro"));
        _cleanup_free_ char *now = now_rfc3339(), *source = xasprintf("debian:%s", k->deb_url);
        _cleanup_free_ char *final_dir = kernel_dir(k->a, k->name);
        json_t *m = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:b, s:s, s:s}", "name", k->name, "distro",
                              distro, "arch", "x86_64", "kernel_version", k->want.version, "package", k->image_pkg,
                              "package_version", k->imgp.version, "source", source, "release_date",
                              k->rel.date ? k->rel.date : "", "imported_at", now, "modules_order",
                              TAKE_PTR(k->mod_order), "pvh", k->pvh, "modules_disk", MODULES_DISK_FILE,
                              "modules_release", k->want.mod_release);
        int r = kernel_write_manifest(k->staging, m, err);
        json_decref(m);
        if (r < 0)
                return r;
        struct kernel_row row = { (char *) k->name, (char *) distro, (char *) "x86_64", k->want.version, final_dir,
                                  source, now };
        return kernel_commit(k->a, k->name, k->staging, &row, err);
}

/* The package's files from the cache of finished pulls (kernel_cache.c):
 * 1 on a hit, with what the manifest says about them; 0 with an empty
 * staging dir otherwise. */
static int pull_cached(struct pull *k, const char *ckey, struct op_error *err) {
        _cleanup_json_ json_t *m = NULL;
        if (kernel_cache_get(k->a, k->name, ckey, k->staging, &m) == 1) {
                const char *rel = json_string_value(json_object_get(m, "modules_release"));
                k->deb_url = xasprintf("%s/%s", config_live_get(k->a->config)->debian_mirror, k->imgp.filename);
                k->want.version = xstrdup(json_string_value(json_object_get(m, "kernel_version")));
                k->want.mod_release = xstrdup(rel);
                k->mod_order = json_incref(json_object_get(m, "modules_order"));
                if (modules_release_valid(rel) && strcmp(rel, k->want.version) == 0) {
                        progress_stage(k->p, "cache", "%s %s: the files of an earlier pull of this package (%s)",
                                       k->image_pkg, k->imgp.version, ckey);
                        progress_stage(k->p, "vmlinux", "unpacking the bzImage payload for PVH boot");
                        return kernel_unpack_vmlinux(k->staging, &k->pvh, err) < 0 ? -EIO : 1;
                }
                free(TAKE_PTR(k->deb_url));
                free(TAKE_PTR(k->want.version));
                free(TAKE_PTR(k->want.mod_release));
                json_decref(TAKE_PTR(k->mod_order));
        }
        rm_rf(k->staging);
        return mkdir_p(k->staging, 0755) < 0 ? op_fail(err, -errno, "cannot create %s: %s", k->staging, strerror(errno)) : 0;
}

static int do_pull(struct artifacts *a, const char *name, json_t *entry, bool force, const struct progress *p,
                   struct op_error *err) {
        struct pull k = { .a = a, .name = name, .entry = entry, .p = p, .staging = staging_dir(a->layout->kernels_dir, name),
                          .pc = { a, p, "release" } };
        _cleanup_free_ char *ckey = NULL;
        int hit = 0;
        int r = mkdir_p(k.staging, 0755) < 0 ? op_fail(err, -errno, "cannot create %s: %s", k.staging, strerror(errno)) : 0;
        if (r == 0)
                r = pull_resolve(&k, err);
        if (r == 0) {
                ckey = kernel_cache_key(entry, k.imgp.sha256);
                r = hit = force ? 0 : pull_cached(&k, ckey, err);
        }
        if (r == 0)
                r = pull_package(&k, err);
        if (r == 0)
                r = pull_boot_files(&k, err);
        if (r >= 0)
                r = pull_commit(&k, err);
        if (r == 0 && !hit) {
                _cleanup_free_ char *kdir = kernel_dir(a, name);
                kernel_cache_put(a, name, ckey, kdir);
        }
        if (r < 0)
                rm_rf(k.staging);
        json_decref(k.mod_order);
        debian_release_done(&k.rel);
        deb_package_done(&k.metap);
        deb_package_done(&k.imgp);
        free(k.want.version);
        free(k.want.mod_release);
        free(k.image_pkg);
        free(k.deb_url);
        free(k.staging);
        return r;
}

int kernel_obtain(struct artifacts *a, const char *name, json_t *entry, bool force, const struct progress *p,
                  kernel_make_fn make, const char *already_key, json_t **ret, struct op_error *err) {
        _cleanup_free_ char *key = xasprintf("kernel:%s", name);
        int rc = 0;
        /* one pull or build of a name at a time; later callers get its outcome */
        if (!inflight_begin(a, key, p, &rc, err))
                return rc < 0 ? rc : kernel_show(a, name, ret, err);
        struct kernel_row row;
        bool exists = store_kernel_get(a->store, name, &row) == 0;
        if (exists)
                kernel_row_done(&row);
        if (!exists || force)
                rc = make(a, name, entry, force, p, err);
        inflight_end(a, key, rc, err);
        if (rc < 0)
                return rc;
        rc = kernel_with_initramfs(a, name, ret, err);
        if (rc == 0)
                json_object_set_new(*ret, already_key, json_boolean(exists && !force));
        return rc;
}

int kernel_pull(struct artifacts *a, const char *name, bool force, const struct progress *p, json_t **ret,
                struct op_error *err) {
        _cleanup_json_ json_t *entry = NULL;
        int rc = 0;

        if (!kernel_name_valid(name))
                return op_fail_as(err, RPC_BAD_REQUEST, -EINVAL, "invalid kernel name '%s'", name);
        _cleanup_json_ json_t *cat = kernel_catalog();
        entry = catalog_find(cat, "kernels", name);
        if (!entry) {
                _cleanup_free_ char *names = catalog_names(cat, "kernels");
                return op_fail_as(err, RPC_NOT_FOUND, -ENOENT, "no kernel '%s' in the catalog (available: %s)", name,
                                names);
        }
        if (kernel_entry_built(entry)) { /* nothing to download: built from source (kernel_build.c) */
                rc = kernel_build(a, name, force, p, ret, err);
                if (rc == 0)
                        json_object_set(*ret, "already_pulled", json_object_get(*ret, "already_built"));
                return rc;
        }
        return kernel_obtain(a, name, entry, force, p, do_pull, "already_pulled", ret, err);
}

int kernel_delete(struct artifacts *a, const char *name, struct op_error *err) {
        _cleanup_free_ char *first = NULL, *dir = kernel_dir(a, name);
        _cleanup_free_ char *aside = staging_dir(a->layout->kernels_dir, "rm");
        struct kernel_row row;
        int count = 0, r;

        pthread_mutex_lock(&a->image_ops_mu);
        r = store_kernel_get(a->store, name, &row);
        if (r < 0) {
                pthread_mutex_unlock(&a->image_ops_mu);
                return r == -ENOENT ? op_fail_as(err, RPC_NOT_FOUND, r, "kernel '%s' not found", name)
                                    : op_fail(err, r, "reading the store failed");
        }
        kernel_row_done(&row);
        r = store_kernel_image_refs(a->store, name, &first, &count);
        if (r == 0 && count > 0) {
                pthread_mutex_unlock(&a->image_ops_mu);
                return op_fail(err, -EBUSY, "kernel '%s' is used by image '%s'%s; delete the image first",
                                name, first, count > 1 ? " and others" : "");
        }
        r = store_kernel_delete(a->store, name);
        if (r == 0 && rename(dir, aside) < 0 && errno != ENOENT)
                log_warn("cannot move %s aside: %s", dir, strerror(errno));
        pthread_mutex_unlock(&a->image_ops_mu);
        if (r < 0)
                return op_fail(err, r, "deleting kernel '%s' failed", name);
        rm_rf(aside);
        return 0;
}

int kernel_initramfs(struct artifacts *a, const char *name, char **ret_path, struct op_error *err) {
        _cleanup_free_ char *dir = kernel_dir(a, name), *order_text = NULL, *key = NULL;
        char init_hash[65];
        size_t len;
        int r;

        if (!a->init_bin)
                return op_fail(err, -ENOENT, "banger-init not found (set $BANGER_INIT or install it)");
        r = sha256_file_hex(a->init_bin, init_hash);
        if (r < 0)
                return op_fail(err, r, "reading %s: %s", a->init_bin, strerror(-r));
        _cleanup_free_ char *path = xasprintf("%s/initramfs-%.12s.cpio", dir, init_hash);
        if (access(path, R_OK) == 0) {
                *ret_path = TAKE_PTR(path);
                return 0;
        }
        key = xasprintf("initramfs:%s", name);
        int rc = 0;
        if (!inflight_begin(a, key, NULL, &rc, err)) {
                if (rc < 0)
                        return rc;
                *ret_path = TAKE_PTR(path);
                return 0;
        }
        _cleanup_free_ char *order_path = path_join(dir, "modules.order");
        r = read_file(order_path, 1u << 20, &order_text, &len);
        if (r < 0 && r != -ENOENT) {
                rc = op_fail(err, r, "reading %s", order_path);
                goto out;
        }
        struct cpio_entry *ents = xcalloc(256, sizeof(*ents));
        char *names[256];
        size_t n = 0, nn = 0;
        struct strbuf order = STRBUF_INIT;
        ents[n++] = (struct cpio_entry) { .path = "init", .src_file = a->init_bin, .mode = 0755 };
        char *save = NULL;
        for (char *tok = order_text ? strtok_r(order_text, "\n", &save) : NULL; tok && n < 250;
             tok = strtok_r(NULL, "\n", &save)) {
                _cleanup_free_ char *norm = NULL;
                if (archive_path_normalize(tok, &norm) < 0 || strchr(norm, '/'))
                        continue;
                names[nn] = xasprintf("lib/modules/%s", norm);
                char *src = xasprintf("%s/modules/%s", dir, norm);
                ents[n++] = (struct cpio_entry) { .path = names[nn], .src_file = src, .mode = 0644 };
                strbuf_addf(&order, "/lib/modules/%s\n", norm);
                nn++;
        }
        ents[n++] = (struct cpio_entry) { .path = "etc/banger/modules.order", .data = order.buf, .len = order.len, .mode = 0644 };
        r = cpio_write(path, ents, n, true, err);
        for (size_t i = 0; i < nn; i++) {
                free(names[i]);
                free((char *) ents[i + 1].src_file);
        }
        free(ents);
        strbuf_release(&order);
        if (r < 0)
                rc = op_prefix(err, "building the initramfs");
out:
        inflight_end(a, key, rc, err);
        if (rc < 0)
                return rc;
        *ret_path = TAKE_PTR(path);
        return 0;
}
