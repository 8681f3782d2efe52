/* SPDX-License-Identifier: MIT */
#include "artifacts.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "fetch.h"
#include "fsutil.h"
#include "ids.h"
#include "log.h"
#include "parse.h"
#include "macro.h"
#include "proc_spawn.h"
#include "procscan.h"
#include "store/store_artifacts.h"
#include "strbuf.h"

struct inflight {
        char *key;
        bool done;
        int rc;
        struct op_error err;
        int waiters;
        struct inflight *next;
};

json_t *catalog_find(json_t *catalog, const char *list_key, const char *name) {
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(catalog, list_key), i, e)
                if (strcmp(strempty(json_string_value(json_object_get(e, "name"))), name) == 0)
                        return json_incref(e);
        return NULL;
}

char *catalog_names(json_t *catalog, const char *list_key) {
        struct strbuf sb = STRBUF_INIT;
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(catalog, list_key), i, e)
                strbuf_addf(&sb, "%s%s", sb.len ? ", " : "", strempty(json_string_value(json_object_get(e, "name"))));
        return strbuf_detach(&sb, NULL);
}

char *staging_dir(const char *parent, const char *what) {
        _cleanup_free_ char *r = random_hex(4);
        return xasprintf("%s/.staging-%s-%s", parent, what, r);
}

/* A build cache entry or an OCI blob half-filled by a process that is gone
 * ("<key>.tmp-<pid>", and its download "<key>.tmp-<pid>.part"; the caches
 * may be shared by several daemons). */
static bool dead_tmp(const char *name) {
        const char *t = strstr(name, ".tmp-");
        int64_t pid;
        if (!t)
                return false;
        _cleanup_free_ char *digits = xstrndup(t + 5, strspn(t + 5, "0123456789"));
        const char *rest = t + 5 + strlen(digits);
        return (!*rest || strcmp(rest, ".part") == 0) && parse_int_range(digits, 1, INT32_MAX, &pid) == 0 &&
               !proc_alive((pid_t) pid);
}

static bool staging(const char *name) {
        return strncmp(name, ".staging-", 9) == 0;
}

/* What a daemon that died mid-pull left in dir: what `left` says (staging
 * dirs, half-filled build cache entries). Removed without crossing into
 * other filesystems. */
static void sweep_left(const char *dir, bool (*left)(const char *name)) {
        _cleanup_(closedirp) DIR *d = opendir(dir);
        struct dirent *de;
        while (d && (de = readdir(d))) {
                if (!left(de->d_name))
                        continue;
                _cleanup_free_ char *p = path_join(dir, de->d_name);
                int r = rm_rf(p);
                if (r < 0)
                        log_warn("start-up sweep: cannot remove %s: %s", p, strerror(-r));
                else
                        log_info("start-up sweep: removed %s (left by a daemon that died mid-pull)", p);
        }
}

/* Image dirs no image row names (a pull that died between moving its files in
 * and recording them): removed. */
static void sweep_orphan_images(struct artifacts *a) {
        struct image_row *rows = NULL;
        size_t n = 0;
        if (store_image_list(a->store, &rows, &n) < 0)
                return;
        _cleanup_(closedirp) DIR *d = opendir(a->layout->images_dir);
        struct dirent *de;
        while (d && (de = readdir(d))) {
                if (!is_hex_id(de->d_name, 8))
                        continue;
                bool used = false;
                for (size_t i = 0; i < n && !used; i++)
                        used = strcmp(rows[i].id, de->d_name) == 0;
                if (used)
                        continue;
                _cleanup_free_ char *p = path_join(a->layout->images_dir, de->d_name);
                if (rm_rf(p) == 0)
                        log_info("start-up sweep: removed %s (an image directory no image row names)", p);
        }
        for (size_t i = 0; i < n; i++)
                image_row_done(&rows[i]);
        free(rows);
}

int artifacts_init(struct artifacts *a, const struct layout *l, struct config_live *c, struct store *s,
                   const struct priv_ops *priv, struct op_error *err) {
        const char *kr = getenv("BANGER_DEBIAN_KEYRING");
        const char *bc = getenv("BANGER_IMAGE_CACHE");
        const char *kc = getenv("BANGER_KERNEL_CACHE");

        *a = (struct artifacts) { .layout = l, .config = c, .store = s, .priv = priv };
        pthread_mutex_init(&a->image_ops_mu, NULL);
        pthread_mutex_init(&a->inflight_mu, NULL);
        pthread_rwlockattr_t ra; /* a prune waits for the pulls in progress, not for every later one */
        pthread_rwlockattr_init(&ra);
        pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        pthread_rwlock_init(&a->oci_cache_lock, &ra);
        pthread_rwlockattr_destroy(&ra);
        pthread_cond_init(&a->inflight_cond, NULL);
        a->init_bin = find_companion("BANGER_INIT", "banger-init");
        a->agent_bin = find_companion("BANGER_AGENT", "banger-agent");
        a->keyring = xstrdup(kr && *kr ? kr : "/usr/share/keyrings/debian-archive-keyring.gpg");
        a->build_cache_dir = bc && bc[0] == '/' ? xstrdup(bc) : path_join(l->cache_dir, "image-builds");
        a->kernel_cache_dir = kc && kc[0] == '/' ? xstrdup(kc) : path_join(l->cache_dir, "kernel-pulls");
        /* only one daemon runs per state dir (the lock is held): nothing here is in use */
        sweep_left(l->images_dir, staging);
        sweep_left(l->kernels_dir, staging);
        sweep_left(a->build_cache_dir, dead_tmp);
        sweep_left(a->kernel_cache_dir, dead_tmp);
        _cleanup_free_ char *oci = path_join(l->cache_dir, "oci"), *blobs = path_join(oci, "blobs/sha256");
        sweep_left(oci, staging); /* archives unpacked for a pull */
        sweep_left(blobs, dead_tmp);
        sweep_orphan_images(a);
        fetch_global_init();
        (void) err;
        return 0;
}

void artifacts_done(struct artifacts *a) {
        free(a->init_bin);
        free(a->agent_bin);
        free(a->keyring);
        free(a->build_cache_dir);
        free(a->kernel_cache_dir);
        pthread_mutex_destroy(&a->image_ops_mu);
        pthread_mutex_destroy(&a->inflight_mu);
        pthread_rwlock_destroy(&a->oci_cache_lock);
        pthread_cond_destroy(&a->inflight_cond);
}

/* Drops a waiter's hold on f (freed by the last one once done). */
static void inflight_leave(struct inflight *f) {
        if (--f->waiters == 0 && f->done) {
                free(f->key);
                op_error_done(&f->err);
                free(f);
        }
}

/* Waits for f's leader, in slices that notice our own cancellation. 1 when
 * the leader is done (its outcome copied), 0 when we were cancelled. */
static int inflight_wait(struct artifacts *a, struct inflight *f, const struct progress *p, int *ret_rc,
                         struct op_error *err) {
        while (!f->done) {
                if (progress_cancelled(p)) {
                        inflight_leave(f);
                        *ret_rc = op_fail(err, -ECANCELED, "cancelled");
                        return 0;
                }
                struct timespec ts = wall_deadline(250);
                pthread_cond_timedwait(&a->inflight_cond, &a->inflight_mu, &ts);
        }
        *ret_rc = f->rc;
        if (f->rc < 0)
                op_error_copy(err, &f->err);
        inflight_leave(f);
        return 1;
}

bool inflight_begin(struct artifacts *a, const char *key, const struct progress *p, int *ret_rc,
                    struct op_error *err) {
        for (;;) {
                struct inflight *f;
                pthread_mutex_lock(&a->inflight_mu);
                for (f = a->inflight; f; f = f->next)
                        if (strcmp(f->key, key) == 0)
                                break;
                if (!f) {
                        f = xcalloc(1, sizeof(*f));
                        f->key = xstrdup(key);
                        f->next = a->inflight;
                        a->inflight = f;
                        pthread_mutex_unlock(&a->inflight_mu);
                        return true;
                }
                f->waiters++;
                pthread_mutex_unlock(&a->inflight_mu);
                progress_stage(p, "waiting", "another request is already working on %s", key);
                pthread_mutex_lock(&a->inflight_mu);
                int done = inflight_wait(a, f, p, ret_rc, err);
                pthread_mutex_unlock(&a->inflight_mu);
                /* the leader was cancelled, we were not: our turn to try */
                if (done && *ret_rc == -ECANCELED && !progress_cancelled(p)) {
                        op_error_done(err);
                        continue;
                }
                return false;
        }
}

void inflight_end(struct artifacts *a, const char *key, int rc, const struct op_error *err) {
        pthread_mutex_lock(&a->inflight_mu);
        for (struct inflight **pp = &a->inflight; *pp; pp = &(*pp)->next) {
                struct inflight *f = *pp;
                if (strcmp(f->key, key) != 0)
                        continue;
                *pp = f->next; /* new requests start fresh; waiters keep f */
                f->done = true;
                f->rc = rc;
                if (rc < 0 && err) {
                        op_error_copy(&f->err, err);
                }
                if (f->waiters == 0) {
                        free(f->key);
                        op_error_done(&f->err);
                        free(f);
                }
                break;
        }
        pthread_cond_broadcast(&a->inflight_cond);
        pthread_mutex_unlock(&a->inflight_mu);
}
