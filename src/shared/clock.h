/* SPDX-License-Identifier: MIT */
#pragma once

/* Time helpers: the one monotonic clock, the wall clock and RFC 3339 text,
 * for the whole tree. */

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in milliseconds: deadlines and durations. */
int64_t mono_ms_now(void);
/* CLOCK_REALTIME in milliseconds since the epoch: timestamps. */
int64_t wall_ms(void);
/* "2026-11-21T23:26:37Z" for ms since the epoch (UTC), or now when ms < 0. */
char *rfc3339_utc(int64_t ms);
static inline char *now_rfc3339(void) {
        return rfc3339_utc(-1);
}
/* ms since the epoch of "YYYY-MM-DDTHH:MM:SSZ", or 0 when s is NULL or not that. */
int64_t rfc3339_parse_ms(const char *s);
/* An absolute CLOCK_MONOTONIC deadline `ms` from now (pthread_cond_timedwait
 * with a monotonic condattr). */
struct timespec mono_deadline(int64_t ms);
/* The same on CLOCK_REALTIME (pthread_cond_timedwait with a default condvar). */
struct timespec wall_deadline(int64_t ms);
