/* SPDX-License-Identifier: MIT */
#include "parse.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int parse_int64(const char *s, int64_t *ret) {
        char *end;
        long long v;

        if (!s || !*s || isspace((unsigned char) *s))
                return -EINVAL;
        errno = 0;
        v = strtoll(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (errno || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

int parse_uint64(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;

        if (!s || !isdigit((unsigned char) *s))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno == ERANGE)
                return -ERANGE;
        if (errno || *end)
                return -EINVAL;
        *ret = v;
        return 0;
}

int parse_int_range(const char *s, int64_t min, int64_t max, int64_t *ret) {
        int64_t v;
        int r = parse_int64(s, &v);

        if (r < 0)
                return r;
        if (v < min || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

static const struct {
        const char *suffix;
        uint64_t mult;
} size_units[] = {
        { "", 1ULL << 20 }, /* bare number: MiB */
        { "B", 1 },
        { "K", 1ULL << 10 },   { "KB", 1ULL << 10 }, { "KiB", 1ULL << 10 },
        { "M", 1ULL << 20 },   { "MB", 1ULL << 20 }, { "MiB", 1ULL << 20 },
        { "G", 1ULL << 30 },   { "GB", 1ULL << 30 }, { "GiB", 1ULL << 30 },
        { "T", 1ULL << 40 },   { "TB", 1ULL << 40 }, { "TiB", 1ULL << 40 },
};

int parse_size(const char *s, uint64_t *ret_bytes) {
        uint64_t v = 0;
        const char *p = s;

        if (!s || !isdigit((unsigned char) *p))
                return -EINVAL;
        for (; isdigit((unsigned char) *p); p++) {
                if (v > (UINT64_MAX - 9) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t) (*p - '0');
        }
        for (size_t i = 0; i < sizeof(size_units) / sizeof(size_units[0]); i++) {
                if (strcasecmp(p, size_units[i].suffix) != 0)
                        continue;
                /* "kib" and "KIB" are fine, but keep "mb" from meaning millibits: no. */
                if (v && v > UINT64_MAX / size_units[i].mult)
                        return -ERANGE;
                *ret_bytes = v * size_units[i].mult;
                return 0;
        }
        return -EINVAL;
}

int parse_duration_ms(const char *s, uint64_t *ret_ms) {
        uint64_t total = 0;
        const char *p = s;
        bool any = false;

        if (!s || !*s)
                return -EINVAL;
        /* bare number: seconds */
        if (strspn(s, "0123456789") == strlen(s)) {
                uint64_t v;
                int r = parse_uint64(s, &v);
                if (r < 0)
                        return r;
                if (v > UINT64_MAX / 1000)
                        return -ERANGE;
                *ret_ms = v * 1000;
                return 0;
        }
        while (*p) {
                uint64_t v = 0, mult;

                if (!isdigit((unsigned char) *p))
                        return -EINVAL;
                for (; isdigit((unsigned char) *p); p++) {
                        if (v > (UINT64_MAX - 9) / 10)
                                return -ERANGE;
                        v = v * 10 + (uint64_t) (*p - '0');
                }
                if (strncmp(p, "ms", 2) == 0) {
                        mult = 1;
                        p += 2;
                } else if (*p == 's') {
                        mult = 1000;
                        p++;
                } else if (*p == 'm') {
                        mult = 60 * 1000;
                        p++;
                } else if (*p == 'h') {
                        mult = 3600 * 1000;
                        p++;
                } else if (*p == 'd') {
                        mult = 24 * 3600 * 1000;
                        p++;
                } else
                        return -EINVAL;
                if (v && v > UINT64_MAX / mult)
                        return -ERANGE;
                if (total > UINT64_MAX - v * mult)
                        return -ERANGE;
                total += v * mult;
                any = true;
        }
        if (!any)
                return -EINVAL;
        *ret_ms = total;
        return 0;
}

const char *format_size(uint64_t bytes, char *buf, size_t n) {
        static const char *units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
        unsigned u = 0;
        uint64_t whole = bytes;

        while (whole >= 1024 && u < 4 && whole % 1024 == 0) {
                whole /= 1024;
                u++;
        }
        if (whole >= 1024 && u < 4) {
                double d = (double) bytes;
                u = 0;
                while (d >= 1024 && u < 4) {
                        d /= 1024;
                        u++;
                }
                snprintf(buf, n, "%.1f %s", d, units[u]);
        } else
                snprintf(buf, n, "%" PRIu64 " %s", whole, units[u]);
        return buf;
}

const char *format_duration_ms(uint64_t ms, char *buf, size_t n) {
        if (ms == 0)
                snprintf(buf, n, "0");
        else if (ms % 1000)
                snprintf(buf, n, "%" PRIu64 "ms", ms);
        else if (ms % 60000 || ms < 60000)
                snprintf(buf, n, "%" PRIu64 "s", ms / 1000);
        else if (ms % 3600000 || ms < 3600000)
                snprintf(buf, n, "%" PRIu64 "m", ms / 60000);
        else
                snprintf(buf, n, "%" PRIu64 "h", ms / 3600000);
        return buf;
}

bool string_is_dns_label(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strlen(s);
        if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
                        return false;
        return true;
}
