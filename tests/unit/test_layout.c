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

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_xdg),
                cmocka_unit_test(test_runtime_checks),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
