/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Ownership helpers used everywhere in banger.
 *
 * Invariants:
 *  - a variable declared with _cleanup_*_ owns what it points to; the cleanup
 *    runs when it goes out of scope;
 *  - TAKE_PTR()/TAKE_FD() hand ownership over (the variable is reset so the
 *    cleanup becomes a no-op);
 *  - every destructor used with these accepts NULL / -1.
 */

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_ __attribute__((noreturn))
#define _warn_unused_ __attribute__((warn_unused_result))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

static inline void freep(void *p) {
        free(*(void **) p);
}

static inline void closep(int *fd) {
        if (*fd >= 0) {
                int saved = errno;
                close(*fd);
                errno = saved;
        }
}

static inline void strv_freep(char ***p);

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_strv_free_ _cleanup_(strv_freep)

#define TAKE_PTR(p)                          \
        ({                                   \
                __typeof__(p) _tp_ = (p);    \
                (p) = NULL;                  \
                _tp_;                        \
        })

#define TAKE_FD(fd)                          \
        ({                                   \
                int _tf_ = (fd);             \
                (fd) = -1;                   \
                _tf_;                        \
        })

/* Declare a cleanup function for a pointer type whose destructor is `func`. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)          \
        static inline void func##p(type *p) {            \
                if (*p)                                  \
                        func(*p);                        \
        }

/* NULL-terminated string vectors (argv style). */
static inline void strv_free(char **v) {
        if (!v)
                return;
        for (char **i = v; *i; i++)
                free(*i);
        free(v);
}

static inline void strv_freep(char ***p) {
        strv_free(*p);
}

static inline const char *strempty(const char *s) {
        return s ? s : "";
}

static inline int negative_errno(void) {
        return errno > 0 ? -errno : -EIO;
}
