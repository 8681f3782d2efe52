/* SPDX-License-Identifier: MIT */
#include "opstate.h"


#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "macro.h"
#include "strbuf.h"

static const char *const state_names[_OP_STATE_MAX] = {
        [OP_RUNNING] = "running", [OP_DONE] = "done", [OP_FAILED] = "failed", [OP_CANCELLED] = "cancelled",
};

const char *op_state_to_string(enum op_state s) {
        return s < _OP_STATE_MAX ? state_names[s] : "unknown";
}

static void op_free(struct op *o) {
        if (!o)
                return;
        free(o->kind);
        free(o->target);
        free(o->stage);
        free(o->error);
        free(o);
}

void opstate_init(struct opstate_registry *r, int64_t retain_ms) {
        *r = (struct opstate_registry) { .retain_ms = retain_ms };
        pthread_mutex_init(&r->mu, NULL);
}

void opstate_done(struct opstate_registry *r) {
        for (size_t i = 0; i < r->n; i++)
                op_free(r->ops[i]);
        free(r->ops);
        r->ops = NULL;
        r->n = 0;
        pthread_mutex_destroy(&r->mu);
}

static struct op *find_locked(struct opstate_registry *r, const char *id) {
        for (size_t i = 0; i < r->n; i++)
                if (strcmp(r->ops[i]->id, id) == 0)
                        return r->ops[i];
        return NULL;
}

int opstate_begin(struct opstate_registry *r, const char *id, const char *kind, const char *target) {
        struct op *o;
        int ret = 0;

        if (strlen(id) >= sizeof(o->id))
                return -EINVAL;
        pthread_mutex_lock(&r->mu);
        if (find_locked(r, id))
                ret = -EEXIST;
        else {
                o = xcalloc(1, sizeof(*o));
                snprintf(o->id, sizeof(o->id), "%s", id);
                o->kind = xstrdup(kind);
                o->target = xstrdup(target ? target : "");
                o->stage = xstrdup("");
                o->state = OP_RUNNING;
                o->started_ms = wall_ms();
                r->ops = xrealloc(r->ops, (r->n + 1) * sizeof(*r->ops));
                r->ops[r->n++] = o;
        }
        pthread_mutex_unlock(&r->mu);
        return ret;
}

int opstate_set_stage(struct opstate_registry *r, const char *id, const char *stage) {
        int ret = -ENOENT;

        pthread_mutex_lock(&r->mu);
        struct op *o = find_locked(r, id);
        if (o && o->state == OP_RUNNING) {
                free(o->stage);
                o->stage = xstrdup(stage);
                ret = 0;
        }
        pthread_mutex_unlock(&r->mu);
        return ret;
}

int opstate_finish(struct opstate_registry *r, const char *id, enum op_state final, const char *error) {
        int ret = -ENOENT;

        if (final == OP_RUNNING || final >= _OP_STATE_MAX)
                return -EINVAL;
        pthread_mutex_lock(&r->mu);
        struct op *o = find_locked(r, id);
        if (o && o->state == OP_RUNNING) {
                o->state = final;
                o->finished_ms = wall_ms();
                free(o->error);
                o->error = error ? xstrdup(error) : NULL;
                ret = 0;
        } else if (o)
                ret = -EALREADY;
        pthread_mutex_unlock(&r->mu);
        return ret;
}

int opstate_request_cancel(struct opstate_registry *r, const char *id) {
        int ret = -ENOENT;

        pthread_mutex_lock(&r->mu);
        struct op *o = find_locked(r, id);
        if (o) {
                ret = o->state == OP_RUNNING ? 0 : -EALREADY;
                if (ret == 0)
                        o->cancel_requested = true;
        }
        pthread_mutex_unlock(&r->mu);
        return ret;
}

bool opstate_cancel_requested(struct opstate_registry *r, const char *id) {
        bool c;

        pthread_mutex_lock(&r->mu);
        struct op *o = find_locked(r, id);
        c = o && o->cancel_requested;
        pthread_mutex_unlock(&r->mu);
        return c;
}

size_t opstate_count_running(struct opstate_registry *r) {
        size_t n = 0;

        pthread_mutex_lock(&r->mu);
        for (size_t i = 0; i < r->n; i++)
                n += r->ops[i]->state == OP_RUNNING;
        pthread_mutex_unlock(&r->mu);
        return n;
}

void opstate_prune(struct opstate_registry *r, int64_t now) {
        size_t k = 0;

        pthread_mutex_lock(&r->mu);
        for (size_t i = 0; i < r->n; i++) {
                struct op *o = r->ops[i];
                if (o->state != OP_RUNNING && now - o->finished_ms >= r->retain_ms)
                        op_free(o);
                else
                        r->ops[k++] = o;
        }
        r->n = k;
        pthread_mutex_unlock(&r->mu);
}

static json_t *time_json(int64_t ms) {
        _cleanup_free_ char *s = rfc3339_utc(ms);
        return json_string(s);
}

json_t *opstate_list_json(struct opstate_registry *r) {
        json_t *a = json_array();

        pthread_mutex_lock(&r->mu);
        for (size_t i = 0; i < r->n; i++) {
                struct op *o = r->ops[i];
                json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:o}", "id", o->id, "kind", o->kind, "target",
                                      o->target, "state", op_state_to_string(o->state), "stage", o->stage, "done",
                                      o->state != OP_RUNNING, "started_at", time_json(o->started_ms));
                if (o->finished_ms)
                        json_object_set_new(j, "finished_at", time_json(o->finished_ms));
                if (o->error)
                        json_object_set_new(j, "error", json_string(o->error));
                json_array_append_new(a, j);
        }
        pthread_mutex_unlock(&r->mu);
        return a;
}
