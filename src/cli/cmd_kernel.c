/* SPDX-License-Identifier: MIT */
/* kernel list|show|pull|build|rm|import */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "jsonx.h"
#include "macro.h"
#include "rpc_methods.h"

static const char *str(json_t *o, const char *k) {
        const char *s = json_string_value(json_object_get(o, k));
        return s && *s ? s : "-";
}

static void print_kernel(json_t *k) {
        char sz[32];
        size_t i;
        json_t *m;

        printf("name:            %s\n", str(k, "name"));
        printf("distro/arch:     %s/%s\n", str(k, "distro"), str(k, "arch"));
        printf("kernel version:  %s\n", str(k, "kernel_version"));
        if (json_object_get(k, "package"))
                printf("package:         %s\n", str(k, "package"));
        printf("source:          %s\n", str(k, "source"));
        json_t *b = json_object_get(k, "build");
        if (json_is_object(b)) /* built from source: kernel build */
                printf("built with:      %s (sha256 %.12s), %s, timestamp %s\n", str(b, "fragment"),
                       str(b, "fragment_sha256"), str(b, "toolchain"), str(b, "timestamp"));
        printf("imported at:     %s\n", str(k, "imported_at"));
        printf("dir:             %s\n", str(k, "dir"));
        printf("size:            %s\n", cli_human_size((uint64_t) json_integer_value(json_object_get(k, "size_bytes")), sz, sizeof(sz)));
        printf("pvh boot:        %s\n", json_is_true(json_object_get(k, "pvh")) ? "yes (vmlinux)" : "no (bzImage)");
        printf("modules:        ");
        json_array_foreach(json_object_get(k, "modules"), i, m)
                printf(" %s", json_string_value(m));
        printf("%s\n", json_array_size(json_object_get(k, "modules")) ? "" : " (none)");
}

int cmd_kernel_list(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:b}", "available", cli_has(a, "available"));
        size_t i;
        json_t *k;
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_KERNEL_LIST, params, &res);

        if (r)
                return r;
        if (ctx->json) {
                cli_print_json(json_object_get(res, "kernels"));
                return 0;
        }
        json_t *ks = json_object_get(res, "kernels");
        if (!json_array_size(ks)) {
                printf("no kernels (try 'banger kernel list --available')\n");
                return 0;
        }
        printf("%-20s  %-9s  %-12s  %-8s  %-24s  %10s  %s\n", "NAME", "STATE", "DISTRO", "ARCH", "VERSION", "SIZE",
               "SOURCE");
        json_array_foreach(ks, i, k) {
                char sz[32];
                const char *state = str(k, "state");
                printf("%-20s  %-9s  %-12s  %-8s  %-24s  %10s  %s\n", str(k, "name"), state, str(k, "distro"),
                       str(k, "arch"), str(k, "kernel_version"),
                       cli_human_size((uint64_t) json_integer_value(json_object_get(k, "size_bytes")), sz, sizeof(sz)),
                       strcmp(state, "available") == 0 ? str(k, "description") : str(k, "source"));
        }
        return 0;
}

int cmd_kernel_show(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:s}", "name", a->pos[0]);
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_KERNEL_SHOW, params, &res);
        if (r)
                return r;
        if (ctx->json)
                cli_print_json(res);
        else
                print_kernel(res);
        return 0;
}

int cmd_kernel_pull(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL,
                              *params = json_pack("{s:s, s:b}", "name", a->pos[0], "force", cli_has(a, "force"));
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_KERNEL_PULL, params, &res);
        if (r)
                return r;
        if (ctx->json)
                cli_print_json(res);
        else if (json_is_true(json_object_get(res, "already_pulled")))
                printf("kernel %s is already pulled (%s); use --force to pull it again\n", str(res, "name"),
                       str(res, "kernel_version"));
        else
                printf("pulled kernel %s (%s)\n", str(res, "name"), str(res, "kernel_version"));
        return 0;
}

int cmd_kernel_build(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL,
                              *params = json_pack("{s:s, s:b}", "name", a->pos[0], "force", cli_has(a, "force"));
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_KERNEL_BUILD, params, &res);
        if (r)
                return r;
        if (ctx->json)
                cli_print_json(res);
        else if (json_is_true(json_object_get(res, "already_built")))
                printf("kernel %s is already built (%s); use --force to build it again\n", str(res, "name"),
                       str(res, "kernel_version"));
        else
                printf("built kernel %s (%s, %s)\n", str(res, "name"), str(res, "kernel_version"), str(res, "source"));
        return 0;
}

int cmd_kernel_rm(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:s}", "name", a->pos[0]);
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_KERNEL_DELETE, params, &res);
        if (r)
                return r;
        if (ctx->json)
                cli_print_json(res);
        else
                printf("removed kernel %s\n", a->pos[0]);
        return 0;
}

int cmd_kernel_import(struct cli_ctx *ctx, struct cli_args *a) {
        const char *from = cli_flag(a, "from");
        char abs[PATH_MAX];

        if (!from || !*from)
                return cli_usage_error(a->cmd, "--from DIR is required");
        if (!realpath(from, abs))
                return cli_error(ctx, NULL, "%s: no such directory", from);
        _cleanup_json_ json_t *res = NULL,
                              *params = json_pack("{s:s, s:s, s:b}", "name", a->pos[0], "from", abs, "force",
                                                  cli_has(a, "force"));
        if (cli_flag(a, "distro"))
                json_object_set_new(params, "distro", json_string(cli_flag(a, "distro")));
        if (cli_flag(a, "arch"))
                json_object_set_new(params, "arch", json_string(cli_flag(a, "arch")));
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_KERNEL_IMPORT, params, &res);
        if (r)
                return r;
        if (ctx->json)
                cli_print_json(res);
        else
                printf("imported kernel %s from %s\n", str(res, "name"), abs);
        return 0;
}
