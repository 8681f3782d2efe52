/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The figures of a progress display, formatted: pure functions (no I/O, no
 * clock, no globals) so tests/unit/test_progress_fmt.c pins them down. Every
 * formatter writes a NUL-terminated string into buf (truncated to n) and
 * returns buf.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "512 B", "1.5 KiB", "25.3 MiB", "1.2 GiB" */
const char *cli_human_size(uint64_t bytes, char *buf, size_t n);
/* "0.4s", "12.3s", "1m05s", "2h03m" (negative counts as 0) */
const char *progress_fmt_duration(int64_t ms, char *buf, size_t n);
/* "3.2 MiB/s" */
const char *progress_fmt_rate(double bytes_per_s, char *buf, size_t n);
/* 0..100 (floored, clamped), or -1 when the total is unknown (0) */
int progress_percent(uint64_t done, uint64_t total);
/* bytes per second over elapsed_ms (0 while under 200 ms: too early to say) */
double progress_rate(uint64_t bytes, int64_t elapsed_ms);
/* ms until done reaches total at rate, 0 when there, -1 when unknown */
int64_t progress_eta_ms(uint64_t done, uint64_t total, double rate);

/* When a plain (non-TTY) display reports a byte counter: the first one, then
 * on each 25% step, else at most every PROGRESS_PLAIN_EVERY_MS. */
#define PROGRESS_PLAIN_EVERY_MS 5000
struct progress_gate {
        bool started;
        int64_t last_ms;
        int last_quarter; /* percent / 25 at the last report */
};
bool progress_gate_due(struct progress_gate *g, uint64_t done, uint64_t total, int64_t now_ms);
