/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "fsutil.h"
#include "jsonx.h"
#include "macro.h"
#include "proc_spawn.h"
#include "rpc_methods.h"
#include "strbuf.h"
#include "version.h"

#define DAEMON_READY_TIMEOUT_MS 15000
#define DAEMON_STOP_TIMEOUT_MS 10000
#define CALL_TIMEOUT_MS (30 * 60 * 1000)

void cli_disconnect(struct cli_ctx *ctx) {
        if (ctx->fd < 0)
                return;
        rpc_line_reader_done(&ctx->lr);
        close(ctx->fd);
        ctx->fd = -1;
}

int cli_try_connect(struct cli_ctx *ctx) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        const char *path = cli_socket_path(ctx);
        _cleanup_close_ int fd = -1;

        cli_disconnect(ctx);
        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        ctx->fd = TAKE_FD(fd);
        rpc_line_reader_init(&ctx->lr, ctx->fd, RPC_MAX_MESSAGE);
        ctx->lr.stop_flag = ctx->interrupt;
        return 0;
}

/* One round trip on the open connection. */
static int roundtrip(struct cli_ctx *ctx, const char *method, json_t *params, struct rpc_response *ret,
                     char **ret_err) {
        _cleanup_free_ char *req = rpc_request_encode(ctx->next_id++, method, params);
        char *line;
        size_t len;
        int r;

        r = rpc_write_line(ctx->fd, req);
        if (r < 0) {
                *ret_err = xasprintf("cannot send to daemon: %s", strerror(-r));
                return r == -ECONNRESET ? -EPIPE : r;
        }
        int64_t deadline = mono_ms_now() + CALL_TIMEOUT_MS; /* for the next line */
        bool got_progress = false; /* only this call's stages are this call's to end */
        for (;;) {
                /* a live progress line wakes up to move its spinner */
                int64_t left = deadline - mono_ms_now();
                int wait = cli_progress_ticking(ctx) && left > CLI_PROGRESS_TICK_MS ? CLI_PROGRESS_TICK_MS : (int) left;
                r = rpc_line_reader_next(&ctx->lr, wait > 0 ? wait : 0, &line, &len);
                if (r == -ETIMEDOUT && mono_ms_now() < deadline) {
                        cli_progress_tick(ctx);
                        continue;
                }
                if (r <= 0) {
                        if (got_progress)
                                cli_progress_end(ctx, false);
                        *ret_err = r == 0 ? xstrdup("daemon closed the connection (see its log)")
                                          : xasprintf("reading daemon response: %s", strerror(-r));
                        return r == 0 ? -ECONNRESET : r;
                }
                /* {"id":N,"progress":{...}} lines come before the response */
                _cleanup_json_ json_t *j = json_loadb(line, len, 0, NULL);
                json_t *prog = json_object_get(j, "progress");
                if (prog) {
                        if (!ctx->no_progress)
                                cli_progress(ctx, prog);
                        got_progress = true;
                        deadline = mono_ms_now() + CALL_TIMEOUT_MS;
                        continue;
                }
                r = rpc_response_decode(line, len, ret, ret_err);
                if (got_progress)
                        cli_progress_end(ctx, r == 0 && !ret->is_error);
                return r;
        }
}

char *cli_find_bangerd(void) {
        return find_companion("BANGER_BANGERD", "bangerd");
}

int cli_start_daemon(struct cli_ctx *ctx) {
        _cleanup_free_ char *bin = cli_find_bangerd();
        _cleanup_close_ int rd = -1, wr = -1;
        _cleanup_strbuf_ struct strbuf msg = STRBUF_INIT;
        int p[2], r;
        pid_t pid;

        if (!bin)
                return cli_error(ctx, NULL, "cannot find bangerd next to banger or in PATH");
        if (pipe2(p, O_CLOEXEC) < 0)
                return cli_error(ctx, NULL, "pipe: %s", strerror(errno));
        rd = p[0];
        wr = p[1];
        char *argv[] = { bin, (char *) "--ready-fd", (char *) "3", NULL };
        struct spawn_fd_map map[] = { { 3, wr } };
        struct spawn_opts o = { .fds = map, .n_fds = 1, .new_session = true };
        r = spawn_start(argv, &o, &pid);
        if (r < 0)
                return cli_error(ctx, NULL, "cannot start %s: %s", bin, strerror(-r));
        closep(&wr);
        wr = -1;
        if (ctx->verbose)
                fprintf(stderr, "banger: started bangerd (pid %d)\n", (int) pid);

        /* The daemon writes "READY" once it listens, or "ERROR <why>". */
        for (;;) {
                struct pollfd pf = { .fd = rd, .events = POLLIN };
                char buf[512];
                r = poll(&pf, 1, DAEMON_READY_TIMEOUT_MS);
                if (r == 0)
                        return cli_error(ctx, NULL, "bangerd did not become ready within %d s (see %s)",
                                         DAEMON_READY_TIMEOUT_MS / 1000, ctx->layout.log_path);
                if (r < 0 && errno == EINTR)
                        continue;
                ssize_t k = read(rd, buf, sizeof(buf));
                if (k <= 0)
                        break;
                strbuf_add(&msg, buf, (size_t) k);
                if (memchr(msg.buf, '\n', msg.len))
                        break;
        }
        strbuf_rtrim(&msg);
        if (strcmp(msg.buf, "READY") == 0)
                return 0;
        if (strncmp(msg.buf, "ERROR ", 6) == 0)
                return cli_error(ctx, NULL, "bangerd failed to start: %s", msg.buf + 6);
        return cli_error(ctx, NULL, "bangerd exited during start-up (see %s)", ctx->layout.log_path);
}

static int wait_pid_exit(pid_t pid, int timeout_ms) {
        _cleanup_close_ int pfd = (int) pidfd_open(pid, 0);
        struct pollfd p = { .fd = pfd, .events = POLLIN };

        if (pfd < 0)
                return errno == ESRCH ? 0 : -errno;
        int r = poll(&p, 1, timeout_ms);
        return r > 0 ? 0 : -ETIMEDOUT;
}

int cli_stop_daemon(struct cli_ctx *ctx) {
        struct rpc_response resp = { 0 };
        _cleanup_free_ char *err = NULL;
        int r;

        r = roundtrip(ctx, RPC_METHOD_DAEMON_SHUTDOWN, NULL, &resp, &err);
        if (r < 0)
                return cli_fail(ctx, r, "%s", err);
        if (resp.is_error) {
                cli_error(ctx, resp.op_id, "%s", resp.message);
                r = rpc_code_to_errno(resp.code);
                rpc_response_done(&resp);
                return r;
        }
        json_t *pid = json_object_get(resp.result, "pid");
        pid_t p = json_is_integer(pid) ? (pid_t) json_integer_value(pid) : 0;
        rpc_response_done(&resp);
        cli_disconnect(ctx);
        if (p > 0 && wait_pid_exit(p, DAEMON_STOP_TIMEOUT_MS) < 0)
                return cli_error(ctx, NULL, "bangerd (pid %d) did not exit within %d s", (int) p,
                                 DAEMON_STOP_TIMEOUT_MS / 1000);
        return 0;
}

/*
 * A daemon of another build is restarted, but only when no operation is in
 * flight: a restart must never cut a create or a pull in half.
 */
static int check_version(struct cli_ctx *ctx) {
        struct rpc_response resp = { 0 };
        _cleanup_free_ char *err = NULL;
        int r;

        ctx->version_checked = true;
        r = roundtrip(ctx, RPC_METHOD_PING, NULL, &resp, &err);
        if (r < 0 || resp.is_error) {
                rpc_response_done(&resp);
                return 0; /* the real call will report it */
        }
        const char *v = json_string_value(json_object_get(resp.result, "version"));
        const char *c = json_string_value(json_object_get(resp.result, "commit"));
        bool same = v && c && strcmp(v, banger_version()) == 0 && strcmp(c, banger_commit()) == 0;
        _cleanup_free_ char *theirs = xasprintf("v%s (commit %s)", v ? v : "?", c ? c : "?");
        rpc_response_done(&resp);
        if (same)
                return 0;

        _cleanup_json_ json_t *params = json_pack("{s:b}", "running_only", true);
        r = roundtrip(ctx, RPC_METHOD_DAEMON_OPERATIONS_LIST, params, &resp, &err);
        json_int_t running = r == 0 && !resp.is_error ? json_integer_value(json_object_get(resp.result, "running")) : -1;
        rpc_response_done(&resp);
        if (running != 0) {
                fprintf(stderr, "banger: warning: bangerd %s differs from this CLI v%s (commit %s); not restarting it "
                                "while operations are in flight\n",
                        theirs, banger_version(), banger_commit());
                return 0;
        }
        fprintf(stderr, "banger: restarting bangerd %s to match this CLI v%s (commit %s)\n", theirs,
                banger_version(), banger_commit());
        r = cli_stop_daemon(ctx);
        if (r)
                return r;
        r = cli_start_daemon(ctx);
        if (r)
                return r;
        return cli_try_connect(ctx) < 0 ? cli_error(ctx, NULL, "cannot reach the restarted daemon") : 0;
}

/* A system install serves its owner (and root); nobody auto-starts it. */
static int system_mode_check(struct cli_ctx *ctx) {
        if (ctx->socket_override)
                return 0;
        if (ctx->install_error)
                return cli_error(ctx, NULL, "%s (sudo banger system install, or remove the file)", ctx->install_error);
        if (ctx->system && getuid() != 0 && getuid() != ctx->install.owner_uid)
                return cli_fail(ctx, -EACCES, "banger is installed system-wide for %s: run it as %s",
                                ctx->install.owner_user, ctx->install.owner_user);
        return 0;
}

/* The daemon closes connections idle for a while (and the idlest at its
 * limit): one it closed is replaced before it is used. */
static void drop_if_closed(struct cli_ctx *ctx) {
        struct pollfd p = { .fd = ctx->fd, .events = POLLIN | POLLRDHUP };
        if (ctx->fd >= 0 && poll(&p, 1, 0) > 0 && (p.revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)))
                cli_disconnect(ctx);
}

static int ensure_connected(struct cli_ctx *ctx, enum cli_connect_mode mode) {
        int r;

        drop_if_closed(ctx);
        if (ctx->fd >= 0)
                return 0;
        if ((r = system_mode_check(ctx)))
                return r;
        r = cli_try_connect(ctx);
        if (r < 0 && ctx->system && !ctx->socket_override)
                return cli_error(ctx, NULL, "the system bangerd does not answer at %s: %s (banger system status; "
                                            "sudo banger system restart)", cli_socket_path(ctx), strerror(-r));
        if (r == 0) {
                if (mode == CLI_AUTOSTART && !ctx->socket_override && !ctx->system && !ctx->version_checked)
                        return check_version(ctx);
                return 0;
        }
        if ((r != -ENOENT && r != -ECONNREFUSED) || mode != CLI_AUTOSTART || ctx->socket_override)
                return cli_error(ctx, NULL, "cannot reach bangerd at %s: %s", cli_socket_path(ctx), strerror(-r));
        r = cli_start_daemon(ctx);
        if (r)
                return r;
        ctx->version_checked = true;
        r = cli_try_connect(ctx);
        if (r < 0)
                return cli_error(ctx, NULL, "bangerd started but %s does not answer: %s", cli_socket_path(ctx),
                                 strerror(-r));
        return 0;
}

int cli_call(struct cli_ctx *ctx, enum cli_connect_mode mode, const char *method, json_t *params,
             json_t **ret_result) {
        struct rpc_response resp = { 0 };
        _cleanup_free_ char *err = NULL;
        int r;

        r = ensure_connected(ctx, mode);
        if (r)
                return r;
        r = roundtrip(ctx, method, params, &resp, &err);
        if (r == -EPIPE && mode == CLI_AUTOSTART) {
                /* the daemon went away before it read the request (a daemon that
                 * was just killed can still accept): nothing ran, ask again */
                free(TAKE_PTR(err));
                cli_disconnect(ctx);
                r = ensure_connected(ctx, mode);
                if (r)
                        return r;
                r = roundtrip(ctx, method, params, &resp, &err);
        }
        if (r < 0)
                return cli_fail(ctx, r, "%s", err);
        if (resp.is_error) {
                if (ctx->capture && !ctx->err_line) {
                        ctx->err_code = xstrdup(resp.code_str ? resp.code_str : rpc_code_to_string(resp.code));
                        ctx->err_message = xstrdup(resp.message ? resp.message : "");
                }
                if (resp.code == RPC_OPERATION_FAILED)
                        cli_error(ctx, resp.op_id, "%s", resp.message);
                else
                        cli_error(ctx, resp.op_id, "%s: %s", resp.code_str, resp.message);
                r = rpc_code_to_errno(resp.code);
                rpc_response_done(&resp);
                return r;
        }
        *ret_result = TAKE_PTR(resp.result);
        rpc_response_done(&resp);
        return 0;
}
