/* SPDX-License-Identifier: MIT */
/* The DNS zone `vm`: answers, rcodes, drops. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "dnsmsg.h"

static int lookup(void *ud, const char *label, uint32_t *ret_ip) {
        (void) ud;
        if (strcmp(label, "dev") == 0) {
                *ret_ip = 0xac100002; /* 172.16.0.2 */
                return 1;
        }
        return 0;
}

/* A query for name (dotted) with type/class; returns its length. */
static size_t query(uint8_t *b, const char *name, uint16_t type, uint16_t cls, uint8_t flags_hi) {
        uint8_t h[12] = { 0xbe, 0xef, flags_hi, 0x00, 0, 1, 0, 0, 0, 0, 0, 0 };
        size_t n = 12;
        memcpy(b, h, 12);
        const char *p = name;
        while (*p) {
                const char *dot = strchr(p, '.');
                size_t l = dot ? (size_t) (dot - p) : strlen(p);
                b[n++] = (uint8_t) l;
                memcpy(b + n, p, l);
                n += l;
                p += l + (dot ? 1 : 0);
        }
        b[n++] = 0;
        b[n++] = (uint8_t) (type >> 8);
        b[n++] = (uint8_t) type;
        b[n++] = (uint8_t) (cls >> 8);
        b[n++] = (uint8_t) cls;
        return n;
}

static int rcode(const uint8_t *r) {
        return r[3] & 0x0f;
}
static int ancount(const uint8_t *r) {
        return (r[6] << 8) | r[7];
}

static void test_answers(void **state) {
        uint8_t q[512], r[512];
        size_t n, m;
        (void) state;

        n = query(q, "dev.vm", 1, 1, 0x01);
        m = dns_answer(q, n, lookup, NULL, r, sizeof(r));
        assert_int_equal(m, n + 16);
        assert_int_equal(r[0], 0xbe);
        assert_true(r[2] & 0x80);          /* response */
        assert_true(r[2] & 0x04);          /* authoritative */
        assert_true(r[2] & 0x01);          /* RD echoed */
        assert_int_equal(rcode(r), 0);
        assert_int_equal(ancount(r), 1);
        assert_memory_equal(r + m - 4, ((uint8_t[]) { 172, 16, 0, 2 }), 4);

        n = query(q, "DeV.Vm", 1, 1, 0);      /* case-insensitive, case kept in the echo */
        m = dns_answer(q, n, lookup, NULL, r, sizeof(r));
        assert_int_equal(ancount(r), 1);
        assert_memory_equal(r + 12, q + 12, n - 12);

        n = query(q, "dev.vm", 28, 1, 0);     /* AAAA: the name exists, no data */
        m = dns_answer(q, n, lookup, NULL, r, sizeof(r));
        assert_int_equal(m, n);
        assert_int_equal(rcode(r), 0);
        assert_int_equal(ancount(r), 0);

        n = query(q, "dev.vm", 255, 1, 0);    /* ANY gets the A */
        assert_int_equal(dns_answer(q, n, lookup, NULL, r, sizeof(r)), n + 16);

        n = query(q, "nope.vm", 1, 1, 0);
        dns_answer(q, n, lookup, NULL, r, sizeof(r));
        assert_int_equal(rcode(r), 3);
        n = query(q, "a.dev.vm", 1, 1, 0);
        dns_answer(q, n, lookup, NULL, r, sizeof(r));
        assert_int_equal(rcode(r), 3);
        n = query(q, "a.b.c.d.e.vm", 1, 1, 0);
        dns_answer(q, n, lookup, NULL, r, sizeof(r));
        assert_int_equal(rcode(r), 3);
        n = query(q, "vm", 1, 1, 0);          /* the apex */
        dns_answer(q, n, lookup, NULL, r, sizeof(r));
        assert_int_equal(rcode(r), 0);
        assert_int_equal(ancount(r), 0);

        n = query(q, "example.com", 1, 1, 0);
        dns_answer(q, n, lookup, NULL, r, sizeof(r));
        assert_int_equal(rcode(r), 5);
        assert_false(r[2] & 0x04);
        n = query(q, "dev.vm", 1, 3, 0);      /* CHAOS class */
        dns_answer(q, n, lookup, NULL, r, sizeof(r));
        assert_int_equal(rcode(r), 5);
}

static void test_bad_packets(void **state) {
        uint8_t q[512], r[512];
        size_t n;
        (void) state;

        n = query(q, "dev.vm", 1, 1, 0x80);   /* a response: dropped */
        assert_int_equal(dns_answer(q, n, lookup, NULL, r, sizeof(r)), 0);
        n = query(q, "dev.vm", 1, 1, 0);
        for (size_t cut = 0; cut < n; cut++)  /* every truncation: dropped or FORMERR, never a read past */
                if (dns_answer(q, cut, lookup, NULL, r, sizeof(r)))
                        assert_int_not_equal(rcode(r), 0);
        n = query(q, "dev.vm", 1, 1, 0x20);   /* opcode 4 (NOTIFY) */
        assert_int_equal(dns_answer(q, n, lookup, NULL, r, sizeof(r)), 12);
        assert_int_equal(rcode(r), 4);
        n = query(q, "dev.vm", 1, 1, 0);
        q[5] = 2;                             /* two questions */
        dns_answer(q, n, lookup, NULL, r, sizeof(r));
        assert_int_equal(rcode(r), 1);
        q[5] = 1;
        q[12] = 0xc0;                         /* a pointer in the question */
        dns_answer(q, n, lookup, NULL, r, sizeof(r));
        assert_int_equal(rcode(r), 1);
        n = query(q, "dev.vm", 1, 1, 0);
        assert_int_equal(dns_answer(q, n, lookup, NULL, r, 100), 0); /* no room: dropped */
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_answers),
                cmocka_unit_test(test_bad_packets),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
