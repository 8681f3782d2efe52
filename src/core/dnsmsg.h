/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The authoritative answer for banger's DNS zone `vm` (RFC 1035 wire
 * format), pure and fuzzed: one query in, one reply out (or nothing, for
 * packets that do not deserve one).
 *
 *   A <name>.vm      -> the address lookup() gives, else NXDOMAIN
 *   other types      -> NOERROR with no answer (when the name exists)
 *   vm (the apex)    -> NOERROR, no answer
 *   deeper names     -> NXDOMAIN;  other zones -> REFUSED
 *   opcode != QUERY  -> NOTIMP;    qdcount != 1 -> FORMERR
 *   responses, truncated or malformed queries -> dropped
 * Names compare case-insensitively; the question is echoed as sent.
 */

#include <stddef.h>
#include <stdint.h>

#define DNS_ZONE "vm"
#define DNS_TTL 5

/* label: the lowercase first label of <label>.vm. 1 and *ret_ip (host
 * order) when it names a running VM, else 0. */
typedef int (*dns_lookup_fn)(void *ud, const char *label, uint32_t *ret_ip);

/* Reply length in out (at most outcap), or 0 to drop the packet. */
size_t dns_answer(const uint8_t *q, size_t qlen, dns_lookup_fn lookup, void *ud, uint8_t *out, size_t outcap);
