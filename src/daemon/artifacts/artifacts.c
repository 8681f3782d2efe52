/* SPDX-License-Identifier: MIT */
#include "artifacts.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#define _XOPEN_SOURCE_EXTENDED 1
#include <ftw.h>

#include "fetch.h"
#include "priv/priv.h"
#include "fsutil.h"
#include "macro.h"
#include "proc_spawn.h"
#include "strbuf.h"

struct inflight {
        char *key;
        bool done;
        int rc;
        struct art_error err;
        int waiters;
        struct inflight *next;
};

void art_error_done(struct art_error *e) {
        free(e->msg);
        e->msg = NULL;
}

int art_fail(struct art_error *e, enum art_err kind, int rc, const char *fmt, ...) {
        struct strbuf sb = STRBUF_INIT;
        va_list ap;

        va_start(ap, fmt);
        strbuf_vaddf(&sb, fmt, ap);
        va_end(ap);
        free(e->msg);
        e->kind = kind;
        e->msg = strbuf_detach(&sb, NULL);
        return rc < 0 ? rc : -EIO;
}

void progress_stage(const struct progress *p, const char *stage, const char *fmt, ...) {
        char detail[256] = "";
        va_list ap;

        if (!p || !p->stage)
                return;
        if (fmt) {
                va_start(ap, fmt);
                vsnprintf(detail, sizeof(detail), fmt, ap);
                va_end(ap);
        }
        p->stage(p->ud, stage, detail);
}

bool progress_cancelled(const struct progress *p) {
        return p && p->cancelled && p->cancelled(p->ud);
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        (void) st;
        (void) ftw;
        if (type == FTW_DP)
                rmdir(path);
        else
                unlink(path);
        return 0;
}

/* Never crosses into another filesystem (FTW_MOUNT): whatever is mounted
 * below path (a killed debootstrap's /proc, /dev) is unmounted first by the
 * caller, and is left alone if that failed. */
int rm_rf(const char *path) {
        struct stat st;
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return unlink(path) < 0 ? -errno : 0;
        priv_umount_below(path);
        return nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0 ? -errno : 0;
}

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

int artifacts_init(struct artifacts *a, const struct layout *l, const struct config *c, struct store *s,
                   char **ret_err) {
        const char *kr = getenv("BANGER_DEBIAN_KEYRING");
        const char *bc = getenv("BANGER_IMAGE_CACHE");

        *a = (struct artifacts) { .layout = l, .config = c, .store = s };
        pthread_mutex_init(&a->image_ops_mu, NULL);
        pthread_mutex_init(&a->inflight_mu, NULL);
        pthread_cond_init(&a->inflight_cond, NULL);
        a->init_bin = find_companion("BANGER_INIT", "banger-init");
        a->agent_bin = find_companion("BANGER_AGENT", "banger-agent");
        a->keyring = xstrdup(kr && *kr ? kr : "/usr/share/keyrings/debian-archive-keyring.gpg");
        a->build_cache_dir = bc && bc[0] == '/' ? xstrdup(bc) : path_join(l->cache_dir, "image-builds");
        fetch_global_init();
        (void) ret_err;
        return 0;
}

void artifacts_done(struct artifacts *a) {
        free(a->init_bin);
        free(a->agent_bin);
        free(a->keyring);
        free(a->build_cache_dir);
        pthread_mutex_destroy(&a->image_ops_mu);
        pthread_mutex_destroy(&a->inflight_mu);
        pthread_cond_destroy(&a->inflight_cond);
}

bool inflight_begin(struct artifacts *a, const char *key, const struct progress *p, int *ret_rc,
                    struct art_error *err) {
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
        while (!f->done)
                pthread_cond_wait(&a->inflight_cond, &a->inflight_mu);
        *ret_rc = f->rc;
        if (f->rc < 0) {
                err->kind = f->err.kind;
                err->msg = xstrdup(f->err.msg ? f->err.msg : "failed");
        }
        if (--f->waiters == 0) {
                free(f->key);
                art_error_done(&f->err);
                free(f);
        }
        pthread_mutex_unlock(&a->inflight_mu);
        return false;
}

void inflight_end(struct artifacts *a, const char *key, int rc, const struct art_error *err) {
        pthread_mutex_lock(&a->inflight_mu);
        for (struct inflight **pp = &a->inflight; *pp; pp = &(*pp)->next) {
                struct inflight *f = *pp;
                if (strcmp(f->key, key) != 0)
                        continue;
                *pp = f->next; /* new requests start fresh; waiters keep f */
                f->done = true;
                f->rc = rc;
                if (rc < 0 && err) {
                        f->err.kind = err->kind;
                        f->err.msg = xstrdup(err->msg ? err->msg : "failed");
                }
                if (f->waiters == 0) {
                        free(f->key);
                        art_error_done(&f->err);
                        free(f);
                }
                break;
        }
        pthread_cond_broadcast(&a->inflight_cond);
        pthread_mutex_unlock(&a->inflight_mu);
}
