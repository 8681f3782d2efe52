/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The TAP pool: with tap_pool_size > 0, that many idle TAPs named
 * tap-pool-N stay attached to the bridge so a start skips creating one.
 * Taken on start, given back on stop (kept while the pool is short, else
 * deleted), refilled in the background, seeded from existing devices when
 * the daemon starts. `mu` is a leaf: nothing else is taken under it, and
 * no device is created, checked or deleted while it is held.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "priv/priv.h"

#define TAP_POOL_PREFIX "tap-pool-"
#define TAP_POOL_MAX 256

struct tap_pool {
        pthread_mutex_t mu;
        char **idle; /* names ready to use */
        size_t n_idle;
        size_t target;
        char *bridge;
        const struct priv_ops *priv; /* borrowed */
};

/* in_use: is this TAP name held by a running VM? */
typedef bool (*tap_in_use_fn)(void *ud, const char *name);

void tap_pool_init(struct tap_pool *p, size_t target, const char *bridge, const struct priv_ops *priv);
/* Leaves the idle TAPs in place: the next daemon seeds from them. */
void tap_pool_done(struct tap_pool *p);
bool tap_pool_is_pool_name(const char *name);
/* An idle TAP (malloc'd name), or false when the pool is empty (or off). */
bool tap_pool_take(struct tap_pool *p, char **ret_name);
/* A pool TAP back from a stopped VM: kept (true) while the pool is short. */
bool tap_pool_give(struct tap_pool *p, const char *name);
/* Adopts existing tap-pool-* devices not in use; deletes the surplus. */
void tap_pool_seed(struct tap_pool *p, tap_in_use_fn in_use, void *ud);
/* Creates TAPs until the pool is full; true when it is. */
bool tap_pool_refill(struct tap_pool *p, tap_in_use_fn in_use, void *ud);
size_t tap_pool_idle(struct tap_pool *p);
