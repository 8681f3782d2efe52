/* SPDX-License-Identifier: MIT */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "fsutil.h"
#include "ids.h"
#include "macro.h"
#include "strbuf.h"

static const char *const state_names[_STORE_SCHEMA_MAX] = {
        [STORE_SCHEMA_MISSING] = "missing",  [STORE_SCHEMA_UP_TO_DATE] = "up_to_date",
        [STORE_SCHEMA_PENDING] = "pending",  [STORE_SCHEMA_NEWER] = "newer",
        [STORE_SCHEMA_UNREADABLE] = "unreadable",
};

const char *store_schema_state_to_string(enum store_schema_state s) {
        return s < _STORE_SCHEMA_MAX ? state_names[s] : "unknown";
}

static void sqlite3_closep(sqlite3 **db) {
        if (*db)
                sqlite3_close_v2(*db);
}

static void sqlite3_finalizep(sqlite3_stmt **st) {
        if (*st)
                sqlite3_finalize(*st);
}

void store_schema_info_done(struct store_schema_info *i) {
        free(i->detail);
        i->detail = NULL;
}

static int latest_known(void) {
        size_t n;
        const struct migration *m = store_migrations(&n);
        return n ? m[n - 1].id : 0;
}

static bool is_known(int id) {
        size_t n;
        const struct migration *m = store_migrations(&n);
        for (size_t i = 0; i < n; i++)
                if (m[i].id == id)
                        return true;
        return false;
}

static int classify(sqlite3 *db, struct store_schema_info *info) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int ntables = 0, has_migrations = 0, rc;
        int applied_known = 0, max_applied = 0;

        rc = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *res = (const char *) sqlite3_column_text(st, 0);
                if (!res || strcmp(res, "ok") != 0) {
                        info->state = STORE_SCHEMA_UNREADABLE;
                        info->detail = xasprintf("integrity check failed: %s", res ? res : "?");
                        return 0;
                }
        }
        if (rc != SQLITE_ROW) {
                info->state = STORE_SCHEMA_UNREADABLE;
                info->detail = xasprintf("not a readable SQLite database: %s", sqlite3_errmsg(db));
                return 0;
        }
        sqlite3_finalize(TAKE_PTR(st));

        rc = sqlite3_prepare_v2(db,
                                "SELECT count(*), sum(name = 'schema_migrations') FROM sqlite_master "
                                "WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
                                -1, &st, NULL);
        if (rc != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
                info->state = STORE_SCHEMA_UNREADABLE;
                info->detail = xasprintf("cannot read schema: %s", sqlite3_errmsg(db));
                return 0;
        }
        ntables = sqlite3_column_int(st, 0);
        has_migrations = sqlite3_column_int(st, 1);
        sqlite3_finalize(TAKE_PTR(st));

        if (ntables == 0) {
                info->state = STORE_SCHEMA_MISSING;
                info->pending = info->latest_known;
                info->detail = xasprintf("empty database; %d migration(s) will be applied", info->pending);
                return 0;
        }
        if (!has_migrations) {
                info->state = STORE_SCHEMA_UNREADABLE;
                info->detail = xstrdup("has tables but no schema_migrations: not a banger database");
                return 0;
        }
        rc = sqlite3_prepare_v2(db, "SELECT id FROM schema_migrations ORDER BY id", -1, &st, NULL);
        if (rc != SQLITE_OK) {
                info->state = STORE_SCHEMA_UNREADABLE;
                info->detail = xasprintf("cannot read schema_migrations: %s", sqlite3_errmsg(db));
                return 0;
        }
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                int id = sqlite3_column_int(st, 0);
                if (id > max_applied)
                        max_applied = id;
                if (is_known(id))
                        applied_known++;
        }
        if (rc != SQLITE_DONE) {
                info->state = STORE_SCHEMA_UNREADABLE;
                info->detail = xasprintf("cannot read schema_migrations: %s", sqlite3_errmsg(db));
                return 0;
        }
        info->latest_applied = max_applied;
        if (max_applied > info->latest_known) {
                info->state = STORE_SCHEMA_NEWER;
                info->detail = xasprintf("database has migration %d; this binary knows up to %d", max_applied,
                                         info->latest_known);
                return 0;
        }
        size_t n;
        store_migrations(&n);
        info->pending = (int) n - applied_known;
        info->state = info->pending ? STORE_SCHEMA_PENDING : STORE_SCHEMA_UP_TO_DATE;
        info->detail = info->pending ? xasprintf("%d migration(s) pending (at %d, latest %d)", info->pending,
                                                 max_applied, info->latest_known)
                                     : xasprintf("up to date at migration %d", max_applied);
        return 0;
}

int store_inspect(const char *path, struct store_schema_info *ret) {
        _cleanup_(sqlite3_closep) sqlite3 *db = NULL;
        struct stat st;
        int rc;

        *ret = (struct store_schema_info) { .latest_known = latest_known() };
        if (stat(path, &st) < 0) {
                if (errno != ENOENT) {
                        ret->state = STORE_SCHEMA_UNREADABLE;
                        ret->detail = xasprintf("%s: %s", path, strerror(errno));
                        return 0;
                }
                ret->state = STORE_SCHEMA_MISSING;
                ret->pending = ret->latest_known;
                ret->detail = xasprintf("no database yet; %d migration(s) will be applied", ret->pending);
                return 0;
        }
        if (!S_ISREG(st.st_mode)) {
                ret->state = STORE_SCHEMA_UNREADABLE;
                ret->detail = xasprintf("%s is not a regular file", path);
                return 0;
        }
        /* Looking must not write: with no -wal beside it nobody has the file open
         * in WAL mode, and an immutable open creates no -wal/-shm either. */
        _cleanup_free_ char *wal = xasprintf("%s-wal", path), *uri = NULL;
        if (access(wal, F_OK) < 0) {
                struct strbuf u = STRBUF_INIT;
                strbuf_addstr(&u, "file:");
                for (const char *c = path; *c; c++)
                        if (*c == '%' || *c == '?' || *c == '#')
                                strbuf_addf(&u, "%%%02X", (unsigned char) *c);
                        else
                                strbuf_addch(&u, *c);
                strbuf_addstr(&u, "?immutable=1");
                uri = strbuf_detach(&u, NULL);
        }
        rc = sqlite3_open_v2(uri ? uri : path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX | SQLITE_OPEN_URI, NULL);
        if (rc != SQLITE_OK) {
                ret->state = STORE_SCHEMA_UNREADABLE;
                ret->detail = xasprintf("cannot open: %s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
                return 0;
        }
        return classify(db, ret);
}

static int exec_sql(sqlite3 *db, const char *sql, struct op_error *e) {
        char *msg = NULL;

        if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
                op_fail(e, -EIO, "%s", msg ? msg : sqlite3_errmsg(db));
                sqlite3_free(msg);
                return -EIO;
        }
        return 0;
}

static int apply_migrations(sqlite3 *db, int migrate_to, struct op_error *e) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *check = NULL, *ins = NULL;
        size_t n;
        const struct migration *m = store_migrations(&n);
        _cleanup_free_ char *now = now_rfc3339();
        int r;

        r = exec_sql(db,
                     "BEGIN IMMEDIATE;"
                     "CREATE TABLE IF NOT EXISTS schema_migrations ("
                     "  id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL);",
                     e);
        if (r < 0)
                goto fail;
        if (sqlite3_prepare_v2(db, "SELECT 1 FROM schema_migrations WHERE id = ?", -1, &check, NULL) != SQLITE_OK ||
            sqlite3_prepare_v2(db, "INSERT INTO schema_migrations (id, name, applied_at) VALUES (?, ?, ?)", -1, &ins,
                               NULL) != SQLITE_OK) {
                r = op_fail(e, -EIO, "%s", sqlite3_errmsg(db));
                goto fail;
        }
        for (size_t i = 0; i < n; i++) {
                if (migrate_to && m[i].id > migrate_to)
                        break;
                sqlite3_reset(check);
                sqlite3_bind_int(check, 1, m[i].id);
                if (sqlite3_step(check) == SQLITE_ROW)
                        continue;
                r = exec_sql(db, m[i].sql, e);
                if (r < 0) {
                        op_prefix(e, "migration %d (%s)", m[i].id, m[i].name);
                        goto fail;
                }
                sqlite3_reset(ins);
                sqlite3_bind_int(ins, 1, m[i].id);
                sqlite3_bind_text(ins, 2, m[i].name, -1, SQLITE_STATIC);
                sqlite3_bind_text(ins, 3, now, -1, SQLITE_STATIC);
                if (sqlite3_step(ins) != SQLITE_DONE) {
                        r = op_fail(e, -EIO, "%s", sqlite3_errmsg(db));
                        goto fail;
                }
        }
        r = exec_sql(db, "COMMIT", e);
        if (r < 0)
                goto fail;
        return 0;
fail:
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return op_prefix(e, "applying migrations");
}

/* VM directories (16 hex digits) below dir. */
static int count_vm_dirs(const char *dir) {
        _cleanup_(closedirp) DIR *d = dir ? opendir(dir) : NULL;
        struct dirent *de;
        int n = 0;
        while (d && (de = readdir(d)))
                n += is_hex_id(de->d_name, 8);
        return n;
}

static int check_usable(const char *path, const char *vms_dir, struct op_error *e) {
        struct store_schema_info info;
        int r = 0, n;
        store_inspect(path, &info);
        if (info.state == STORE_SCHEMA_NEWER || info.state == STORE_SCHEMA_UNREADABLE)
                r = op_fail(e, info.state == STORE_SCHEMA_NEWER ? -EPROTO : -EBADMSG,
                            "refusing to use %s: %s (the file was left untouched)", path, info.detail);
        else if (info.state == STORE_SCHEMA_MISSING && (n = count_vm_dirs(vms_dir)) > 0)
                r = op_fail(e, -EBADMSG,
                            "refusing to start with %s %s: %s holds %d VM(s) it would forget (their QEMU "
                            "processes, TAPs and addresses would be unmanaged); restore the database, or move "
                            "both aside to start afresh",
                            access(path, F_OK) == 0 ? "an empty" : "no", path, vms_dir, n);
        store_schema_info_done(&info);
        return r;
}

int store_open(const char *path, int migrate_to, const char *vms_dir, struct store **ret, struct op_error *e) {
        _cleanup_(sqlite3_closep) sqlite3 *db = NULL;
        int rc, r;

        if ((r = check_usable(path, vms_dir, e)) < 0)
                return r;

        rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
        if (rc != SQLITE_OK)
                return op_fail(e, -EIO, "cannot open %s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_busy_timeout(db, 5000);
        r = exec_sql(db, "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;", e);
        if (r < 0)
                return op_prefix(e, "configuring %s", path);
        chmod(path, 0600);
        r = apply_migrations(db, migrate_to, e);
        if (r < 0)
                return r;
        struct store *s = xcalloc(1, sizeof(*s));
        s->db = TAKE_PTR(db);
        pthread_mutex_init(&s->write_mu, NULL);
        *ret = s;
        return 0;
}

void store_close(struct store *s) {
        if (!s)
                return;
        sqlite3_close_v2(s->db);
        pthread_mutex_destroy(&s->write_mu);
        free(s);
}
