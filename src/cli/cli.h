/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The banger CLI: a two-level command table (`banger <group> <command>`),
 * global flags, and helpers each command file uses. The CLI never links
 * daemon code: it talks to bangerd over RPC (client.c) or inspects the host
 * through src/core (doctor).
 */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>

#include "install.h"
#include "layout.h"
#include "progress_fmt.h"
#include "rpc.h"

#define CLI_MAX_REPEATS 64 /* values of repeatable flags per command line */
#define CLI_MAX_FLAGS 32 /* per command (find_flag never looks past it; vm run has 17) */

struct cli_flag {
        const char *name;  /* long name without "--" */
        char short_name;   /* 0 when none */
        const char *arg;   /* value placeholder; NULL for a boolean flag */
        const char *help;
        bool hidden;       /* parsed, but not in help, usage or completion (test-only flags) */
        bool repeat;       /* may be given more than once (cli_flag_all) */
};

struct cli_args;
struct cli_ctx;

/* --progress=MODE; --quiet is OFF. cli_progress_init resolves AUTO. */
enum cli_progress_mode {
        CLI_PROGRESS_AUTO,
        CLI_PROGRESS_PLAIN, /* a line per stage, byte counters now and then, no escape codes */
        CLI_PROGRESS_TTY,   /* the current stage redrawn in place, finished stages left as lines */
        CLI_PROGRESS_OFF,
        CLI_PROGRESS_MAX,
};

/* What progress.c shows (one stage at a time). */
struct cli_progress {
        enum cli_progress_mode mode;
        bool active;    /* a stage is current */
        bool line_open; /* TTY: the live line is on screen */
        bool bytes;     /* the stage reported a byte counter */
        char stage[48];
        char detail[160];
        int64_t stage_t0_ms;
        uint64_t done, total, bytes_t0;
        int64_t bytes_t0_ms, bytes_last_ms; /* the first and the latest counter */
        int64_t last_draw_ms;
        unsigned spin;
        struct progress_gate gate; /* PLAIN: when a byte counter is due */
};

struct cli_command {
        const char *group; /* NULL for a top-level command */
        const char *name;
        const char *args;  /* positional usage, e.g. "bash|zsh|fish" */
        const char *summary;
        const struct cli_flag *flags; /* terminated by {0} */
        int min_args, max_args;
        int (*run)(struct cli_ctx *ctx, struct cli_args *a);
};

struct cli_args {
        const struct cli_command *cmd;
        const char *values[CLI_MAX_FLAGS]; /* by flag index; "" for booleans; a repeated flag: the last */
        struct {
                int flag;
                const char *value;
        } reps[CLI_MAX_REPEATS]; /* every value of the repeatable flags, in order */
        int nreps;
        char **pos;
        int npos;
        int dashdash; /* index in pos of the first argument after "--", or -1 */
};

struct cli_ctx {
        bool json;
        bool verbose;
        bool color_out; /* stdout is a TTY and NO_COLOR unset */
        bool color_err;
        const char *socket_override; /* --socket */
        struct layout layout;
        /* system mode: an install file exists (its layout is ctx->layout; the
         * daemon is never auto-started); install_error: it exists but is bad */
        bool system;
        struct install_info install;
        char *install_error;
        /* connection, lazily opened by cli_call() */
        int fd;
        struct rpc_line_reader lr;
        int64_t next_id;
        bool version_checked;
        /* progress display (progress.c) */
        bool no_progress; /* concurrent fan-out: report results only */
        bool silent;      /* errors are the caller's to report (a probe that may fail) */
        /* capture (a concurrent fan-out): the first failure is kept below
         * instead of printed, so the caller reports every ref in order */
        bool capture;
        char *err_code;    /* owned; the RPC code, "unavailable" for a transport failure */
        char *err_message; /* owned; as the daemon said it */
        char *err_line;    /* owned; what would have been printed (without "banger: ") */
        char *err_op_id;   /* owned; may be NULL */
        const volatile sig_atomic_t *interrupt; /* set: a signal ends waits for the daemon */
        enum cli_progress_mode progress_mode; /* as asked: --progress, --quiet */
        struct cli_progress progress;
};

/* A command group (NULL: the top-level commands): its man page section's
 * examples, also shown by `banger help GROUP`. Every group has one. */
struct cli_group {
        const char *group;
        const char *examples; /* shell lines, '\n'-separated */
};

extern const struct cli_command cli_commands[];
extern const struct cli_flag cli_global_flags[];
extern const struct cli_group cli_groups[]; /* terminated by { NULL, NULL } */

const char *cli_flag(const struct cli_args *a, const char *name); /* value, "" if boolean set, NULL */
/* Every value of a repeatable flag, in order: how many (NULL-terminated array, malloc'd). */
size_t cli_flag_all(const struct cli_args *a, const char *name, const char ***ret);
bool cli_has(const struct cli_args *a, const char *name);
int cli_usage_error(const struct cli_command *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_print_usage_line(FILE *f, const struct cli_command *cmd);

/*
 * The error convention (docs/ERRORS.md): a command returns an exit code (0,
 * CLI_EXIT_USAGE, a guest command's own status) or a negative errno for a
 * failure it has already reported; main turns that into CLI_EXIT_FAILURE.
 * cli_call, cli_error and cli_usage_error report before they return.
 */
#define CLI_EXIT_FAILURE 1
#define CLI_EXIT_USAGE 2

/* Prints "banger: msg (op-xxxxxx)" on stderr; returns -EIO (reported). */
int cli_error(struct cli_ctx *ctx, const char *op_id, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The same with the errno to return. */
int cli_fail(struct cli_ctx *ctx, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void cli_print_json(const json_t *j);
/* Frees what capture kept. */
void cli_error_clear(struct cli_ctx *ctx);
const char *cli_socket_path(const struct cli_ctx *ctx);
int cli_load_install(struct cli_ctx *ctx);

/* client.c */
enum cli_connect_mode {
        CLI_NO_AUTOSTART,
        CLI_AUTOSTART, /* start bangerd when it does not answer (default socket only) */
};

/* Calls `method`: 0 with *ret_result, or a negative errno once the failure
 * is printed (an RPC error maps its code: not_found -ENOENT, ...; a
 * transport error keeps its own). */
int cli_call(struct cli_ctx *ctx, enum cli_connect_mode mode, const char *method, json_t *params,
             json_t **ret_result);
/* 0 connected, -ECONNREFUSED/-ENOENT when no daemon answers, other -errno. */
int cli_try_connect(struct cli_ctx *ctx);
/* 0, or a negative errno once reported. */
int cli_start_daemon(struct cli_ctx *ctx);
/* Asks the daemon to stop and waits (10 s) for its process to exit. */
int cli_stop_daemon(struct cli_ctx *ctx);
void cli_disconnect(struct cli_ctx *ctx);
/* bangerd: $BANGER_BANGERD, else next to this binary, else PATH. */
char *cli_find_bangerd(void);

/*
 * progress.c: renders {"stage","detail"} and {"stage","done","total"} on
 * stderr in the mode cli_progress_init resolved (AUTO: TTY when stderr is a
 * terminal, TERM is not dumb and NO_COLOR is unset; else PLAIN).
 */
const char *cli_progress_mode_to_string(enum cli_progress_mode m);
enum cli_progress_mode cli_progress_mode_from_string(const char *s); /* _MAX when unknown */
void cli_progress_init(struct cli_ctx *ctx);
void cli_progress(struct cli_ctx *ctx, json_t *progress);
/* The current stage is name (elapsed_ms so far, -1: starting now); shown
 * live on a TTY only (the caller prints finished stages itself). */
void cli_progress_live(struct cli_ctx *ctx, const char *name, const char *detail, int64_t elapsed_ms);
/* TTY: redraws the live line when due (the spinner moves while the daemon is silent). */
void cli_progress_tick(struct cli_ctx *ctx);
/* Takes the live line off the screen before other output (it comes back on the next tick). */
void cli_progress_clear(struct cli_ctx *ctx);
/* Ends the current stage: on a TTY left as a line with its duration when ok, else cleared. */
void cli_progress_end(struct cli_ctx *ctx, bool ok);
/* A stage line ("==> stage: detail") in every mode but OFF, never live: for
 * steps between which other programs write to the terminal (banger update). */
void cli_progress_note(struct cli_ctx *ctx, const char *stage, const char *detail);
/* TTY mode with a stage current: waits should wake for ticks. */
bool cli_progress_ticking(const struct cli_ctx *ctx);
#define CLI_PROGRESS_TICK_MS 100

/* commands */
int cmd_kernel_list(struct cli_ctx *ctx, struct cli_args *a);
int cmd_kernel_show(struct cli_ctx *ctx, struct cli_args *a);
int cmd_kernel_pull(struct cli_ctx *ctx, struct cli_args *a);
int cmd_kernel_build(struct cli_ctx *ctx, struct cli_args *a);
int cmd_kernel_rm(struct cli_ctx *ctx, struct cli_args *a);
int cmd_kernel_import(struct cli_ctx *ctx, struct cli_args *a);
int cmd_image_list(struct cli_ctx *ctx, struct cli_args *a);
int cmd_image_show(struct cli_ctx *ctx, struct cli_args *a);
int cmd_image_pull(struct cli_ctx *ctx, struct cli_args *a);
int cmd_image_cache(struct cli_ctx *ctx, struct cli_args *a);
int cmd_image_delete(struct cli_ctx *ctx, struct cli_args *a);
int cmd_image_register(struct cli_ctx *ctx, struct cli_args *a);
int cmd_image_promote(struct cli_ctx *ctx, struct cli_args *a);
int cmd_image_export(struct cli_ctx *ctx, struct cli_args *a);
int cmd_vm_create(struct cli_ctx *ctx, struct cli_args *a);
int cmd_vm_list(struct cli_ctx *ctx, struct cli_args *a);
int cmd_vm_ps(struct cli_ctx *ctx, struct cli_args *a);
int cmd_vm_show(struct cli_ctx *ctx, struct cli_args *a);
int cmd_vm_start(struct cli_ctx *ctx, struct cli_args *a);
int cmd_vm_stop(struct cli_ctx *ctx, struct cli_args *a);
int cmd_vm_restart(struct cli_ctx *ctx, struct cli_args *a);
int cmd_vm_kill(struct cli_ctx *ctx, struct cli_args *a);
/* vm kill --signal names (also a number 1-64, or SIGNAME); completion offers them */
struct cli_signal {
        const char *name;
        int sig;
};
extern const struct cli_signal cli_signals[]; /* terminated by { NULL, 0 } */
int cmd_vm_delete(struct cli_ctx *ctx, struct cli_args *a);
int cmd_vm_set(struct cli_ctx *ctx, struct cli_args *a);
int cmd_vm_ssh(struct cli_ctx *ctx, struct cli_args *a);
int cmd_vm_logs(struct cli_ctx *ctx, struct cli_args *a);
int cmd_vm_health(struct cli_ctx *ctx, struct cli_args *a);
int cmd_vm_ports(struct cli_ctx *ctx, struct cli_args *a);
int cmd_vm_forward(struct cli_ctx *ctx, struct cli_args *a);
int cmd_vm_snapshot(struct cli_ctx *ctx, struct cli_args *a);
int cmd_vm_restore(struct cli_ctx *ctx, struct cli_args *a);
int cmd_template_list(struct cli_ctx *ctx, struct cli_args *a);
int cmd_template_rm(struct cli_ctx *ctx, struct cli_args *a);
int cmd_template_prune(struct cli_ctx *ctx, struct cli_args *a);
int cmd_vm_stats(struct cli_ctx *ctx, struct cli_args *a);
int cmd_vm_prune(struct cli_ctx *ctx, struct cli_args *a);
int cmd_ssh_config(struct cli_ctx *ctx, struct cli_args *a);
int cmd_vm_proxy(struct cli_ctx *ctx, struct cli_args *a);
int cmd_vm_run(struct cli_ctx *ctx, struct cli_args *a);
int cmd_vm_exec(struct cli_ctx *ctx, struct cli_args *a);
/* exec.c: argv in the VM through its agent. 0 with the command's exit status
 * in *ret_code; -EPROTONOSUPPORT (nothing printed) when the agent is too old
 * for it; another -errno after reporting. extra (may be NULL): more vm.exec
 * params ("env", "uid", "gid"). */
int cli_agent_exec(struct cli_ctx *ctx, const char *vm, char *const *argv, int argc, const char *cwd, bool pty,
                   json_t *extra, int *ret_code);
/* Until the VM's sshd listens (vm.health), at most timeout_ms; reports why not. */
int cli_wait_sshd(struct cli_ctx *ctx, const char *vm, int timeout_ms);
int cmd_vm_workspace(struct cli_ctx *ctx, struct cli_args *a);
/* --vcpu/--memory/--disk-size/--system-overlay-size/--nat/--no-nat into params (0, or exit 2) */
int cli_spec_params(struct cli_args *a, json_t *params);
/* Runs argv (ssh) in the foreground, the terminal's Ctrl-C going to it:
 * its exit code (128+N when killed by signal N), or -errno when it could
 * not start (not reported). */
int cli_run_foreground(char *const *argv);
/* cmd_vm.c, for vm run later: create with progress (0, or a reported -errno);
 * the ssh argv for a VM (from vm.show's JSON). */
int cli_vm_create(struct cli_ctx *ctx, json_t *params, bool quiet, json_t **ret_vm);
/* "10.1.2.3", or "127.0.0.1:PORT (ssh; user-mode networking)" (malloc'd). */
char *cli_vm_address(json_t *vm);
char **cli_ssh_argv(json_t *vm, char *const *extra, int n_extra, bool tty);
int cmd_version(struct cli_ctx *ctx, struct cli_args *a);
int cmd_ping(struct cli_ctx *ctx, struct cli_args *a);
int cmd_daemon_status(struct cli_ctx *ctx, struct cli_args *a);
int cmd_daemon_start(struct cli_ctx *ctx, struct cli_args *a);
int cmd_daemon_stop(struct cli_ctx *ctx, struct cli_args *a);
int cmd_daemon_reload(struct cli_ctx *ctx, struct cli_args *a);
int cmd_daemon_operations(struct cli_ctx *ctx, struct cli_args *a);
int cmd_system_install(struct cli_ctx *ctx, struct cli_args *a);
int cmd_system_status(struct cli_ctx *ctx, struct cli_args *a);
int cmd_system_restart(struct cli_ctx *ctx, struct cli_args *a);
int cmd_system_uninstall(struct cli_ctx *ctx, struct cli_args *a);
int cmd_update(struct cli_ctx *ctx, struct cli_args *a);
int cmd_config_show(struct cli_ctx *ctx, struct cli_args *a);
int cmd_doctor(struct cli_ctx *ctx, struct cli_args *a);
int cmd_completion(struct cli_ctx *ctx, struct cli_args *a);
/* `banger __complete WORD...` (cmd_complete.c): the candidates for the last
 * WORD, one a line, for the completion scripts; always 0, never on stderr. */
int cli_complete(struct cli_ctx *ctx, int argc, char **argv);
int cmd_help(struct cli_ctx *ctx, struct cli_args *a);

/* man.c: one text for each command, rendered as roff for the man pages and
 * as plain text for `banger help GROUP COMMAND`. */
void cli_help_command(FILE *f, const struct cli_command *cmd);
void cli_help_examples(FILE *f, const char *group); /* "examples:" block; nothing when none */
/* `banger __man 1|5|8`: the page in roff on f; 0, or CLI_EXIT_USAGE for
 * another section, CLI_EXIT_FAILURE when the tables are inconsistent. */
int cli_man(FILE *f, const char *section);
