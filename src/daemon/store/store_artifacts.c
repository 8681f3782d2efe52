/* SPDX-License-Identifier: MIT */
#include "store_artifacts.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "store_sql.h"
#include "strbuf.h"

void kernel_row_done(struct kernel_row *r) {
        free(r->name);
        free(r->distro);
        free(r->arch);
        free(r->kernel_version);
        free(r->dir);
        free(r->source);
        free(r->imported_at);
        *r = (struct kernel_row) { 0 };
}

void image_row_done(struct image_row *r) {
        free(r->id);
        free(r->name);
        free(r->rootfs_path);
        free(r->work_seed_path);
        free(r->kernel_name);
        free(r->kernel_path);
        free(r->initrd_path);
        free(r->init_mode);
        free(r->source);
        free(r->created_at);
        *r = (struct image_row) { 0 };
}

int store_kernel_put(struct store *s, const struct kernel_row *r) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(s->db,
                               "INSERT INTO kernels (name, distro, arch, kernel_version, dir, source, imported_at)"
                               " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(name) DO UPDATE SET"
                               " distro = ?2, arch = ?3, kernel_version = ?4, dir = ?5, source = ?6, imported_at = ?7",
                               -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        const char *v[] = { r->name, r->distro, r->arch, r->kernel_version, r->dir, r->source, r->imported_at };
        for (int i = 0; i < 7; i++)
                bind_text(st, i + 1, v[i] ? v[i] : "");
        return step_write(s, st);
}

static void kernel_from(sqlite3_stmt *st, struct kernel_row *r) {
        *r = (struct kernel_row) { col(st, 0), col(st, 1), col(st, 2), col(st, 3), col(st, 4), col(st, 5), col(st, 6) };
}

#define KERNEL_COLS "name, distro, arch, kernel_version, dir, source, imported_at"

int store_kernel_get(struct store *s, const char *name, struct kernel_row *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(s->db, "SELECT " KERNEL_COLS " FROM kernels WHERE name = ?", -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        bind_text(st, 1, name);
        int rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return rc == SQLITE_DONE ? -ENOENT : -EIO;
        kernel_from(st, ret);
        return 0;
}

int store_kernel_list(struct store *s, struct kernel_row **ret, size_t *ret_n) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        struct kernel_row *rows = NULL;
        size_t n = 0;
        int rc;

        if (sqlite3_prepare_v2(s->db, "SELECT " KERNEL_COLS " FROM kernels ORDER BY name", -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                rows = xrealloc(rows, (n + 1) * sizeof(*rows));
                kernel_from(st, &rows[n++]);
        }
        *ret = rows;
        *ret_n = n;
        return rc == SQLITE_DONE ? 0 : -EIO;
}

int store_kernel_delete(struct store *s, const char *name) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(s->db, "DELETE FROM kernels WHERE name = ?", -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        bind_text(st, 1, name);
        int r = step_write(s, st);
        return r == -EEXIST ? -EBUSY : r; /* a constraint here is a referencing image */
}

int store_kernel_image_refs(struct store *s, const char *name, char **ret_first_image, int *ret_count) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(s->db, "SELECT count(*), min(name) FROM images WHERE kernel_name = ?", -1, &st, NULL) !=
            SQLITE_OK)
                return -EIO;
        bind_text(st, 1, name);
        if (sqlite3_step(st) != SQLITE_ROW)
                return -EIO;
        *ret_count = sqlite3_column_int(st, 0);
        *ret_first_image = col(st, 1);
        return 0;
}

#define IMAGE_COLS                                                                                                  \
        "id, name, managed, rootfs_path, work_seed_path, kernel_name, kernel_path, initrd_path, init_mode,"         \
        " rootfs_size_bytes, source, created_at"

static void image_bind(sqlite3_stmt *st, const struct image_row *r) {
        bind_text(st, 1, r->id);
        bind_text(st, 2, r->name);
        sqlite3_bind_int(st, 3, r->managed);
        bind_text(st, 4, r->rootfs_path);
        bind_text(st, 5, r->work_seed_path);
        bind_text(st, 6, r->kernel_name);
        bind_text(st, 7, r->kernel_path);
        bind_text(st, 8, r->initrd_path);
        bind_text(st, 9, r->init_mode ? r->init_mode : "systemd");
        sqlite3_bind_int64(st, 10, r->rootfs_size_bytes);
        bind_text(st, 11, r->source ? r->source : "");
        bind_text(st, 12, r->created_at);
}

int store_image_insert(struct store *s, const struct image_row *r) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(s->db,
                               "INSERT INTO images (" IMAGE_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                               -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        image_bind(st, r);
        return step_write(s, st);
}

int store_image_update(struct store *s, const struct image_row *r) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(s->db,
                               "UPDATE images SET name = ?2, managed = ?3, rootfs_path = ?4, work_seed_path = ?5,"
                               " kernel_name = ?6, kernel_path = ?7, initrd_path = ?8, init_mode = ?9,"
                               " rootfs_size_bytes = ?10, source = ?11, created_at = ?12 WHERE id = ?1",
                               -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        image_bind(st, r);
        return step_write(s, st);
}

static void image_from(sqlite3_stmt *st, struct image_row *r) {
        *r = (struct image_row) {
                .id = col(st, 0),          .name = col(st, 1),        .managed = sqlite3_column_int(st, 2) != 0,
                .rootfs_path = col(st, 3), .work_seed_path = col(st, 4), .kernel_name = col(st, 5),
                .kernel_path = col(st, 6), .initrd_path = col(st, 7), .init_mode = col(st, 8),
                .rootfs_size_bytes = sqlite3_column_int64(st, 9), .source = col(st, 10), .created_at = col(st, 11),
        };
}

int store_image_get(struct store *s, const char *name_or_id, struct image_row *ret) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(s->db, "SELECT " IMAGE_COLS " FROM images WHERE name = ?1 OR id = ?1 ORDER BY name = ?1 DESC LIMIT 1",
                               -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        bind_text(st, 1, name_or_id);
        int rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return rc == SQLITE_DONE ? -ENOENT : -EIO;
        image_from(st, ret);
        return 0;
}

int store_image_list(struct store *s, struct image_row **ret, size_t *ret_n) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        struct image_row *rows = NULL;
        size_t n = 0;
        int rc;

        if (sqlite3_prepare_v2(s->db, "SELECT " IMAGE_COLS " FROM images ORDER BY name", -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                rows = xrealloc(rows, (n + 1) * sizeof(*rows));
                image_from(st, &rows[n++]);
        }
        *ret = rows;
        *ret_n = n;
        return rc == SQLITE_DONE ? 0 : -EIO;
}

int store_image_delete(struct store *s, const char *id) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(s->db, "DELETE FROM images WHERE id = ?", -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        bind_text(st, 1, id);
        int r = step_write(s, st);
        return r == -EEXIST ? -EBUSY : r;
}

int store_image_vm_refs(struct store *s, const char *id, int *ret_count) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(s->db, "SELECT count(*) FROM vms WHERE image_id = ?", -1, &st, NULL) != SQLITE_OK)
                return -EIO;
        bind_text(st, 1, id);
        if (sqlite3_step(st) != SQLITE_ROW)
                return -EIO;
        *ret_count = sqlite3_column_int(st, 0);
        return 0;
}
