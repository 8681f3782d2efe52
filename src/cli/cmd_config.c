/* SPDX-License-Identifier: MIT */
/* config show (marking what differs from the file) */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "jsonx.h"
#include "macro.h"
#include "rpc_methods.h"

static json_t *differs_of(json_t *differs, const char *key) {
        size_t i;
        json_t *d;
        json_array_foreach(differs, i, d)
                if (strcmp(strempty(json_string_value(json_object_get(d, "key"))), key) == 0)
                        return d;
        return NULL;
}

/* A value the file no longer says is marked: "* file: X (banger daemon
 * reload)" or "(needs a restart)". */
static void print_entry(const char *prefix, const char *key, json_t *e, json_t *differs) {
        json_t *v = json_object_get(e, "value");
        const char *src = json_string_value(json_object_get(e, "source"));
        json_t *line = json_object_get(e, "line");
        _cleanup_free_ char *val = json_dump_compact(v);
        _cleanup_free_ char *k = xasprintf("%s%s", prefix, key);
        json_t *d = differs_of(differs, k);

        if (line)
                printf("%-28s %-40s # %s (line %lld)", k, val, src, (long long) json_integer_value(line));
        else
                printf("%-28s %-40s # %s", k, val, src);
        if (d) {
                _cleanup_free_ char *fv = json_dump_compact(json_object_get(d, "file"));
                printf("  * file: %s (%s)", fv,
                       json_is_true(json_object_get(d, "needs_restart")) ? "needs a restart" : "banger daemon reload");
        }
        putchar('\n');
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
        json_t *cfg = json_object_get(res, "config"), *differs = json_object_get(res, "file_differs");
        printf("# %s\n", json_string_value(json_object_get(res, "path")));
        json_object_foreach(cfg, key, e) {
                if (strcmp(key, "warnings") == 0)
                        continue;
                if (json_object_get(e, "source"))
                        print_entry("", key, e, differs);
                else
                        json_object_foreach(e, k2, e2) {
                                _cleanup_free_ char *p = xasprintf("%s.", key);
                                print_entry(p, k2, e2, differs);
                        }
        }
        json_array_foreach(json_object_get(cfg, "warnings"), i, e)
                fprintf(stderr, "banger: warning: %s\n", json_string_value(e));
        if (json_is_string(json_object_get(res, "file_error")))
                fprintf(stderr, "banger: warning: the file does not load, the daemon runs the config above: %s\n",
                        json_string_value(json_object_get(res, "file_error")));
        else if (json_array_size(differs))
                fprintf(stderr, "banger: %zu value(s) differ from the file (*): 'banger daemon reload' applies them\n",
                        json_array_size(differs));
        return 0;
}
