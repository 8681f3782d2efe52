/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A growable string buffer (after git's strbuf).
 *
 * Invariants: `buf` is never NULL and always NUL-terminated, also for a
 * zero-initialised-then-strbuf_init()ed buffer; `len` excludes the NUL.
 * Allocation failure aborts (out of memory is not an error we recover from).
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

struct strbuf {
        size_t alloc;
        size_t len;
        char *buf;
};

#define STRBUF_INIT { 0, 0, strbuf_slopbuf }
extern char strbuf_slopbuf[];

void strbuf_init(struct strbuf *sb, size_t hint);
void strbuf_release(struct strbuf *sb);
void strbuf_reset(struct strbuf *sb);
/* Hand the string over to the caller (never NULL); the strbuf is reset. */
char *strbuf_detach(struct strbuf *sb, size_t *ret_len);
void strbuf_grow(struct strbuf *sb, size_t extra);
void strbuf_add(struct strbuf *sb, const void *data, size_t len);
void strbuf_addstr(struct strbuf *sb, const char *s);
void strbuf_addch(struct strbuf *sb, char c);
void strbuf_addf(struct strbuf *sb, const char *fmt, ...) _printf_(2, 3);
void strbuf_vaddf(struct strbuf *sb, const char *fmt, va_list ap) _printf_(2, 0);
void strbuf_setlen(struct strbuf *sb, size_t len);
void strbuf_rtrim(struct strbuf *sb);

static inline void strbuf_releasep(struct strbuf *sb) {
        strbuf_release(sb);
}
#define _cleanup_strbuf_ _cleanup_(strbuf_releasep)

/* Formatting helpers returning malloc'd strings (abort on OOM). */
char *xasprintf(const char *fmt, ...) _printf_(1, 2);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xmalloc(size_t n);
/* Control characters (and DEL) in s replaced by `with`: text a peer, a guest
 * or a registry wrote, on its way to a terminal or a log. Returns s. */
char *str_defuse(char *s, char with);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
