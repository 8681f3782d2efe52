/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The bridge's IPv4 subnet and guest address allocation. Pure: the caller
 * passes the addresses in use (from the store) and gets the lowest free one,
 * so allocation is deterministic. Addresses are host byte order.
 */

#include <stddef.h>
#include <stdint.h>

struct ipv4_subnet {
        uint32_t bridge; /* the host's address on the bridge (the gateway) */
        int prefix;      /* 8..30 */
        uint32_t network, broadcast;
};

/* 0, or -EINVAL with *ret_err. */
int ipv4_subnet_init(struct ipv4_subnet *ret, const char *bridge_ip, int prefix, char **ret_err);

/* Lowest address that is not the network, broadcast, bridge or in `used`
 * (dotted quads; unparsable entries are ignored). -ENOSPC when full. */
int ipv4_alloc_lowest(const struct ipv4_subnet *n, const char *const *used, size_t n_used, uint32_t *ret);

int ipv4_parse(const char *s, uint32_t *ret);
/* "A.B.C.D:PORT" (port 1..65535, digits only) -> host-order address and port. */
int ipv4_port_parse(const char *s, uint32_t *ret_ip, uint16_t *ret_port);
/* buf must hold 16 bytes. */
void ipv4_format(uint32_t a, char *buf);

/* A locally unique MAC for a guest address: 52:54 (QEMU's prefix) and the
 * four octets, so distinct addresses never share a MAC. buf: 18 bytes. */
void mac_for_ipv4(uint32_t a, char *buf);
