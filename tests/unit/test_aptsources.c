/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aptsources.h"
#include "fsutil.h"
#include "strbuf.h"

static char *pick(const char *text, bool deb822) {
        struct apt_sources s = { 0 };
        if (deb822)
                aptsources_parse_deb822(text, &s);
        else
                aptsources_parse_oneline(text, &s);
        char *m = aptsources_pick_mirror(&s);
        aptsources_free(&s);
        return m;
}

static void test_deb822(void **state) {
        (void) state;
        /* This machine's own file, in shape. */
        char *m = pick("Types: deb\n"
                       "# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
                       "URIs: http://deb.debian.org/debian\n"
                       "Suites: bookworm bookworm-updates\n"
                       "Components: main\n"
                       "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
                       "\n"
                       "Types: deb\n"
                       "URIs: http://deb.debian.org/debian-security\n"
                       "Suites: bookworm-security\n"
                       "Components: main\n",
                       true);
        assert_string_equal(m, "http://deb.debian.org/debian");
        free(m);

        /* security first, disabled stanza, deb-src only, continuation lines */
        m = pick("Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
                 "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n\n"
                 "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\nComponents: main\n\n"
                 "Types: deb\nURIs:\n http://mirror.example/debian/\nSuites: bookworm\nComponents: main contrib\n",
                 true);
        assert_string_equal(m, "http://mirror.example/debian");
        free(m);

        m = pick("Types: deb\nURIs: http://x/debian\nSuites: bookworm\nComponents: contrib\n", true);
        assert_null(m);
        m = pick("garbage without colons\n\n:\n", true);
        assert_null(m);
}

static void test_oneline(void **state) {
        (void) state;
        char *m = pick("# comment\n"
                       "deb http://security.debian.org/debian-security bookworm-security main\n"
                       "deb-src http://src.example/debian bookworm main\n"
                       "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] https://mirror.example/debian/ bookworm main non-free\n",
                       false);
        assert_string_equal(m, "https://mirror.example/debian");
        free(m);
        m = pick("deb cdrom:[Debian GNU/Linux]/ bookworm main\ndeb file:/srv/mirror bookworm main\n", false);
        assert_null(m);
        m = pick("deb [broken http://x bookworm main\n", false);
        assert_null(m);
}

static void test_read_host(void **state) {
        char dir[] = "/tmp/banger-apt-XXXXXX";
        (void) state;
        assert_non_null(mkdtemp(dir));
        char *d = path_join(dir, "sources.list.d");
        mkdir(d, 0755);
        char *f1 = path_join(d, "a.list"), *f2 = path_join(d, "b.sources"), *f3 = path_join(dir, "sources.list");
        const char *l = "deb http://list.example/debian bookworm main\n";
        const char *s = "Types: deb\nURIs: http://deb822.example/debian\nSuites: bookworm\nComponents: main\n";
        assert_int_equal(write_file_atomic(f1, l, strlen(l), 0644), 0);
        assert_int_equal(write_file_atomic(f3, l, strlen(l), 0644), 0);
        char *origin = NULL;
        char *m = aptsources_read_host(dir, &origin);
        assert_string_equal(m, "http://list.example/debian"); /* sources.list before other .list files */
        assert_string_equal(origin, f3);
        free(m);
        free(origin);
        assert_int_equal(write_file_atomic(f2, s, strlen(s), 0644), 0);
        m = aptsources_read_host(dir, NULL);
        assert_string_equal(m, "http://deb822.example/debian"); /* deb822 preferred */
        free(m);
        unlink(f1);
        unlink(f2);
        unlink(f3);
        rmdir(d);
        m = aptsources_read_host(dir, NULL);
        assert_null(m);
        rmdir(dir);
        free(d);
        free(f1);
        free(f2);
        free(f3);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_deb822),
                cmocka_unit_test(test_oneline),
                cmocka_unit_test(test_read_host),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
