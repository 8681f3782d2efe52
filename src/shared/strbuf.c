/* SPDX-License-Identifier: MIT */
#include "strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char strbuf_slopbuf[1];

static _noreturn_ void oom(void) {
        fputs("banger: out of memory\n", stderr);
        abort();
}

void *xmalloc(size_t n) {
        void *p = malloc(n ? n : 1);
        if (!p)
                oom();
        return p;
}

void *xcalloc(size_t n, size_t size) {
        void *p = calloc(n ? n : 1, size ? size : 1);
        if (!p)
                oom();
        return p;
}

void *xrealloc(void *p, size_t n) {
        void *q = realloc(p, n ? n : 1);
        if (!q)
                oom();
        return q;
}

char *xstrdup(const char *s) {
        char *p = strdup(s);
        if (!p)
                oom();
        return p;
}

char *xstrndup(const char *s, size_t n) {
        char *p = strndup(s, n);
        if (!p)
                oom();
        return p;
}

char *xasprintf(const char *fmt, ...) {
        va_list ap;
        char *p;

        va_start(ap, fmt);
        if (vasprintf(&p, fmt, ap) < 0)
                oom();
        va_end(ap);
        return p;
}

void strbuf_init(struct strbuf *sb, size_t hint) {
        sb->alloc = sb->len = 0;
        sb->buf = strbuf_slopbuf;
        if (hint)
                strbuf_grow(sb, hint);
}

void strbuf_release(struct strbuf *sb) {
        if (sb->alloc)
                free(sb->buf);
        strbuf_init(sb, 0);
}

void strbuf_reset(struct strbuf *sb) {
        strbuf_setlen(sb, 0);
}

char *strbuf_detach(struct strbuf *sb, size_t *ret_len) {
        char *r;

        if (ret_len)
                *ret_len = sb->len;
        r = sb->alloc ? sb->buf : xstrdup("");
        strbuf_init(sb, 0);
        return r;
}

void strbuf_grow(struct strbuf *sb, size_t extra) {
        size_t need;

        if (extra > SIZE_MAX - sb->len - 1)
                oom();
        need = sb->len + extra + 1;
        if (need <= sb->alloc)
                return;
        size_t n = sb->alloc ? sb->alloc : 64;
        while (n < need)
                n = n > SIZE_MAX / 2 ? need : n * 2;
        if (!sb->alloc) {
                sb->buf = xmalloc(n);
                sb->buf[0] = '\0';
        } else
                sb->buf = xrealloc(sb->buf, n);
        sb->alloc = n;
}

void strbuf_setlen(struct strbuf *sb, size_t len) {
        if (!sb->alloc)
                return; /* only 0 is valid on the slop buffer */
        if (len > sb->alloc - 1)
                len = sb->alloc - 1;
        sb->len = len;
        sb->buf[len] = '\0';
}

void strbuf_add(struct strbuf *sb, const void *data, size_t len) {
        if (!len)
                return;
        strbuf_grow(sb, len);
        memcpy(sb->buf + sb->len, data, len);
        sb->len += len;
        sb->buf[sb->len] = '\0';
}

void strbuf_addstr(struct strbuf *sb, const char *s) {
        strbuf_add(sb, s, strlen(s));
}

void strbuf_addch(struct strbuf *sb, char c) {
        strbuf_add(sb, &c, 1);
}

void strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap) {
        va_list cp;
        int n;

        strbuf_grow(sb, 64);
        va_copy(cp, ap);
        n = vsnprintf(sb->buf + sb->len, sb->alloc - sb->len, fmt, cp);
        va_end(cp);
        if (n < 0)
                return;
        if ((size_t) n >= sb->alloc - sb->len) {
                strbuf_grow(sb, (size_t) n);
                n = vsnprintf(sb->buf + sb->len, sb->alloc - sb->len, fmt, ap);
        }
        sb->len += (size_t) n;
}

void strbuf_addf(struct strbuf *sb, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        strbuf_vaddf(sb, fmt, ap);
        va_end(ap);
}

void strbuf_rtrim(struct strbuf *sb) {
        size_t n = sb->len;
        while (n > 0 && (sb->buf[n - 1] == ' ' || sb->buf[n - 1] == '\n' || sb->buf[n - 1] == '\t' ||
                         sb->buf[n - 1] == '\r'))
                n--;
        strbuf_setlen(sb, n);
}

char *str_defuse(char *s, char with) {
        for (char *c = s; c && *c; c++)
                if ((unsigned char) *c < 0x20 || *c == 0x7f)
                        *c = with;
        return s;
}
