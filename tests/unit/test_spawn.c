/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proc_spawn.h"
#include "procscan.h"

/* Both ways of starting a child (posix_spawn; fork for die_with_parent) set
 * up the same fds. */
static bool via_fork;

static void test_capture(void **state) {
        struct spawn_result r;
        struct spawn_opts o = { .capture_stdout = true, .capture_stderr = true, .die_with_parent = via_fork };
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
        struct spawn_opts o = { .fds = map, .n_fds = 1, .die_with_parent = via_fork };
        char *argv[] = { (char *) "sh", (char *) "-c",
                         (char *) "echo hi >&3; [ ! -e /proc/self/fd/4 ] && [ -r /proc/self/fd/0 ]", NULL };
        assert_int_equal(spawn_run(argv, &o, &r), 0);
        assert_int_equal(r.exit_code, 0); /* fd 4 and above were closed */
        close(p[1]);
        assert_int_equal(read(p[0], buf, sizeof(buf) - 1), 3);
        assert_string_equal(buf, "hi\n");
        close(p[0]);
        spawn_result_done(&r);
}

struct seen {
        size_t bytes[3];
};

static void count_output(void *ud, int stream, const char *buf, size_t len) {
        struct seen *s = ud;
        (void) buf;
        assert_true(stream == 1 || stream == 2);
        s->bytes[stream] += len;
}

/* The child starts in cwd (a relative argv[0] is found there); the output
 * callback sees every byte of both streams, also past what the capture keeps. */
static void test_cwd_output(void **state) {
        struct spawn_result r;
        struct seen seen = { { 0 } };
        struct spawn_opts o = { .capture_stdout = true, .capture_stderr = true, .die_with_parent = via_fork,
                                .cwd = "/proc/self", .max_capture = 4, .output = count_output, .output_ud = &seen };
        (void) state;
        char *argv[] = { (char *) "sh", (char *) "-c", (char *) "pwd -P; echo 123456789 >&2", NULL };
        assert_int_equal(spawn_run(argv, &o, &r), 0);
        assert_int_equal(r.exit_code, 0);
        assert_string_equal(r.out, "/pro"); /* /proc/<its pid> */
        assert_string_equal(r.err, "1234");
        assert_true(seen.bytes[1] > strlen("/proc/1\n"));
        assert_int_equal(seen.bytes[2], 10);
        spawn_result_done(&r);
        o.cwd = "/nonexistent-banger-dir";
        r = (struct spawn_result) { 0 };
        assert_true(spawn_run(argv, &o, &r) < 0 || r.exit_code == 127);
        spawn_result_done(&r);
}

static void test_fork_path(void **state) {
        via_fork = true;
        test_capture(state);
        test_fd_map(state);
        test_cwd_output(state);
        via_fork = false;
}

/* Gone, or a zombie nobody reaped yet. */
static bool gone(pid_t pid) {
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        FILE *f = fopen(path, "r");
        if (!f)
                return true;
        bool z = fgets(buf, sizeof(buf), f) && strstr(buf, ") Z ");
        fclose(f);
        return z;
}

/* A helper tied to its parent dies when that parent is killed -9 (what
 * happens to the daemon's build and probe children). */
static void test_die_with_parent(void **state) {
        (void) state;
        int p[2];
        assert_int_equal(pipe(p), 0);
        pid_t mid = fork();
        if (mid == 0) {
                char *argv[] = { (char *) "sleep", (char *) "30", NULL };
                struct spawn_opts o = { .die_with_parent = true };
                pid_t child = 0;
                if (spawn_start(argv, &o, &child) < 0 || write(p[1], &child, sizeof(child)) != sizeof(child))
                        _exit(1);
                pause();
                _exit(0);
        }
        pid_t child = 0;
        assert_int_equal(read(p[0], &child, sizeof(child)), sizeof(child));
        assert_false(gone(child));
        kill(mid, SIGKILL);
        waitpid(mid, NULL, 0);
        for (int i = 0; i < 100 && !gone(child); i++)
                usleep(50000);
        assert_true(gone(child));
        close(p[0]);
        close(p[1]);
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

/* A child that exited but is not reaped yet is dead to proc_alive (the
 * build sweep must not take a zombie builder for a live one); a running one
 * is alive; a reaped one is gone. */
static void test_proc_alive(void **state) {
        (void) state;
        assert_true(proc_alive(getpid()));
        pid_t z = fork();
        assert_true(z >= 0);
        if (z == 0)
                _exit(0);
        for (int i = 0; i < 500; i++) { /* until it is a zombie */
                char path[64], buf[256];
                snprintf(path, sizeof(path), "/proc/%d/stat", (int) z);
                FILE *f = fopen(path, "r");
                bool zombie = f && fgets(buf, sizeof(buf), f) && strstr(buf, ") Z ");
                if (f)
                        fclose(f);
                if (zombie)
                        break;
                usleep(10000);
        }
        assert_false(proc_alive(z));
        assert_int_equal(waitpid(z, NULL, 0), z);
        assert_false(proc_alive(z));
        pid_t live = fork();
        assert_true(live >= 0);
        if (live == 0) {
                pause();
                _exit(0);
        }
        assert_true(proc_alive(live));
        kill(live, SIGKILL);
        assert_int_equal(waitpid(live, NULL, 0), live);
        assert_false(proc_alive(0));
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
                cmocka_unit_test(test_fork_path),      cmocka_unit_test(test_die_with_parent),
                cmocka_unit_test(test_proc_alive),       cmocka_unit_test(test_cwd_output),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
