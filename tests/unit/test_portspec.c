/* SPDX-License-Identifier: MIT */
/* Port forward specs: `--publish`, `vm forward` and `vm forward --rm`. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "portspec.h"

static void ok(const char *in, const char *want) {
        struct port_spec s;
        const char *why = NULL;
        char buf[PORTSPEC_TEXT_MAX];
        assert_int_equal(port_spec_parse(in, &s, &why), 0);
        port_spec_format(&s, buf);
        assert_string_equal(buf, want);
        /* the formatted form reads back as the same forward */
        struct port_spec t;
        assert_int_equal(port_spec_parse(buf, &t, &why), 0);
        assert_memory_equal(&s, &t, sizeof(s));
}

static void bad(const char *in, const char *why_part) {
        struct port_spec s;
        const char *why = NULL;
        assert_int_equal(port_spec_parse(in, &s, &why), -EINVAL);
        assert_non_null(why);
        if (!strstr(why, why_part))
                fail_msg("'%s': '%s' does not say '%s'", in, why, why_part);
}

static void test_parse(void **state) {
        (void) state;
        ok("8080:80", "127.0.0.1:8080:80/tcp");
        ok("22222:22/tcp", "127.0.0.1:22222:22/tcp");
        ok("5353:53/udp", "127.0.0.1:5353:53/udp");
        ok("0.0.0.0:80:8080", "0.0.0.0:80:8080/tcp");
        ok("192.168.1.5:65535:1/udp", "192.168.1.5:65535:1/udp");
        ok("[::1]:8080:80", "[::1]:8080:80/tcp");
        ok("[0:0::1]:8080:80/udp", "[::1]:8080:80/udp");
        ok("[::]:1:1", "[::]:1:1/tcp");
}

static void test_bad(void **state) {
        (void) state;
        bad("", "empty");
        bad("8080", "HOSTPORT:GUESTPORT");
        bad("8080:", "guest port");
        bad(":80", "host port");
        bad("0:80", "host port");
        bad("65536:80", "host port");
        bad("80:0", "guest port");
        bad("80:123456", "guest port");
        bad("+80:80", "host port");
        bad("80:80/sctp", "tcp or udp");
        bad("80:80/", "tcp or udp");
        bad("1.2.3:80:80", "IPv4");
        bad("localhost:80:80", "IPv4");
        bad("::1:80:80", "brackets");
        bad("[::1:80:80", "brackets");
        bad("[nope]:80:80", "IPv6");
        bad("[1.2.3.4]:80:80", "IPv6");
        bad("1.2.3.4:80:80:80", "too many");
        bad("80:80/tcp/udp", "tcp or udp");
        bad(" 80:80", "host port");
}

static void test_key(void **state) {
        (void) state;
        struct port_spec s;
        bool any_ip, any_proto;
        const char *why = NULL;
        assert_int_equal(port_key_parse("8080", &s, &any_ip, &any_proto, &why), 0);
        assert_int_equal(s.host_port, 8080);
        assert_true(any_ip);
        assert_true(any_proto);
        assert_int_equal(port_key_parse("0.0.0.0:53/udp", &s, &any_ip, &any_proto, &why), 0);
        assert_string_equal(s.host_ip, "0.0.0.0");
        assert_int_equal(s.proto, PORT_UDP);
        assert_false(any_ip);
        assert_false(any_proto);
        assert_int_equal(port_key_parse("[::1]:80", &s, &any_ip, &any_proto, &why), 0);
        assert_string_equal(s.host_ip, "::1");
        assert_int_equal(port_key_parse("80:80", &s, &any_ip, &any_proto, &why), -EINVAL);
        assert_int_equal(port_key_parse("x", &s, &any_ip, &any_proto, &why), -EINVAL);
        assert_int_equal(port_key_parse("", &s, &any_ip, &any_proto, &why), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse),
                cmocka_unit_test(test_bad),
                cmocka_unit_test(test_key),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
