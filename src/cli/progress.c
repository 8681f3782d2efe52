/* SPDX-License-Identifier: MIT */
/*
 * Progress from long RPCs, on stderr. TTY mode keeps one live line (spinner,
 * stage, elapsed time; percent, rate and ETA for a byte counter) redrawn in
 * place at most every CLI_PROGRESS_TICK_MS and leaves each finished stage as a
 * line with its duration. PLAIN mode prints a line when a stage starts and a
 * byte counter on each 25% step or every few seconds, without escape codes.
 * OFF prints nothing. Errors clear the live line first (cli_progress_clear).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"

static const char *const mode_names[CLI_PROGRESS_MAX] = {
        [CLI_PROGRESS_AUTO] = "auto",
        [CLI_PROGRESS_PLAIN] = "plain",
        [CLI_PROGRESS_TTY] = "tty",
        [CLI_PROGRESS_OFF] = "off",
};

const char *cli_progress_mode_to_string(enum cli_progress_mode m) {
        return m >= 0 && m < CLI_PROGRESS_MAX ? mode_names[m] : NULL;
}

enum cli_progress_mode cli_progress_mode_from_string(const char *s) {
        for (int m = 0; m < CLI_PROGRESS_MAX; m++)
                if (strcmp(mode_names[m], s) == 0)
                        return (enum cli_progress_mode) m;
        return CLI_PROGRESS_MAX;
}

void cli_progress_init(struct cli_ctx *ctx) {
        const char *term = getenv("TERM"), *no_color = getenv("NO_COLOR");
        enum cli_progress_mode m = ctx->progress_mode;

        if (m == CLI_PROGRESS_AUTO) {
                bool dumb = !term || strcmp(term, "dumb") == 0 || (no_color && *no_color);
                m = isatty(STDERR_FILENO) && !dumb ? CLI_PROGRESS_TTY : CLI_PROGRESS_PLAIN;
        }
        ctx->progress = (struct cli_progress) { .mode = m };
}

bool cli_progress_ticking(const struct cli_ctx *ctx) {
        return ctx->progress.mode == CLI_PROGRESS_TTY && ctx->progress.active;
}

static int term_columns(void) {
        struct winsize ws;
        if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
                return ws.ws_col;
        return 80;
}

/* Cuts s to at most max bytes without splitting a UTF-8 sequence. */
static void cut_utf8(char *s, size_t max) {
        size_t n = strlen(s);
        if (n <= max)
                return;
        while (max > 0 && ((unsigned char) s[max] & 0xC0) == 0x80)
                max--;
        s[max] = '\0';
}

/* "10.0 MiB / 25.3 MiB  40%  3.2 MiB/s  ETA 4.7s" (what is known of it) */
static void bytes_text(const struct cli_progress *p, char *buf, size_t n) {
        char d[32], t[32], r[32], e[32];
        /* up to the last counter: a silent daemon (a stall, or work after the
         * download) does not make the figure decay */
        double rate = progress_rate(p->done - p->bytes_t0, p->bytes_last_ms - p->bytes_t0_ms);
        int pct = progress_percent(p->done, p->total);
        int64_t eta = progress_eta_ms(p->done, p->total, rate);

        cli_human_size(p->done, d, sizeof(d));
        if (pct < 0) {
                snprintf(buf, n, "%s  %s", d, rate > 0 ? progress_fmt_rate(rate, r, sizeof(r)) : "");
                return;
        }
        snprintf(buf, n, "%s / %s  %d%%%s%s%s%s", d, cli_human_size(p->total, t, sizeof(t)), pct, rate > 0 ? "  " : "",
                 rate > 0 ? progress_fmt_rate(rate, r, sizeof(r)) : "", eta > 0 ? "  ETA " : "",
                 eta > 0 ? progress_fmt_duration(eta, e, sizeof(e)) : "");
}

static void draw(struct cli_ctx *ctx, bool force) {
        static const char spinner[] = "|/-\\";
        struct cli_progress *p = &ctx->progress;
        int64_t now = mono_ms_now();
        char line[512], what[256], el[32];

        if (p->mode != CLI_PROGRESS_TTY || !p->active || (!force && now - p->last_draw_ms < CLI_PROGRESS_TICK_MS))
                return;
        p->last_draw_ms = now;
        if (p->bytes)
                bytes_text(p, what, sizeof(what));
        else
                snprintf(what, sizeof(what), "%s", p->detail);
        snprintf(line, sizeof(line), "%c %s%s%s  %s", spinner[p->spin++ % 4], p->stage, *what ? ": " : "", what,
                 progress_fmt_duration(now - p->stage_t0_ms, el, sizeof(el)));
        /* a line that wraps cannot be redrawn with \r */
        cut_utf8(line, (size_t) term_columns() - 1);
        fprintf(stderr, "\r%s\033[K", line);
        p->line_open = true;
}

void cli_progress_clear(struct cli_ctx *ctx) {
        if (!ctx->progress.line_open)
                return;
        fputs("\r\033[K", stderr);
        ctx->progress.line_open = false;
        ctx->progress.last_draw_ms = 0; /* the next tick draws it again */
}

void cli_progress_tick(struct cli_ctx *ctx) {
        draw(ctx, false);
}

static void stage_line(const struct cli_ctx *ctx, const char *stage, const char *detail, const char *suffix) {
        fprintf(stderr, "%s %s%s%s%s\n", ctx->color_err ? "\033[1m==>\033[0m" : "==>", stage, *detail ? ": " : "",
                detail, suffix);
}

void cli_progress_end(struct cli_ctx *ctx, bool ok) {
        struct cli_progress *p = &ctx->progress;
        char el[32], sz[32], suffix[96];

        if (!p->active)
                return;
        cli_progress_clear(ctx);
        if (p->mode == CLI_PROGRESS_TTY && ok) {
                progress_fmt_duration(mono_ms_now() - p->stage_t0_ms, el, sizeof(el));
                if (p->bytes)
                        snprintf(suffix, sizeof(suffix), " (%s in %s)", cli_human_size(p->done, sz, sizeof(sz)), el);
                else
                        snprintf(suffix, sizeof(suffix), " (%s)", el);
                stage_line(ctx, p->stage, p->detail, suffix);
        }
        p->active = false;
}

static void start_stage(struct cli_ctx *ctx, const char *stage, const char *detail, int64_t elapsed_ms) {
        struct cli_progress *p = &ctx->progress;

        cli_progress_end(ctx, true);
        snprintf(p->stage, sizeof(p->stage), "%s", stage);
        snprintf(p->detail, sizeof(p->detail), "%s", detail ? detail : "");
        p->active = true;
        p->bytes = false;
        p->done = p->total = 0;
        p->stage_t0_ms = mono_ms_now() - (elapsed_ms > 0 ? elapsed_ms : 0);
        p->gate = (struct progress_gate) { 0 };
}

static bool is_current(const struct cli_progress *p, const char *stage) {
        return p->active && strncmp(p->stage, stage, sizeof(p->stage) - 1) == 0;
}

static void on_stage(struct cli_ctx *ctx, const char *stage, const char *detail) {
        struct cli_progress *p = &ctx->progress;

        if (is_current(p, stage)) /* a new detail (a layer of `layers`) */
                snprintf(p->detail, sizeof(p->detail), "%s", detail ? detail : "");
        else
                start_stage(ctx, stage, detail, -1);
        if (p->mode == CLI_PROGRESS_PLAIN)
                stage_line(ctx, p->stage, p->detail, "");
        draw(ctx, true);
}

static void on_bytes(struct cli_ctx *ctx, const char *stage, uint64_t done, uint64_t total) {
        struct cli_progress *p = &ctx->progress;
        int64_t now = mono_ms_now();
        char what[256];

        if (!is_current(p, stage)) {
                start_stage(ctx, stage, NULL, -1);
                if (p->mode == CLI_PROGRESS_PLAIN)
                        stage_line(ctx, p->stage, "", "");
        }
        if (!p->bytes) {
                p->bytes = true;
                p->bytes_t0 = done;
                p->bytes_t0_ms = p->bytes_last_ms = now;
        }
        if (done < p->bytes_t0) /* a retry started over */
                p->bytes_t0 = done;
        if (done != p->done) /* the daemon repeats the final count */
                p->bytes_last_ms = now;
        p->done = done;
        p->total = total;
        if (p->mode == CLI_PROGRESS_PLAIN && progress_gate_due(&p->gate, done, total, now)) {
                bytes_text(p, what, sizeof(what));
                fprintf(stderr, "    %s: %s\n", p->stage, what);
        }
        draw(ctx, done == total);
}

void cli_progress(struct cli_ctx *ctx, json_t *j) {
        const char *stage = json_string_value(json_object_get(j, "stage"));
        json_t *done = json_object_get(j, "done");

        if (!stage || ctx->progress.mode == CLI_PROGRESS_OFF)
                return;
        if (!json_is_integer(done)) {
                on_stage(ctx, stage, json_string_value(json_object_get(j, "detail")));
                return;
        }
        json_int_t d = json_integer_value(done), t = json_integer_value(json_object_get(j, "total"));
        on_bytes(ctx, stage, d > 0 ? (uint64_t) d : 0, t > 0 ? (uint64_t) t : 0);
}

void cli_progress_live(struct cli_ctx *ctx, const char *name, const char *detail, int64_t elapsed_ms) {
        struct cli_progress *p = &ctx->progress;

        bool fresh;

        if (p->mode != CLI_PROGRESS_TTY)
                return;
        fresh = !is_current(p, name);
        if (fresh) {
                /* the caller prints finished stages: this one leaves no line */
                cli_progress_end(ctx, false);
                start_stage(ctx, name, detail, elapsed_ms);
        } else
                snprintf(p->detail, sizeof(p->detail), "%s", detail ? detail : "");
        draw(ctx, fresh); /* a stage that starts is shown at once, however short it is */
}

void cli_progress_note(struct cli_ctx *ctx, const char *stage, const char *detail) {
        if (ctx->progress.mode == CLI_PROGRESS_OFF)
                return;
        cli_progress_end(ctx, true);
        stage_line(ctx, stage, detail ? detail : "", "");
}
