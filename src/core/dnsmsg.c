/* SPDX-License-Identifier: MIT */
#include "dnsmsg.h"

#include <stdbool.h>
#include <string.h>

enum { RC_NOERROR = 0, RC_FORMERR = 1, RC_NXDOMAIN = 3, RC_NOTIMP = 4, RC_REFUSED = 5 };
enum { T_A = 1, T_ANY = 255, C_IN = 1, C_ANY = 255 };

static uint16_t get16(const uint8_t *p) {
        return (uint16_t) ((p[0] << 8) | p[1]);
}

static void put16(uint8_t *p, uint16_t v) {
        p[0] = (uint8_t) (v >> 8);
        p[1] = (uint8_t) v;
}

/* The reply header: id and RD from the query, QR and AA set. */
static size_t header(const uint8_t *q, uint8_t *out, int rcode, uint16_t qd, uint16_t an) {
        memcpy(out, q, 2);
        out[2] = (uint8_t) (0x80 | 0x04 | (q[2] & 0x79)); /* QR, opcode as asked, AA, RD */
        out[3] = (uint8_t) (rcode & 0x0f);                /* RA=0 */
        put16(out + 4, qd);
        put16(out + 6, an);
        put16(out + 8, 0);
        put16(out + 10, 0);
        return 12;
}

size_t dns_answer(const uint8_t *q, size_t qlen, dns_lookup_fn lookup, void *ud, uint8_t *out, size_t outcap) {
        char first[64] = "", last[64] = "";
        size_t nlabels = 0, pos = 12, namelen = 0;

        if (qlen < 12 || outcap < 512 || (q[2] & 0x80))
                return 0; /* too short, or a response: never answer those */
        int opcode = (q[2] >> 3) & 0x0f;
        if (opcode != 0)
                return header(q, out, RC_NOTIMP, 0, 0);
        if (get16(q + 4) != 1 || get16(q + 6) != 0 || get16(q + 8) != 0)
                return header(q, out, RC_FORMERR, 0, 0);

        /* QNAME: plain labels only (no compression pointers in a question) */
        for (;;) {
                if (pos >= qlen)
                        return 0;
                uint8_t len = q[pos];
                if (len == 0) {
                        pos++;
                        break;
                }
                if (len & 0xc0)
                        return header(q, out, RC_FORMERR, 0, 0);
                if (pos + 1 + len > qlen)
                        return 0;
                namelen += (size_t) len + 1;
                if (namelen > 254)
                        return header(q, out, RC_FORMERR, 0, 0);
                for (size_t i = 0; i < len; i++) {
                        char c = (char) q[pos + 1 + i];
                        last[i] = (c >= 'A' && c <= 'Z') ? (char) (c - 'A' + 'a') : c;
                }
                last[len] = '\0';
                if (memchr(last, '\0', len))
                        last[0] = '\0'; /* an embedded NUL never matches */
                if (nlabels == 0)
                        memcpy(first, last, sizeof(first));
                nlabels++;
                pos += 1 + (size_t) len;
        }
        if (pos + 4 > qlen)
                return 0;
        uint16_t qtype = get16(q + pos), qclass = get16(q + pos + 2);
        size_t qend = pos + 4;
        size_t qsize = qend - 12;
        if (12 + qsize + 16 > outcap)
                return 0;

        size_t n = header(q, out, RC_NOERROR, 1, 0);
        memcpy(out + n, q + 12, qsize); /* the question as asked (case kept) */
        n += qsize;

        bool in_zone = nlabels >= 1 && strcmp(last, DNS_ZONE) == 0;
        if (!in_zone || (qclass != C_IN && qclass != C_ANY)) {
                out[3] = RC_REFUSED;
                out[2] &= (uint8_t) ~0x04; /* not authoritative for it */
                return n;
        }
        if (nlabels == 1)
                return n; /* the apex: NOERROR, no data */
        uint32_t ip = 0;
        if (nlabels != 2 || !first[0] || !lookup(ud, first, &ip)) {
                out[3] = RC_NXDOMAIN;
                return n;
        }
        if (qtype != T_A && qtype != T_ANY)
                return n; /* the name exists, no data of that type */
        put16(out + 6, 1);
        put16(out + n, 0xc00c); /* pointer to the question's name */
        put16(out + n + 2, T_A);
        put16(out + n + 4, C_IN);
        out[n + 6] = 0;
        out[n + 7] = 0;
        put16(out + n + 8, DNS_TTL);
        put16(out + n + 10, 4);
        out[n + 12] = (uint8_t) (ip >> 24);
        out[n + 13] = (uint8_t) (ip >> 16);
        out[n + 14] = (uint8_t) (ip >> 8);
        out[n + 15] = (uint8_t) ip;
        return n + 16;
}
