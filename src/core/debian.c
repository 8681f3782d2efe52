/* SPDX-License-Identifier: MIT */
#include "debian.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "parse.h"
#include "strbuf.h"

int is_sha256_hex(const char *s) {
        if (!s || strlen(s) != 64)
                return 0;
        for (int i = 0; i < 64; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return 0;
        return 1;
}

/* Iterates lines of text[0..len) without modifying it. */
struct line_iter {
        const char *p, *end;
};

static bool next_line(struct line_iter *it, const char **ret, size_t *ret_len) {
        if (it->p >= it->end)
                return false;
        const char *nl = memchr(it->p, '\n', (size_t) (it->end - it->p));
        size_t n = nl ? (size_t) (nl - it->p) : (size_t) (it->end - it->p);
        *ret = it->p;
        *ret_len = n && it->p[n - 1] == '\r' ? n - 1 : n;
        it->p += n + (nl ? 1 : 0);
        return true;
}

static char *field_value(const char *line, size_t len, const char *key) {
        size_t k = strlen(key);
        if (len <= k || strncmp(line, key, k) != 0 || line[k] != ':')
                return NULL;
        const char *v = line + k + 1;
        const char *e = line + len;
        while (v < e && (*v == ' ' || *v == '\t'))
                v++;
        while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
        return xstrndup(v, (size_t) (e - v));
}

void debian_release_done(struct release *r) {
        free(r->suite);
        free(r->codename);
        free(r->date);
        for (size_t i = 0; i < r->n_files; i++)
                free(r->files[i].path);
        free(r->files);
        *r = (struct release) { 0 };
}

int debian_release_parse(const char *text, size_t len, struct release *ret, char **ret_err) {
        struct line_iter it = { text, text + len };
        struct release r = { 0 };
        const char *line;
        size_t n;
        bool in_sha = false, saw_sha = false;

        while (next_line(&it, &line, &n)) {
                char *v;
                if (n && (line[0] == ' ' || line[0] == '\t')) {
                        if (!in_sha)
                                continue;
                        /* " <sha256> <size> <path>" */
                        char hash[65] = "", path[512] = "";
                        _cleanup_free_ char *l = xstrndup(line, n);
                        char *save = NULL;
                        char *h = strtok_r(l, " \t", &save), *sz = strtok_r(NULL, " \t", &save),
                             *p = strtok_r(NULL, " \t", &save);
                        uint64_t size;
                        if (!h || !sz || !p || strtok_r(NULL, " \t", &save) || !is_sha256_hex(h) ||
                            parse_uint64(sz, &size) < 0 || strlen(p) >= sizeof(path)) {
                                *ret_err = xstrdup("malformed line in the SHA256 section of Release");
                                debian_release_done(&r);
                                return -EINVAL;
                        }
                        memcpy(hash, h, 65);
                        r.files = xrealloc(r.files, (r.n_files + 1) * sizeof(*r.files));
                        r.files[r.n_files] = (struct release_file) { .path = xstrdup(p), .size = size };
                        memcpy(r.files[r.n_files].sha256, hash, 65);
                        r.n_files++;
                        continue;
                }
                in_sha = n == 7 && strncmp(line, "SHA256:", 7) == 0;
                if (in_sha) {
                        saw_sha = true;
                        continue;
                }
                if ((v = field_value(line, n, "Suite"))) {
                        free(r.suite);
                        r.suite = v;
                } else if ((v = field_value(line, n, "Codename"))) {
                        free(r.codename);
                        r.codename = v;
                } else if ((v = field_value(line, n, "Date"))) {
                        free(r.date);
                        r.date = v;
                }
        }
        if (!saw_sha || r.n_files == 0) {
                *ret_err = xstrdup("Release has no SHA256 section");
                debian_release_done(&r);
                return -EINVAL;
        }
        *ret = r;
        return 0;
}

const struct release_file *debian_release_find(const struct release *r, const char *path) {
        for (size_t i = 0; i < r->n_files; i++)
                if (strcmp(r->files[i].path, path) == 0)
                        return &r->files[i];
        return NULL;
}

void deb_package_done(struct deb_package *p) {
        free(p->package);
        free(p->version);
        free(p->depends);
        free(p->filename);
        *p = (struct deb_package) { 0 };
}

int debian_packages_find(const char *text, size_t len, const char *name, struct deb_package *ret, char **ret_err) {
        struct line_iter it = { text, text + len };
        const char *line;
        size_t n;
        struct deb_package p = { 0 };
        bool in = false;
        _cleanup_free_ char *size_s = NULL;

        while (next_line(&it, &line, &n)) {
                if (n == 0) {
                        if (in)
                                break;
                        continue;
                }
                char *v = field_value(line, n, "Package");
                if (v) {
                        if (in) { /* a new stanza without a blank line */
                                free(v);
                                break;
                        }
                        if (strcmp(v, name) == 0) {
                                in = true;
                                p.package = v;
                        } else
                                free(v);
                        continue;
                }
                if (!in)
                        continue;
                if ((v = field_value(line, n, "Version"))) {
                        free(p.version);
                        p.version = v;
                } else if ((v = field_value(line, n, "Depends"))) {
                        free(p.depends);
                        p.depends = v;
                } else if ((v = field_value(line, n, "Filename"))) {
                        free(p.filename);
                        p.filename = v;
                } else if ((v = field_value(line, n, "Size"))) {
                        free(size_s);
                        size_s = v;
                } else if ((v = field_value(line, n, "SHA256"))) {
                        if (is_sha256_hex(v))
                                memcpy(p.sha256, v, 65);
                        free(v);
                }
        }
        if (!in) {
                deb_package_done(&p);
                return -ENOENT;
        }
        if (!p.filename || !p.sha256[0] || !size_s || parse_uint64(size_s, &p.size) < 0 || !p.version) {
                *ret_err = xasprintf("package '%s' lacks Filename, Version, Size or SHA256 in Packages", name);
                deb_package_done(&p);
                return -EINVAL;
        }
        /* a pool path, never absolute or climbing */
        if (p.filename[0] == '/' || strstr(p.filename, "..") || strncmp(p.filename, "pool/", 5) != 0) {
                *ret_err = xasprintf("package '%s' has a suspicious Filename '%s'", name, p.filename);
                deb_package_done(&p);
                return -EINVAL;
        }
        *ret = p;
        return 0;
}

char *debian_depends_first_with_prefix(const char *depends, const char *prefix) {
        const char *s = depends;
        size_t pl = strlen(prefix);

        while (s && *s) {
                s += strspn(s, " \t,|");
                size_t n = strcspn(s, " \t,|(");
                if (n > pl && strncmp(s, prefix, pl) == 0)
                        return xstrndup(s, n);
                s = strpbrk(s, ",|");
        }
        return NULL;
}

/* "Thu, 02 Jul 2026 13:50:00 +0200" (RFC 5322, as dpkg-parsechangelog reads
 * it) as seconds since the epoch, without the locale or the time zone. */
static int rfc5322_epoch(const char *s, int64_t *ret) {
        static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
        int day, year, hh, mm, ss, zone, n = 0;
        char mon[4], sign;
        if (strlen(s) > 64 || sscanf(s, "%*3[A-Za-z], %d %3s %d %d:%d:%d %c%4d%n", &day, mon, &year, &hh, &mm, &ss,
                                     &sign, &zone, &n) != 8 || (sign != '+' && sign != '-') || s[n] != '\0')
                return -EINVAL;
        const char *m = strlen(mon) == 3 ? strstr(months, mon) : NULL;
        if (!m || (m - months) % 3 || day < 1 || day > 31 || year < 1970 || year > 9999 || hh > 23 || mm > 59 ||
            ss > 60 || hh < 0 || mm < 0 || ss < 0 || zone < 0 || zone % 100 > 59 || zone > 1400)
                return -EINVAL;
        /* days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil) */
        int y = year, mo = (int) ((m - months) / 3) + 1;
        y -= mo <= 2;
        int era = y / 400, yoe = y - era * 400, doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + day - 1;
        int64_t days = (int64_t) era * 146097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719468;
        int64_t off = (int64_t) (zone / 100 * 3600 + zone % 100 * 60) * (sign == '-' ? -1 : 1);
        *ret = days * 86400 + hh * 3600 + mm * 60 + ss - off;
        return 0;
}

int debian_changelog_date(const char *text, size_t len, int64_t *ret_epoch) {
        struct line_iter it = { text, text + len };
        const char *line;
        size_t n;
        while (next_line(&it, &line, &n)) {
                if (n < 4 || strncmp(line, " -- ", 4) != 0)
                        continue;
                const char *gap = memmem(line, n, ">  ", 3);
                if (!gap)
                        return -EINVAL;
                _cleanup_free_ char *date = xstrndup(gap + 3, n - (size_t) (gap + 3 - line));
                while (*date && (date[strlen(date) - 1] == ' ' || date[strlen(date) - 1] == '\t'))
                        date[strlen(date) - 1] = '\0';
                return rfc5322_epoch(date, ret_epoch);
        }
        return -ENOENT;
}
