/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "progress_fmt.h"

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

const char *progress_fmt_duration(int64_t ms, char *buf, size_t n) {
        if (ms < 0)
                ms = 0;
        int64_t s = ms / 1000;
        if (s < 60)
                snprintf(buf, n, "%lld.%llds", (long long) s, (long long) (ms % 1000) / 100);
        else if (s < 3600)
                snprintf(buf, n, "%lldm%02llds", (long long) s / 60, (long long) s % 60);
        else
                snprintf(buf, n, "%lldh%02lldm", (long long) s / 3600, (long long) (s % 3600) / 60);
        return buf;
}

const char *progress_fmt_rate(double bytes_per_s, char *buf, size_t n) {
        char sz[32];
        snprintf(buf, n, "%s/s", cli_human_size(bytes_per_s > 0 ? (uint64_t) bytes_per_s : 0, sz, sizeof(sz)));
        return buf;
}

int progress_percent(uint64_t done, uint64_t total) {
        if (total == 0)
                return -1;
        if (done >= total)
                return 100;
        return (int) ((long double) done * 100 / total);
}

double progress_rate(uint64_t bytes, int64_t elapsed_ms) {
        if (elapsed_ms < 200)
                return 0;
        return (double) bytes * 1000.0 / (double) elapsed_ms;
}

int64_t progress_eta_ms(uint64_t done, uint64_t total, double rate) {
        if (total == 0)
                return -1;
        if (done >= total)
                return 0;
        if (rate <= 0)
                return -1;
        return (int64_t) ((double) (total - done) * 1000.0 / rate);
}

bool progress_gate_due(struct progress_gate *g, uint64_t done, uint64_t total, int64_t now_ms) {
        int pct = progress_percent(done, total);
        int quarter = pct < 0 ? -1 : pct / 25;

        if (g->started && quarter == g->last_quarter && now_ms - g->last_ms < PROGRESS_PLAIN_EVERY_MS)
                return false;
        g->started = true;
        g->last_ms = now_ms;
        g->last_quarter = quarter;
        return true;
}
