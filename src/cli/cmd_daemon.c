/* SPDX-License-Identifier: MIT */
/* version, ping, daemon status|start|stop|operations */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "jsonx.h"
#include "macro.h"
#include "rpc_methods.h"
#include "version.h"

int cmd_version(struct cli_ctx *ctx, struct cli_args *a) {
        (void) a;
        if (ctx->json) {
                _cleanup_json_ json_t *j = json_pack("{s:s, s:s, s:s}", "version", banger_version(), "commit",
                                                     banger_commit(), "built_at", banger_built_at());
                cli_print_json(j);
                return 0;
        }
        printf("banger v%s\ncommit:   %s\nbuilt:    %s\nprotocol: %d\n", banger_version(), banger_commit(),
               banger_built_at(), RPC_VERSION);
        return 0;
}

static void print_ping(const json_t *r) {
        json_int_t up = json_integer_value(json_object_get(r, "uptime_ms"));
        printf("bangerd v%s (commit %s) pid %lld, up %lld.%01llds\n", json_string_value(json_object_get(r, "version")),
               json_string_value(json_object_get(r, "commit")),
               (long long) json_integer_value(json_object_get(r, "pid")), (long long) (up / 1000),
               (long long) (up % 1000 / 100));
        printf("vmm:   %s (%s)\naccel: %s (%s)\n", json_string_value(json_object_get(r, "vmm")),
               json_string_value(json_object_get(r, "vmm_reason")), json_string_value(json_object_get(r, "accel")),
               json_string_value(json_object_get(r, "accel_reason")));
        const char *net = json_string_value(json_object_get(r, "default_net"));
        if (net)
                printf("net:   %s\n", strcmp(net, "user") == 0
                                              ? "user-mode (rootless: no CAP_NET_ADMIN and no root helper)"
                                              : "bridge");
}

int cmd_ping(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL;
        int r;
        (void) a;

        r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_PING, NULL, &res);
        if (r)
                return r;
        if (ctx->json)
                cli_print_json(res);
        else
                print_ping(res);
        return 0;
}

int cmd_daemon_status(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL;
        int r;
        (void) a;

        r = cli_try_connect(ctx);
        if (r < 0) {
                if (ctx->json) {
                        _cleanup_json_ json_t *j = json_pack("{s:b, s:s}", "running", false, "socket",
                                                             cli_socket_path(ctx));
                        cli_print_json(j);
                } else
                        printf("bangerd is not running (socket %s: %s)\n", cli_socket_path(ctx), strerror(-r));
                return 3;
        }
        r = cli_call(ctx, CLI_NO_AUTOSTART, RPC_METHOD_PING, NULL, &res);
        if (r)
                return r;
        if (ctx->json) {
                json_object_set_new(res, "running", json_true());
                cli_print_json(res);
        } else {
                printf("bangerd is running on %s\n", cli_socket_path(ctx));
                print_ping(res);
        }
        return 0;
}

/* The daemon of a system install is its service manager's to start and stop. */
static int system_managed(struct cli_ctx *ctx) {
        return cli_fail(ctx, -EPERM, "bangerd belongs to the system install (%s); use sudo banger system restart",
                        install_uses_systemd(&ctx->install) ? "systemd: bangerd.service" : "banger system");
}

int cmd_daemon_start(struct cli_ctx *ctx, struct cli_args *a) {
        (void) a;
        if (ctx->system && !ctx->socket_override)
                return system_managed(ctx);
        if (cli_try_connect(ctx) == 0) {
                printf("bangerd is already running on %s\n", cli_socket_path(ctx));
                return 0;
        }
        if (ctx->socket_override)
                return cli_error(ctx, NULL, "--socket names a daemon banger does not manage; start it yourself");
        int r = cli_start_daemon(ctx);
        if (r)
                return r;
        printf("bangerd started on %s\n", cli_socket_path(ctx));
        return 0;
}

int cmd_daemon_stop(struct cli_ctx *ctx, struct cli_args *a) {
        (void) a;
        if (ctx->system && !ctx->socket_override)
                return system_managed(ctx);
        if (cli_try_connect(ctx) < 0) {
                printf("bangerd is not running\n");
                return 0;
        }
        int r = cli_stop_daemon(ctx);
        if (r)
                return r;
        printf("bangerd stopped (running VMs keep running)\n");
        return 0;
}

static void print_diff_list(json_t *list, const char *what) {
        size_t i;
        json_t *c;
        json_array_foreach(list, i, c) {
                _cleanup_free_ char *from = json_dump_compact(json_object_get(c, "running"));
                _cleanup_free_ char *to = json_dump_compact(json_object_get(c, "file"));
                printf("  %-26s %s -> %s%s\n", json_string_value(json_object_get(c, "key")), from, to, what);
        }
}

/* daemon.reload (what SIGHUP does): config.toml again. A file that does not
 * load is an error and the daemon keeps its config. */
int cmd_daemon_reload(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL;
        (void) a;
        if (cli_try_connect(ctx) < 0)
                return cli_fail(ctx, -ECONNREFUSED, "bangerd is not running (it reads %s when it starts)",
                                ctx->layout.config_file);
        int r = cli_call(ctx, CLI_NO_AUTOSTART, RPC_METHOD_DAEMON_RELOAD, NULL, &res);
        if (r)
                return r;
        if (ctx->json) {
                cli_print_json(res);
                return 0;
        }
        json_t *changed = json_object_get(res, "changed"), *restart = json_object_get(res, "needs_restart");
        size_t i;
        json_t *w;
        json_array_foreach(json_object_get(res, "warnings"), i, w)
                fprintf(stderr, "banger: warning: %s\n", json_string_value(w));
        if (!json_array_size(changed) && !json_array_size(restart)) {
                printf("reloaded %s: nothing changed\n", json_string_value(json_object_get(res, "path")));
                return 0;
        }
        printf("reloaded %s\n", json_string_value(json_object_get(res, "path")));
        print_diff_list(changed, "");
        print_diff_list(restart, "  (needs a restart: banger daemon stop && banger daemon start)");
        return 0;
}

int cmd_daemon_operations(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:b}", "running_only", cli_has(a, "running"));
        size_t i;
        json_t *op;
        int r;

        r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_DAEMON_OPERATIONS_LIST, params, &res);
        if (r)
                return r;
        if (ctx->json) {
                cli_print_json(res);
                return 0;
        }
        json_t *ops = json_object_get(res, "operations");
        if (json_array_size(ops) == 0) {
                printf("no operations\n");
                return 0;
        }
        printf("%-10s  %-12s  %-16s  %-9s  %-20s  %s\n", "ID", "KIND", "TARGET", "STATE", "STARTED", "STAGE");
        json_array_foreach(ops, i, op) {
                printf("%-10s  %-12s  %-16s  %-9s  %-20s  %s\n", json_string_value(json_object_get(op, "id")),
                       json_string_value(json_object_get(op, "kind")), json_string_value(json_object_get(op, "target")),
                       json_string_value(json_object_get(op, "state")),
                       json_string_value(json_object_get(op, "started_at")),
                       json_string_value(json_object_get(op, "stage")));
        }
        return 0;
}
