/* SPDX-License-Identifier: MIT */
/* The work disk against real e2fsprogs: seed, grow, write with libext2fs,
 * and e2fsck must find the filesystem clean every time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/artifacts.h"
#include "fsutil.h"
#include "proc_spawn.h"
#include "strbuf.h"
#include "vdisk.h"
#include "disk/workdisk.h"

static char dir[64];

static int setup(void **s) {
        (void) s;
        snprintf(dir, sizeof(dir), "/tmp/banger-wd-XXXXXX");
        return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **s) {
        (void) s;
        rm_rf(dir);
        return 0;
}

static char *debugfs(const char *img, const char *cmd) {
        struct spawn_result r;
        struct spawn_opts o = { .capture_stdout = true, .capture_stderr = true };
        char *argv[] = { (char *) "debugfs", (char *) "-R", (char *) cmd, (char *) img, NULL };
        assert_int_equal(spawn_run(argv, &o, &r), 0);
        free(r.err);
        return r.out;
}

static void assert_fsck_clean(const char *img) {
        struct spawn_result r;
        struct spawn_opts o = { .capture_stdout = true, .capture_stderr = true };
        char *argv[] = { (char *) "e2fsck", (char *) "-fn", (char *) img, NULL };
        assert_int_equal(spawn_run(argv, &o, &r), 0);
        if (r.exit_code != 0)
                fail_msg("e2fsck -fn %s exit %d: %s", img, r.exit_code, r.out);
        spawn_result_done(&r);
}

static void test_seeded(void **state) {
        char *seed_dir = path_join(dir, "seed"), *seed = path_join(dir, "seed.ext4"), *disk = path_join(dir, "work.ext4");
        char *out;
        struct op_error err = OP_ERROR_INIT;
        (void) state;
        mkdir(seed_dir, 0700);
        char *bashrc = path_join(seed_dir, ".bashrc");
        assert_int_equal(write_file_atomic(bashrc, "PS1=x\n", 6, 0644), 0);
        char *argv[] = { (char *) "mkfs.ext4", (char *) "-q", (char *) "-d", seed_dir, seed, (char *) "32M", NULL };
        struct spawn_result r;
        assert_int_equal(spawn_run(argv, NULL, &r), 0);
        assert_int_equal(r.exit_code, 0);
        spawn_result_done(&r);

        assert_int_equal(workdisk_create(disk, 8ULL << 30, seed, &err), 0);
        struct stat st;
        assert_int_equal(stat(disk, &st), 0);
        assert_int_equal(st.st_size, 8LL << 30);
        assert_true((uint64_t) st.st_blocks * 512 < (200ULL << 20)); /* sparse */
        out = debugfs(disk, "cat /.bashrc");
        assert_string_equal(out, "PS1=x\n");
        free(out);

        const char *key = "ssh-ed25519 AAAA test\n";
        assert_int_equal(workdisk_write_file(disk, "/.ssh/authorized_keys", key, strlen(key), 0600, 0, 0, &err), 0);
        assert_int_equal(workdisk_write_file(disk, "/.gitconfig", "[user]\n\tname = A\n", 17, 0644, 0, 0, &err), 0);
        assert_int_equal(workdisk_write_file(disk, "/deep/er/file", "x", 1, 0600, 1000, 1000, &err), 0);
        /* replacing shrinks, never appends */
        assert_int_equal(workdisk_write_file(disk, "/.gitconfig", "short\n", 6, 0640, 0, 0, &err), 0);
        assert_fsck_clean(disk);
        out = debugfs(disk, "cat /.ssh/authorized_keys");
        assert_string_equal(out, key);
        free(out);
        out = debugfs(disk, "cat /.gitconfig");
        assert_string_equal(out, "short\n");
        free(out);
        out = debugfs(disk, "stat /.ssh/authorized_keys");
        assert_non_null(strstr(out, "Mode:  0600"));
        free(out);
        out = debugfs(disk, "stat /.ssh");
        assert_non_null(strstr(out, "Mode:  0700"));
        assert_non_null(strstr(out, "Type: directory"));
        free(out);
        out = debugfs(disk, "stat /deep/er/file");
        assert_non_null(strstr(out, "User:  1000"));
        free(out);

        /* many files in one directory: the directory must grow */
        for (int i = 0; i < 300; i++) {
                char p[64];
                snprintf(p, sizeof(p), "/many/a-rather-long-file-name-to-fill-blocks-%03d", i);
                assert_int_equal(workdisk_write_file(disk, p, "y", 1, 0644, 0, 0, &err), 0);
        }
        assert_fsck_clean(disk);

        /* grow, refuse to shrink, refuse bad paths and smaller-than-seed sizes */
        assert_int_equal(workdisk_grow(disk, 9ULL << 30, &err), 0);
        assert_fsck_clean(disk);
        assert_int_equal(workdisk_grow(disk, 1ULL << 30, &err), -EINVAL);
        assert_non_null(strstr(op_error_message(&err), "shrinking"));
        op_error_done(&err);
        assert_int_equal(workdisk_write_file(disk, "relative", "x", 1, 0600, 0, 0, &err), -EINVAL);
        op_error_done(&err);
        assert_int_equal(workdisk_write_file(disk, "/a/../b", "x", 1, 0600, 0, 0, &err), -EINVAL);
        op_error_done(&err);
        assert_int_equal(workdisk_write_file(disk, "/deep", "x", 1, 0600, 0, 0, &err), -EEXIST);
        op_error_done(&err);
        char *small = path_join(dir, "small.ext4");
        assert_int_equal(workdisk_create(small, 1ULL << 20, seed, &err), -EINVAL);
        assert_int_equal(access(small, F_OK), -1);
        op_error_done(&err);
        free(small);
        free(seed_dir);
        free(seed);
        free(disk);
        free(bashrc);
}

static void test_unseeded(void **state) {
        char *disk = path_join(dir, "blank.ext4");
        struct op_error err = OP_ERROR_INIT;
        (void) state;
        assert_int_equal(workdisk_create(disk, 256ULL << 20, NULL, &err), 0);
        assert_int_equal(workdisk_write_file(disk, "/hello", "hi\n", 3, 0644, 0, 0, &err), 0);
        assert_fsck_clean(disk);
        char *out = debugfs(disk, "cat /hello");
        assert_string_equal(out, "hi\n");
        free(out);

        /* a symlink (or a file) where a parent directory should be is refused,
         * never walked through (a guest can make /root/.ssh a symlink) */
        struct spawn_result r;
        struct spawn_opts o = { .capture_stdout = true, .capture_stderr = true };
        char *argv[] = { (char *) "debugfs", (char *) "-w", (char *) "-R", (char *) "symlink /.ssh /etc", disk, NULL };
        assert_int_equal(spawn_run(argv, &o, &r), 0);
        spawn_result_done(&r);
        assert_int_equal(workdisk_write_file(disk, "/.ssh/authorized_keys", "k\n", 2, 0600, 0, 0, &err), -EIO);
        op_error_done(&err);
        assert_int_equal(workdisk_write_file(disk, "/hello/x", "k\n", 2, 0600, 0, 0, &err), -EIO);
        op_error_done(&err);
        assert_fsck_clean(disk);
        free(disk);
}

/* A seed on another filesystem (tmpfs /dev/shm to /tmp): copied whole, holes
 * kept, even where copy_file_range cannot cross filesystems. */
static void test_copy_across(void **state) {
        char src[] = "/dev/shm/banger-wd-XXXXXX";
        (void) state;
        int fd = mkstemp(src);
        if (fd < 0)
                skip();
        char block[4096];
        memset(block, 'x', sizeof(block));
        assert_int_equal(pwrite(fd, block, sizeof(block), 0), (ssize_t) sizeof(block));
        assert_int_equal(pwrite(fd, block, sizeof(block), 8 << 20), (ssize_t) sizeof(block)); /* 8 MiB hole */
        close(fd);
        char *to = path_join(dir, "copied");
        int r = copy_file_sparse(src, to, 0600);
        unlink(src);
        assert_int_equal(r, 0);
        struct stat st;
        assert_int_equal(stat(to, &st), 0);
        assert_int_equal(st.st_size, (8 << 20) + 4096);
        assert_true(st.st_blocks * 512 < 1 << 20); /* the hole stayed a hole */
        assert_int_equal(st.st_mode & 07777, 0600);
        fd = open(to, O_RDONLY);
        char got[4096];
        assert_int_equal(pread(fd, got, sizeof(got), 8 << 20), (ssize_t) sizeof(got));
        assert_memory_equal(got, block, sizeof(block));
        assert_int_equal(pread(fd, got, 16, 4 << 20), 16);
        assert_memory_equal(got, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
        close(fd);
        free(to);
}

/* The repo disk: blank at creation (a guest mounts nothing), a new ext4
 * without lost+found at each reset, in place (the same inode: the VMM keeps
 * it open), nothing of the last workspace left, complete only once labelled. */
static void test_repo_disk(void **state) {
        char *disk = path_join(dir, "repo.ext4"), *src = path_join(dir, "src.txt");
        struct op_error err = OP_ERROR_INIT;
        struct workdisk *w = NULL;
        struct stat st, st2;
        (void) state;
        assert_int_equal(repodisk_create(disk, 256ULL << 20, &err), 0);
        assert_int_equal(repodisk_create(disk, 256ULL << 20, &err), -EEXIST); /* never over an existing one */
        op_error_done(&err);
        assert_int_equal(vdisk_has_label(disk, VDISK_REPO_LABEL), 0);
        assert_int_equal(stat(disk, &st), 0);
        assert_int_equal(write_file_atomic(src, "old\n", 4, 0644), 0);
        for (int round = 0; round < 2; round++) {
                assert_int_equal(repodisk_reset(disk, VDISK_REPO_LABEL_NEW, &err), 0);
                assert_int_equal(vdisk_has_label(disk, VDISK_REPO_LABEL_NEW), 1);
                assert_int_equal(vdisk_has_label(disk, VDISK_REPO_LABEL), 0);
                char *out = debugfs(disk, "ls /");
                assert_null(strstr(out, "lost+found"));
                assert_null(strstr(out, "a.txt")); /* the last round's files are gone */
                free(out);
                assert_int_equal(workdisk_open(disk, &w, &err), 0);
                assert_int_equal(workdisk_put(w, round ? "/b.txt" : "/a.txt", src, 0, 0, &err), 0);
                workdisk_set_label(w, VDISK_REPO_LABEL);
                assert_int_equal(workdisk_close(w, &err), 0);
                assert_int_equal(vdisk_has_label(disk, VDISK_REPO_LABEL), 1);
                assert_fsck_clean(disk);
        }
        assert_int_equal(stat(disk, &st2), 0);
        assert_true(st.st_ino == st2.st_ino && st2.st_size == 256LL << 20);
        /* not a repo disk: a symlink, or too small */
        char *link = path_join(dir, "link.ext4"), *tiny = path_join(dir, "tiny.ext4");
        assert_int_equal(symlink(disk, link), 0);
        assert_true(repodisk_reset(link, VDISK_REPO_LABEL_NEW, &err) < 0);
        op_error_done(&err);
        assert_int_equal(repodisk_create(tiny, 1 << 20, &err), 0);
        assert_int_equal(repodisk_reset(tiny, VDISK_REPO_LABEL_NEW, &err), -EINVAL);
        op_error_done(&err);
        free(disk);
        free(src);
        free(link);
        free(tiny);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_seeded),
                cmocka_unit_test(test_unseeded),
                cmocka_unit_test(test_copy_across),
                cmocka_unit_test(test_repo_disk),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
