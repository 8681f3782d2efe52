/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "fsutil.h"
#include "jsonx.h"
#include "log.h"
#include "macro.h"
#include "strbuf.h"
#include "version.h"

static const char *env_get(const char *n) {
        return getenv(n);
}

const char *cli_flag(const struct cli_args *a, const char *name) {
        for (int i = 0; a->cmd->flags[i].name && i < CLI_MAX_FLAGS; i++)
                if (strcmp(a->cmd->flags[i].name, name) == 0)
                        return a->values[i];
        return NULL;
}

size_t cli_flag_all(const struct cli_args *a, const char *name, const char ***ret) {
        const char **out = xcalloc((size_t) a->nreps + 1, sizeof(*out));
        size_t n = 0;
        for (int i = 0; i < a->nreps; i++)
                if (strcmp(a->cmd->flags[a->reps[i].flag].name, name) == 0)
                        out[n++] = a->reps[i].value;
        *ret = out;
        return n;
}

bool cli_has(const struct cli_args *a, const char *name) {
        return cli_flag(a, name) != NULL;
}

void cli_print_usage_line(FILE *f, const struct cli_command *cmd) {
        fprintf(f, "usage: banger %s%s%s", cmd->group ? cmd->group : "", cmd->group ? " " : "", cmd->name);
        for (const struct cli_flag *fl = cmd->flags; fl->name; fl++)
                if (!fl->hidden)
                        fprintf(f, " [--%s%s%s]", fl->name, fl->arg ? " " : "", fl->arg ? fl->arg : "");
        if (cmd->args && *cmd->args)
                fprintf(f, " %s", cmd->args);
        fputc('\n', f);
}

int cli_usage_error(const struct cli_command *cmd, const char *fmt, ...) {
        va_list ap;

        fputs("banger: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        if (cmd)
                cli_print_usage_line(stderr, cmd);
        else
                fputs("usage: banger [--json] [--socket PATH] [-v] [-q] [--progress MODE] COMMAND ... (see 'banger help')\n", stderr);
        return CLI_EXIT_USAGE;
}

_printf_(3, 0) static void vreport(struct cli_ctx *ctx, const char *op_id, const char *fmt, va_list ap) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;

        if (ctx->silent)
                return;
        cli_progress_clear(ctx);
        strbuf_vaddf(&sb, fmt, ap);
        if (ctx->capture) {
                if (ctx->err_line)
                        return; /* the first failure is the one to report */
                ctx->err_line = strbuf_detach(&sb, NULL);
                if (!ctx->err_message)
                        ctx->err_message = xstrdup(ctx->err_line);
                if (!ctx->err_code)
                        ctx->err_code = xstrdup("unavailable");
                if (op_id && *op_id && !ctx->err_op_id)
                        ctx->err_op_id = xstrdup(op_id);
                return;
        }
        if (ctx->color_err)
                fprintf(stderr, "\033[1;31mbanger:\033[0m %s", sb.buf);
        else
                fprintf(stderr, "banger: %s", sb.buf);
        if (op_id && *op_id)
                fprintf(stderr, ctx->color_err ? " \033[2m(%s)\033[0m" : " (%s)", op_id);
        fputc('\n', stderr);
}

int cli_error(struct cli_ctx *ctx, const char *op_id, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vreport(ctx, op_id, fmt, ap);
        va_end(ap);
        return -EIO;
}

int cli_fail(struct cli_ctx *ctx, int err, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vreport(ctx, NULL, fmt, ap);
        va_end(ap);
        return err < 0 ? err : -EIO;
}

void cli_error_clear(struct cli_ctx *ctx) {
        free(TAKE_PTR(ctx->err_code));
        free(TAKE_PTR(ctx->err_message));
        free(TAKE_PTR(ctx->err_line));
        free(TAKE_PTR(ctx->err_op_id));
}

void cli_print_json(const json_t *j) {
        char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
        if (s) {
                puts(s);
                free(s);
        }
}

/* An install file makes this a system-mode CLI (its layout, no auto-start):
 * 1. No install file: 0 (user mode). A bad one: 0 with install_error set. */
int cli_load_install(struct cli_ctx *ctx) {
        const char *file = install_file_path(env_get);
        _cleanup_free_ char *text = NULL, *msg = NULL;
        size_t len;
        int r = read_file_nofollow(file, 64 * 1024, &text, &len);
        if (r == -ENOENT)
                return 0;
        if (r == 0 && (r = install_parse(text, len, &ctx->install, &msg)) == 0) {
                ctx->system = true;
                install_layout(&ctx->install, &ctx->layout);
                return 1;
        }
        ctx->install_error = xasprintf("%s: %s", file, msg ? msg : strerror(-r));
        return 0;
}

const char *cli_socket_path(const struct cli_ctx *ctx) {
        return ctx->socket_override ? ctx->socket_override : ctx->layout.socket_path;
}

static const struct cli_flag *find_flag(const struct cli_flag *flags, const char *arg, int *ret_idx) {
        for (int i = 0; flags[i].name && i < CLI_MAX_FLAGS; i++) {
                bool match = arg[1] == '-' ? strcmp(arg + 2, flags[i].name) == 0
                                           : (flags[i].short_name && arg[1] == flags[i].short_name && !arg[2]);
                if (match) {
                        *ret_idx = i;
                        return &flags[i];
                }
        }
        return NULL;
}

static const struct cli_command *find_command(const char *group, const char *name) {
        for (const struct cli_command *c = cli_commands; c->name; c++) {
                if (group ? (c->group && strcmp(c->group, group) == 0) : !c->group)
                        if (strcmp(c->name, name) == 0)
                                return c;
        }
        return NULL;
}

static bool is_group(const char *name) {
        for (const struct cli_command *c = cli_commands; c->name; c++)
                if (c->group && strcmp(c->group, name) == 0)
                        return true;
        return false;
}

static void print_help(FILE *f, const char *group) {
        fputs("banger: one-command development sandboxes on microVMs\n\n"
              "usage: banger [--json] [--socket PATH] [-v] [-q] [--progress MODE] COMMAND [ARGS...]\n\ncommands:\n",
              f);
        for (const struct cli_command *c = cli_commands; c->name; c++) {
                if (group && (!c->group || strcmp(c->group, group) != 0))
                        continue;
                _cleanup_free_ char *n = xasprintf("%s%s%s %s", c->group ? c->group : "", c->group ? " " : "",
                                                   c->name, c->args ? c->args : "");
                fprintf(f, "  %-28s %s\n", n, c->summary);
        }
        fputs("\nglobal flags:\n", f);
        for (const struct cli_flag *g = cli_global_flags; g->name; g++) {
                _cleanup_free_ char *n = xasprintf("%s%c%s--%s%s%s", g->short_name ? "-" : "", g->short_name ? g->short_name : ' ',
                                                   g->short_name ? ", " : "  ", g->name, g->arg ? " " : "",
                                                   g->arg ? g->arg : "");
                fprintf(f, "  %-28s %s\n", g->short_name ? n : n + 1, g->help);
        }
        if (!group)
                fputs("\nmore: 'banger help GROUP [COMMAND]', man banger\n", f);
}

int cmd_help(struct cli_ctx *ctx, struct cli_args *a) {
        (void) ctx;
        if (a->npos == 0) {
                print_help(stdout, NULL);
                return 0;
        }
        if (a->npos == 1 && is_group(a->pos[0])) {
                print_help(stdout, a->pos[0]);
                cli_help_examples(stdout, a->pos[0]);
                return 0;
        }
        const struct cli_command *c = a->npos == 2 ? find_command(a->pos[0], a->pos[1]) : find_command(NULL, a->pos[0]);
        if (!c)
                return cli_usage_error(a->cmd, "unknown command '%s%s%s'", a->pos[0], a->npos == 2 ? " " : "",
                                       a->npos == 2 ? a->pos[1] : "");
        cli_help_command(stdout, c);
        return 0;
}

static bool has_own_flag(const struct cli_command *cmd, const char *name) {
        int idx;
        _cleanup_free_ char *arg = xasprintf("--%s", name);
        return cmd && find_flag(cmd->flags, arg, &idx);
}

/* Global flags may appear anywhere before "--" (--quiet only where the
 * command has no --quiet of its own). Returns 1 if consumed, 0 if not, -1
 * for a missing --socket PATH, -2 for a bad --progress MODE. */
static int parse_global(struct cli_ctx *ctx, const struct cli_command *cmd, char **argv, int argc, int *i,
                        bool *want_version, bool *want_help) {
        const char *s = argv[*i];

        if ((strcmp(s, "--quiet") == 0 || strcmp(s, "-q") == 0) && has_own_flag(cmd, "quiet"))
                return 0;

        if (strcmp(s, "--json") == 0)
                ctx->json = true;
        else if (strcmp(s, "-v") == 0 || strcmp(s, "--verbose") == 0)
                ctx->verbose = true;
        else if (strcmp(s, "--quiet") == 0 || strcmp(s, "-q") == 0)
                ctx->progress_mode = CLI_PROGRESS_OFF;
        else if (strcmp(s, "--progress") == 0 || strncmp(s, "--progress=", 11) == 0) {
                const char *v = s[10] == '=' ? s + 11 : *i + 1 < argc ? argv[++*i] : NULL;
                enum cli_progress_mode m = v ? cli_progress_mode_from_string(v) : CLI_PROGRESS_MAX;
                if (m == CLI_PROGRESS_MAX || m == CLI_PROGRESS_OFF)
                        return -2;
                if (ctx->progress_mode != CLI_PROGRESS_OFF) /* --quiet wins */
                        ctx->progress_mode = m;
        } else if (strcmp(s, "--version") == 0)
                *want_version = true;
        else if (strcmp(s, "-h") == 0 || strcmp(s, "--help") == 0)
                *want_help = true;
        else if (strcmp(s, "--socket") == 0 || strncmp(s, "--socket=", 9) == 0) {
                if (s[8] == '=')
                        ctx->socket_override = s + 9;
                else if (*i + 1 < argc)
                        ctx->socket_override = argv[++*i];
                else
                        return -1;
        } else
                return 0;
        return 1;
}

/* Pass 1: global flags and the command words; what follows goes to rest. */
struct pass1 {
        bool want_version, want_help;
        const char *words[2];
        int nwords;
        char **rest;
        int nrest;
        const struct cli_command *cmd;
};

static int parse_words(struct cli_ctx *ctx, int argc, char **argv, struct pass1 *p) {
        bool dashdash = false;
        for (int i = 1; i < argc; i++) {
                if (!dashdash && strcmp(argv[i], "--") == 0) {
                        dashdash = true;
                        p->rest[p->nrest++] = argv[i];
                        continue;
                }
                if (!dashdash) {
                        int g = parse_global(ctx, p->cmd, argv, argc, &i, &p->want_version, &p->want_help);
                        if (g == -2)
                                return cli_usage_error(NULL, "--progress needs auto, plain or tty");
                        if (g < 0)
                                return cli_usage_error(NULL, "--socket needs a PATH");
                        if (g > 0)
                                continue;
                }
                if (dashdash || argv[i][0] == '-' || p->nwords >= 2 || p->cmd) {
                        p->rest[p->nrest++] = argv[i];
                        continue;
                }
                p->words[p->nwords++] = argv[i];
                if (p->nwords == 1 && !is_group(p->words[0]) && !(p->cmd = find_command(NULL, p->words[0])))
                        return cli_usage_error(NULL, "unknown command '%s'", p->words[0]);
                if (p->nwords == 2 && !(p->cmd = find_command(p->words[0], p->words[1])))
                        return cli_usage_error(NULL, "unknown command '%s %s'", p->words[0], p->words[1]);
        }
        return 0;
}

/* One flag of the command at rest[*i] (consuming its value). */
static int parse_flag(const struct cli_command *cmd, char **rest, int nrest, int *i, struct cli_args *a) {
        const char *s = rest[*i];
        _cleanup_free_ char *name = NULL;
        const char *eq = strncmp(s, "--", 2) == 0 ? strchr(s, '=') : NULL;
        if (eq)
                name = xstrndup(s, (size_t) (eq - s));
        int idx;
        const struct cli_flag *f = find_flag(cmd->flags, name ? name : s, &idx);
        if (!f)
                return cli_usage_error(cmd, "unknown flag '%s'", name ? name : s);
        if (!f->arg) {
                if (eq)
                        return cli_usage_error(cmd, "flag --%s takes no value", f->name);
                a->values[idx] = "";
        } else if (eq)
                a->values[idx] = eq + 1;
        else if (*i + 1 < nrest)
                a->values[idx] = rest[++*i];
        else
                return cli_usage_error(cmd, "flag --%s needs a %s", f->name, f->arg);
        if (f->repeat && f->arg) {
                if (a->nreps == CLI_MAX_REPEATS)
                        return cli_usage_error(cmd, "flag --%s: at most %d times", f->name, CLI_MAX_REPEATS);
                a->reps[a->nreps].flag = idx;
                a->reps[a->nreps++].value = a->values[idx];
        }
        return 0;
}

/* Pass 2: the command's own flags and positionals. */
static int parse_args(const struct cli_command *cmd, char **rest, int nrest, struct cli_args *a) {
        bool dashdash = false;
        int r;
        for (int i = 0; i < nrest; i++) {
                const char *s = rest[i];
                if (!dashdash && strcmp(s, "--") == 0) {
                        dashdash = true;
                        a->dashdash = a->npos;
                } else if (!dashdash && s[0] == '-' && s[1]) {
                        if ((r = parse_flag(cmd, rest, nrest, &i, a)))
                                return r;
                } else
                        a->pos[a->npos++] = rest[i];
        }
        if (a->npos < cmd->min_args)
                return cli_usage_error(cmd, "missing argument%s", cmd->min_args - a->npos > 1 ? "s" : "");
        if (a->npos > cmd->max_args)
                return cli_usage_error(cmd, "unexpected argument '%s'", a->pos[cmd->max_args]);
        return 0;
}

static int parse_and_run(struct cli_ctx *ctx, int argc, char **argv) {
        _cleanup_free_ char **rest = xcalloc((size_t) argc + 1, sizeof(char *));
        struct pass1 p = { .rest = rest };
        int r;

        if ((r = parse_words(ctx, argc, argv, &p)))
                return r;
        if (p.want_version) {
                printf("banger v%s (commit %s, built %s)\n", banger_version(), banger_commit(), banger_built_at());
                return 0;
        }
        if (!p.cmd) { /* `banger`, `banger vm`, `banger --help` */
                print_help(p.want_help ? stdout : stderr, p.nwords ? p.words[0] : NULL);
                if (p.want_help && p.nwords)
                        cli_help_examples(stdout, p.words[0]);
                return p.want_help ? 0 : CLI_EXIT_USAGE;
        }
        if (p.want_help) {
                struct cli_args ha = { .cmd = find_command(NULL, "help"), .pos = (char **) p.words, .npos = p.nwords };
                return cmd_help(ctx, &ha);
        }
        _cleanup_free_ char **pos = xcalloc((size_t) p.nrest + 1, sizeof(char *));
        struct cli_args a = { .cmd = p.cmd, .pos = pos, .dashdash = -1 };
        if ((r = parse_args(p.cmd, p.rest, p.nrest, &a)))
                return r;
        if (has_own_flag(p.cmd, "quiet") && cli_has(&a, "quiet"))
                ctx->progress_mode = CLI_PROGRESS_OFF; /* vm list -q: ids only, nothing else */
        cli_progress_init(ctx);
        r = p.cmd->run(ctx, &a);
        cli_progress_end(ctx, r == 0);
        return r;
}

int main(int argc, char **argv) {
        struct cli_ctx ctx = { .fd = -1, .next_id = 1 };
        _cleanup_free_ char *err = NULL;
        const char *no_color = getenv("NO_COLOR");
        bool is_complete = argc >= 2 && strcmp(argv[1], "__complete") == 0;
        int r;

        /* the build's man page generator (no HOME needed); not a command:
         * neither in help nor in completion */
        if (argc >= 2 && strcmp(argv[1], "__man") == 0)
                return argc == 3 ? cli_man(stdout, argv[2]) : cli_usage_error(NULL, "__man needs 1, 5 or 8");
        signal(SIGPIPE, SIG_IGN);
        log_setup(-1, LOG_LEVEL_WARN, true);
        const char *term = getenv("TERM");
        bool plain = (no_color && *no_color) || (term && strcmp(term, "dumb") == 0);
        ctx.color_out = isatty(STDOUT_FILENO) && !plain;
        ctx.color_err = isatty(STDERR_FILENO) && !plain;
        if (cli_load_install(&ctx) == 0 && layout_resolve(&ctx.layout, env_get, getuid(), &err) < 0) {
                if (is_complete) /* completion never shows an error: static candidates only */
                        return cli_complete(&ctx, argc - 2, argv + 2);
                fprintf(stderr, "banger: %s\n", err);
                return 1;
        }
        if (is_complete) /* the completion scripts' helper, not a command (cmd_complete.c) */
                r = cli_complete(&ctx, argc - 2, argv + 2);
        else
                r = parse_and_run(&ctx, argc, argv);
        cli_disconnect(&ctx);
        layout_done(&ctx.layout);
        install_info_done(&ctx.install);
        free(ctx.install_error);
        fflush(stdout);
        return r < 0 ? CLI_EXIT_FAILURE : r; /* negative: reported already */
}
