/* SPDX-License-Identifier: MIT */
#include "progress.h"

#include <stdarg.h>
#include <stdio.h>

#include "testhook.h"

void progress_stage(const struct progress *p, const char *stage, const char *fmt, ...) {
        char detail[256] = "";
        va_list ap;

        test_crash_point(stage); /* the fault suite's kill -9 at a named stage */
        if (!p || !p->stage)
                return;
        if (fmt) {
                va_start(ap, fmt);
                vsnprintf(detail, sizeof(detail), fmt, ap);
                va_end(ap);
        }
        p->stage(p->ud, stage, detail);
}

void progress_bytes(const struct progress *p, const char *stage, uint64_t done, uint64_t total) {
        if (p && p->bytes)
                p->bytes(p->ud, stage, done, total);
}

bool progress_cancelled(const struct progress *p) {
        return p && p->cancelled && p->cancelled(p->ud);
}
