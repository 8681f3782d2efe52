/* SPDX-License-Identifier: MIT */
/* config show */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "jsonx.h"
#include "macro.h"
#include "rpc_methods.h"

static void print_entry(const char *prefix, const char *key, json_t *e) {
        json_t *v = json_object_get(e, "value");
        const char *src = json_string_value(json_object_get(e, "source"));
        json_t *line = json_object_get(e, "line");
        _cleanup_free_ char *val = json_dump_compact(v);
        _cleanup_free_ char *k = xasprintf("%s%s", prefix, key);

        if (line)
                printf("%-28s %-40s # %s (line %lld)\n", k, val, src, (long long) json_integer_value(line));
        else
                printf("%-28s %-40s # %s\n", k, val, src);
}

int cmd_config_show(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL;
        const char *key, *k2;
        json_t *e, *e2;
        size_t i;
        int r;
        (void) a;

        r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_CONFIG_SHOW, NULL, &res);
        if (r)
                return r;
        if (ctx->json) {
                cli_print_json(res);
                return 0;
        }
        json_t *cfg = json_object_get(res, "config");
        printf("# %s\n", json_string_value(json_object_get(res, "path")));
        json_object_foreach(cfg, key, e) {
                if (strcmp(key, "warnings") == 0)
                        continue;
                if (json_object_get(e, "source"))
                        print_entry("", key, e);
                else
                        json_object_foreach(e, k2, e2) {
                                _cleanup_free_ char *p = xasprintf("%s.", key);
                                print_entry(p, k2, e2);
                        }
        }
        json_array_foreach(json_object_get(cfg, "warnings"), i, e)
                fprintf(stderr, "banger: warning: %s\n", json_string_value(e));
        return 0;
}
