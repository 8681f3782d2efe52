/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * The SQLite store (state.db): WAL, busy timeout, foreign keys, and
 * forward-only numbered migrations recorded in schema_migrations.
 *
 * Durable intent lives here (VM spec, identity, derived paths, workspace);
 * transient handles (PIDs, TAP names) do not: they live in per-VM
 * handles.json files.
 *
 * Locking: the connection is opened in serialized mode; `write_mu` (a leaf
 * lock owned by the store) serialises multi-statement write transactions.
 */

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>

#include "op_error.h"

struct migration {
        int id;
        const char *name;
        const char *sql;
};

/* The compiled-in migrations, ids 1..n in order. */
const struct migration *store_migrations(size_t *ret_n);

enum store_schema_state {
        STORE_SCHEMA_MISSING,    /* no file, or an empty one: migrations will create it */
        STORE_SCHEMA_UP_TO_DATE,
        STORE_SCHEMA_PENDING,    /* older, and we know how to migrate it */
        STORE_SCHEMA_NEWER,      /* applied migrations this binary does not know */
        STORE_SCHEMA_UNREADABLE, /* corrupt, not SQLite, or not banger's */
        _STORE_SCHEMA_MAX,
};

struct store_schema_info {
        enum store_schema_state state;
        int latest_applied; /* highest applied id, 0 for none */
        int latest_known;
        int pending;        /* known migrations not yet applied */
        char *detail;       /* owned; human explanation */
};

const char *store_schema_state_to_string(enum store_schema_state s);

/* Opens the file read-only (never creates or changes it) and classifies it. */
int store_inspect(const char *path, struct store_schema_info *ret);
void store_schema_info_done(struct store_schema_info *i);

struct store {
        sqlite3 *db;
        pthread_mutex_t write_mu; /* leaf */
};

/*
 * Opens (creating when missing) and migrates. Refuses NEWER and UNREADABLE
 * databases without writing to them: -EPROTO / -EBADMSG with *ret_err.
 * A missing or empty database next to a `vms_dir` (may be NULL) that holds
 * VM directories is refused too (-EBADMSG): starting empty would forget
 * VMs whose QEMUs, TAPs and addresses are still there. A refusal leaves no
 * -wal/-shm beside the file that were not there before.
 * `migrate_to` limits the migrations applied (0: all) — for tests.
 */
_warn_unused_ int store_open(const char *path, int migrate_to, const char *vms_dir, struct store **ret,
                             struct op_error *e);
void store_close(struct store *s);
