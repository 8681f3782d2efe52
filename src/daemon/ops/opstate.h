/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Registry of asynchronous operations (vm create, image pull, ...): what
 * `daemon.operations.list` shows and what the CLI checks before restarting a
 * daemon of another version. Owns its lock (`mu`, a leaf: nothing else is
 * acquired while it is held). Finished operations are pruned after
 * `retain_ms`.
 */

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum op_state {
        OP_RUNNING,
        OP_DONE,
        OP_FAILED,
        OP_CANCELLED,
        _OP_STATE_MAX,
};

const char *op_state_to_string(enum op_state s);

struct op {
        char id[32];
        char *kind;   /* "vm.create", ... */
        char *target; /* vm/image name */
        enum op_state state;
        char *stage;
        char *error;
        int64_t started_ms;  /* wall clock */
        int64_t finished_ms; /* 0 while running */
        bool cancel_requested;
};

struct opstate_registry {
        pthread_mutex_t mu; /* leaf */
        struct op **ops;
        size_t n;
        int64_t retain_ms;
};

void opstate_init(struct opstate_registry *r, int64_t retain_ms);
void opstate_done(struct opstate_registry *r);

/* Registers a running op with the given id (the RPC's op_id). */
int opstate_begin(struct opstate_registry *r, const char *id, const char *kind, const char *target);
int opstate_set_stage(struct opstate_registry *r, const char *id, const char *stage);
int opstate_finish(struct opstate_registry *r, const char *id, enum op_state final, const char *error);
int opstate_request_cancel(struct opstate_registry *r, const char *id);
bool opstate_cancel_requested(struct opstate_registry *r, const char *id);
size_t opstate_count_running(struct opstate_registry *r);
/* Drops finished ops older than retain_ms at now_ms. */
void opstate_prune(struct opstate_registry *r, int64_t now_ms);
/* [{id, kind, target, state, stage, done, error?, started_at, finished_at?}] */
json_t *opstate_list_json(struct opstate_registry *r);

