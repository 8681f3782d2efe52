/* SPDX-License-Identifier: MIT */
/* A command in a VM through its agent: vm.exec, then the connection carries
 * the command's streams (docs/PROTOCOL.md). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "execclient.h"
#include "jsonx.h"
#include "macro.h"
#include "rpc_methods.h"

/* The upgraded connection: our stdio to the command, our signals to its
 * process group (a PTY's Ctrl-C travels as a byte). */
static int streams(struct cli_ctx *ctx, const char *vm, bool pty, int *ret_code) {
        sigset_t mask, old;
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGQUIT);
        sigaddset(&mask, SIGWINCH);
        sigprocmask(SIG_BLOCK, &mask, &old);
        int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        struct sigaction ign = { .sa_handler = SIG_IGN }, old_pipe;
        sigaction(SIGPIPE, &ign, &old_pipe);
        struct termios saved;
        bool raw = pty && isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
        if (raw) {
                struct termios t = saved;
                cfmakeraw(&t);
                tcsetattr(STDIN_FILENO, TCSADRAIN, &t);
        }
        struct exec_client_opts o = {
                .in_fd = STDIN_FILENO, .out_fd = STDOUT_FILENO, .err_fd = STDERR_FILENO, .signal_fd = sfd,
                .tty_fd = pty ? STDIN_FILENO : -1, .cancel_fd = -1,
                .pre = (const uint8_t *) ctx->lr.buf.buf + ctx->lr.consumed, .pre_len = ctx->lr.buf.len - ctx->lr.consumed,
        };
        struct exec_client_result res;
        int r = exec_client_run(ctx->fd, &o, &res);
        if (raw)
                tcsetattr(STDIN_FILENO, TCSADRAIN, &saved);
        sigaction(SIGPIPE, &old_pipe, NULL);
        if (sfd >= 0)
                close(sfd);
        /* signals that came in between are dropped: they were meant for the command */
        struct timespec zero = { 0 };
        while (sigtimedwait(&mask, NULL, &zero) > 0)
                ;
        sigprocmask(SIG_SETMASK, &old, NULL);
        cli_disconnect(ctx);
        if (r < 0 && !res.cancelled) {
                cli_error(ctx, NULL, "vm %s: %s", vm, res.error ? res.error : "the command's stream broke");
                exec_client_result_done(&res);
                return -EIO;
        }
        *ret_code = res.code;
        exec_client_result_done(&res);
        return 0;
}

int cli_agent_exec(struct cli_ctx *ctx, const char *vm, char *const *argv, int argc, const char *cwd, bool pty,
                   json_t *extra, int *ret_code) {
        _cleanup_json_ json_t *params = json_pack("{s:s, s:[], s:[]}", "vm", vm, "argv", "env");
        json_t *av = json_object_get(params, "argv");
        for (int i = 0; i < argc; i++)
                json_array_append_new(av, json_string(argv[i]));
        if (cwd)
                json_object_set_new(params, "cwd", json_string(cwd));
        if (extra)
                json_object_update_new(params, json_deep_copy(extra)); /* env, uid, gid */
        json_t *env = json_object_get(params, "env");
        struct winsize ws = { 0 };
        if (pty) {
                const char *term = getenv("TERM");
                json_object_set_new(params, "pty", json_true());
                if (ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0) {
                        json_object_set_new(params, "rows", json_integer(ws.ws_row));
                        json_object_set_new(params, "cols", json_integer(ws.ws_col));
                }
                if (term && *term && strlen(term) < 64 && !strpbrk(term, "\n\r") && json_is_array(env))
                        json_array_append_new(env, json_pack("s+", "TERM=", term));
        }
        int r = cli_try_connect(ctx);
        if (r < 0)
                return cli_fail(ctx, r, "cannot reach bangerd: %s", strerror(-r));
        _cleanup_free_ char *req = rpc_request_encode(ctx->next_id++, RPC_METHOD_VM_EXEC, params);
        char *line;
        size_t len;
        if ((r = rpc_write_line(ctx->fd, req)) < 0 || (r = rpc_line_reader_next(&ctx->lr, 60000, &line, &len)) <= 0) {
                cli_disconnect(ctx);
                return cli_fail(ctx, r < 0 ? r : -ECONNRESET, "vm exec: no answer from bangerd");
        }
        struct rpc_response resp = { 0 };
        _cleanup_free_ char *err = NULL;
        if (rpc_response_decode(line, len, &resp, &err) < 0) {
                cli_disconnect(ctx);
                return cli_fail(ctx, -EPROTO, "vm exec: %s", err);
        }
        if (resp.is_error) {
                r = rpc_code_to_errno(resp.code);
                if (resp.code == RPC_BAD_VERSION)
                        r = -EPROTONOSUPPORT; /* an old agent: the caller uses ssh */
                else if (resp.code == RPC_OPERATION_FAILED)
                        cli_error(ctx, resp.op_id, "%s", resp.message);
                else
                        cli_error(ctx, resp.op_id, "%s: %s", resp.code_str, resp.message);
                rpc_response_done(&resp);
                cli_disconnect(ctx);
                return r;
        }
        rpc_response_done(&resp);
        return streams(ctx, vm, pty, ret_code);
}
