/* SPDX-License-Identifier: MIT */
#include "tappool.h"

#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "macro.h"
#include "strbuf.h"

void tap_pool_init(struct tap_pool *p, size_t target, const char *bridge, const struct priv_ops *priv) {
        *p = (struct tap_pool) { .target = target > TAP_POOL_MAX ? TAP_POOL_MAX : target, .bridge = xstrdup(bridge),
                                 .priv = priv };
        pthread_mutex_init(&p->mu, NULL);
}

void tap_pool_done(struct tap_pool *p) {
        for (size_t i = 0; i < p->n_idle; i++)
                free(p->idle[i]);
        free(p->idle);
        free(p->bridge);
        pthread_mutex_destroy(&p->mu);
}

bool tap_pool_is_pool_name(const char *name) {
        return name && strncmp(name, TAP_POOL_PREFIX, strlen(TAP_POOL_PREFIX)) == 0;
}

static bool exists(struct tap_pool *p, const char *name) {
        return p->priv->link_exists(p->priv->ud, name);
}

static bool idle_has(struct tap_pool *p, const char *name) {
        for (size_t i = 0; i < p->n_idle; i++)
                if (strcmp(p->idle[i], name) == 0)
                        return true;
        return false;
}

static void idle_push(struct tap_pool *p, const char *name) {
        p->idle = xrealloc(p->idle, (p->n_idle + 1) * sizeof(char *));
        p->idle[p->n_idle++] = xstrdup(name);
}

static char *idle_pop(struct tap_pool *p) {
        pthread_mutex_lock(&p->mu);
        char *name = p->n_idle > 0 ? p->idle[--p->n_idle] : NULL;
        pthread_mutex_unlock(&p->mu);
        return name;
}

bool tap_pool_take(struct tap_pool *p, char **ret_name) {
        char *name;
        /* the check happens outside the lock; a name taken is ours alone */
        while ((name = idle_pop(p))) {
                if (exists(p, name)) { /* somebody may have removed it behind our back */
                        *ret_name = name;
                        return true;
                }
                free(name);
        }
        return false;
}

size_t tap_pool_idle(struct tap_pool *p) {
        pthread_mutex_lock(&p->mu);
        size_t n = p->n_idle;
        pthread_mutex_unlock(&p->mu);
        return n;
}

bool tap_pool_give(struct tap_pool *p, const char *name) {
        bool kept = false;
        if (!tap_pool_is_pool_name(name) || !exists(p, name))
                return false;
        pthread_mutex_lock(&p->mu);
        if (p->n_idle < p->target && !idle_has(p, name)) {
                idle_push(p, name);
                kept = true;
        }
        pthread_mutex_unlock(&p->mu);
        return kept;
}

void tap_pool_seed(struct tap_pool *p, tap_in_use_fn in_use, void *ud) {
        struct if_nameindex *ifs = if_nameindex();
        for (struct if_nameindex *i = ifs; i && i->if_index; i++) {
                if (!tap_pool_is_pool_name(i->if_name) || in_use(ud, i->if_name))
                        continue;
                pthread_mutex_lock(&p->mu);
                bool known = idle_has(p, i->if_name), keep = !known && p->n_idle < p->target;
                if (keep)
                        idle_push(p, i->if_name);
                pthread_mutex_unlock(&p->mu);
                if (!keep && !known)
                        (void) p->priv->tap_delete(p->priv->ud, i->if_name, NULL); /* surplus */
        }
        if (ifs)
                if_freenameindex(ifs);
}

bool tap_pool_refill(struct tap_pool *p, tap_in_use_fn in_use, void *ud) {
        for (unsigned n = 0; n < TAP_POOL_MAX; n++) {
                pthread_mutex_lock(&p->mu);
                bool full = p->n_idle >= p->target;
                pthread_mutex_unlock(&p->mu);
                if (full)
                        return true;
                char name[IF_NAMESIZE];
                snprintf(name, sizeof(name), TAP_POOL_PREFIX "%u", n);
                if (exists(p, name) || in_use(ud, name))
                        continue;
                _cleanup_op_error_ struct op_error err = OP_ERROR_INIT;
                if (p->priv->bridge_ensure(p->priv->ud, p->bridge, &err) < 0 ||
                    p->priv->tap_create(p->priv->ud, name, p->bridge, &err) < 0) {
                        log_warn("tap pool: %s", op_error_message(&err));
                        return false;
                }
                pthread_mutex_lock(&p->mu);
                idle_push(p, name);
                pthread_mutex_unlock(&p->mu);
        }
        return false;
}
