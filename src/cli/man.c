/* SPDX-License-Identifier: MIT */
/*
 * The man pages, banger(1), bangerd(8) and banger-config(5), generated from
 * the command table and the config key table (`banger __man N`, run by the
 * build). A command's section is written once through struct doc, which
 * renders it as roff for the page or as plain text for `banger help`, so
 * the two never differ.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "macro.h"
#include "version.h"

enum doc_fmt { DOC_TEXT, DOC_ROFF };

struct doc {
        FILE *f;
        enum doc_fmt fmt;
};

/* s as roff text: '-' is a minus (options stay copy-pastable), backslashes
 * print, and a line never starts a request ('.' or '\''). */
static void roff_escape(FILE *f, const char *s, bool line_start) {
        for (; *s; s++) {
                if (line_start && (*s == '.' || *s == '\''))
                        fputs("\\&", f);
                line_start = *s == '\n';
                if (*s == '\\')
                        fputs("\\e", f);
                else if (*s == '-')
                        fputs("\\-", f);
                else
                        fputc(*s, f);
        }
}

/* Text in a font: roff \fB/\fI, plain as is. mid: not at a line start. */
static void doc_font(struct doc *d, char font, const char *s) {
        if (d->fmt == DOC_TEXT) {
                fputs(s, d->f);
                return;
        }
        fprintf(d->f, "\\f%c", font);
        roff_escape(d->f, s, false);
        fputs("\\fR", d->f);
}

static void doc_text(struct doc *d, const char *s) {
        if (d->fmt == DOC_TEXT)
                fputs(s, d->f);
        else
                roff_escape(d->f, s, false);
}

/* "-q, --quiet" or "--name NAME" */
static void doc_flag_term(struct doc *d, const struct cli_flag *fl) {
        char dash[3] = { '-', fl->short_name, 0 };
        _cleanup_free_ char *lng = xasprintf("--%s", fl->name);

        if (fl->short_name) {
                doc_font(d, 'B', dash);
                doc_text(d, ", ");
        }
        doc_font(d, 'B', lng);
        if (fl->arg) {
                doc_text(d, " ");
                doc_font(d, 'I', fl->arg);
        }
}

static void doc_flag(struct doc *d, const struct cli_flag *fl) {
        if (d->fmt == DOC_ROFF) {
                fputs(".TP\n", d->f);
                doc_flag_term(d, fl);
                fputc('\n', d->f);
                roff_escape(d->f, fl->help, true);
                fputc('\n', d->f);
                return;
        }
        char *buf = NULL;
        size_t n = 0;
        FILE *m = open_memstream(&buf, &n);
        if (!m)
                return;
        struct doc term = { m, DOC_TEXT };
        doc_flag_term(&term, fl);
        fclose(m);
        fprintf(d->f, "  %-28s %s\n", buf, fl->help);
        free(buf);
}

static void doc_usage(struct doc *d, const struct cli_command *c) {
        _cleanup_free_ char *name = xasprintf("banger %s%s%s", c->group ? c->group : "", c->group ? " " : "", c->name);

        doc_text(d, "usage: ");
        doc_font(d, 'B', name);
        for (const struct cli_flag *fl = c->flags; fl->name; fl++) {
                if (fl->hidden)
                        continue;
                _cleanup_free_ char *lng = xasprintf("--%s", fl->name);
                doc_text(d, " [");
                doc_font(d, 'B', lng);
                if (fl->arg) {
                        doc_text(d, " ");
                        doc_font(d, 'I', fl->arg);
                }
                doc_text(d, "]");
        }
        if (c->args && *c->args) {
                doc_text(d, " ");
                doc_text(d, c->args);
        }
        fputc('\n', d->f);
}

/* The one text of a command: usage line, summary, flags. */
static void doc_command(struct doc *d, const struct cli_command *c) {
        if (d->fmt == DOC_ROFF) {
                fputs(".SS ", d->f);
                roff_escape(d->f, c->group ? c->group : "", false);
                fputs(c->group ? " " : "", d->f);
                roff_escape(d->f, c->name, false);
                fputc('\n', d->f);
        }
        doc_usage(d, c);
        fputs(d->fmt == DOC_ROFF ? ".PP\n" : "\n", d->f);
        if (d->fmt == DOC_ROFF)
                roff_escape(d->f, c->summary, true);
        else
                fputs(c->summary, d->f);
        fputc('\n', d->f);
        if (d->fmt == DOC_TEXT && c->flags[0].name && !c->flags[0].hidden)
                fputc('\n', d->f);
        for (const struct cli_flag *fl = c->flags; fl->name; fl++)
                if (!fl->hidden)
                        doc_flag(d, fl);
}

static const struct cli_group *find_group(const char *group) {
        for (const struct cli_group *g = cli_groups; g->examples; g++)
                if (group ? g->group && strcmp(g->group, group) == 0 : !g->group)
                        return g;
        return NULL;
}

static void doc_examples(struct doc *d, const char *group) {
        const struct cli_group *g = find_group(group);

        if (!g)
                return;
        if (d->fmt == DOC_TEXT) {
                fputs("\nexamples:\n  ", d->f);
                for (const char *s = g->examples; *s; s++)
                        if (*s == '\n')
                                fputs("\n  ", d->f);
                        else
                                fputc(*s, d->f);
                fputc('\n', d->f);
                return;
        }
        fputs(".PP\nExamples:\n.RS\n.nf\n", d->f);
        roff_escape(d->f, g->examples, true);
        fputs("\n.fi\n.RE\n", d->f);
}

void cli_help_command(FILE *f, const struct cli_command *cmd) {
        struct doc d = { f, DOC_TEXT };
        doc_command(&d, cmd);
}

void cli_help_examples(FILE *f, const char *group) {
        struct doc d = { f, DOC_TEXT };
        doc_examples(&d, group);
}

/* ---- the pages ------------------------------------------------------------ */

/* Static page text: roff as written (the caller's, trusted). */
static void put(struct doc *d, const char *roff) {
        fputs(roff, d->f);
}

static void man_header(struct doc *d, const char *title, const char *section) {
        _cleanup_free_ char *date = xstrndup(banger_built_at(), 10);
        fprintf(d->f, ".TH %s %s %s \"banger %s\" \"banger manual\"\n.nh\n.ad l\n", title, section, date,
                banger_version());
}

static int group_title(struct doc *d, const char *group) {
        if (!find_group(group)) {
                fprintf(stderr, "banger: command group '%s' has no examples in cli_groups\n", group ? group : "");
                return -1;
        }
        fputs(".SH \"", d->f);
        for (const char *s = group ? group : ""; *s; s++)
                fputc(*s >= 'a' && *s <= 'z' ? *s - 'a' + 'A' : *s, d->f);
        fputs(group ? " COMMANDS\"\n" : "COMMANDS\"\n", d->f);
        return 0;
}

/* One section per group, in the table's order of first appearance. */
static int man_commands(struct doc *d) {
        for (const struct cli_command *c = cli_commands; c->name; c++) {
                bool first = true;
                for (const struct cli_command *p = cli_commands; p < c && first; p++)
                        if (c->group ? p->group && strcmp(p->group, c->group) == 0 : !p->group)
                                first = false;
                if (!first)
                        continue;
                if (group_title(d, c->group) < 0)
                        return -1;
                doc_examples(d, c->group);
                for (const struct cli_command *m = c; m->name; m++)
                        if (c->group ? m->group && strcmp(m->group, c->group) == 0 : !m->group)
                                doc_command(d, m);
        }
        return 0;
}

static void man_banger_intro(struct doc *d) {
        put(d, ".SH NAME\nbanger \\- one\\-command development sandboxes on microVMs\n"
               ".SH SYNOPSIS\n.B banger\n[\\fIGLOBAL FLAGS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR...]\n.br\n"
               ".B banger\n[\\fIGLOBAL FLAGS\\fR] \\fIGROUP COMMAND\\fR [\\fIARGS\\fR...]\n"
               ".SH DESCRIPTION\n"
               "banger creates development sandboxes on microVMs: one command boots a VM, ships a git\n"
               "repository into it and runs a command or a shell there.\n"
               "The CLI talks to the daemon, \\fBbangerd\\fR(8), over a Unix socket and starts it when\n"
               "it does not answer (user mode; never in a system install).\n"
               ".PP\n"
               "Global flags may appear anywhere before \\fB\\-\\-\\fR.\n"
               "\\fBbanger help\\fR \\fIGROUP COMMAND\\fR prints a command's section of this page.\n"
               ".SH \"GLOBAL FLAGS\"\n");
        for (const struct cli_flag *g = cli_global_flags; g->name; g++)
                doc_flag(d, g);
}

static void man_banger_outro(struct doc *d) {
        put(d, ".SH \"EXIT STATUS\"\n"
               ".TP\n.B 0\nsuccess\n"
               ".TP\n.B 1\nfailure; the error is on standard error as "
               "\\fBbanger:\\fR \\fImessage\\fR (\\fIop\\-id\\fR)\n"
               ".TP\n.B 2\nusage error (unknown command or flag, wrong arguments), with the command's usage line\n"
               ".PP\n\\fBvm run\\fR, \\fBvm exec\\fR and \\fBvm ssh\\fR exit with the guest command's status.\n"
               ".PP\nCommands that take several VMs (\\fBvm start\\fR, \\fBstop\\fR, \\fBrestart\\fR, \\fBkill\\fR, "
               "\\fBdelete\\fR, \\fBset\\fR, \\fBprune\\fR) work on them concurrently, report each one in the "
               "order given (a repeated one once) and exit 1 when any failed; with \\fB\\-\\-json\\fR they print one "
               "array entry per VM, "
               "{\"ref\", \"ok\": true, ...} or {\"ref\", \"ok\": false, \"error\": {\"code\", \"message\", "
               "\"op_id\"}}.\n"
               ".SH ENVIRONMENT\n"
               ".TP\n.B NO_COLOR\nwhen set and not empty, no colours (they are only used on a terminal anyway)\n"
               ".TP\n.B BANGER_INSTALL_FILE\n"
               "the install record of a system install (default /etc/banger/install.toml)\n"
               ".TP\n.B BANGER_BANGERD\nthe bangerd binary to auto\\-start (default: next to banger, else PATH)\n"
               ".TP\n.BR XDG_CONFIG_HOME \", \" XDG_STATE_HOME \", \" XDG_CACHE_HOME \", \" XDG_RUNTIME_DIR\n"
               "where a user\\-mode banger keeps its files (see FILES)\n"
               ".SH FILES\n"
               ".TP\n.I $XDG_CONFIG_HOME/banger/config.toml\nthe configuration, see \\fBbanger\\-config\\fR(5)\n"
               ".TP\n.I $XDG_RUNTIME_DIR/banger/bangerd.sock\nthe daemon's socket (user mode)\n"
               ".TP\n.I /run/banger/bangerd.sock\nthe daemon's socket (system install)\n"
               ".PP\nSee \\fBbangerd\\fR(8) for the state and cache directories.\n"
               ".SH \"SEE ALSO\"\n\\fBbangerd\\fR(8), \\fBbanger\\-config\\fR(5), \\fBssh\\fR(1)\n");
}

static int man_banger(struct doc *d) {
        man_header(d, "BANGER", "1");
        man_banger_intro(d);
        if (man_commands(d) < 0)
                return -1;
        man_banger_outro(d);
        return 0;
}

/* bangerd's options; t_man checks them against `bangerd --help`. */
static const struct cli_flag bangerd_flags[] = {
        { "foreground", 'd', NULL, "also log to standard error (the log file is written either way)" },
        { "log-level", 0, "LEVEL", "error, warn, info or debug (default: the config's log_level)" },
        { "ready-fd", 0, "FD", "write READY (or ERROR and a message) to FD once serving, then close it; the "
                               "CLI's auto-start uses it" },
        { "system", 0, NULL, "be the daemon of a system install: read its install record, and when started as "
                             "root make the directories the owner's and become the owner before anything else" },
        { "install", 0, "FILE", "the install record to read (implies --system; default /etc/banger/install.toml "
                                "or $BANGER_INSTALL_FILE)" },
        { "check-migrations", 0, NULL, "only report whether the state database's schema is up to date; exit 0 up "
                                       "to date, 1 migrations pending, 2 newer than this build or unreadable" },
        { "json", 0, NULL, "with --check-migrations: print the report as one JSON object" },
        { "version", 0, NULL, "print the version line and exit" },
        { "help", 'h', NULL, "print the usage and exit" },
        { 0 },
};

static void man_bangerd_files(struct doc *d) {
        put(d, ".SH FILES\n"
               "User mode (XDG directories):\n"
               ".TP\n.I $XDG_CONFIG_HOME/banger/config.toml\nthe configuration, see \\fBbanger\\-config\\fR(5)\n"
               ".TP\n.I $XDG_STATE_HOME/banger/\nstate: \\fIstate.db\\fR (SQLite), \\fIbangerd.log\\fR, "
               "\\fIbangerd.lock\\fR, \\fIvms/\\fR, \\fIimages/\\fR, \\fIkernels/\\fR, \\fIssh/\\fR\n"
               ".TP\n.I $XDG_CACHE_HOME/banger/\ndownloads and the OCI blob cache\n"
               ".TP\n.I $XDG_RUNTIME_DIR/banger/bangerd.sock\nthe socket (else "
               "\\fI/tmp/banger\\-runtime\\-UID/bangerd.sock\\fR; the directory must be the user's, 0700)\n"
               ".PP\nSystem install (below \\fB\\-\\-root\\fR when installed with one):\n"
               ".TP\n.I /etc/banger/install.toml\nthe install record\n"
               ".TP\n.I /etc/banger/config.toml\nthe configuration\n"
               ".TP\n.I /var/lib/banger/\nstate\n"
               ".TP\n.I /var/cache/banger/\ncache\n"
               ".TP\n.I /run/banger/bangerd.sock\nthe socket (0600, the owner's)\n"
               ".TP\n.I /run/banger\\-root/bangerd\\-root.sock\nthe root helper's socket\n");
}

static void man_bangerd(struct doc *d) {
        man_header(d, "BANGERD", "8");
        put(d, ".SH NAME\nbangerd \\- the banger daemon\n"
               ".SH SYNOPSIS\n"
               ".B bangerd\n[\\fB\\-d\\fR] [\\fB\\-\\-log\\-level\\fR \\fILEVEL\\fR] "
               "[\\fB\\-\\-ready\\-fd\\fR \\fIFD\\fR]\n.br\n"
               ".B bangerd \\-\\-system\n[\\fB\\-\\-install\\fR \\fIFILE\\fR] [\\fB\\-d\\fR] "
               "[\\fB\\-\\-log\\-level\\fR \\fILEVEL\\fR]\n.br\n"
               ".B bangerd \\-\\-check\\-migrations\n[\\fB\\-\\-system\\fR [\\fB\\-\\-install\\fR \\fIFILE\\fR]] "
               "[\\fB\\-\\-json\\fR]\n.br\n"
               ".B bangerd \\-\\-version\n"
               ".SH DESCRIPTION\n"
               "bangerd does the work behind \\fBbanger\\fR(1): it builds and pulls kernels and images, "
               "creates, boots and watches VMs under QEMU, and keeps their state in SQLite. "
               "It answers JSON\\-RPC on a Unix socket. In user mode the CLI starts it on demand; a system "
               "install runs it as a service of its owner, with a root helper (\\fBbangerd\\-root\\fR) for "
               "what needs root.\n"
               ".PP\nStopping bangerd leaves running VMs running; the next bangerd adopts them.\n"
               ".SH OPTIONS\n");
        for (const struct cli_flag *fl = bangerd_flags; fl->name; fl++)
                doc_flag(d, fl);
        put(d, ".SH SIGNALS\n"
               ".TP\n.BR SIGTERM \", \" SIGINT\n"
               "stop serving and exit 0; running VMs keep running\n"
               ".TP\n.B SIGHUP\n"
               "re-read the config file, as \\fBbanger daemon reload\\fR does: the log level, the housekeeping "
               "intervals and the defaults of new VMs change at once; the VMM, the bridge, the TAP pool, the DNS "
               "listener and the ssh key keep their running values until a restart; a file that does not load is "
               "logged and changes nothing\n"
               ".SH \"EXIT STATUS\"\n"
               "0 after a clean stop, 1 when it could not start, 2 on a usage error or an unreadable install "
               "record; \\fB\\-\\-check\\-migrations\\fR as above.\n");
        man_bangerd_files(d);
        put(d, ".SH \"SEE ALSO\"\n\\fBbanger\\fR(1), \\fBbanger\\-config\\fR(5)\n");
}

static void config_key(struct doc *d, enum config_key k) {
        struct config_key_doc kd;

        config_key_doc(k, &kd);
        fputs(".TP\n", d->f);
        doc_font(d, 'B', kd.name);
        doc_text(d, " (");
        doc_text(d, kd.type);
        if (kd.default_str) {
                doc_text(d, ", default ");
                /* as it would be written in the file */
                bool bare = strcmp(kd.type, "integer") == 0;
                _cleanup_free_ char *q = xasprintf(bare ? "%s" : "\"%s\"", kd.default_str);
                doc_text(d, q);
        }
        doc_text(d, ")\n");
        roff_escape(d->f, kd.help, true);
        fputc('\n', d->f);
}

/* The keys of one table (NULL: top level; "[[file_sync]]" has its own section). */
static void config_keys(struct doc *d, const char *table, bool array) {
        for (enum config_key k = 0; k < _CONFIG_KEY_MAX; k++) {
                struct config_key_doc kd;
                config_key_doc(k, &kd);
                bool is_array = strcmp(kd.type, "array of tables") == 0;
                if (is_array == array && (table ? kd.table && strcmp(kd.table, table) == 0 : !kd.table))
                        config_key(d, k);
        }
}

static void man_config(struct doc *d) {
        man_header(d, "BANGER\\-CONFIG", "5");
        put(d, ".SH NAME\nbanger\\-config \\- the banger configuration file, config.toml\n"
               ".SH SYNOPSIS\n\\fI$XDG_CONFIG_HOME/banger/config.toml\\fR (user mode), "
               "\\fI/etc/banger/config.toml\\fR (system install)\n"
               ".SH DESCRIPTION\n"
               "\\fBbangerd\\fR(8) reads this file when it starts. It is a strict TOML subset: strings, "
               "integers, booleans, \\fB[table]\\fR, \\fB[[array_of_tables]]\\fR and comments. "
               "Unknown keys warn with their name; bad values are errors naming the key and line. "
               "\\fBbanger config show\\fR prints the resolved values and where each came from.\n"
               ".PP\nA \\fIsize\\fR is a string with a unit (4G, 4GiB, 512MiB, 4KiB) or an integer "
               "number of MiB. A \\fIduration\\fR is a string such as 10s, 30m or 2h, or an integer "
               "number of seconds. A leading ~/ in a path is the home directory.\n"
               ".SH KEYS\n");
        config_keys(d, NULL, false);
        put(d, ".SH \"[vm_defaults]\"\nDefaults for new VMs; unset keys come from a host heuristic, "
               "else a floor (\\fBbanger doctor\\fR shows which won).\n");
        config_keys(d, "vm_defaults", false);
        put(d, ".SH \"[[file_sync]]\"\n");
        config_keys(d, NULL, true);
        put(d, ".SH EXAMPLE\n.RS\n.nf\n"
               "log_level = \"debug\"\nauto_stop_stale_after = \"2h\"\n\n"
               "[vm_defaults]\nvcpu = 4\nmemory_mib = \"4G\"\n\n"
               "[[file_sync]]\nhost = \"~/.gitconfig\"\nguest = \"~/.gitconfig\"\nmode = \"0600\"\n"
               ".fi\n.RE\n"
               ".SH \"SEE ALSO\"\n\\fBbanger\\fR(1), \\fBbangerd\\fR(8)\n");
}

int cli_man(FILE *f, const char *section) {
        struct doc d = { f, DOC_ROFF };

        if (strcmp(section, "1") == 0)
                return man_banger(&d) < 0 ? CLI_EXIT_FAILURE : 0;
        if (strcmp(section, "8") == 0)
                man_bangerd(&d);
        else if (strcmp(section, "5") == 0)
                man_config(&d);
        else {
                fprintf(stderr, "banger: __man: no page in section '%s' (1, 5 or 8)\n", section);
                return CLI_EXIT_USAGE;
        }
        return 0;
}
