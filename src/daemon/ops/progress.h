/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * How long work reports to whoever waits for it (an RPC connection, a
 * create operation): stage changes, byte counts, and whether to give up.
 * Every callback may be NULL; a NULL progress is silent and never cancelled.
 */

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"

struct progress {
        void (*stage)(void *ud, const char *stage, const char *detail);
        void (*bytes)(void *ud, const char *stage, uint64_t done, uint64_t total);
        bool (*cancelled)(void *ud);
        void *ud;
};

void progress_stage(const struct progress *p, const char *stage, const char *fmt, ...) _printf_(3, 4);
void progress_bytes(const struct progress *p, const char *stage, uint64_t done, uint64_t total);
bool progress_cancelled(const struct progress *p);
