/* SPDX-License-Identifier: MIT */
#include "clock.h"

#include <string.h>

#include "strbuf.h"

int64_t mono_ms_now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t wall_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *rfc3339_utc(int64_t ms) {
        char buf[40];
        time_t t = ms < 0 ? time(NULL) : (time_t) (ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
        return xstrdup(buf);
}

int64_t rfc3339_parse_ms(const char *s) {
        struct tm tm;
        memset(&tm, 0, sizeof(tm));
        const char *end = s ? strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm) : NULL;
        if (!end || *end)
                return 0;
        return (int64_t) timegm(&tm) * 1000;
}

static struct timespec deadline(clockid_t clock, int64_t ms) {
        struct timespec ts;
        clock_gettime(clock, &ts);
        if (ms < 0)
                ms = 0;
        int64_t ns = (int64_t) ts.tv_nsec + (ms % 1000) * 1000000;
        ts.tv_sec += (time_t) (ms / 1000 + ns / 1000000000);
        ts.tv_nsec = (long) (ns % 1000000000);
        return ts;
}

struct timespec mono_deadline(int64_t ms) {
        return deadline(CLOCK_MONOTONIC, ms);
}

struct timespec wall_deadline(int64_t ms) {
        return deadline(CLOCK_REALTIME, ms);
}
