/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A port forward as users write it (`--publish`, `vm forward`):
 *   [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]
 * HOSTIP is an IPv4 address or an IPv6 one in brackets ("[::1]"); it
 * defaults to 127.0.0.1, so nothing is reachable from other hosts unless
 * asked. Ports are 1..65535, digits only. The forward's key on the host is
 * (proto, host ip, host port). Pure: unit-tested and fuzzed.
 */

#include <stdbool.h>
#include <stdint.h>

#define PORTSPEC_IP_MAX 46 /* INET6_ADDRSTRLEN */

enum port_proto { PORT_TCP = 0, PORT_UDP = 1 };

struct port_spec {
        enum port_proto proto;
        char host_ip[PORTSPEC_IP_MAX]; /* canonical text (inet_ntop) */
        uint16_t host_port, guest_port;
};

/* 0, or -EINVAL with *ret_why (a static string). */
int port_spec_parse(const char *s, struct port_spec *ret, const char **ret_why);
/* "[HOSTIP:]HOSTPORT[/proto]" as `vm forward --rm` takes it: ret->guest_port
 * is 0, *ret_any_ip tells that no host IP was given (every address matches),
 * *ret_any_proto that no protocol was (both match). */
int port_key_parse(const char *s, struct port_spec *ret, bool *ret_any_ip, bool *ret_any_proto, const char **ret_why);
/* "127.0.0.1:8080:80/tcp", "[::1]:53:53/udp"; buf of at least PORTSPEC_TEXT_MAX. */
#define PORTSPEC_TEXT_MAX (PORTSPEC_IP_MAX + 24)
void port_spec_format(const struct port_spec *s, char *buf);
const char *port_proto_name(enum port_proto p);
/* "tcp" / "udp" -> proto; -EINVAL otherwise. */
int port_proto_parse(const char *s, enum port_proto *ret);
/* IPv6 host address? */
bool port_spec_is_v6(const struct port_spec *s);
