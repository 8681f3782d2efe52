/* SPDX-License-Identifier: MIT */
#pragma once

/* Internal helpers for the store's row modules (not for other subsystems). */

#include <errno.h>
#include <sqlite3.h>

#include "macro.h"
#include "store.h"
#include "strbuf.h"

static inline void finalizep(sqlite3_stmt **st) {
        if (*st)
                sqlite3_finalize(*st);
}
#define _cleanup_stmt_ _cleanup_(finalizep)

static inline char *col(sqlite3_stmt *st, int i) {
        const unsigned char *t = sqlite3_column_text(st, i);
        return t ? xstrdup((const char *) t) : NULL;
}

static inline void bind_text(sqlite3_stmt *st, int i, const char *v) {
        if (v)
                sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
        else
                sqlite3_bind_null(st, i);
}

static inline int rc_to_errno(int rc) {
        switch (rc) {
        case SQLITE_OK:
        case SQLITE_DONE:
        case SQLITE_ROW:
                return 0;
        case SQLITE_CONSTRAINT:
                return -EEXIST;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        default:
                return -EIO;
        }
}

static inline int step_write(struct store *s, sqlite3_stmt *st) {
        pthread_mutex_lock(&s->write_mu);
        int rc = sqlite3_step(st);
        pthread_mutex_unlock(&s->write_mu);
        return rc == SQLITE_DONE ? 0 : rc_to_errno(rc);
}

