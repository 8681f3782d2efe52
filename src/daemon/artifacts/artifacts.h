/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * The artifacts subsystem: kernels and images, the things a VM boots from.
 * Owns the registry lock (image_ops_mu: every kernel/image registry mutation)
 * and the in-flight table (inflight_mu, a leaf) that coalesces concurrent
 * pulls of one name. Long work (downloads, builds) happens outside both
 * locks; only the final commit (rename into place + DB row) holds
 * image_ops_mu.
 */

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "ids.h"
#include "layout.h"
#include "op_error.h"
#include "ops/progress.h"
#include "priv/priv.h"
#include "store/store.h"

struct inflight;

struct artifacts {
        const struct layout *layout; /* borrowed */
        struct config_live *config; /* borrowed: config_live_get() where a value is used */
        struct store *store;         /* borrowed */
        const struct priv_ops *priv; /* borrowed: mmdebstrap, mkfs, unmounts */
        char *init_bin;              /* owned: banger-init for initramfs builds */
        char *agent_bin;             /* owned: banger-agent for image builds */
        char *keyring;               /* owned: Debian archive keyring for gpgv */
        char *build_cache_dir;       /* owned: cache of built images */
        char *kernel_cache_dir;      /* owned: cache of finished kernel pulls (kernel_cache.c) */

        pthread_mutex_t image_ops_mu; /* registry mutations; see docs/ARCHITECTURE.md */
        pthread_mutex_t inflight_mu;  /* leaf */
        pthread_rwlock_t oci_cache_lock; /* pulls read the blob cache, prune empties it; before image_ops_mu */
        pthread_cond_t inflight_cond;
        struct inflight *inflight;
};

_warn_unused_ int artifacts_init(struct artifacts *a, const struct layout *l, struct config_live *c, struct store *s,
                   const struct priv_ops *priv, struct op_error *err);
void artifacts_done(struct artifacts *a);

/* kernels.c */
json_t *kernel_catalog(void); /* new reference; the embedded catalog */
_warn_unused_ int kernel_list(struct artifacts *a, bool available, json_t **ret, struct op_error *err);
_warn_unused_ int kernel_show(struct artifacts *a, const char *name, json_t **ret, struct op_error *err);
_warn_unused_ int kernel_pull(struct artifacts *a, const char *name, bool force, const struct progress *p, json_t **ret,
                struct op_error *err);
/* kernel_build.c: a catalog kernel whose entry has "build", compiled from
 * its Debian source package with banger's config fragment; the result
 * ({..., "already_built"}) is kernel_show's with the initramfs. A pull of
 * such a kernel builds it. */
_warn_unused_ int kernel_build(struct artifacts *a, const char *name, bool force, const struct progress *p, json_t **ret,
                               struct op_error *err);
bool kernel_entry_built(json_t *entry);
/* The embedded config fragment named `file` ("microvm-6.1.config"), or NULL. */
const char *kernel_fragment(const char *file);
struct kernel_import_opts {
        const char *from;   /* absolute dir: vmlinux or vmlinuz, [initrd.img], [modules/ (a module tree)] */
        const char *distro; /* recorded; NULL: none */
        const char *arch;   /* recorded; NULL: x86_64 */
        bool force;         /* replace a kernel of that name */
};
_warn_unused_ int kernel_import(struct artifacts *a, const char *name, const struct kernel_import_opts *o, json_t **ret,
                  struct op_error *err);
/* A new kernel `name` from one kernel file and a module tree, as kernel_import
 * does with a directory (image register --modules); never replaces one. */
_warn_unused_ int kernel_import_file(struct artifacts *a, const char *name, const char *kernel, const char *moddir,
                                     struct op_error *err);
_warn_unused_ int kernel_delete(struct artifacts *a, const char *name, struct op_error *err);
/* The per-kernel initramfs for the current banger-init (built on first use). */
_warn_unused_ int kernel_initramfs(struct artifacts *a, const char *name, char **ret_path, struct op_error *err);
bool kernel_name_valid(const char *name);

/* mirror.c: fetches <mirror>/dists/<suite>/InRelease into staging, checks
 * it with gpgv against the Debian keyring and parses the signed Release.
 * ret_sha256 (optional): hash of the signed text, a mirror snapshot id. */
struct release;
_warn_unused_ int mirror_verified_release(struct artifacts *a, const char *staging, const char *mirror, const char *suite,
                            const struct progress *p, struct release *ret, char ret_sha256[65],
                            struct op_error *err);
/* <component>/binary-amd64/Packages(.xz|.gz) as the verified Release lists
 * it, its digest checked, decompressed into *ret. */
_warn_unused_ int mirror_fetch_packages(const struct release *rel, const char *mirror, const char *suite,
                                        const char *component, const struct progress *p, char **ret, size_t *ret_len,
                                        struct op_error *err);

/* images.c */
json_t *image_catalog(void);
_warn_unused_ int image_list(struct artifacts *a, bool available, json_t **ret, struct op_error *err);
_warn_unused_ int image_show(struct artifacts *a, const char *name, json_t **ret, struct op_error *err);
/* ref: a catalog name, a .tar.zst path or an http(s) URL of a bundle, an
 * OCI reference with a registry, a tag or a digest, or oci:DIR[:tag]. */
struct oci_pull_opts;
_warn_unused_ int image_pull(struct artifacts *a, const char *ref, const struct oci_pull_opts *o, const struct progress *p,
               json_t **ret, struct op_error *err);
_warn_unused_ int image_register(struct artifacts *a, json_t *params, json_t **ret, struct op_error *err);
_warn_unused_ int image_promote(struct artifacts *a, const char *name, const struct progress *p, json_t **ret,
                  struct op_error *err);
_warn_unused_ int image_delete(struct artifacts *a, const char *name, struct op_error *err);
_warn_unused_ int image_export(struct artifacts *a, const char *name, const char *out_path, const struct progress *p,
                 json_t **ret, struct op_error *err);

/* oci/pull.c: REF is a registry reference ([registry/]repo[:tag|@digest]) or
 * oci:DIR[:tag] (an OCI image layout). */
struct oci_pull_opts {
        const char *name;       /* NULL: from the reference */
        const char *kernel_ref; /* NULL: the default image's kernel */
        const char *platform;   /* NULL: linux/amd64 */
        uint64_t size_bytes;    /* 0: content x 1.5, floor 256 MiB */
};
bool oci_source_is_local(const char *ref); /* oci:, oci-archive:, docker-archive: */
/* The name a pull of registry reference ref gives its image ("alpine:3.19"
 * -> "alpine-3-19"); NULL when ref is no registry reference (a bare word is
 * a catalog name). */
char *oci_ref_default_name(const char *ref);
_warn_unused_ int oci_pull(struct artifacts *a, const char *ref, const struct oci_pull_opts *o, const struct progress *p,
                           json_t **ret, struct op_error *err);
/* A Debian tree as one tar (an unshare build's, root-owned entries) into
 * the rootfs image (without what is below /root) and the work seed (what
 * is below /root), both new, with the flattener (oci/flatten.h); neither
 * exists after a failure. The rootfs image's size in *ret_rootfs_size. */
_warn_unused_ int oci_tree_tar_images(const char *tar, const char *rootfs, const char *seed, bool (*cancel)(void *ud),
                                      void *ud, uint64_t *ret_rootfs_size, struct op_error *err);
/* Empties the blob cache (waits for pulls using it); ret: {"blobs", "bytes", "dry_run"}. */
_warn_unused_ int oci_cache_prune(struct artifacts *a, bool dry_run, json_t **ret, struct op_error *err);

struct image_row;
/* images.c, for the pullers */
_warn_unused_ int image_ensure_kernel(struct artifacts *a, const char *kernel_ref, const struct progress *p,
                                      struct op_error *err);
_warn_unused_ int image_commit(struct artifacts *a, const char *staging, struct image_row *row, struct op_error *err);

/* kernels.c, the steps a pull and an import (kernel_import.c) share */
struct kernel_row;
char *kernel_dir(struct artifacts *a, const char *name); /* <kernels>/<name> */
/* kernel_show's answer, with the initramfs made (the kernel is in the store). */
_warn_unused_ int kernel_with_initramfs(struct artifacts *a, const char *name, json_t **ret, struct op_error *err);
/* Pulls or builds one kernel (make), coalescing concurrent callers of a
 * name; skipped when present unless force; the kernel with its initramfs
 * and already_key (true when nothing was made) in *ret. */
typedef int (*kernel_make_fn)(struct artifacts *a, const char *name, json_t *entry, bool force,
                              const struct progress *p, struct op_error *err);
_warn_unused_ int kernel_obtain(struct artifacts *a, const char *name, json_t *entry, bool force,
                                const struct progress *p, kernel_make_fn make, const char *already_key, json_t **ret,
                                struct op_error *err);
/* Every .ko below dir into dst, flat; link_them: hard links, else copies. */
_warn_unused_ int kernel_collect_ko(const char *dir, const char *dst, bool link_them);
/* The modules banger-init loads (wanted + their dependencies) from src_dir to
 * dst_dir, in load order (order_path, *ret_order); a missing wanted module is
 * an error only when strict. */
_warn_unused_ int kernel_select_modules(const char *src_dir, const char *dst_dir, const char *order_path, json_t *wanted,
                                        bool strict, json_t **ret_order, struct op_error *err);
/* staging/vmlinux from staging/vmlinuz where the payload allows; *ret_pvh: PVH boot. */
_warn_unused_ int kernel_unpack_vmlinux(const char *staging, bool *ret_pvh, struct op_error *err);
/* m plus the files' hashes as staging/manifest.json. */
/* kernel_cache.c: finished pulls by catalog entry and .deb digest. get: 1 and
 * the cached manifest with its files in staging (each checked against its
 * digest), or 0 (a miss; staging may hold some files). put: best effort,
 * from a committed kernel dir. */
char *kernel_cache_key(json_t *entry, const char *deb_sha256);
int kernel_cache_get(struct artifacts *a, const char *name, const char *key, const char *staging, json_t **ret);
void kernel_cache_put(struct artifacts *a, const char *name, const char *key, const char *kdir);
_warn_unused_ int kernel_write_manifest(const char *staging, json_t *m, struct op_error *err);
/* staging into place and row into the store (an old kernel of that name replaced). */
_warn_unused_ int kernel_commit(struct artifacts *a, const char *name, const char *staging, const struct kernel_row *row,
                                struct op_error *err);

/* inflight.c: coalescing of concurrent work on one key */
/* Returns true when the caller leads (must call inflight_end); false when it
 * waited for a leader, with that leader's outcome in *ret_rc / err. */
bool inflight_begin(struct artifacts *a, const char *key, const struct progress *p, int *ret_rc,
                    struct op_error *err);
void inflight_end(struct artifacts *a, const char *key, int rc, const struct op_error *err);

/* catalogs (embedded JSON: {"version":1,"<list_key>":[{"name":...}, ...]}) */
json_t *catalog_find(json_t *catalog, const char *list_key, const char *name); /* new reference or NULL */
char *catalog_names(json_t *catalog, const char *list_key);                    /* "a, b" */

/* util */
char *staging_dir(const char *parent, const char *what);
/* data (xz, gzip, ... or plain) decompressed into *ret, at most max bytes (mirror.c) */
_warn_unused_ int decompress_buffer(const char *data, size_t len, size_t max, char **ret, size_t *ret_len,
                                    struct op_error *err);
