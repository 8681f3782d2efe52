/* SPDX-License-Identifier: MIT */
/* image list|show|pull|delete|register|promote|export */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "jsonx.h"
#include "macro.h"
#include "parse.h"
#include "rpc_methods.h"
#include "strbuf.h"

static const char *str(json_t *o, const char *k) {
        const char *s = json_string_value(json_object_get(o, k));
        return s && *s ? s : "-";
}

static int simple(struct cli_ctx *ctx, const char *method, json_t *params, json_t **ret) {
        return cli_call(ctx, CLI_AUTOSTART, method, params, ret);
}

int cmd_image_list(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:b}", "available", cli_has(a, "available"));
        size_t i;
        json_t *im;
        int r = simple(ctx, RPC_METHOD_IMAGE_LIST, params, &res);
        if (r)
                return r;
        if (ctx->json) {
                cli_print_json(json_object_get(res, "images"));
                return 0;
        }
        json_t *list = json_object_get(res, "images");
        if (!json_array_size(list)) {
                printf("no images (try 'banger image list --available')\n");
                return 0;
        }
        printf("%-24s  %-9s  %-8s  %-18s  %10s  %s\n", "NAME", "STATE", "INIT", "KERNEL", "SIZE", "SOURCE");
        json_array_foreach(list, i, im) {
                char sz[32];
                bool avail = strcmp(str(im, "state"), "available") == 0;
                uint64_t bytes = (uint64_t) json_integer_value(json_object_get(im, avail ? "size_bytes" : "disk_usage_bytes"));
                printf("%-24s  %-9s  %-8s  %-18s  %10s  %s\n", str(im, "name"), str(im, "state"), str(im, "init_mode"),
                       str(im, "kernel_ref"), cli_human_size(bytes, sz, sizeof(sz)),
                       avail ? str(im, "description") : str(im, "source"));
        }
        return 0;
}

static void print_image(json_t *im) {
        char a[32], b[32];
        printf("name:          %s\nid:            %s\nmanaged:       %s\ninit mode:     %s\nkernel:        %s\n",
               str(im, "name"), str(im, "id"), json_is_true(json_object_get(im, "managed")) ? "yes" : "no (registered)",
               str(im, "init_mode"), str(im, "kernel_ref") [0] != '-' ? str(im, "kernel_ref") : str(im, "kernel_path"));
        printf("rootfs:        %s (%s, %s on disk)\nwork seed:     %s\nsource:        %s\ncreated at:    %s\n",
               str(im, "rootfs_path"),
               cli_human_size((uint64_t) json_integer_value(json_object_get(im, "rootfs_size_bytes")), a, sizeof(a)),
               cli_human_size((uint64_t) json_integer_value(json_object_get(im, "disk_usage_bytes")), b, sizeof(b)),
               str(im, "work_seed_path"), str(im, "source"), str(im, "created_at"));
        json_t *oci = json_object_get(im, "oci"), *cfg = json_object_get(oci, "config");
        if (!oci)
                return;
        printf("oci manifest:  %s\n", str(oci, "manifest_digest"));
        const char *keys[] = { "entrypoint", "cmd", "env" };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                _cleanup_free_ char *v = json_dumps(json_object_get(cfg, keys[i]), JSON_COMPACT | JSON_ENCODE_ANY);
                printf("%-15s%s\n", keys[i], v ? v : "[]");
        }
        printf("working dir:   %s\nuser:          %s\n", str(cfg, "working_dir"), str(cfg, "user"));
}

int cmd_image_show(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:s}", "name", a->pos[0]);
        int r = simple(ctx, RPC_METHOD_IMAGE_SHOW, params, &res);
        if (r)
                return r;
        if (ctx->json)
                cli_print_json(res);
        else
                print_image(res);
        return 0;
}

/* A ref that names a local file (a bundle, an oci: layout dir) is sent
 * with an absolute path. */
static char *resolve_ref(const char *ref) {
        char abs[PATH_MAX];
        if (strncmp(ref, "http://", 7) == 0 || strncmp(ref, "https://", 8) == 0)
                return xstrdup(ref);
        static const char *const schemes[] = { "oci:", "oci-archive:", "docker-archive:" };
        for (size_t i = 0; i < ELEMENTSOF(schemes); i++) {
                size_t n = strlen(schemes[i]);
                if (strncmp(ref, schemes[i], n) != 0)
                        continue;
                _cleanup_free_ char *path = xstrdup(ref + n);
                char *colon = strrchr(path, ':'); /* a tag has no '/' */
                if (colon && strchr(colon, '/'))
                        colon = NULL;
                if (colon)
                        *colon = '\0';
                if (!realpath(path, abs))
                        return xstrdup(ref);
                return xasprintf("%s%s%s%s", schemes[i], abs, colon ? ":" : "", colon ? colon + 1 : "");
        }
        if ((ref[0] == '.' || ref[0] == '/' || strstr(ref, ".tar.zst")) && realpath(ref, abs))
                return xstrdup(abs);
        return xstrdup(ref);
}

int cmd_image_pull(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_free_ char *ref = resolve_ref(a->pos[0]);
        _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:s}", "ref", ref);
        const char *keys[] = { "name", "kernel-ref", "platform" }, *fields[] = { "name", "kernel_ref", "platform" };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (cli_flag(a, keys[i]))
                        json_object_set_new(params, fields[i], json_string(cli_flag(a, keys[i])));
        uint64_t size = 0;
        if (cli_flag(a, "size") && (parse_size(cli_flag(a, "size"), &size) < 0 || size > (1ULL << 42)))
                return cli_error(ctx, NULL, "--size %s: not a size such as 2G or 512M", cli_flag(a, "size"));
        if (size)
                json_object_set_new(params, "size", json_integer((json_int_t) size));
        int r = simple(ctx, RPC_METHOD_IMAGE_PULL, params, &res);
        if (r)
                return r;
        if (ctx->json)
                cli_print_json(res);
        else if (json_is_true(json_object_get(res, "already_pulled")))
                printf("image %s is already present\n", str(res, "name"));
        else
                printf("image %s ready (%s init, kernel %s)\n", str(res, "name"), str(res, "init_mode"),
                       str(res, "kernel_ref"));
        return 0;
}

int cmd_image_cache(struct cli_ctx *ctx, struct cli_args *a) {
        if (strcmp(a->pos[0], "prune") != 0)
                return cli_error(ctx, NULL, "image cache: the only action is prune");
        _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:b}", "dry_run", cli_flag(a, "dry-run") != NULL);
        int r = simple(ctx, RPC_METHOD_IMAGE_CACHE_PRUNE, params, &res);
        if (r)
                return r;
        char sz[32];
        if (ctx->json)
                cli_print_json(res);
        else
                printf("%s %lld blobs, %s\n", json_is_true(json_object_get(res, "dry_run")) ? "would free" : "freed",
                       (long long) json_integer_value(json_object_get(res, "blobs")),
                       cli_human_size((uint64_t) json_integer_value(json_object_get(res, "bytes")), sz, sizeof(sz)));
        return 0;
}

int cmd_image_delete(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:s}", "name", a->pos[0]);
        int r = simple(ctx, RPC_METHOD_IMAGE_DELETE, params, &res);
        if (r)
                return r;
        if (ctx->json)
                cli_print_json(res);
        else
                printf("deleted image %s\n", a->pos[0]);
        return 0;
}

static int abs_flag(struct cli_ctx *ctx, struct cli_args *a, const char *flag, json_t *params, const char *key) {
        const char *v = cli_flag(a, flag);
        char abs[PATH_MAX];
        if (!v)
                return 0;
        if (!realpath(v, abs))
                return cli_error(ctx, NULL, "--%s %s: %s", flag, v, strerror(errno));
        json_object_set_new(params, key, json_string(abs));
        return 0;
}

int cmd_image_register(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL, *params = json_object();
        const char *name = cli_flag(a, "name");
        int r;

        if (!name || !cli_flag(a, "rootfs"))
                return cli_usage_error(a->cmd, "--name and --rootfs are required");
        if (!cli_flag(a, "kernel") == !cli_flag(a, "kernel-ref"))
                return cli_usage_error(a->cmd, "give exactly one of --kernel or --kernel-ref");
        json_object_set_new(params, "name", json_string(name));
        if ((r = abs_flag(ctx, a, "rootfs", params, "rootfs")) || (r = abs_flag(ctx, a, "work-seed", params, "work_seed")) ||
            (r = abs_flag(ctx, a, "kernel", params, "kernel")) || (r = abs_flag(ctx, a, "initrd", params, "initrd")))
                return r;
        if (cli_flag(a, "modules") && !cli_flag(a, "kernel"))
                return cli_usage_error(a->cmd, "--modules goes with --kernel (a --kernel-ref kernel has its own modules)");
        if (cli_flag(a, "modules") && cli_flag(a, "initrd"))
                return cli_usage_error(a->cmd, "--modules and --initrd exclude each other (--modules builds banger's initramfs)");
        if ((r = abs_flag(ctx, a, "modules", params, "modules")))
                return r;
        if (cli_flag(a, "kernel-ref"))
                json_object_set_new(params, "kernel_ref", json_string(cli_flag(a, "kernel-ref")));
        if (cli_flag(a, "init-mode"))
                json_object_set_new(params, "init_mode", json_string(cli_flag(a, "init-mode")));
        r = simple(ctx, RPC_METHOD_IMAGE_REGISTER, params, &res);
        if (r)
                return r;
        if (ctx->json)
                cli_print_json(res);
        else
                printf("registered image %s (files stay where they are)%s\n", str(res, "name"),
                       cli_flag(a, "modules") ? "; its kernel and modules were imported as kernel of the same name" : "");
        return 0;
}

int cmd_image_promote(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:s}", "name", a->pos[0]);
        int r = simple(ctx, RPC_METHOD_IMAGE_PROMOTE, params, &res);
        if (r)
                return r;
        if (ctx->json)
                cli_print_json(res);
        else
                printf("image %s is managed now (%s)\n", str(res, "name"), str(res, "rootfs_path"));
        return 0;
}

int cmd_image_export(struct cli_ctx *ctx, struct cli_args *a) {
        const char *out = cli_flag(a, "output");
        _cleanup_free_ char *abs = NULL;

        if (!out)
                return cli_usage_error(a->cmd, "-o/--output FILE is required");
        if (out[0] == '/')
                abs = xstrdup(out);
        else {
                char cwd[PATH_MAX];
                if (!getcwd(cwd, sizeof(cwd)))
                        return cli_error(ctx, NULL, "cannot resolve %s", out);
                abs = xasprintf("%s/%s", cwd, out);
        }
        _cleanup_json_ json_t *res = NULL, *params = json_pack("{s:s, s:s}", "name", a->pos[0], "output", abs);
        int r = simple(ctx, RPC_METHOD_IMAGE_EXPORT, params, &res);
        if (r)
                return r;
        if (ctx->json)
                cli_print_json(res);
        else {
                char sz[32];
                printf("wrote %s (%s)\n", str(res, "path"),
                       cli_human_size((uint64_t) json_integer_value(json_object_get(res, "size_bytes")), sz, sizeof(sz)));
        }
        return 0;
}
