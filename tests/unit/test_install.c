/* SPDX-License-Identifier: MIT */
/* install.toml: what `system install` writes parses back to the same thing;
 * anything else (unknown keys, root as owner, relative or unnormalised
 * paths, odd user names, an unknown service manager) is refused by name. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "install.h"
#include "macro.h"
#include "strbuf.h"

static void sample(struct install_info *i) {
        install_defaults("/tmp/r", i);
        i->owner_user = xstrdup("dev");
        i->owner_uid = 1000;
        i->owner_gid = 1000;
        i->owner_home = xstrdup("/home/dev");
        i->version = xstrdup("0.1.0");
        i->manager = xstrdup("direct");
}

static void test_roundtrip(void **state) {
        (void) state;
        struct install_info a, b = { 0 };
        _cleanup_free_ char *err = NULL;
        sample(&a);
        _cleanup_free_ char *text = install_format(&a);
        assert_int_equal(install_parse(text, strlen(text), &b, &err), 0);
        assert_string_equal(b.owner_user, "dev");
        assert_int_equal(b.owner_uid, 1000);
        assert_string_equal(b.state_dir, "/tmp/r/var/lib/banger");
        assert_string_equal(b.helper_runtime, "/tmp/r/run/banger-root");
        assert_string_equal(b.prefix, "/tmp/r/usr/local");
        assert_false(install_uses_systemd(&b));
        _cleanup_free_ char *sock = install_helper_socket(&b);
        assert_string_equal(sock, "/tmp/r/run/banger-root/bangerd-root.sock");
        struct layout l;
        install_layout(&b, &l);
        assert_string_equal(l.socket_path, "/tmp/r/run/banger/bangerd.sock");
        assert_string_equal(l.db_path, "/tmp/r/var/lib/banger/state.db");
        layout_done(&l);
        install_info_done(&a);
        install_info_done(&b);

        install_defaults("/", &a);
        assert_string_equal(a.state_dir, "/var/lib/banger");
        install_info_done(&a);
}

static void refused(const char *from, const char *to, const char *needle) {
        struct install_info a, b = { 0 };
        _cleanup_free_ char *err = NULL;
        sample(&a);
        _cleanup_free_ char *text = install_format(&a);
        install_info_done(&a);
        char *at = strstr(text, from);
        if (!at)
                fail_msg("'%s' not in the sample", from);
        _cleanup_free_ char *bad = xasprintf("%.*s%s%s", (int) (at - text), text, to, at + strlen(from));
        if (install_parse(bad, strlen(bad), &b, &err) != -EINVAL || !err || !strstr(err, needle))
                fail_msg("'%s' -> '%s': expected an error with '%s', got '%s'", from, to, needle, err ? err : "none");
}

static void test_refusals(void **state) {
        (void) state;
        refused("uid = 1000", "uid = 0", "owner.uid");
        refused("gid = 1000", "gid = -5", "owner.gid");
        refused("user = \"dev\"", "user = \"../x\"", "not a user name");
        refused("user = \"dev\"", "user = \"\"", "not a user name");
        refused("state = \"/tmp/r/var/lib/banger\"", "state = \"var/lib\"", "paths.state");
        refused("state = \"/tmp/r/var/lib/banger\"", "state = \"/tmp/../etc\"", "paths.state");
        refused("prefix = \"/tmp/r/usr/local\"", "prefix = 7", "paths.prefix");
        refused("manager = \"direct\"", "manager = \"sysv\"", "service.manager");
        refused("[paths]", "[paths]\nextra = \"x\"", "unknown key paths.extra");
        refused("[owner]", "[owners]", "unknown key owners.");
        refused("home = \"/home/dev\"\n", "", "owner.home is missing");
        refused("# banger", "stray = 1\n# banger", "not one of the tables");
        /* what install_format would write back unescaped (found by fuzz_release) */
        refused("state = \"/tmp/r/var/lib/banger\"", "state = \"/tmp/r/var/li\\rb\"", "control character");
        refused("manager = \"direct\"", "manager = \"dir\\\"ect\"", "control character");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_roundtrip),
                cmocka_unit_test(test_refusals),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
