/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "store/store.h"
#include "store/store_artifacts.h"
#include "store/store_vms.h"
#include "strbuf.h"

static char dir[64];

static int setup(void **state) {
        (void) state;
        snprintf(dir, sizeof(dir), "/tmp/banger-store-XXXXXX");
        return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
        (void) state;
        /* a test temp dir: remove the files we know of */
        const char *names[] = { "a.db", "a.db-wal", "a.db-shm", "b.db", "c.db", "d.db", "e.db", "e.db-wal",
                                "e.db-shm", "f.db", "f.db-wal", "f.db-shm", "g.db", "g.db-wal", "g.db-shm", "h.db", "h.db-wal", "h.db-shm",
                                "v.db", "v.db-wal", "v.db-shm", "w.db", "w.db-wal", "w.db-shm" };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                char *p = path_join(dir, names[i]);
                unlink(p);
                free(p);
        }
        rmdir(dir);
        return 0;
}

static enum store_schema_state inspect(const char *p, int *pending) {
        struct store_schema_info i;
        assert_int_equal(store_inspect(p, &i), 0);
        enum store_schema_state s = i.state;
        if (pending)
                *pending = i.pending;
        store_schema_info_done(&i);
        return s;
}

static void test_migrate_fresh(void **state) {
        (void) state;
        char *p = path_join(dir, "a.db");
        struct store *s = NULL;
        struct op_error err = OP_ERROR_INIT;
        int pending;
        size_t n;

        store_migrations(&n);
        assert_int_equal(inspect(p, &pending), STORE_SCHEMA_MISSING);
        assert_int_equal(pending, (int) n);
        assert_int_equal(store_open(p, 0, NULL, &s, &err), 0);
        sqlite3_stmt *st;
        assert_int_equal(sqlite3_prepare_v2(s->db, "SELECT count(*) FROM schema_migrations", -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int(st, 0), (int) n);
        sqlite3_finalize(st);
        assert_int_equal(sqlite3_prepare_v2(s->db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_string_equal((const char *) sqlite3_column_text(st, 0), "wal");
        sqlite3_finalize(st);
        /* foreign keys are on: a VM cannot point at a missing image */
        char *msg = NULL;
        assert_int_not_equal(sqlite3_exec(s->db,
                                          "INSERT INTO vms (id, name, image_id, state, vcpu, memory_mib, disk_size_bytes,"
                                          " system_overlay_size_bytes, vm_dir, created_at, updated_at) VALUES"
                                          " ('1', 'x', 'nope', 'created', 1, 1, 1, 1, '/d', 't', 't')",
                                          NULL, NULL, &msg),
                             SQLITE_OK);
        sqlite3_free(msg);
        store_close(s);
        assert_int_equal(inspect(p, NULL), STORE_SCHEMA_UP_TO_DATE);
        /* idempotent re-open */
        assert_int_equal(store_open(p, 0, NULL, &s, &err), 0);
        store_close(s);
        free(p);
}

static void test_pending(void **state) {
        (void) state;
        char *p = path_join(dir, "e.db");
        struct store *s = NULL;
        struct op_error err = OP_ERROR_INIT;
        int pending;

        assert_int_equal(store_open(p, 1, NULL, &s, &err), 0);
        store_close(s);
        assert_int_equal(inspect(p, &pending), STORE_SCHEMA_PENDING);
        assert_true(pending >= 1);
        assert_int_equal(store_open(p, 0, NULL, &s, &err), 0);
        store_close(s);
        assert_int_equal(inspect(p, NULL), STORE_SCHEMA_UP_TO_DATE);
        free(p);
}

/* A database at p that a newer banger (migration 999) wrote. */
static void make_newer(const char *p) {
        struct store *s = NULL;
        struct op_error err = OP_ERROR_INIT;
        assert_int_equal(store_open(p, 0, NULL, &s, &err), 0);
        assert_int_equal(sqlite3_exec(s->db, "INSERT INTO schema_migrations VALUES (999, 'future', 'x')", NULL, NULL,
                                      NULL),
                         SQLITE_OK);
        store_close(s);
}

static void test_newer_refused(void **state) {
        (void) state;
        char *p = path_join(dir, "f.db");
        struct store *s = NULL;
        struct op_error err = OP_ERROR_INIT;

        make_newer(p);
        assert_int_equal(inspect(p, NULL), STORE_SCHEMA_NEWER);
        assert_int_equal(store_open(p, 0, NULL, &s, &err), -EPROTO);
        assert_non_null(strstr(op_error_message(&err), "999"));
        op_error_done(&err);
        free(p);
}

static void file_bytes(const char *p, char **ret, size_t *len) {
        assert_int_equal(read_file(p, 1 << 20, ret, len), 0);
}

static void test_corrupt_untouched(void **state) {
        (void) state;
        char *p = path_join(dir, "b.db");
        const char junk[] = "this is not a database, it is a text file that happens to be here\n";
        char *before, *after;
        struct op_error err = OP_ERROR_INIT;
        size_t lb, la;
        struct store *s = NULL;

        assert_int_equal(write_file_atomic(p, junk, sizeof(junk) - 1, 0600), 0);
        assert_int_equal(inspect(p, NULL), STORE_SCHEMA_UNREADABLE);
        assert_int_equal(store_open(p, 0, NULL, &s, &err), -EBADMSG);
        assert_non_null(strstr(op_error_message(&err), "untouched"));
        op_error_done(&err);
        file_bytes(p, &after, &la);
        assert_int_equal(la, sizeof(junk) - 1);
        assert_memory_equal(after, junk, la);
        free(after);
        free(p);

        /* A real SQLite file that is not ours. */
        p = path_join(dir, "c.db");
        sqlite3 *db;
        assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, "CREATE TABLE t(x); INSERT INTO t VALUES (1);", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
        file_bytes(p, &before, &lb);
        assert_int_equal(inspect(p, NULL), STORE_SCHEMA_UNREADABLE);
        assert_int_equal(store_open(p, 0, NULL, &s, &err), -EBADMSG);
        assert_non_null(strstr(op_error_message(&err), "not a banger database"));
        op_error_done(&err);
        file_bytes(p, &after, &la);
        assert_int_equal(la, lb);
        assert_memory_equal(after, before, la);
        free(before);
        free(after);
        free(p);
}

static void test_empty_file(void **state) {
        (void) state;
        char *p = path_join(dir, "g.db");
        struct store *s = NULL;
        struct op_error err = OP_ERROR_INIT;
        assert_int_equal(write_file_atomic(p, "", 0, 0600), 0);
        assert_int_equal(inspect(p, NULL), STORE_SCHEMA_MISSING);
        assert_int_equal(store_open(p, 0, NULL, &s, &err), 0);
        store_close(s);
        free(p);
}

/* A VM row made under migration 2 survives the rebuild of migration 3, and
 * the new states are accepted afterwards. */
/* An empty or missing database next to VM directories would forget them:
 * refused, and nothing new is left beside it. A fresh install (no VMs) is fine. */
static void test_forgetful_refused(void **state) {
        (void) state;
        _cleanup_free_ char *p = path_join(dir, "h.db"), *vms = path_join(dir, "vms");
        _cleanup_free_ char *vm = path_join(vms, "0123456789abcdef"), *other = path_join(vms, "not-a-vm");
        _cleanup_free_ char *wal = path_join(dir, "h.db-wal"), *shm = path_join(dir, "h.db-shm");
        struct store *s = NULL;
        struct op_error err = OP_ERROR_INIT;
        assert_int_equal(mkdir(vms, 0700), 0);
        assert_int_equal(mkdir(other, 0700), 0);
        /* only things that are not VM dirs: a fresh start */
        assert_int_equal(store_open(p, 0, vms, &s, &err), 0);
        store_close(s);
        unlink(p), unlink(wal), unlink(shm);
        assert_int_equal(mkdir(vm, 0700), 0);
        /* missing */
        assert_int_equal(store_open(p, 0, vms, &s, &err), -EBADMSG);
        assert_non_null(strstr(op_error_message(&err), "holds 1 VM(s) it would forget"));
        op_error_done(&err);
        assert_int_equal(access(p, F_OK), -1);
        /* 0 bytes */
        assert_int_equal(write_file_atomic(p, "", 0, 0600), 0);
        assert_int_equal(store_open(p, 0, vms, &s, &err), -EBADMSG);
        assert_non_null(strstr(op_error_message(&err), "an empty"));
        op_error_done(&err);
        struct stat st;
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_size, 0);
        assert_int_equal(access(wal, F_OK), -1);
        assert_int_equal(access(shm, F_OK), -1);
        unlink(p);
        rmdir(vm);
        rmdir(other);
        rmdir(vms);
}

/* Refusing a WAL database of a newer banger leaves no -wal/-shm of ours. */
static void test_refusal_leaves_nothing(void **state) {
        (void) state;
        _cleanup_free_ char *p = path_join(dir, "w.db"), *wal = path_join(dir, "w.db-wal"), *shm = path_join(dir, "w.db-shm");
        struct store *s = NULL;
        struct op_error err = OP_ERROR_INIT;
        make_newer(p);
        assert_int_equal(access(wal, F_OK), -1); /* a clean close checkpoints and removes them */
        assert_int_equal(access(shm, F_OK), -1);
        assert_int_equal(store_open(p, 0, NULL, &s, &err), -EPROTO);
        op_error_done(&err);
        assert_int_equal(access(wal, F_OK), -1);
        assert_int_equal(access(shm, F_OK), -1);
}

static void test_vm_states_migration(void **state) {
        (void) state;
        char *p = path_join(dir, "h.db");
        struct store *s = NULL;
        struct op_error err = OP_ERROR_INIT;
        assert_int_equal(store_open(p, 2, NULL, &s, &err), 0);
        assert_int_equal(sqlite3_exec(s->db,
                                      "INSERT INTO images (id, name, managed, rootfs_path, created_at) VALUES"
                                      " ('i1', 'img', 1, '/r', 't');"
                                      "INSERT INTO vms (id, name, image_id, state, vcpu, memory_mib, disk_size_bytes,"
                                      " system_overlay_size_bytes, vm_dir, guest_ip, created_at, updated_at) VALUES"
                                      " ('abc', 'old', 'i1', 'running', 2, 512, 1, 1, '/d', '172.16.0.2', 't', 't')",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
        assert_int_not_equal(store_vm_set_state(s, "abc", "starting", NULL), 0);
        store_close(s);
        assert_int_equal(store_open(p, 0, NULL, &s, &err), 0);
        struct vm_row r;
        assert_int_equal(store_vm_get(s, "old", &r), 0);
        assert_string_equal(r.state, "running");
        assert_string_equal(r.guest_ip, "172.16.0.2");
        vm_row_done(&r);
        assert_int_equal(store_vm_set_state(s, "abc", "starting", NULL), 0);
        assert_int_equal(store_vm_set_state(s, "abc", "bogus", NULL), -EEXIST); /* CHECK constraint */
        store_close(s);
        free(p);
}

static void test_vm_rows(void **state) {
        (void) state;
        char *p = path_join(dir, "v.db");
        struct store *s = NULL;
        struct op_error err = OP_ERROR_INIT;
        struct vm_row r, got;
        assert_int_equal(store_open(p, 0, NULL, &s, &err), 0);
        struct image_row img = { .id = (char *) "img1", .name = (char *) "slim", .managed = true,
                                 .rootfs_path = (char *) "/r", .created_at = (char *) "t" };
        assert_int_equal(store_image_insert(s, &img), 0);

        r = (struct vm_row) { .id = (char *) "a1b2c3d4e5f60708", .name = (char *) "dev", .image_id = (char *) "img1",
                              .state = (char *) "created", .vcpu = 2, .memory_mib = 1024, .disk_size_bytes = 1 << 30,
                              .system_overlay_size_bytes = 1 << 30, .guest_ip = (char *) "172.16.0.2",
                              .mac = (char *) "52:54:ac:10:00:02", .vm_dir = (char *) "/d/a1" };
        assert_int_equal(store_vm_insert(s, &r), 0);
        /* taken name, taken address */
        r.id = (char *) "a1b2ffff00000000";
        assert_int_equal(store_vm_insert(s, &r), -EEXIST);
        r.name = (char *) "web";
        assert_int_equal(store_vm_insert(s, &r), -EEXIST);
        r.guest_ip = (char *) "172.16.0.3";
        r.mac = (char *) "52:54:ac:10:00:03";
        assert_int_equal(store_vm_insert(s, &r), 0);
        /* an image in use cannot be deleted */
        assert_int_equal(store_image_delete(s, "img1"), -EBUSY);

        /* refs: exact name, exact id, unique prefix; ambiguous and missing */
        assert_int_equal(store_vm_get(s, "dev", &got), 0);
        assert_string_equal(got.id, "a1b2c3d4e5f60708");
        assert_non_null(got.created_at);
        vm_row_done(&got);
        assert_int_equal(store_vm_get(s, "a1b2f", &got), 0);
        assert_string_equal(got.name, "web");
        vm_row_done(&got);
        assert_int_equal(store_vm_get(s, "a1b2", &got), -ENOTUNIQ);
        assert_int_equal(store_vm_get(s, "a1b2c3d4e5f60708", &got), 0);
        vm_row_done(&got);
        assert_int_equal(store_vm_get(s, "%", &got), -ENOENT);
        assert_int_equal(store_vm_get(s, "", &got), -ENOENT);
        assert_int_equal(store_vm_get(s, "nope", &got), -ENOENT);

        assert_int_equal(store_vm_set_state(s, "a1b2c3d4e5f60708", "error", "boom"), 0);
        assert_int_equal(store_vm_set_teardown(s, "a1b2c3d4e5f60708", "{\"tap\":\"bg-x\"}"), 0);
        assert_int_equal(store_vm_get(s, "dev", &got), 0);
        assert_string_equal(got.state, "error");
        assert_string_equal(got.last_error, "boom");
        assert_string_equal(got.teardown_json, "{\"tap\":\"bg-x\"}");
        got.vcpu = 4;
        got.last_error = (free(got.last_error), NULL);
        assert_int_equal(store_vm_update(s, &got), 0);
        vm_row_done(&got);

        struct vm_row *rows;
        size_t n;
        assert_int_equal(store_vm_list(s, &rows, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(rows[0].vcpu + rows[1].vcpu, 6);
        vm_rows_free(rows, n);

        /* port forwards: a host (proto, address, port) is one VM's */
        struct port_spec f1, f2, f3, key, *fs;
        const char *why;
        char *owner = NULL, **ids;
        bool any_ip, any_proto;
        assert_int_equal(port_spec_parse("8080:80", &f1, &why), 0);
        assert_int_equal(port_spec_parse("0.0.0.0:8080:80", &f2, &why), 0);
        assert_int_equal(port_spec_parse("8080:53/udp", &f3, &why), 0);
        assert_int_equal(store_forward_insert(s, "a1b2c3d4e5f60708", &f1, &owner), 0);
        assert_int_equal(store_forward_insert(s, "a1b2c3d4e5f60708", &f2, NULL), 0);
        assert_int_equal(store_forward_insert(s, "a1b2ffff00000000", &f1, &owner), -EEXIST);
        assert_string_equal(owner, "dev");
        free(owner);
        assert_int_equal(store_forward_insert(s, "a1b2ffff00000000", &f3, NULL), 0);
        assert_int_equal(store_forward_insert(s, "no-such-vm", &f3, NULL), -EEXIST); /* taken first */
        assert_int_equal(store_forward_list(s, NULL, &fs, &ids, &n), 0);
        assert_int_equal(n, 3);
        for (size_t i = 0; i < n; i++)
                free(ids[i]);
        free(ids);
        free(fs);
        assert_int_equal(store_forward_list(s, "a1b2c3d4e5f60708", &fs, NULL, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(fs[0].host_port, 8080);
        assert_int_equal(fs[0].guest_port, 80);
        free(fs);
        /* "8080" matches both addresses of dev, none of web's udp */
        assert_int_equal(port_key_parse("8080/tcp", &key, &any_ip, &any_proto, &why), 0);
        assert_int_equal(store_forward_delete(s, "a1b2ffff00000000", &key, any_ip, any_proto, NULL, NULL), -ENOENT);
        assert_int_equal(store_forward_delete(s, "a1b2c3d4e5f60708", &key, any_ip, any_proto, &fs, &n), 0);
        assert_int_equal(n, 2);
        free(fs);
        assert_int_equal(store_forward_list(s, "a1b2c3d4e5f60708", &fs, NULL, &n), 0);
        assert_int_equal(n, 0);
        free(fs);
        /* a VM's delete takes its forwards along */
        assert_int_equal(store_vm_delete(s, "a1b2ffff00000000"), 0);
        assert_int_equal(store_forward_list(s, NULL, &fs, NULL, &n), 0);
        assert_int_equal(n, 0);
        free(fs);

        assert_int_equal(store_vm_delete(s, "a1b2c3d4e5f60708"), 0);
        assert_int_equal(store_vm_delete(s, "a1b2c3d4e5f60708"), -ENOENT);
        assert_int_equal(store_vm_set_state(s, "a1b2c3d4e5f60708", "running", NULL), -ENOENT);
        store_close(s);
        free(p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_migrate_fresh),     cmocka_unit_test(test_pending),
                cmocka_unit_test(test_newer_refused),     cmocka_unit_test(test_corrupt_untouched),
                cmocka_unit_test(test_empty_file),        cmocka_unit_test(test_forgetful_refused),
                cmocka_unit_test(test_refusal_leaves_nothing),
                cmocka_unit_test(test_vm_states_migration), cmocka_unit_test(test_vm_rows),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
