/* SPDX-License-Identifier: MIT */
#pragma once

/* Random identifiers and timestamps: one implementation for the whole tree. */

#include <stddef.h>
#include <stdint.h>

/* Fills buf from getrandom(2) (retrying EINTR; aborts if the kernel has none). */
void random_bytes(void *buf, size_t n);
/* 2*nbytes lowercase hex digits. */
char *random_hex(size_t nbytes);
/* "2026-11-21T23:26:37Z" for ms since the epoch (UTC), or now when ms < 0. */
char *rfc3339_utc(int64_t ms);
static inline char *now_rfc3339(void) {
        return rfc3339_utc(-1);
}
