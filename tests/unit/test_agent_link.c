/* SPDX-License-Identifier: MIT */
/*
 * The daemon's agent link (src/daemon/vm/agent_link.c) against the real
 * banger-agent in --stdio mode behind a Unix socket that serves one client
 * at a time, as QEMU's chardev does: execs with our fds, exit codes and
 * signals, calls while execs run, concurrent execs, a client that leaves,
 * an agent of protocol version 1. Needs $BANGER_AGENT (skipped without).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frame.h"
#include "vm/agent_link.h"

static char sock_path[108];
static pid_t server;

/* One client at a time, each served by a fresh `sh -c CMD` with the
 * connection as stdin and stdout (CMD: the agent, or a fake). */
static void serve(const char *cmd) {
        snprintf(sock_path, sizeof(sock_path), "/tmp/banger-link-test-%d.sock", (int) getpid());
        unlink(sock_path);
        int l = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
        assert_int_equal(bind(l, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(l, 8), 0);
        server = fork();
        assert_true(server >= 0);
        if (server == 0) {
                for (;;) {
                        int c = accept(l, NULL, NULL);
                        if (c < 0)
                                _exit(1);
                        pid_t p = fork();
                        if (p == 0) {
                                dup2(c, 0);
                                dup2(c, 1);
                                execl("/bin/sh", "sh", "-c", cmd, (char *) NULL);
                                _exit(127);
                        }
                        close(c);
                        waitpid(p, NULL, 0);
                }
        }
        close(l);
}

static void stop_serving(void) {
        kill(server, SIGKILL);
        waitpid(server, NULL, 0);
        unlink(sock_path);
}

/* $BANGER_AGENT, else the build's own (beside tests/). */
static const char *agent_bin(void) {
        static char path[4096];
        const char *env = getenv("BANGER_AGENT");
        if (env && *env)
                return env;
        ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 32);
        if (n <= 0)
                return NULL;
        path[n] = '\0';
        char *slash = strrchr(path, '/');
        if (!slash)
                return NULL;
        strcpy(slash, "/../banger-agent");
        return path;
}

static int setup(void **state) {
        const char *agent = agent_bin();
        (void) state;
        if (!agent || access(agent, X_OK) < 0)
                return 0;
        static char cmd[4200];
        snprintf(cmd, sizeof(cmd), "exec '%s' --stdio", agent);
        serve(cmd);
        return 0;
}

static int teardown(void **state) {
        (void) state;
        if (server > 0)
                stop_serving();
        server = 0;
        return 0;
}

static size_t spec_of(uint8_t *b, const char *script) {
        size_t n = 0;
        assert_true(spec_put_str(b, FRAME_MAX_PAYLOAD, &n, SPEC_ARG, "sh"));
        assert_true(spec_put_str(b, FRAME_MAX_PAYLOAD, &n, SPEC_ARG, "-c"));
        assert_true(spec_put_str(b, FRAME_MAX_PAYLOAD, &n, SPEC_ARG, script));
        return n;
}

/* Runs script with in (string) as stdin; its stdout in out. */
static int run(struct agent_links *L, const char *script, const char *in, char *out, size_t outn, int *status) {
        uint8_t *spec = malloc(FRAME_MAX_PAYLOAD); /* one per thread */
        size_t n = spec_of(spec, script);
        int inp[2], outp[2];
        assert_int_equal(pipe(inp), 0);
        assert_int_equal(pipe(outp), 0);
        if (in)
                assert_int_equal(write(inp[1], in, strlen(in)), (ssize_t) strlen(in));
        close(inp[1]);
        struct op_error e = OP_ERROR_INIT;
        int rc = agent_exec_fds(L, sock_path, spec, n, inp[0], outp[1], -1, NULL, status, &e);
        free(spec);
        close(inp[0]);
        close(outp[1]);
        ssize_t k = read(outp[0], out, outn - 1);
        out[k > 0 ? k : 0] = '\0';
        close(outp[0]);
        if (rc < 0)
                fprintf(stderr, "# %s\n", op_error_message(&e));
        op_error_done(&e);
        return rc;
}

static void test_exec(void **state) {
        (void) state;
        if (!server)
                skip();
        struct agent_links *L = agent_links_new();
        char out[256];
        int st = -1;
        assert_int_equal(run(L, "read x; echo got:$x", "hello\n", out, sizeof(out), &st), 0);
        assert_string_equal(out, "got:hello\n");
        assert_int_equal(st, 0);
        assert_int_equal(run(L, "exit 42", NULL, out, sizeof(out), &st), 0);
        assert_int_equal(st, 42);
        assert_int_equal(run(L, "kill -TERM $$", NULL, out, sizeof(out), &st), 0);
        assert_int_equal(st, 143);
        /* a call travels on the link while it is up (no second connection:
         * the server would not accept one) */
        json_t *h = NULL;
        struct op_error e = OP_ERROR_INIT;
        assert_int_equal(agent_links_call(L, sock_path, "health", 5000, NULL, &h, &e), 0);
        assert_non_null(json_object_get(h, "uptime_s"));
        json_decref(h);
        agent_links_free(L);
}

struct job {
        struct agent_links *L;
        int i, st, rc;
        char out[64];
};

static void *job_main(void *arg) {
        struct job *j = arg;
        char script[64];
        snprintf(script, sizeof(script), "sleep 0.2; echo job-%d", j->i);
        j->rc = run(j->L, script, NULL, j->out, sizeof(j->out), &j->st);
        return NULL;
}

static void test_concurrent(void **state) {
        (void) state;
        if (!server)
                skip();
        struct agent_links *L = agent_links_new();
        struct job jobs[8];
        pthread_t t[8];
        for (int i = 0; i < 8; i++) {
                jobs[i] = (struct job) { .L = L, .i = i };
                assert_int_equal(pthread_create(&t[i], NULL, job_main, &jobs[i]), 0);
        }
        for (int i = 0; i < 8; i++) {
                char want[32];
                pthread_join(t[i], NULL);
                snprintf(want, sizeof(want), "job-%d\n", i);
                assert_int_equal(jobs[i].rc, 0);
                assert_string_equal(jobs[i].out, want);
        }
        agent_links_free(L);
}

/* The client end goes away mid-exec: the guest's process group is killed. */
static void test_client_leaves(void **state) {
        (void) state;
        if (!server)
                skip();
        struct agent_links *L = agent_links_new();
        static uint8_t spec[FRAME_MAX_PAYLOAD];
        char mark[64], script[200];
        snprintf(mark, sizeof(mark), "/tmp/banger-link-victim-%d", (int) getpid());
        snprintf(script, sizeof(script), "echo $$ >%s; exec sleep 1000", mark);
        size_t n = spec_of(spec, script);
        struct agent_exec *x;
        uint32_t pid;
        struct op_error e = OP_ERROR_INIT;
        assert_int_equal(agent_exec_open(L, sock_path, spec, n, 5000, &x, &pid, &e), 0);
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        agent_exec_attach(x, sv[0]);
        for (int i = 0; i < 100 && access(mark, F_OK) < 0; i++)
                poll(NULL, 0, 20);
        assert_int_equal(kill((pid_t) pid, 0), 0);
        close(sv[1]); /* the client leaves */
        agent_exec_finish(x);
        close(sv[0]);
        bool gone = false;
        for (int i = 0; i < 100 && !gone; i++) {
                gone = kill((pid_t) pid, 0) < 0 && errno == ESRCH;
                if (!gone) {
                        /* a zombie of the agent counts as gone once reaped */
                        poll(NULL, 0, 20);
                }
        }
        unlink(mark);
        assert_true(gone);
        agent_links_free(L);
}

/* An agent of protocol version 1 answers the upgrade with unknown_method
 * (after a stale answer meant for a previous client, which is skipped). */
static void test_v1_agent(void **state) {
        (void) state;
        serve("read l; echo '{\"v\":1,\"id\":7,\"result\":{}}'; echo '{\"v\":1,\"id\":2147480001,\"error\":{\"code\":\"unknown_method\",\"message\":\"upgrade\"}}'; cat >/dev/null");
        struct agent_links *L = agent_links_new();
        static uint8_t spec[FRAME_MAX_PAYLOAD];
        size_t n = spec_of(spec, "true");
        struct agent_exec *x = NULL;
        uint32_t pid;
        struct op_error e = OP_ERROR_INIT;
        assert_int_equal(agent_exec_open(L, sock_path, spec, n, 5000, &x, &pid, &e), -EPROTONOSUPPORT);
        assert_non_null(strstr(op_error_message(&e), "version 1"));
        op_error_done(&e);
        agent_links_free(L);
        stop_serving();
        server = 0;
}

int main(void) {
        signal(SIGPIPE, SIG_IGN);
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_exec, setup, teardown),
                cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
                cmocka_unit_test_setup_teardown(test_client_leaves, setup, teardown),
                cmocka_unit_test(test_v1_agent),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
