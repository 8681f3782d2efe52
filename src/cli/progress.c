/* SPDX-License-Identifier: MIT */
/*
 * Progress from long RPCs. Stage lines go to stderr always; the byte counter
 * (done/total, rate) is a live line only on a TTY.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"

const char *cli_human_size(uint64_t b, char *buf, size_t n) {
        if (b >= (1ULL << 30))
                snprintf(buf, n, "%.1f GiB", (double) b / (1ULL << 30));
        else if (b >= (1ULL << 20))
                snprintf(buf, n, "%.1f MiB", (double) b / (1ULL << 20));
        else if (b >= 1024)
                snprintf(buf, n, "%.1f KiB", (double) b / 1024);
        else
                snprintf(buf, n, "%llu B", (unsigned long long) b);
        return buf;
}

void cli_progress_end(struct cli_ctx *ctx) {
        if (ctx->progress_line_open) {
                fputc('\n', stderr);
                ctx->progress_line_open = false;
        }
}

void cli_progress(struct cli_ctx *ctx, json_t *p) {
        const char *stage = json_string_value(json_object_get(p, "stage"));
        json_t *done = json_object_get(p, "done");

        if (!stage)
                return;
        if (!done) {
                const char *detail = json_string_value(json_object_get(p, "detail"));
                cli_progress_end(ctx);
                if (ctx->color_err)
                        fprintf(stderr, "\033[1m==>\033[0m %s%s%s\n", stage, detail && *detail ? ": " : "",
                                detail ? detail : "");
                else
                        fprintf(stderr, "==> %s%s%s\n", stage, detail && *detail ? ": " : "", detail ? detail : "");
                return;
        }
        if (!isatty(STDERR_FILENO))
                return;
        uint64_t d = (uint64_t) json_integer_value(done), t = (uint64_t) json_integer_value(json_object_get(p, "total"));
        if (strncmp(ctx->progress_stage, stage, sizeof(ctx->progress_stage) - 1) != 0 || !ctx->progress_t0_ms) {
                snprintf(ctx->progress_stage, sizeof(ctx->progress_stage), "%s", stage);
                ctx->progress_t0_ms = mono_ms_now();
                ctx->progress_t0_bytes = d;
        }
        if (d == ctx->progress_last_done && ctx->progress_line_open)
                return; /* nothing new (the daemon repeats the final count) */
        ctx->progress_last_done = d;
        double secs = (double) (mono_ms_now() - ctx->progress_t0_ms) / 1000.0;
        double rate = (double) (d - ctx->progress_t0_bytes) / (secs > 0.001 ? secs : 0.001);
        char a[32], b[32], r[32];
        fprintf(stderr, "\r    %s %s / %s  %s/s   ", stage, cli_human_size(d, a, sizeof(a)),
                t ? cli_human_size(t, b, sizeof(b)) : "?", cli_human_size((uint64_t) rate, r, sizeof(r)));
        ctx->progress_line_open = true;
}
