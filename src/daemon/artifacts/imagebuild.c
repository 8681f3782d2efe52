/* SPDX-License-Identifier: MIT */
#include "imagebuild.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "debian.h"
#include "fsutil.h"
#include "jsonx.h"
#include "log.h"
#include "macro.h"
#include "sha256.h"
#include "strbuf.h"

static char *cache_key(struct artifacts *a, json_t *recipe, const char *release_sha) {
        _cleanup_free_ char *canon = json_dumps(recipe, JSON_COMPACT | JSON_SORT_KEYS);
        char agent_sha[65] = "none", key[65];
        if (a->agent_bin && sha256_file_hex(a->agent_bin, agent_sha) < 0)
                snprintf(agent_sha, sizeof(agent_sha), "unreadable"); /* no cache hit can match it */
        _cleanup_free_ char *material = xasprintf("banger-image-build-v1\n%s\n%s\n%s\n%s\n", canon, agent_sha,
                                                  config_live_get(a->config)->debian_mirror, release_sha);
        sha256_buf_hex(material, strlen(material), key);
        return xstrdup(key);
}

/* Hard link when on the same filesystem, else copy. */
static int link_or_copy(const char *from, const char *to) {
        if (link(from, to) == 0)
                return 0;
        return copy_file_sparse(from, to, 0644);
}

static const char *const cache_files[] = { "rootfs.ext4", "work-seed.ext4", "manifest.json" };

static bool cache_get(const char *cdir, const char *dest) {
        for (size_t i = 0; i < ELEMENTSOF(cache_files); i++) {
                _cleanup_free_ char *p = path_join(cdir, cache_files[i]);
                if (access(p, R_OK) < 0)
                        return false;
        }
        for (size_t i = 0; i < ELEMENTSOF(cache_files); i++) {
                _cleanup_free_ char *f = path_join(cdir, cache_files[i]), *t = path_join(dest, cache_files[i]);
                if (link_or_copy(f, t) < 0)
                        return false;
        }
        return true;
}

static void cache_put(const char *cache_root, const char *cdir, const char *src) {
        _cleanup_free_ char *tmp = xasprintf("%s.tmp-%d", cdir, (int) getpid());
        if (mkdir_p(tmp, 0700) < 0)
                return;
        for (size_t i = 0; i < ELEMENTSOF(cache_files); i++) {
                _cleanup_free_ char *f = path_join(src, cache_files[i]), *t = path_join(tmp, cache_files[i]);
                if (link_or_copy(f, t) < 0) {
                        rm_rf(tmp);
                        return;
                }
        }
        if (rename(tmp, cdir) < 0)
                rm_rf(tmp);
        (void) cache_root;
}

static bool build_cancelled(void *ud) {
        return progress_cancelled(ud);
}

/* One Debian image build into dest_dir. */
struct build {
        struct artifacts *a;
        json_t *recipe;
        const char *dest_dir, *name, *suite, *init_mode;
        const struct progress *p;
        char release_sha[65];
        char *release_date; /* owned */
        char *cdir;         /* owned: its place in the build cache */
        uint64_t rootfs_size;
};

static char *in(const struct build *b, const char *file) {
        return path_join(b->dest_dir, file);
}

/* The signed Release names the mirror snapshot the build sees; with the
 * recipe and the agent it keys the build cache. 1 on a cache hit. */
static int build_lookup(struct build *b, json_t **ret_manifest, struct op_error *err) {
        const char *mirror = config_live_get(b->a->config)->debian_mirror;
        struct release rel = { 0 };
        progress_stage(b->p, "release", "%s/dists/%s/InRelease", mirror, b->suite);
        int r = mirror_verified_release(b->a, b->dest_dir, mirror, b->suite, b->p, &rel, b->release_sha, err);
        if (r < 0)
                return r;
        b->release_date = xstrdup(rel.date ? rel.date : "");
        debian_release_done(&rel);
        _cleanup_free_ char *key = cache_key(b->a, b->recipe, b->release_sha), *mpath = in(b, "manifest.json");
        b->cdir = path_join(b->a->build_cache_dir, key);
        if (!cache_get(b->cdir, b->dest_dir))
                return 0;
        progress_stage(b->p, "cache", "reusing the build of %s for this mirror snapshot (%.12s)", b->name, key);
        _cleanup_free_ char *text = NULL;
        size_t len;
        if (read_file(mpath, 1u << 20, &text, &len) == 0 && (*ret_manifest = json_loadb(text, len, 0, NULL)))
                return 1;
        return op_fail(err, -EBADMSG, "cached build %s has an unreadable manifest", b->cdir);
}

/* Unshare mode's tar -> rootfs.ext4 without /root's content, and the work
 * seed of what was under /root; the tar goes either way. */
static int images_from_tar(struct build *b, struct op_error *err) {
        _cleanup_free_ char *tar = in(b, "debian.tar"), *rootfs = in(b, "rootfs.ext4"), *seed = in(b, "work-seed.ext4");
        progress_stage(b->p, "mkfs", "the root filesystem and the /root seed from the tree (libext2fs)");
        int r = oci_tree_tar_images(tar, rootfs, seed, build_cancelled, (void *) b->p, &b->rootfs_size, err);
        unlink(tar);
        return r;
}

int imagebuild_possible(struct artifacts *a, struct op_error *err) {
        if (a->priv->build_debian)
                return 0;
        if (a->priv->build_tar_check)
                return a->priv->build_tar_check(a->priv->ud, err);
        return op_fail_as(err, RPC_UNAUTHORIZED, -EPERM, PRIV_NO_BUILDS);
}

/* mmdebstrap, banger's guest files, /root moved to the work seed, mkfs of
 * both: one privileged operation, whose results belong to us (or, without
 * root, mmdebstrap's unshare mode and the images made here). */
static int build_images(struct build *b, struct op_error *err) {
        json_t *list = json_object_get(b->recipe, "packages");
        size_t np = json_array_size(list);
        _cleanup_free_ const char **pkgs = xcalloc(np + 1, sizeof(char *));
        for (size_t i = 0; i < np; i++)
                pkgs[i] = json_string_value(json_array_get(list, i));
        progress_stage(b->p, "debootstrap", "mmdebstrap %s with %zu packages from %s, %s init%s", b->suite, np,
                       config_live_get(b->a->config)->debian_mirror, b->init_mode,
                       b->a->priv->build_debian ? ", mkfs" : " (unshare mode: no root)");
        struct priv_debian_build q = { .suite = b->suite, .mirror = config_live_get(b->a->config)->debian_mirror, .packages = pkgs,
                                       .init_mode = b->init_mode, .out_dir = b->dest_dir };
        if (b->a->priv->build_debian)
                return b->a->priv->build_debian(b->a->priv->ud, &q, build_cancelled, (void *) b->p, &b->rootfs_size, err);
        int r = b->a->priv->build_debian_tar(b->a->priv->ud, &q, build_cancelled, (void *) b->p, err);
        return r < 0 ? r : images_from_tar(b, err);
}

static int build_manifest(struct build *b, json_t **ret_manifest, struct op_error *err) {
        _cleanup_free_ char *rootfs = in(b, "rootfs.ext4"), *seed = in(b, "work-seed.ext4");
        _cleanup_free_ char *mpath = in(b, "manifest.json"), *now = now_rfc3339();
        char rsha[65], ssha[65];
        int r;
        if ((r = sha256_file_hex(rootfs, rsha)) < 0 || (r = sha256_file_hex(seed, ssha)) < 0)
                return op_fail(err, r, "hashing the built images: %s", strerror(-r));
        json_t *m = json_pack("{s:i, s:s, s:s, s:O, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:O}", "format", 1, "name",
                              b->name, "init_mode", b->init_mode, "kernel_ref", json_object_get(b->recipe, "kernel_ref"),
                              "rootfs_sha256", rsha, "rootfs_size_bytes", (json_int_t) b->rootfs_size,
                              "work_seed_sha256", ssha, "built_at", now, "mirror", config_live_get(b->a->config)->debian_mirror,
                              "release_date", b->release_date, "release_sha256", b->release_sha, "recipe", b->recipe);
        _cleanup_free_ char *text = json_dumps(m, JSON_INDENT(2) | JSON_SORT_KEYS);
        if ((r = write_file_atomic(mpath, text, strlen(text), 0644)) < 0) {
                json_decref(m);
                return op_fail(err, r, "writing %s: %s", mpath, strerror(-r));
        }
        if (mkdir_p(b->a->build_cache_dir, 0700) == 0)
                cache_put(b->a->build_cache_dir, b->cdir, b->dest_dir);
        *ret_manifest = m;
        return 0;
}

int imagebuild_debian(struct artifacts *a, json_t *recipe, const char *dest_dir, const struct progress *p,
                      json_t **ret_manifest, struct op_error *err) {
        struct build b = { .a = a, .recipe = recipe, .dest_dir = dest_dir, .p = p,
                           .name = json_string_value(json_object_get(recipe, "name")),
                           .suite = json_string_value(json_object_get(recipe, "suite")),
                           .init_mode = json_string_value(json_object_get(recipe, "init_mode")) };
        int r = imagebuild_possible(a, err);
        if (r == 0)
                r = build_lookup(&b, ret_manifest, err);
        if (r == 0)
                r = build_images(&b, err);
        if (r == 0)
                r = build_manifest(&b, ret_manifest, err);
        free(b.release_date);
        free(b.cdir);
        return r < 0 ? r : 0;
}
