/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "ops/opstate.h"

static void test_lifecycle(void **state) {
        struct opstate_registry r;
        (void) state;
        opstate_init(&r, 1000);
        assert_int_equal(opstate_begin(&r, "op-1", "vm.create", "dev"), 0);
        assert_int_equal(opstate_begin(&r, "op-1", "vm.create", "dev"), -EEXIST);
        assert_int_equal(opstate_begin(&r, "op-2", "image.pull", "debian"), 0);
        assert_int_equal(opstate_count_running(&r), 2);
        assert_int_equal(opstate_set_stage(&r, "op-1", "booting"), 0);
        assert_int_equal(opstate_set_stage(&r, "op-x", "booting"), -ENOENT);
        assert_false(opstate_cancel_requested(&r, "op-2"));
        assert_int_equal(opstate_request_cancel(&r, "op-2"), 0);
        assert_true(opstate_cancel_requested(&r, "op-2"));
        assert_int_equal(opstate_finish(&r, "op-2", OP_CANCELLED, "cancelled by user"), 0);
        assert_int_equal(opstate_finish(&r, "op-2", OP_DONE, NULL), -EALREADY);
        assert_int_equal(opstate_finish(&r, "op-1", OP_RUNNING, NULL), -EINVAL);
        assert_int_equal(opstate_count_running(&r), 1);

        json_t *l = opstate_list_json(&r);
        assert_int_equal(json_array_size(l), 2);
        json_t *o1 = json_array_get(l, 0);
        assert_string_equal(json_string_value(json_object_get(o1, "stage")), "booting");
        assert_false(json_is_true(json_object_get(o1, "done")));
        json_t *o2 = json_array_get(l, 1);
        assert_string_equal(json_string_value(json_object_get(o2, "state")), "cancelled");
        assert_string_equal(json_string_value(json_object_get(o2, "error")), "cancelled by user");
        assert_non_null(json_object_get(o2, "finished_at"));
        json_decref(l);

        /* pruning keeps running ops and recent finished ones */
        opstate_prune(&r, wall_ms());
        assert_int_equal(r.n, 2);
        opstate_prune(&r, wall_ms() + 5000);
        assert_int_equal(r.n, 1);
        assert_string_equal(r.ops[0]->id, "op-1");
        opstate_done(&r);
}

struct worker_arg {
        struct opstate_registry *r;
        int idx;
};

static void *worker(void *p) {
        struct worker_arg *a = p;
        char id[32];
        for (int i = 0; i < 200; i++) {
                snprintf(id, sizeof(id), "op-%d-%d", a->idx, i);
                opstate_begin(a->r, id, "test", "t");
                opstate_set_stage(a->r, id, "s");
                opstate_finish(a->r, id, OP_DONE, NULL);
                if (i % 50 == 0) {
                        json_t *l = opstate_list_json(a->r);
                        json_decref(l);
                }
        }
        return NULL;
}

/* Concurrency smoke test for the TSan build: the registry lock is a leaf. */
static void test_concurrent(void **state) {
        struct opstate_registry r;
        pthread_t t[4];
        struct worker_arg args[4];
        (void) state;
        opstate_init(&r, 0);
        for (int i = 0; i < 4; i++) {
                args[i] = (struct worker_arg) { &r, i };
                pthread_create(&t[i], NULL, worker, &args[i]);
        }
        for (int i = 0; i < 4; i++)
                pthread_join(t[i], NULL);
        assert_int_equal(r.n, 800);
        assert_int_equal(opstate_count_running(&r), 0);
        opstate_prune(&r, wall_ms() + 1);
        assert_int_equal(r.n, 0);
        opstate_done(&r);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_lifecycle),
                cmocka_unit_test(test_concurrent),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
