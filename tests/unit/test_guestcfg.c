/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/stat.h>
#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artifacts/artifacts.h"
#include "fsutil.h"
#include "strbuf.h"
#include "vm/guestcfg.h"

static char dir[64];

static int setup(void **s) {
        (void) s;
        snprintf(dir, sizeof(dir), "/tmp/banger-gcfg-XXXXXX");
        return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **s) {
        (void) s;
        rm_rf(dir);
        return 0;
}

static void test_known_hosts(void **state) {
        char *kh = path_join(dir, "known_hosts"), *text = NULL;
        size_t len;
        (void) state;
        assert_int_equal(known_hosts_set(kh, "dev.vm,172.16.0.2", "ssh-ed25519 AAAA1 banger-vm-dev"), 0);
        assert_int_equal(known_hosts_set(kh, "web.vm,172.16.0.3", "ssh-ed25519 AAAA2 banger-vm-web\n"), 0);
        /* replacing dev's key leaves one line for it */
        assert_int_equal(known_hosts_set(kh, "dev.vm,172.16.0.2", "ssh-ed25519 AAAA3 banger-vm-dev"), 0);
        assert_int_equal(read_file(kh, 1 << 16, &text, &len), 0);
        assert_string_equal(text, "web.vm,172.16.0.3 ssh-ed25519 AAAA2 banger-vm-web\n"
                                  "dev.vm,172.16.0.2 ssh-ed25519 AAAA3 banger-vm-dev\n");
        free(text);
        /* removing by any one of the names drops the line */
        assert_int_equal(known_hosts_remove(kh, "172.16.0.3"), 0);
        assert_int_equal(read_file(kh, 1 << 16, &text, &len), 0);
        assert_string_equal(text, "dev.vm,172.16.0.2 ssh-ed25519 AAAA3 banger-vm-dev\n");
        free(text);
        assert_int_equal(known_hosts_set(kh, "bad host", "ssh-ed25519 X"), -EINVAL);
        free(kh);
}

static void test_cpio(void **state) {
        char *keys = path_join(dir, "hostkey"), *out = path_join(dir, "cfg.cpio");
        struct op_error err = OP_ERROR_INIT;
        (void) state;
        assert_int_equal(ssh_host_key_ensure(keys, "banger-vm-t", &err), 0);
        struct guestcfg g = { .hostname = "t1", .ip = "172.16.0.9", .dns = "9.9.9.9", .host_key_dir = keys,
                              .authorized_keys = "ssh-ed25519 USERKEY me\n", .host_alias_ip = "10.0.2.2" };
        mode_t old = umask(0); /* 0600 whatever the umask: it holds the VM's private host key */
        assert_int_equal(guestcfg_write(&g, out, &err), 0);
        umask(old);
        struct stat st;
        assert_int_equal(stat(out, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        g.hostname = "Not_A_Label";
        assert_int_equal(guestcfg_write(&g, out, &err), -EINVAL);
        op_error_done(&err);

        struct archive *a = archive_read_new();
        struct archive_entry *e;
        archive_read_support_format_cpio(a);
        assert_int_equal(archive_read_open_filename(a, out, 4096), ARCHIVE_OK);
        int files = 0;
        while (archive_read_next_header(a, &e) == ARCHIVE_OK) {
                const char *p = archive_entry_pathname(e);
                char buf[4096] = { 0 };
                if (archive_entry_filetype(e) != AE_IFREG)
                        continue;
                assert_true(strncmp(p, "banger/root/", 12) == 0);
                archive_read_data(a, buf, sizeof(buf) - 1);
                files++;
                if (strcmp(p, "banger/root/etc/hostname") == 0)
                        assert_string_equal(buf, "t1\n");
                if (strcmp(p, "banger/root/etc/hosts") == 0)
                {
                        assert_non_null(strstr(buf, "172.16.0.9 t1.vm t1\n"));
                        assert_non_null(strstr(buf, "10.0.2.2 host.banger.internal\n"));
                }
                if (strcmp(p, "banger/root/etc/resolv.conf") == 0)
                        assert_string_equal(buf, "nameserver 9.9.9.9\n");
                if (strcmp(p, "banger/root/etc/ssh/ssh_host_ed25519_key") == 0) {
                        assert_int_equal(archive_entry_perm(e), 0600);
                        assert_non_null(strstr(buf, "OPENSSH PRIVATE KEY"));
                }
                if (strcmp(p, "banger/root/root/.ssh/authorized_keys") == 0) {
                        assert_int_equal(archive_entry_perm(e), 0600);
                        assert_string_equal(buf, "ssh-ed25519 USERKEY me\n");
                }
        }
        assert_int_equal(files, 6);
        archive_read_free(a);
        free(keys);
        free(out);
}

static bool has_text(const struct strbuf *sb, const char *t) {
        return memmem(sb->buf, sb->len, t, strlen(t)) != NULL;
}

/* The records `banger-agent --identify` reads: entropy first, then the same
 * files as the cpio but those on the work disk, and a machine-id. */
static void test_records(void **state) {
        char *keys = path_join(dir, "hostkey2");
        struct op_error err = OP_ERROR_INIT;
        struct strbuf sb = STRBUF_INIT;
        (void) state;
        assert_int_equal(ssh_host_key_ensure(keys, "banger-vm-r", &err), 0);
        struct guestcfg g = { .hostname = "r1", .ip = "172.16.0.7", .dns = "9.9.9.9", .host_key_dir = keys,
                              .authorized_keys = "ssh-ed25519 USERKEY me\n",
                              .machine_id = "0123456789abcdef0123456789abcdef" };
        assert_int_equal(guestcfg_records(&g, "0123456789", 10, &sb, &err), 0);
        assert_true(sb.len > 21 && memcmp(sb.buf, "entropy 10\n0123456789", 21) == 0);
        assert_true(has_text(&sb, "file 644 3 /etc/hostname\nr1\n"));
        assert_true(has_text(&sb, "file 444 33 /etc/machine-id\n0123456789abcdef0123456789abcdef\n"));
        assert_true(has_text(&sb, "file 600 ")); /* the private host key */
        assert_true(has_text(&sb, " /etc/ssh/ssh_host_ed25519_key\n-----BEGIN OPENSSH PRIVATE KEY"));
        assert_false(has_text(&sb, "/root/"));
        strbuf_release(&sb);
        g.hostname = "Bad Name";
        assert_int_equal(guestcfg_records(&g, "x", 1, &sb, &err), -EINVAL);
        op_error_done(&err);
        strbuf_release(&sb);
        free(keys);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_known_hosts),
                cmocka_unit_test(test_cpio),
                cmocka_unit_test(test_records),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
