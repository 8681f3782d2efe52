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
#include "layout.h"
#include "strbuf.h"

static const char *const *fake_env;

static const char *fake_getenv(const char *name) {
        for (const char *const *e = fake_env; e && *e; e += 2)
                if (strcmp(e[0], name) == 0)
                        return e[1];
        return NULL;
}

static void test_defaults(void **state) {
        struct layout l;
        char *err = NULL;
        (void) state;
        fake_env = (const char *const[]) { "HOME", "/home/u", NULL };
        assert_int_equal(layout_resolve(&l, fake_getenv, 1000, &err), 0);
        assert_string_equal(l.config_file, "/home/u/.config/banger/config.toml");
        assert_string_equal(l.state_dir, "/home/u/.local/state/banger");
        assert_string_equal(l.db_path, "/home/u/.local/state/banger/state.db");
        assert_string_equal(l.vms_dir, "/home/u/.local/state/banger/vms");
        assert_string_equal(l.cache_dir, "/home/u/.cache/banger");
        assert_string_equal(l.runtime_dir, "/tmp/banger-runtime-1000");
        assert_string_equal(l.socket_path, "/tmp/banger-runtime-1000/bangerd.sock");
        layout_done(&l);
}

static void test_xdg(void **state) {
        struct layout l;
        char *err = NULL;
        (void) state;
        fake_env = (const char *const[]) { "HOME", "/home/u", "XDG_CONFIG_HOME", "/c", "XDG_STATE_HOME", "/s",
                                           "XDG_CACHE_HOME", "relative/ignored", "XDG_RUNTIME_DIR", "/run/user/1000",
                                           NULL };
        assert_int_equal(layout_resolve(&l, fake_getenv, 1000, &err), 0);
        assert_string_equal(l.config_file, "/c/banger/config.toml");
        assert_string_equal(l.state_dir, "/s/banger");
        assert_string_equal(l.cache_dir, "/home/u/.cache/banger");
        assert_string_equal(l.runtime_dir, "/run/user/1000/banger");
        layout_done(&l);

        fake_env = (const char *const[]) { NULL };
        assert_int_equal(layout_resolve(&l, fake_getenv, 1000, &err), -EINVAL);
        assert_non_null(strstr(err, "HOME"));
        free(err);
}

static void test_runtime_checks(void **state) {
        char base[] = "/tmp/banger-rt-XXXXXX";
        char *err = NULL;
        struct layout l;
        struct stat st;
        (void) state;

        assert_non_null(mkdtemp(base));
        fake_env = (const char *const[]) { "HOME", "/h", "XDG_RUNTIME_DIR", base, NULL };
        assert_int_equal(layout_resolve(&l, fake_getenv, getuid(), &err), 0);

        /* created 0700 when missing */
        assert_int_equal(layout_prepare_runtime(&l, getuid(), &err), 0);
        assert_int_equal(lstat(l.runtime_dir, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);

        /* wrong mode refused, not "fixed" */
        chmod(l.runtime_dir, 0755);
        assert_int_equal(layout_prepare_runtime(&l, getuid(), &err), -EPERM);
        assert_non_null(strstr(err, "0755"));
        free(err);
        err = NULL;
        assert_int_equal(lstat(l.runtime_dir, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0755);
        chmod(l.runtime_dir, 0700);

        /* someone else's directory refused */
        assert_int_equal(layout_prepare_runtime(&l, getuid() + 4242, &err), -EPERM);
        assert_non_null(strstr(err, "owned by uid"));
        free(err);
        err = NULL;

        /* a symlink refused even when it points at a good dir */
        char *real = path_join(base, "real");
        assert_int_equal(rename(l.runtime_dir, real), 0);
        assert_int_equal(symlink(real, l.runtime_dir), 0);
        assert_int_equal(layout_prepare_runtime(&l, getuid(), &err), -EPERM);
        assert_non_null(strstr(err, "symlink"));
        free(err);
        err = NULL;
        unlink(l.runtime_dir);

        /* a regular file refused */
        assert_int_equal(write_file_atomic(l.runtime_dir, "x", 1, 0600), 0);
        assert_int_equal(layout_prepare_runtime(&l, getuid(), &err), -EPERM);
        assert_non_null(strstr(err, "not a directory"));
        free(err);
        unlink(l.runtime_dir);
        rmdir(real);
        free(real);
        layout_done(&l);
        rmdir(base);
}

/* what a guest wrote to its console, on its way into an error message */
static void test_file_last_line(void **state) {
        (void) state;
        char dir[] = "/tmp/test-lastline.XXXXXX";
        assert_non_null(mkdtemp(dir));
        char path[64], link[64];
        snprintf(path, sizeof(path), "%s/console.log", dir);
        snprintf(link, sizeof(link), "%s/link", dir);
        char *l;

        assert_null(file_last_line(path, 100)); /* missing */
        assert_int_equal(write_file_atomic(path, "", 0, 0600), 0);
        assert_null(file_last_line(path, 100)); /* empty */
        const char text[] = "first\r\nbanger-init: stage=agent \x1b[31mred\x1b[0m\r\n\r\n";
        assert_int_equal(write_file_atomic(path, text, sizeof(text) - 1, 0600), 0);
        l = file_last_line(path, 100);
        assert_string_equal(l, "banger-init: stage=agent ?[31mred?[0m"); /* escapes defused */
        free(l);
        l = file_last_line(path, 11);
        assert_string_equal(l, "banger-init");
        free(l);
        assert_int_equal(symlink(path, link), 0);
        assert_null(file_last_line(link, 100)); /* a symlink is refused */

        /* only the last 8 KiB are read: a line longer than that is no line */
        struct strbuf sb = STRBUF_INIT;
        strbuf_addstr(&sb, "x\n");
        for (int i = 0; i < 9000; i++)
                strbuf_addstr(&sb, "y");
        assert_int_equal(write_file_atomic(path, sb.buf, sb.len, 0600), 0);
        assert_null(file_last_line(path, 100));
        strbuf_addstr(&sb, "\nlast line\n");
        assert_int_equal(write_file_atomic(path, sb.buf, sb.len, 0600), 0);
        l = file_last_line(path, 100);
        assert_string_equal(l, "last line");
        free(l);
        strbuf_release(&sb);
        unlink(link);
        unlink(path);
        rmdir(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_xdg),
                cmocka_unit_test(test_runtime_checks),
                cmocka_unit_test(test_file_last_line),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
