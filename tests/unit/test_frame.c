/* SPDX-License-Identifier: MIT */
/* The frame and exec-spec codec of agent protocol version 2 (src/shared/frame.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "frame.h"

static void test_frames(void **state) {
        (void) state;
        uint8_t b[FRAME_HDR + 8];
        struct frame f;
        frame_header(b, 7, FRAME_DATA, FRAME_STDERR, 3);
        memcpy(b + FRAME_HDR, "abc", 3);
        assert_int_equal(frame_parse(b, FRAME_HDR + 2, &f), 0); /* not whole yet */
        assert_int_equal(frame_parse(b, FRAME_HDR + 3, &f), FRAME_HDR + 3);
        assert_int_equal(f.chan, 7);
        assert_int_equal(f.type, FRAME_DATA);
        assert_int_equal(f.stream, FRAME_STDERR);
        assert_memory_equal(f.payload, "abc", 3);
        /* the wrong size for its type, a stream where none belongs, junk in the
         * reserved field, an unknown type, a payload over the limit */
        frame_header(b, 1, FRAME_CREDIT, FRAME_STDOUT, 3);
        assert_int_equal(frame_parse(b, sizeof(b), &f), -1);
        frame_header(b, 1, FRAME_SIGNAL, FRAME_STDOUT, 4);
        assert_int_equal(frame_parse(b, sizeof(b), &f), -1);
        frame_header(b, 1, FRAME_EOF, FRAME_STDIN, 0);
        b[6] = 1;
        assert_int_equal(frame_parse(b, sizeof(b), &f), -1);
        frame_header(b, 1, FRAME_TYPE_MAX + 1, 0, 0);
        assert_int_equal(frame_parse(b, sizeof(b), &f), -1);
        frame_header(b, 1, FRAME_DATA, 0, FRAME_MAX_PAYLOAD + 1);
        assert_int_equal(frame_parse(b, sizeof(b), &f), -1);
        frame_header(b, 1, FRAME_DATA, 3, 0);
        assert_int_equal(frame_parse(b, sizeof(b), &f), -1);
}

static int seen[8], n_seen, stop_at;
static bool count(void *ud, const struct frame *f) {
        (void) ud;
        seen[n_seen++] = (int) f->chan;
        return n_seen != stop_at;
}

/* frame_consume: whole frames in order, a partial one kept at the front,
 * a stop keeps the rest, bad bytes stop it with what came before taken */
static void test_consume(void **state) {
        uint8_t buf[4 * FRAME_HDR + 8];
        size_t len = 0;
        (void) state;
        for (uint32_t ch = 1; ch <= 3; ch++, len += FRAME_HDR)
                frame_header(buf + len, ch, FRAME_EOF, FRAME_STDOUT, 0);
        memcpy(buf + len, buf, 5); /* the start of a fourth */
        len += 5;
        n_seen = 0, stop_at = 2;
        assert_int_equal(frame_consume(buf, &len, count, NULL), 0);
        assert_int_equal(n_seen, 2);
        assert_int_equal(len, FRAME_HDR + 5);
        stop_at = -1;
        assert_int_equal(frame_consume(buf, &len, count, NULL), 0);
        assert_int_equal(n_seen, 3);
        assert_int_equal(seen[2], 3);
        assert_int_equal(len, 5); /* the partial frame, at the front */
        frame_header(buf, 4, FRAME_EOF, FRAME_STDOUT, 0);
        memset(buf + FRAME_HDR, 0xff, FRAME_HDR);
        len = 2 * FRAME_HDR;
        assert_int_equal(frame_consume(buf, &len, count, NULL), -1);
        assert_int_equal(n_seen, 4);
        assert_int_equal(len, FRAME_HDR);
        assert_int_equal(buf[0], 0xff);
}

static void test_spec_roundtrip(void **state) {
        (void) state;
        static uint8_t b[FRAME_MAX_PAYLOAD];
        size_t n = 0;
        struct exec_spec s;
        const char *why;
        assert_true(spec_put_str(b, sizeof(b), &n, SPEC_ARG, "sh"));
        assert_true(spec_put_str(b, sizeof(b), &n, SPEC_ARG, "-c"));
        assert_true(spec_put_str(b, sizeof(b), &n, SPEC_ARG, "echo \"$A\" 'x y'"));
        assert_true(spec_put_str(b, sizeof(b), &n, SPEC_ENV, "A=1=2"));
        assert_true(spec_put_str(b, sizeof(b), &n, SPEC_CWD, "/root/repo"));
        assert_true(spec_put_u32(b, sizeof(b), &n, SPEC_UID, 1000));
        assert_true(spec_put_u32(b, sizeof(b), &n, SPEC_GID, 1001));
        uint8_t ws[4] = { 30, 0, 100, 0 };
        assert_true(spec_put(b, sizeof(b), &n, SPEC_PTY, ws, 4));
        assert_int_equal(exec_spec_parse(b, n, &s, &why), 0);
        assert_int_equal(s.argc, 3);
        assert_string_equal(s.argv[2], "echo \"$A\" 'x y'");
        assert_null(s.argv[3]);
        assert_int_equal(s.envc, 1);
        assert_string_equal(s.env[0], "A=1=2");
        assert_string_equal(s.cwd, "/root/repo");
        assert_int_equal(s.uid, 1000);
        assert_int_equal(s.gid, 1001);
        assert_true(s.pty);
        assert_int_equal(s.rows, 30);
        assert_int_equal(s.cols, 100);
        exec_spec_free(&s);
        /* a record that does not fit is refused by the encoder */
        size_t full = sizeof(b) - 4;
        assert_false(spec_put_str(b, sizeof(b), &full, SPEC_ARG, "abc"));
}

static void test_spec_refused(void **state) {
        (void) state;
        static uint8_t b[256];
        struct exec_spec s;
        const char *why;
        size_t n;
#define REFUSED(build)                                                                                                 \
        do {                                                                                                           \
                n = 0;                                                                                                 \
                build;                                                                                                 \
                assert_int_equal(exec_spec_parse(b, n, &s, &why), -1);                                                 \
                assert_non_null(why);                                                                                  \
        } while (0)
        REFUSED((void) 0); /* no command */
        REFUSED(spec_put(b, sizeof(b), &n, SPEC_ARG, "a\0b", 3));                               /* a NUL */
        REFUSED((spec_put_str(b, sizeof(b), &n, SPEC_ARG, "x"), spec_put_str(b, sizeof(b), &n, SPEC_ENV, "1A=x")));
        REFUSED((spec_put_str(b, sizeof(b), &n, SPEC_ARG, "x"), spec_put_str(b, sizeof(b), &n, SPEC_ENV, "NOEQ")));
        REFUSED((spec_put_str(b, sizeof(b), &n, SPEC_ARG, "x"), spec_put_str(b, sizeof(b), &n, SPEC_CWD, "rel")));
        REFUSED((spec_put_str(b, sizeof(b), &n, SPEC_ARG, "x"), spec_put_u32(b, sizeof(b), &n, SPEC_UID, 1)));
        REFUSED((spec_put_str(b, sizeof(b), &n, SPEC_ARG, "x"), spec_put(b, sizeof(b), &n, 99, "", 0)));
        REFUSED((b[0] = SPEC_ARG, b[1] = 0xff, b[2] = b[3] = b[4] = 0, n = 5)); /* longer than the rest */
        uint8_t kind = SPEC_KIND_TAR_IN;
        REFUSED(spec_put(b, sizeof(b), &n, SPEC_KIND, &kind, 1)); /* a tar stream needs a directory */
#undef REFUSED
        n = 0;
        spec_put(b, sizeof(b), &n, SPEC_KIND, &kind, 1);
        spec_put_str(b, sizeof(b), &n, SPEC_CWD, "/root/repo");
        assert_int_equal(exec_spec_parse(b, n, &s, &why), 0);
        assert_int_equal(s.kind, SPEC_KIND_TAR_IN);
        exec_spec_free(&s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_frames),
                cmocka_unit_test(test_consume),
                cmocka_unit_test(test_spec_roundtrip),
                cmocka_unit_test(test_spec_refused),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
