/* SPDX-License-Identifier: MIT */
/* vm snapshot VM [NAME] | vm snapshot list VM | vm snapshot rm VM NAME; vm restore VM NAME. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "jsonx.h"
#include "rpc_methods.h"

static const char *str(json_t *o, const char *k) {
        const char *s = json_string_value(json_object_get(o, k));
        return s ? s : "-";
}

static long long num(json_t *o, const char *k) {
        return (long long) json_integer_value(json_object_get(o, k));
}

static int snapshot_list(struct cli_ctx *ctx, const char *vm) {
        _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:s}", "vm", vm);
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_VM_SNAPSHOT_LIST, params, &res);
        json_t *list = json_object_get(res, "snapshots"), *s;
        size_t i;
        if (r)
                return r;
        if (ctx->json) {
                cli_print_json(list);
                return 0;
        }
        if (!json_array_size(list)) {
                printf("vm %s has no snapshots (banger vm snapshot %s NAME)\n", str(res, "vm"), str(res, "vm"));
                return 0;
        }
        printf("%-24s  %-20s  %10s  %10s  %s\n", "NAME", "CREATED (UTC)", "SIZE", "STATE", "PAUSE");
        json_array_foreach(list, i, s) {
                char when[32] = "-", a[32], b[32];
                time_t t = (time_t) num(s, "created_at");
                struct tm tm;
                if (t > 0 && gmtime_r(&t, &tm))
                        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
                if (json_is_true(json_object_get(s, "damaged"))) {
                        printf("%-24s  %-20s  %10s  %10s  %s\n", str(s, "name"), "-", "-", "-",
                               "damaged (banger vm snapshot rm)");
                        continue;
                }
                printf("%-24s  %-20s  %10s  %10s  %.2f s\n", str(s, "name"), when,
                       cli_human_size((uint64_t) num(s, "bytes"), a, sizeof(a)),
                       cli_human_size((uint64_t) num(s, "state_bytes"), b, sizeof(b)), (double) num(s, "pause_ms") / 1000);
        }
        return 0;
}

static int snapshot_rm(struct cli_ctx *ctx, const char *vm, const char *name) {
        _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:s, s:s}", "vm", vm, "name", name);
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_VM_SNAPSHOT_DELETE, params, &res);
        char sz[32];
        if (r)
                return r;
        if (ctx->json)
                cli_print_json(res);
        else
                printf("removed snapshot %s of vm %s (freed %s)\n", name, str(res, "vm"),
                       cli_human_size((uint64_t) num(res, "bytes_freed"), sz, sizeof(sz)));
        return 0;
}

int cmd_vm_snapshot(struct cli_ctx *ctx, struct cli_args *a) {
        /* the action words win over a VM of that name (address it by id) */
        if (strcmp(a->pos[0], "list") == 0)
                return a->npos == 2 ? snapshot_list(ctx, a->pos[1])
                                     : cli_fail(ctx, -EINVAL, "usage: banger vm snapshot list VM");
        if (strcmp(a->pos[0], "rm") == 0)
                return a->npos == 3 ? snapshot_rm(ctx, a->pos[1], a->pos[2])
                                     : cli_fail(ctx, -EINVAL, "usage: banger vm snapshot rm VM NAME");
        if (a->npos > 2)
                return cli_fail(ctx, -EINVAL, "usage: banger vm snapshot VM [NAME]");
        _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:s}", "vm", a->pos[0]);
        if (a->npos == 2)
                json_object_set_new(params, "name", json_string(a->pos[1]));
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_VM_SNAPSHOT, params, &res);
        char x[32], y[32];
        if (r)
                return r;
        if (ctx->json)
                cli_print_json(res);
        else
                printf("snapshot %s of vm %s: %s (state %s); the guest was paused %.2f s\n", str(res, "name"),
                       a->pos[0], cli_human_size((uint64_t) num(res, "bytes"), x, sizeof(x)),
                       cli_human_size((uint64_t) num(res, "state_bytes"), y, sizeof(y)),
                       (double) num(res, "pause_ms") / 1000);
        return 0;
}

int cmd_vm_restore(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:s, s:s}", "vm", a->pos[0], "name", a->pos[1]);
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_VM_RESTORE, params, &res);
        if (r)
                return r;
        if (ctx->json)
                cli_print_json(res);
        else
                printf("restored vm %s from snapshot %s (%s)\n", str(res, "name"), a->pos[1], str(res, "state"));
        return 0;
}

/* ---- templates (warm start) ------------------------------------------------ */

int cmd_template_list(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL;
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_TEMPLATE_LIST, NULL, &res);
        json_t *list = json_object_get(res, "templates"), *t;
        size_t i;
        (void) a;
        if (r)
                return r;
        if (ctx->json) {
                cli_print_json(list);
                return 0;
        }
        if (!json_array_size(list)) {
                printf("no templates (the first cold start of a kind of VM builds one)\n");
                return 0;
        }
        printf("%-12s  %-8s  %-24s  %4s  %8s  %10s  %10s  %s\n", "KEY", "STATE", "IMAGE", "VCPU", "MEMORY", "DISK", "SIZE",
               "BUILT IN");
        json_array_foreach(list, i, t) {
                char m[32], d[32], b[32];
                printf("%-12.12s  %-8s  %-24s  %4lld  %8s  %10s  %10s  %.1f s\n", str(t, "key"), str(t, "state"),
                       str(t, "image"), num(t, "vcpu"),
                       cli_human_size((uint64_t) num(t, "memory_mib") << 20, m, sizeof(m)),
                       cli_human_size((uint64_t) num(t, "disk_size_bytes"), d, sizeof(d)),
                       cli_human_size((uint64_t) num(t, "bytes"), b, sizeof(b)), (double) num(t, "build_ms") / 1000);
        }
        return 0;
}

static int template_rm(struct cli_ctx *ctx, json_t *params) {
        _cleanup_json_ json_t *res = NULL;
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_TEMPLATE_RM, params, &res);
        char sz[32];
        if (r)
                return r;
        if (ctx->json)
                cli_print_json(res);
        else
                printf("removed %zu template(s), freed %s\n", json_array_size(json_object_get(res, "removed")),
                       cli_human_size((uint64_t) num(res, "bytes_freed"), sz, sizeof(sz)));
        return 0;
}

int cmd_template_rm(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *params = json_pack("{s:s}", "key", a->pos[0]);
        return template_rm(ctx, params);
}

int cmd_template_prune(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *params = json_pack("{s:b}", "all", cli_has(a, "all"));
        return template_rm(ctx, params);
}
