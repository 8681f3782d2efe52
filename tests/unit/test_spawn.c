/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "proc_spawn.h"

static void test_capture(void **state) {
        struct spawn_result r;
        struct spawn_opts o = { .capture_stdout = true, .capture_stderr = true };
        (void) state;
        char *argv[] = { (char *) "sh", (char *) "-c", (char *) "echo out; echo err >&2; exit 3", NULL };
        assert_int_equal(spawn_run(argv, &o, &r), 0);
        assert_int_equal(r.exit_code, 3);
        assert_string_equal(r.out, "out\n");
        assert_string_equal(r.err, "err\n");
        spawn_result_done(&r);
}

static void test_argv_is_not_a_shell(void **state) {
        struct spawn_result r;
        struct spawn_opts o = { .capture_stdout = true };
        (void) state;
        char *argv[] = { (char *) "printf", (char *) "%s|", (char *) "a b", (char *) "$(id)", (char *) ";x", NULL };
        assert_int_equal(spawn_run(argv, &o, &r), 0);
        assert_string_equal(r.out, "a b|$(id)|;x|");
        spawn_result_done(&r);
}

static void test_signal_and_timeout(void **state) {
        struct spawn_result r;
        struct spawn_opts o = { .timeout_ms = 200, .capture_stdout = true };
        (void) state;
        char *argv[] = { (char *) "sleep", (char *) "10", NULL };
        assert_int_equal(spawn_run(argv, &o, &r), 0);
        assert_true(r.timed_out);
        assert_int_equal(r.exit_code, 128 + 9);
        spawn_result_done(&r);

        struct spawn_opts o2 = { .timeout_ms = 200 };
        assert_int_equal(spawn_run(argv, &o2, &r), 0);
        assert_true(r.timed_out);
        spawn_result_done(&r);

        char *argv2[] = { (char *) "sh", (char *) "-c", (char *) "kill -TERM $$", NULL };
        assert_int_equal(spawn_run(argv2, NULL, &r), 0);
        assert_int_equal(r.exit_code, 128 + 15);
        assert_int_equal(r.term_signal, 15);
        spawn_result_done(&r);
}

static void test_fd_map(void **state) {
        struct spawn_result r;
        int p[2];
        char buf[16] = { 0 };
        (void) state;
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        struct spawn_fd_map map[] = { { 3, p[1] } };
        struct spawn_opts o = { .fds = map, .n_fds = 1 };
        char *argv[] = { (char *) "sh", (char *) "-c", (char *) "echo hi >&3; [ ! -e /proc/self/fd/4 ]", NULL };
        assert_int_equal(spawn_run(argv, &o, &r), 0);
        assert_int_equal(r.exit_code, 0); /* fd 4 and above were closed */
        close(p[1]);
        assert_int_equal(read(p[0], buf, sizeof(buf) - 1), 3);
        assert_string_equal(buf, "hi\n");
        close(p[0]);
        spawn_result_done(&r);
}

static int polls;
static bool cancel_after_a_while(void *ud) {
        (void) ud;
        return ++polls > 2;
}

/* A grandchild holds the output pipe open: cancelling must still return
 * promptly and take the whole process group down. */
static void test_cancel_group(void **state) {
        struct spawn_result r;
        struct spawn_opts o = { .capture_stdout = true, .new_pgroup = true, .cancel = cancel_after_a_while,
                                .cancel_grace_ms = 300 };
        char *argv[] = { (char *) "sh", (char *) "-c",
                         (char *) "trap '' TERM; sleep 30 & echo $! ; wait", NULL };
        (void) state;
        polls = 0;
        time_t t0 = time(NULL);
        assert_int_equal(spawn_run(argv, &o, &r), 0);
        assert_true(time(NULL) - t0 < 10);
        assert_true(r.cancelled);
        pid_t grandchild = (pid_t) atoi(r.out);
        assert_true(grandchild > 0);
        usleep(200000);
        char path[64], st[256] = "";
        snprintf(path, sizeof(path), "/proc/%d/stat", (int) grandchild);
        FILE *f = fopen(path, "re");
        if (f) { /* gone, or a zombie waiting for its reaper */
                if (fgets(st, sizeof(st), f))
                        assert_non_null(strstr(st, ") Z "));
                fclose(f);
        }
        spawn_result_done(&r);
}

static void test_missing_binary(void **state) {
        struct spawn_result r;
        char *path = NULL;
        (void) state;
        char *argv[] = { (char *) "/nonexistent/banger-test", NULL };
        assert_int_equal(spawn_run(argv, NULL, &r), -ENOENT);
        assert_int_equal(find_executable("sh", &path), 0);
        assert_non_null(strstr(path, "/sh"));
        free(path);
        assert_int_equal(find_executable("banger-no-such-tool", &path), -ENOENT);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_capture),   cmocka_unit_test(test_argv_is_not_a_shell),
                cmocka_unit_test(test_signal_and_timeout), cmocka_unit_test(test_fd_map),
                cmocka_unit_test(test_missing_binary), cmocka_unit_test(test_cancel_group),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
