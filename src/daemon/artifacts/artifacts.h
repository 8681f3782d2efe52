/* SPDX-License-Identifier: MIT */
#pragma once

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
#include "store/store.h"

/* How long work reports to the caller (an RPC connection). */
struct progress {
        void (*stage)(void *ud, const char *stage, const char *detail);
        void (*bytes)(void *ud, const char *stage, uint64_t done, uint64_t total);
        bool (*cancelled)(void *ud);
        void *ud;
};

struct inflight;

struct artifacts {
        const struct layout *layout; /* borrowed */
        const struct config *config; /* borrowed */
        struct store *store;         /* borrowed */
        char *init_bin;              /* owned: banger-init for initramfs builds */
        char *agent_bin;             /* owned: banger-agent for image builds */
        char *keyring;               /* owned: Debian archive keyring for gpgv */
        char *build_cache_dir;       /* owned: cache of built images */

        pthread_mutex_t image_ops_mu; /* registry mutations; see docs/ARCHITECTURE.md */
        pthread_mutex_t inflight_mu;  /* leaf */
        pthread_cond_t inflight_cond;
        struct inflight *inflight;
};

/* Errors carry an rpc-ish kind so handlers can pick the code. */
enum art_err {
        ART_ERR_FAILED,
        ART_ERR_NOT_FOUND,
        ART_ERR_EXISTS,
        ART_ERR_BAD_REQUEST,
};

struct art_error {
        enum art_err kind;
        char *msg; /* owned */
};

void art_error_done(struct art_error *e);

int artifacts_init(struct artifacts *a, const struct layout *l, const struct config *c, struct store *s,
                   char **ret_err);
void artifacts_done(struct artifacts *a);

/* kernels.c */
json_t *kernel_catalog(void); /* new reference; the embedded catalog */
int kernel_list(struct artifacts *a, bool available, json_t **ret, struct art_error *err);
int kernel_show(struct artifacts *a, const char *name, json_t **ret, struct art_error *err);
int kernel_pull(struct artifacts *a, const char *name, bool force, const struct progress *p, json_t **ret,
                struct art_error *err);
int kernel_import(struct artifacts *a, const char *name, const char *from_dir, bool force, json_t **ret,
                  struct art_error *err);
int kernel_delete(struct artifacts *a, const char *name, struct art_error *err);
/* The per-kernel initramfs for the current banger-init (built on first use). */
int kernel_initramfs(struct artifacts *a, const char *name, char **ret_path, struct art_error *err);
bool kernel_name_valid(const char *name);

/* mirror.c: fetches <mirror>/dists/<suite>/InRelease into staging, checks
 * it with gpgv against the Debian keyring and parses the signed Release.
 * ret_sha256 (optional): hash of the signed text, a mirror snapshot id. */
struct release;
int mirror_verified_release(struct artifacts *a, const char *staging, const char *mirror, const char *suite,
                            const struct progress *p, struct release *ret, char ret_sha256[65],
                            struct art_error *err);

/* images.c */
json_t *image_catalog(void);
int image_list(struct artifacts *a, bool available, json_t **ret, struct art_error *err);
int image_show(struct artifacts *a, const char *name, json_t **ret, struct art_error *err);
/* ref: a catalog name, a .tar.zst path or an http(s) URL of a bundle. */
int image_pull(struct artifacts *a, const char *ref, const char *name_override, const struct progress *p,
               json_t **ret, struct art_error *err);
int image_register(struct artifacts *a, json_t *params, json_t **ret, struct art_error *err);
int image_promote(struct artifacts *a, const char *name, const struct progress *p, json_t **ret,
                  struct art_error *err);
int image_delete(struct artifacts *a, const char *name, struct art_error *err);
int image_export(struct artifacts *a, const char *name, const char *out_path, const struct progress *p,
                 json_t **ret, struct art_error *err);

/* inflight.c: coalescing of concurrent work on one key */
/* Returns true when the caller leads (must call inflight_end); false when it
 * waited for a leader, with that leader's outcome in *ret_rc / err. */
bool inflight_begin(struct artifacts *a, const char *key, const struct progress *p, int *ret_rc,
                    struct art_error *err);
void inflight_end(struct artifacts *a, const char *key, int rc, const struct art_error *err);

/* catalogs (embedded JSON: {"version":1,"<list_key>":[{"name":...}, ...]}) */
json_t *catalog_find(json_t *catalog, const char *list_key, const char *name); /* new reference or NULL */
char *catalog_names(json_t *catalog, const char *list_key);                    /* "a, b" */

/* util */
int art_fail(struct art_error *e, enum art_err kind, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void progress_stage(const struct progress *p, const char *stage, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool progress_cancelled(const struct progress *p);
int rm_rf(const char *path);
char *staging_dir(const char *parent, const char *what);
