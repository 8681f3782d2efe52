/* SPDX-License-Identifier: MIT */
/* vm forward VM SPEC... | vm forward [--list] VM | vm forward --list | vm forward --rm VM KEY...:
 * host ports relayed to a VM's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "jsonx.h"
#include "portspec.h"
#include "rpc_methods.h"

static const char *str(json_t *o, const char *k) {
        const char *s = json_string_value(json_object_get(o, k));
        return s ? s : "-";
}

static long long num(json_t *o, const char *k) {
        return (long long) json_integer_value(json_object_get(o, k));
}

/* "127.0.0.1:8080", "[::1]:8080" */
static void host_side(json_t *f, char *buf, size_t len) {
        const char *ip = str(f, "host_ip");
        snprintf(buf, len, strchr(ip, ':') ? "[%s]:%lld" : "%s:%lld", ip, num(f, "host_port"));
}

static int forward_list(struct cli_ctx *ctx, const char *vm) {
        _cleanup_json_ json_t *res = NULL, *params = vm ? json_pack("{s:s}", "vm", vm) : NULL;
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_VM_FORWARD_LIST, params, &res);
        json_t *list = json_object_get(res, "forwards"), *f;
        size_t i;
        if (r)
                return r;
        if (ctx->json) {
                cli_print_json(list);
                return 0;
        }
        if (!json_array_size(list)) {
                printf("%s%s has no port forwards (banger vm forward VM [HOSTIP:]HOSTPORT:GUESTPORT)\n",
                       vm ? "vm " : "", vm ? vm : "no VM");
                return 0;
        }
        printf("%-20s  %-5s  %-28s  %-10s  %-8s  %s\n", "VM", "PROTO", "HOST", "GUEST PORT", "STATE", "CONNECTIONS");
        json_array_foreach(list, i, f) {
                char host[64];
                host_side(f, host, sizeof(host));
                bool open = json_is_true(json_object_get(f, "open"));
                printf("%-20s  %-5s  %-28s  %-10lld  %-8s  %lld\n", str(f, "vm"), str(f, "proto"), host,
                       num(f, "guest_port"), open ? "open" : "closed", num(f, "connections"));
        }
        return 0;
}

static int forward_rm(struct cli_ctx *ctx, const char *vm, char **keys, int n) {
        int rc = 0;
        for (int k = 0; k < n; k++) {
                _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:s, s:s}", "vm", vm, "key", keys[k]);
                int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_VM_FORWARD_REMOVE, params, &res);
                json_t *f;
                size_t i;
                if (r) {
                        rc = rc ? rc : r;
                        continue;
                }
                if (ctx->json) {
                        cli_print_json(res);
                        continue;
                }
                json_array_foreach(json_object_get(res, "removed"), i, f) {
                        char host[64];
                        host_side(f, host, sizeof(host));
                        printf("vm %s: removed %s %s -> guest port %lld\n", str(res, "vm"), str(f, "proto"), host,
                               num(f, "guest_port"));
                }
        }
        return rc;
}

static int forward_add(struct cli_ctx *ctx, const struct cli_command *a_cmd, const char *vm, char **specs, int n) {
        for (int k = 0; k < n; k++) { /* all or nothing on bad input */
                struct port_spec s;
                const char *why;
                if (port_spec_parse(specs[k], &s, &why) < 0)
                        return cli_usage_error(a_cmd, "port forward '%s': %s (want [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp])",
                                               specs[k], why);
        }
        int rc = 0;
        for (int k = 0; k < n; k++) {
                _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:s, s:s}", "vm", vm, "spec", specs[k]);
                int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_VM_FORWARD_ADD, params, &res);
                if (r) {
                        rc = rc ? rc : r;
                        continue;
                }
                json_t *f = json_object_get(res, "forward");
                char host[64];
                host_side(f, host, sizeof(host));
                if (ctx->json)
                        cli_print_json(res);
                else
                        printf("vm %s: %s %s -> guest port %lld (%s)\n", str(res, "vm"), str(f, "proto"), host,
                               num(f, "guest_port"),
                               json_is_true(json_object_get(f, "open")) ? "open" : "opens when the VM starts");
        }
        return rc;
}

int cmd_vm_forward(struct cli_ctx *ctx, struct cli_args *a) {
        bool list = cli_has(a, "list"), rm = cli_has(a, "rm");
        if (list && rm)
                return cli_usage_error(a->cmd, "--list and --rm exclude each other");
        if (list)
                return a->npos <= 1 ? forward_list(ctx, a->npos == 1 ? a->pos[0] : NULL)
                                    : cli_usage_error(a->cmd, "--list takes at most one VM");
        if (rm)
                return a->npos >= 2 ? forward_rm(ctx, a->pos[0], a->pos + 1, a->npos - 1)
                                    : cli_usage_error(a->cmd, "--rm needs a VM and a [HOSTIP:]HOSTPORT[/PROTO]");
        if (a->npos == 0)
                return cli_usage_error(a->cmd, "which VM? (--list: every VM's forwards)");
        if (a->npos == 1)
                return forward_list(ctx, a->pos[0]);
        return forward_add(ctx, a->cmd, a->pos[0], a->pos + 1, a->npos - 1);
}
