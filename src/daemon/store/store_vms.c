/* SPDX-License-Identifier: MIT */
#include "store_vms.h"

/* ?1 is the id and ?2 "now" in every statement of exec_id(). */

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "store_sql.h"

#define VM_COLS                                                                                                     \
        "id, name, image_id, state, vcpu, memory_mib, disk_size_bytes, system_overlay_size_bytes, nat, guest_ip,"   \
        " mac, vm_dir, teardown_json, workspace_json, last_error, created_at, updated_at, last_touched_at, isolate,"  \
        " net, vmm"
#define VM_NCOLS 21 /* store_vm_get's rank comes after them */

void vm_row_done(struct vm_row *r) {
        char **strs[] = { &r->id, &r->name, &r->image_id, &r->state, &r->guest_ip, &r->mac, &r->vm_dir,
                          &r->teardown_json, &r->workspace_json, &r->last_error, &r->created_at, &r->updated_at,
                          &r->last_touched_at };
        for (size_t i = 0; i < ELEMENTSOF(strs); i++)
                free(*strs[i]);
        *r = (struct vm_row) { 0 };
}

void vm_rows_free(struct vm_row *rows, size_t n) {
        for (size_t i = 0; i < n; i++)
                vm_row_done(&rows[i]);
        free(rows);
}

static void vm_bind(sqlite3_stmt *st, const struct vm_row *r, const char *now) {
        bind_text(st, 1, r->id);
        bind_text(st, 2, r->name);
        bind_text(st, 3, r->image_id);
        bind_text(st, 4, r->state);
        sqlite3_bind_int64(st, 5, r->vcpu);
        sqlite3_bind_int64(st, 6, r->memory_mib);
        sqlite3_bind_int64(st, 7, r->disk_size_bytes);
        sqlite3_bind_int64(st, 8, r->system_overlay_size_bytes);
        sqlite3_bind_int(st, 9, r->nat);
        bind_text(st, 10, r->guest_ip);
        bind_text(st, 11, r->mac);
        bind_text(st, 12, r->vm_dir);
        bind_text(st, 13, r->teardown_json);
        bind_text(st, 14, r->workspace_json);
        bind_text(st, 15, r->last_error);
        bind_text(st, 16, r->created_at ? r->created_at : now);
        bind_text(st, 17, now);
        bind_text(st, 18, r->last_touched_at);
        sqlite3_bind_int(st, 19, r->isolate);
        bind_text(st, 20, r->user_net ? "user" : "bridge");
        bind_text(st, 21, r->firecracker ? "firecracker" : "qemu");
}

int store_vm_insert(struct store *s, const struct vm_row *r) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        _cleanup_free_ char *now = now_rfc3339();
        if (sqlite3_prepare_v2(s->db,
                               "INSERT INTO vms (" VM_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
                               " ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
                               -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        vm_bind(st, r, now);
        return step_write(s, st);
}

int store_vm_update(struct store *s, const struct vm_row *r) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        _cleanup_free_ char *now = now_rfc3339();
        if (sqlite3_prepare_v2(s->db,
                               "UPDATE vms SET name = ?2, image_id = ?3, state = ?4, vcpu = ?5, memory_mib = ?6,"
                               " disk_size_bytes = ?7, system_overlay_size_bytes = ?8, nat = ?9, guest_ip = ?10,"
                               " mac = ?11, vm_dir = ?12, teardown_json = ?13, workspace_json = ?14, last_error = ?15,"
                               " updated_at = ?17, last_touched_at = ?18, isolate = ?19, net = ?20, vmm = ?21 WHERE id = ?1",
                               -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        vm_bind(st, r, now);
        int r2 = step_write(s, st);
        return r2 == 0 && sqlite3_changes(s->db) == 0 ? -ENOENT : r2;
}

static int exec_id(struct store *s, const char *sql, const char *id, const char *a, const char *b) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        _cleanup_free_ char *now = now_rfc3339();
        if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        bind_text(st, 1, id);
        if (sqlite3_bind_parameter_count(st) >= 2)
                bind_text(st, 2, now);
        if (sqlite3_bind_parameter_count(st) >= 3)
                bind_text(st, 3, a);
        if (sqlite3_bind_parameter_count(st) >= 4)
                bind_text(st, 4, b);
        pthread_mutex_lock(&s->write_mu);
        int rc = sqlite3_step(st);
        int changed = sqlite3_changes(s->db);
        pthread_mutex_unlock(&s->write_mu);
        if (rc != SQLITE_DONE)
                return rc_to_errno(rc) ? rc_to_errno(rc) : -EIO;
        return changed ? 0 : -ENOENT;
}

int store_vm_set_state(struct store *s, const char *id, const char *state, const char *last_error) {
        return exec_id(s, "UPDATE vms SET updated_at = ?2, state = ?3, last_error = ?4 WHERE id = ?1", id, state,
                       last_error);
}

int store_vm_set_teardown(struct store *s, const char *id, const char *teardown_json) {
        return exec_id(s, "UPDATE vms SET updated_at = ?2, teardown_json = ?3 WHERE id = ?1", id, teardown_json, NULL);
}

int store_vm_set_workspace(struct store *s, const char *id, const char *workspace_json) {
        return exec_id(s, "UPDATE vms SET updated_at = ?2, workspace_json = ?3 WHERE id = ?1", id, workspace_json, NULL);
}

int store_vm_touch(struct store *s, const char *id) {
        return exec_id(s, "UPDATE vms SET last_touched_at = ?2 WHERE id = ?1", id, NULL, NULL);
}

int store_vm_delete(struct store *s, const char *id) {
        return exec_id(s, "DELETE FROM vms WHERE id = ?1", id, NULL, NULL);
}

static void vm_from(sqlite3_stmt *st, struct vm_row *r) {
        *r = (struct vm_row) {
                .id = col(st, 0),
                .name = col(st, 1),
                .image_id = col(st, 2),
                .state = col(st, 3),
                .vcpu = sqlite3_column_int64(st, 4),
                .memory_mib = sqlite3_column_int64(st, 5),
                .disk_size_bytes = sqlite3_column_int64(st, 6),
                .system_overlay_size_bytes = sqlite3_column_int64(st, 7),
                .nat = sqlite3_column_int(st, 8) != 0,
                .guest_ip = col(st, 9),
                .mac = col(st, 10),
                .vm_dir = col(st, 11),
                .teardown_json = col(st, 12),
                .workspace_json = col(st, 13),
                .last_error = col(st, 14),
                .created_at = col(st, 15),
                .updated_at = col(st, 16),
                .last_touched_at = col(st, 17),
                .isolate = sqlite3_column_int(st, 18) != 0,
                .user_net = sqlite3_column_text(st, 19) && strcmp((const char *) sqlite3_column_text(st, 19), "user") == 0,
                .firecracker = sqlite3_column_text(st, 20) &&
                               strcmp((const char *) sqlite3_column_text(st, 20), "firecracker") == 0,
        };
}

int store_vm_get(struct store *s, const char *ref, struct vm_row *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int rc;

        if (!ref || !*ref)
                return -ENOENT;
        /* exact id or name first; then a prefix of an id (LIKE is unsafe
         * with '%'/'_' in refs, so compare substr) */
        if (sqlite3_prepare_v2(s->db,
                               "SELECT " VM_COLS ", 0 AS rank FROM vms WHERE id = ?1 OR name = ?1 "
                               "UNION ALL SELECT " VM_COLS ", 1 FROM vms WHERE substr(id, 1, length(?1)) = ?1 "
                               "AND id <> ?1 AND name <> ?1 ORDER BY rank LIMIT 2",
                               -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        bind_text(st, 1, ref);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return rc == SQLITE_DONE ? -ENOENT : -EIO;
        int rank = sqlite3_column_int(st, VM_NCOLS);
        vm_from(st, ret);
        if (rank == 1 && sqlite3_step(st) == SQLITE_ROW) {
                vm_row_done(ret);
                return -ENOTUNIQ;
        }
        return 0;
}

int store_vm_list(struct store *s, struct vm_row **ret, size_t *ret_n) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        struct vm_row *rows = NULL;
        size_t n = 0;
        int rc;

        if (sqlite3_prepare_v2(s->db, "SELECT " VM_COLS " FROM vms ORDER BY created_at, name", -1, &st, NULL) !=
            SQLITE_OK)
                return -EIO;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                rows = xrealloc(rows, (n + 1) * sizeof(*rows));
                vm_from(st, &rows[n++]);
        }
        *ret = rows;
        *ret_n = n;
        return rc == SQLITE_DONE ? 0 : -EIO;
}

/* ---- port forwards ---------------------------------------------------------------- */

#define FWD_COLS "proto, host_ip, host_port, guest_port, vm_id"

static void fwd_from(sqlite3_stmt *st, struct port_spec *f) {
        const char *proto = (const char *) sqlite3_column_text(st, 0), *ip = (const char *) sqlite3_column_text(st, 1);
        *f = (struct port_spec) { .host_port = (uint16_t) sqlite3_column_int(st, 2),
                                  .guest_port = (uint16_t) sqlite3_column_int(st, 3) };
        if (!proto || port_proto_parse(proto, &f->proto) < 0)
                f->proto = PORT_TCP; /* the CHECK allows nothing else */
        snprintf(f->host_ip, sizeof(f->host_ip), "%s", ip ? ip : "");
}

int store_forward_insert(struct store *s, const char *vm_id, const struct port_spec *f, char **ret_owner) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        _cleanup_free_ char *now = now_rfc3339();
        if (ret_owner)
                *ret_owner = NULL;
        if (sqlite3_prepare_v2(s->db,
                               "INSERT INTO vm_forwards (vm_id, proto, host_ip, host_port, guest_port, created_at)"
                               " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                               -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        bind_text(st, 1, vm_id);
        bind_text(st, 2, port_proto_name(f->proto));
        bind_text(st, 3, f->host_ip);
        sqlite3_bind_int(st, 4, f->host_port);
        sqlite3_bind_int(st, 5, f->guest_port);
        bind_text(st, 6, now);
        int rc = step_write(s, st);
        if (rc == -EEXIST && ret_owner) {
                _cleanup_stmt_ sqlite3_stmt *q = NULL;
                if (sqlite3_prepare_v2(s->db,
                                       "SELECT v.name FROM vm_forwards f JOIN vms v ON v.id = f.vm_id"
                                       " WHERE f.proto = ?1 AND f.host_ip = ?2 AND f.host_port = ?3",
                                       -1, &q, NULL) == SQLITE_OK) {
                        bind_text(q, 1, port_proto_name(f->proto));
                        bind_text(q, 2, f->host_ip);
                        sqlite3_bind_int(q, 3, f->host_port);
                        if (sqlite3_step(q) == SQLITE_ROW)
                                *ret_owner = col(q, 0);
                }
        }
        return rc;
}

static bool key_matches(const struct port_spec *f, const struct port_spec *key, bool any_ip, bool any_proto) {
        return f->host_port == key->host_port && (any_ip || strcmp(f->host_ip, key->host_ip) == 0) &&
               (any_proto || f->proto == key->proto);
}

int store_forward_delete(struct store *s, const char *vm_id, const struct port_spec *key, bool any_ip, bool any_proto,
                         struct port_spec **ret_gone, size_t *ret_n) {
        struct port_spec *all = NULL, *gone = NULL;
        size_t n = 0, ng = 0;
        int rc = store_forward_list(s, vm_id, &all, NULL, &n);
        if (rc < 0)
                return rc;
        for (size_t i = 0; i < n; i++)
                if (key_matches(&all[i], key, any_ip, any_proto)) {
                        gone = xrealloc(gone, (ng + 1) * sizeof(*gone));
                        gone[ng++] = all[i];
                }
        free(all);
        /* one statement: every match goes, or none */
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        if (ng == 0)
                rc = -ENOENT;
        else if (sqlite3_prepare_v2(s->db,
                                    "DELETE FROM vm_forwards WHERE vm_id = ?1 AND host_port = ?2"
                                    " AND (?3 IS NULL OR host_ip = ?3) AND (?4 IS NULL OR proto = ?4)",
                                    -1, &st, NULL) != SQLITE_OK)
                rc = -EIO;
        else {
                bind_text(st, 1, vm_id);
                sqlite3_bind_int(st, 2, key->host_port);
                if (!any_ip)
                        bind_text(st, 3, key->host_ip);
                if (!any_proto)
                        bind_text(st, 4, port_proto_name(key->proto));
                rc = step_write(s, st);
        }
        if (rc < 0 || !ret_gone)
                free(gone);
        else {
                *ret_gone = gone;
                *ret_n = ng;
        }
        return rc;
}

int store_forward_list(struct store *s, const char *vm_id, struct port_spec **ret, char ***ret_vm_ids, size_t *ret_n) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        struct port_spec *fs = NULL;
        char **ids = NULL;
        size_t n = 0;
        int rc;
        if (sqlite3_prepare_v2(s->db,
                               vm_id ? "SELECT " FWD_COLS " FROM vm_forwards WHERE vm_id = ?1 ORDER BY host_port, proto, host_ip"
                                     : "SELECT " FWD_COLS " FROM vm_forwards ORDER BY vm_id, host_port, proto, host_ip",
                               -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        if (vm_id)
                bind_text(st, 1, vm_id);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                fs = xrealloc(fs, (n + 1) * sizeof(*fs));
                fwd_from(st, &fs[n]);
                if (ret_vm_ids) {
                        ids = xrealloc(ids, (n + 1) * sizeof(*ids));
                        ids[n] = col(st, 4);
                }
                n++;
        }
        if (rc != SQLITE_DONE) {
                free(fs);
                for (size_t i = 0; ids && i < n; i++)
                        free(ids[i]);
                free(ids);
                return -EIO;
        }
        *ret = fs;
        if (ret_vm_ids)
                *ret_vm_ids = ids;
        *ret_n = n;
        return 0;
}
