/* SPDX-License-Identifier: MIT */
/*
 * banger __complete WORD...: what the generated completion scripts
 * (cmd_completion.c) run on every <TAB>. The WORDs are the command line
 * without "banger"; the last one is the word the cursor is in ("" after a
 * space; a literal "" too, which is how PowerShell before 7.3 passes an
 * empty argument).
 *
 * The answer on stdout, one line each, already filtered by what is typed:
 *
 *   CANDIDATE              a value to offer
 *   CANDIDATE<TAB>TEXT     the same with a description (fish, zsh and
 *                          PowerShell show it; bash drops it)
 *   :files  or  :dirs      only ever the first line: a directive, not a
 *                          candidate: the shell completes file (directory)
 *                          names itself. No candidate starts with ':'.
 *
 * Groups, commands and flags come from the command table; flag values and
 * positional arguments from the small tables below; VM, image, kernel and
 * snapshot names from the daemon's list methods, on one connection with a
 * short timeout. A daemon that is down, slow or refuses gives no live
 * values: bangerd is never started from here. The exit status is always 0
 * and nothing goes to stderr: a completion never shows an error.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "jsonx.h"
#include "macro.h"
#include "rpc_methods.h"

#define COMPLETE_TIMEOUT_MS 1000 /* a <TAB> must not hang on a stuck daemon */

struct complete {
        struct cli_ctx *ctx;
        const char *cur;   /* the word being completed (borrowed) */
        bool daemon_tried; /* connected once, or gave up */
        bool daemon_ok;
};

static void emit(const struct complete *c, const char *word, const char *desc) {
        if (strncmp(word, c->cur, strlen(c->cur)) != 0)
                return;
        if (desc && *desc)
                printf("%s\t%s\n", word, desc);
        else
                printf("%s\n", word);
}

/* Space-separated words, each offered. */
static void emit_words(const struct complete *c, const char *words) {
        const char *s = words;
        while (*s) {
                size_t n = strcspn(s, " ");
                char w[64];
                if (n > 0 && n < sizeof(w)) {
                        memcpy(w, s, n);
                        w[n] = '\0';
                        emit(c, w, NULL);
                }
                s += n;
                s += strspn(s, " ");
        }
}

/* ---- the daemon ---- */

static bool daemon_connect(struct complete *c) {
        struct cli_ctx *ctx = c->ctx;
        if (c->daemon_tried)
                return c->daemon_ok;
        c->daemon_tried = true;
        /* a system install serves its owner and root only: not worth a try */
        if (ctx->install_error || (ctx->system && !ctx->socket_override && getuid() != 0 &&
                                   getuid() != ctx->install.owner_uid))
                return false;
        if (!cli_socket_path(ctx) || cli_try_connect(ctx) < 0)
                return false;
        c->daemon_ok = true;
        return true;
}

/* method's result, or NULL (down, slow, an error: all the same here). */
static json_t *daemon_call(struct complete *c, const char *method, json_t *params) {
        struct cli_ctx *ctx = c->ctx;
        if (!daemon_connect(c))
                return NULL;
        _cleanup_free_ char *req = rpc_request_encode(ctx->next_id++, method, params);
        if (rpc_write_line(ctx->fd, req) < 0)
                goto dead;
        for (;;) {
                char *line;
                size_t len;
                if (rpc_line_reader_next(&ctx->lr, COMPLETE_TIMEOUT_MS, &line, &len) <= 0)
                        goto dead;
                _cleanup_json_ json_t *j = json_loadb(line, len, 0, NULL);
                if (json_object_get(j, "progress"))
                        continue;
                struct rpc_response resp = { 0 };
                _cleanup_free_ char *err = NULL;
                if (rpc_response_decode(line, len, &resp, &err) < 0 || resp.is_error) {
                        rpc_response_done(&resp);
                        return NULL;
                }
                json_t *result = TAKE_PTR(resp.result);
                rpc_response_done(&resp);
                return result;
        }
dead:
        cli_disconnect(ctx);
        c->daemon_ok = false;
        return NULL;
}

static bool in(const char *w, char **words, int n) {
        for (int i = 0; i < n; i++)
                if (strcmp(words[i], w) == 0)
                        return true;
        return false;
}

/* The field (mostly "name") of each element of result[key], with a prefix
 * ("vm:"), but not one of skip[] (the VMs a `vm stop a b` already names). */
static void emit_field_but(struct complete *c, const char *method, json_t *params, const char *key,
                           const char *field, const char *prefix, char **skip, int n_skip) {
        _cleanup_json_ json_t *res = daemon_call(c, method, params);
        json_t *e;
        size_t i;
        json_array_foreach(json_object_get(res, key), i, e) {
                const char *name = json_string_value(json_object_get(e, field));
                if (!name || !*name || in(name, skip, n_skip))
                        continue;
                _cleanup_free_ char *w = xasprintf("%s%s", prefix, name);
                emit(c, w, NULL);
        }
}

static void emit_names(struct complete *c, const char *method, json_t *params, const char *key, const char *prefix) {
        emit_field_but(c, method, params, key, "name", prefix, NULL, 0);
}

static void emit_snapshots(struct complete *c, const char *vm, const char *prefix) {
        _cleanup_json_ json_t *params = json_pack("{s:s}", "vm", vm);
        emit_names(c, RPC_METHOD_VM_SNAPSHOT_LIST, params, "snapshots", prefix);
}

/* --from-snapshot VM:NAME: VM names with ':' until one is typed, then its snapshots. */
static void emit_vm_snapshots(struct complete *c) {
        const char *colon = strchr(c->cur, ':');
        if (!colon) {
                _cleanup_json_ json_t *res = daemon_call(c, RPC_METHOD_VM_LIST, NULL);
                json_t *e;
                size_t i;
                json_array_foreach(json_object_get(res, "vms"), i, e) {
                        const char *name = json_string_value(json_object_get(e, "name"));
                        _cleanup_free_ char *w = name ? xasprintf("%s:", name) : NULL;
                        if (w)
                                emit(c, w, NULL);
                }
                return;
        }
        _cleanup_free_ char *vm = xstrndup(c->cur, (size_t) (colon - c->cur));
        _cleanup_free_ char *prefix = xasprintf("%s:", vm);
        emit_snapshots(c, vm, prefix);
}

/* ---- what a value is ---- */

/*
 * Value kinds, for flag values and positional arguments:
 *   vm image kernel            names the daemon has
 *   signal                     vm kill's signal names (cli_signals)
 *   template                   warm-start template keys
 *   catalog-image/-kernel      every name `list --available` shows
 *   snapshot                   a snapshot of the VM in the previous argument
 *   vm:snapshot                VM:NAME (--from-snapshot)
 *   files dirs                 the shell's own file name completion
 *   =a b c                     these words
 *   NULL                       nothing to offer (a new name, a size)
 */
struct flag_value {
        const char *flag; /* long name; NULL: any flag with this placeholder */
        const char *arg;  /* the table's placeholder */
        const char *kind;
};

static const struct flag_value flag_values[] = {
        { "image", NULL, "image" },
        { "kernel-ref", NULL, "kernel" },
        { "signal", NULL, "signal" },
        { "init-mode", NULL, "=systemd fast" },
        { "net", NULL, "=bridge user" },
        { "vmm", NULL, "=qemu firecracker" },
        { "platform", NULL, "=linux/amd64 linux/arm64" },
        { "from-snapshot", NULL, "vm:snapshot" },
        { NULL, "FILE", "files" },
        { NULL, "PATH", "files" },
        { NULL, "PEM", "files" },
        { NULL, "DIR", "dirs" },
};

static const char *flag_value_kind(const struct cli_flag *f) {
        for (size_t i = 0; i < ELEMENTSOF(flag_values); i++) {
                const struct flag_value *v = &flag_values[i];
                if (v->flag ? strcmp(v->flag, f->name) == 0 : strcmp(v->arg, f->arg) == 0)
                        return v->kind;
        }
        return NULL;
}

/* Positional arguments by position; a kind ending in "..." repeats. The
 * commands whose arguments depend on an earlier one are in positional_kind. */
struct positional {
        const char *group, *name;
        const char *kinds[2];
};

static const struct positional positionals[] = {
        { NULL, "completion", { "=bash zsh fish powershell" } },
        { "kernel", "show", { "kernel" } },
        { "kernel", "rm", { "kernel" } },
        { "kernel", "pull", { "catalog-kernel" } },
        { "kernel", "build", { "catalog-kernel" } },
        { "image", "show", { "image" } },
        { "image", "delete", { "image" } },
        { "image", "promote", { "image" } },
        { "image", "export", { "image" } },
        { "image", "pull", { "catalog-image" } },
        { "image", "cache", { "=prune" } },
        { "vm", "run", { "dirs" } },
        { "vm", "exec", { "vm" } },
        { "vm", "show", { "vm" } },
        { "vm", "start", { "vm..." } },
        { "vm", "stop", { "vm..." } },
        { "vm", "restart", { "vm..." } },
        { "vm", "kill", { "vm..." } },
        { "vm", "delete", { "vm..." } },
        { "vm", "set", { "vm..." } },
        { "vm", "ssh", { "vm" } },
        { "vm", "proxy", { "vm" } },
        { "vm", "logs", { "vm" } },
        { "vm", "health", { "vm" } },
        { "vm", "ports", { "vm" } },
        { "vm", "forward", { "vm" } },
        { "vm", "stats", { "vm" } },
        { "vm", "restore", { "vm", "snapshot" } },
        { "template", "rm", { "template" } },
};

static bool is(const char *a, const char *b) {
        return a && b && strcmp(a, b) == 0;
}

static bool same_group(const char *a, const char *b) { /* NULL: top level */
        return a || b ? is(a, b) : true;
}

/* vm snapshot VM [NAME] | list VM | rm VM NAME; vm workspace prepare VM PATH | export VM */
static const char *positional_special(const struct cli_command *cmd, char **pos, int npos) {
        if (is(cmd->group, "vm") && is(cmd->name, "snapshot")) {
                if (npos == 0)
                        return "vm+=list rm";
                if (npos == 1)
                        return is(pos[0], "list") || is(pos[0], "rm") ? "vm" : NULL;
                return npos == 2 && is(pos[0], "rm") ? "snapshot" : NULL;
        }
        if (is(cmd->group, "vm") && is(cmd->name, "workspace")) {
                if (npos == 0)
                        return "=prepare export";
                if (npos == 1)
                        return "vm";
                return npos == 2 && is(pos[0], "prepare") ? "dirs" : NULL;
        }
        return NULL;
}

static const char *positional_kind(const struct cli_command *cmd, char **pos, int npos) {
        const char *k = positional_special(cmd, pos, npos);
        if (k)
                return k;
        for (size_t i = 0; i < ELEMENTSOF(positionals); i++) {
                const struct positional *p = &positionals[i];
                if (!is(p->name, cmd->name) || !same_group(p->group, cmd->group))
                        continue;
                for (int j = 0; j < (int) ELEMENTSOF(p->kinds) && p->kinds[j]; j++) {
                        size_t n = strlen(p->kinds[j]);
                        bool repeats = n > 3 && strcmp(p->kinds[j] + n - 3, "...") == 0;
                        if (j == npos || (repeats && j < npos))
                                return p->kinds[j];
                }
                return NULL;
        }
        return NULL;
}

/* ---- the table ---- */

static bool is_group(const char *w) {
        for (const struct cli_command *c = cli_commands; c->name; c++)
                if (is(c->group, w))
                        return true;
        return false;
}

static const struct cli_command *find_command(const char *group, const char *name) {
        for (const struct cli_command *c = cli_commands; c->name; c++)
                if (is(c->name, name) && same_group(c->group, group))
                        return c;
        return NULL;
}

/* Groups and top-level commands, each once, in table order. */
static void emit_top(const struct complete *c) {
        for (const struct cli_command *d = cli_commands; d->name; d++) {
                const char *w = d->group ? d->group : d->name;
                bool seen = false;
                for (const struct cli_command *e = cli_commands; e < d && !seen; e++)
                        seen = is(e->group ? e->group : e->name, w);
                if (seen)
                        continue;
                _cleanup_free_ char *desc = d->group ? xasprintf("%s commands", d->group) : NULL;
                emit(c, w, desc ? desc : d->summary);
        }
}

static void emit_group(const struct complete *c, const char *group) {
        for (const struct cli_command *d = cli_commands; d->name; d++)
                if (is(d->group, group))
                        emit(c, d->name, d->summary);
}

static void emit_flags(const struct complete *c, const struct cli_command *cmd) {
        for (const struct cli_flag *f = cmd ? cmd->flags : NULL; f && f->name; f++) {
                _cleanup_free_ char *w = xasprintf("--%s", f->name);
                if (!f->hidden)
                        emit(c, w, f->help);
        }
        for (const struct cli_flag *f = cli_global_flags; f->name; f++) {
                _cleanup_free_ char *w = xasprintf("--%s", f->name);
                emit(c, w, f->help);
        }
}

/* Kinds whose values are a field of what a list method returns. */
static const struct live_kind {
        const char *kind;
        const char *method, *key, *field;
        bool available; /* {"available": true}: the catalog's names too */
} live_kinds[] = {
        { "vm", RPC_METHOD_VM_LIST, "vms", "name", false },
        { "image", RPC_METHOD_IMAGE_LIST, "images", "name", false },
        { "kernel", RPC_METHOD_KERNEL_LIST, "kernels", "name", false },
        { "catalog-image", RPC_METHOD_IMAGE_LIST, "images", "name", true },
        { "catalog-kernel", RPC_METHOD_KERNEL_LIST, "kernels", "name", true },
        { "template", RPC_METHOD_TEMPLATE_LIST, "templates", "key", false },
};

static bool emit_live(struct complete *c, const char *kind, char **pos, int npos) {
        size_t n = strlen(kind);
        bool repeats = n > 3 && strcmp(kind + n - 3, "...") == 0; /* vm...: not those named already */
        size_t m = repeats ? n - 3 : n;
        for (size_t i = 0; i < ELEMENTSOF(live_kinds); i++) {
                const struct live_kind *l = &live_kinds[i];
                if (strlen(l->kind) != m || strncmp(l->kind, kind, m) != 0)
                        continue;
                _cleanup_json_ json_t *params = l->available ? json_pack("{s:b}", "available", true) : NULL;
                emit_field_but(c, l->method, params, l->key, l->field, "", repeats ? pos : NULL, repeats ? npos : 0);
                return true;
        }
        return false;
}

static void emit_kind(struct complete *c, const char *kind, char **pos, int npos) {
        const char *plus = kind ? strchr(kind, '+') : NULL;
        if (!kind || emit_live(c, kind, pos, npos))
                return;
        if (plus) { /* "vm+=list rm": both */
                _cleanup_free_ char *first = xstrndup(kind, (size_t) (plus - kind));
                emit_kind(c, plus + 1, pos, npos);
                emit_kind(c, first, pos, npos);
        } else if (kind[0] == '=') {
                emit_words(c, kind + 1);
        } else if (is(kind, "signal")) {
                for (const struct cli_signal *g = cli_signals; g->name; g++)
                        emit(c, g->name, NULL);
        } else if (is(kind, "files") || is(kind, "dirs")) {
                printf(":%s\n", kind);
        } else if (is(kind, "snapshot") && npos > 0) {
                emit_snapshots(c, pos[npos - 1], "");
        } else if (is(kind, "vm:snapshot")) {
                emit_vm_snapshots(c);
        }
}

/* The global flag (or the command's) named by w, or NULL. */
static const struct cli_flag *find_flag(const struct cli_command *cmd, const char *w) {
        const struct cli_flag *tables[] = { cmd ? cmd->flags : NULL, cli_global_flags };
        for (size_t t = 0; t < ELEMENTSOF(tables); t++)
                for (const struct cli_flag *f = tables[t]; f && f->name; f++)
                        if (w[1] == '-' ? is(w + 2, f->name) : (f->short_name && w[1] == f->short_name && !w[2]))
                                return f;
        return NULL;
}

/* What the words before the cursor say: the command, its arguments, and a
 * flag waiting for its value. */
struct parsed {
        const char *group;
        const struct cli_command *cmd;
        const struct cli_flag *pending;
        bool dashdash;
        bool unknown; /* a word that is no command: nothing to offer */
        char **pos;   /* borrowed from argv */
        int npos;
};

static void parse_word(struct cli_ctx *ctx, struct parsed *p, char *w) {
        if (p->pending) {
                if (is(p->pending->name, "socket"))
                        ctx->socket_override = w;
                p->pending = NULL;
        } else if (p->dashdash) {
                return;
        } else if (is(w, "--")) {
                p->dashdash = true;
        } else if (w[0] == '-' && w[1]) {
                const struct cli_flag *f = find_flag(p->cmd, w);
                p->pending = f && f->arg ? f : NULL;
        } else if (p->cmd) {
                p->pos[p->npos++] = w;
        } else if (!p->group && is_group(w)) {
                p->group = w;
        } else {
                p->cmd = find_command(p->group, w);
                p->unknown = !p->cmd;
        }
}

int cli_complete(struct cli_ctx *ctx, int argc, char **argv) {
        struct complete c = { .ctx = ctx, .cur = argc > 0 ? argv[argc - 1] : "" };
        _cleanup_free_ char **pos = xcalloc((size_t) argc + 1, sizeof(char *));
        struct parsed p = { .pos = pos };

        if (is(c.cur, "\"\""))
                c.cur = "";
        for (int i = 0; i < argc - 1 && !p.unknown; i++)
                parse_word(ctx, &p, argv[i]);
        if (p.unknown)
                return 0;
        if (p.pending)
                emit_kind(&c, flag_value_kind(p.pending), p.pos, p.npos);
        else if (p.dashdash)
                return 0; /* a command for the guest */
        else if (c.cur[0] == '-')
                emit_flags(&c, p.cmd);
        else if (!p.cmd && p.group)
                emit_group(&c, p.group);
        else if (!p.cmd)
                emit_top(&c);
        else if (is(p.cmd->name, "help") && !p.cmd->group)
                p.npos == 0 ? emit_top(&c) : p.npos == 1 ? emit_group(&c, p.pos[0]) : (void) 0;
        else
                emit_kind(&c, positional_kind(p.cmd, p.pos, p.npos), p.pos, p.npos);
        fflush(stdout);
        return 0;
}
