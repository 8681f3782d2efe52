/* SPDX-License-Identifier: MIT */
#include "portspec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *port_proto_name(enum port_proto p) {
        return p == PORT_UDP ? "udp" : "tcp";
}

int port_proto_parse(const char *s, enum port_proto *ret) {
        if (strcmp(s, "tcp") == 0)
                *ret = PORT_TCP;
        else if (strcmp(s, "udp") == 0)
                *ret = PORT_UDP;
        else
                return -EINVAL;
        return 0;
}

bool port_spec_is_v6(const struct port_spec *s) {
        return strchr(s->host_ip, ':') != NULL;
}

static int port_parse(const char *s, size_t n, uint16_t *ret) {
        unsigned v = 0;
        if (n == 0 || n > 5)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                v = v * 10 + (unsigned) (s[i] - '0');
        }
        if (v == 0 || v > 65535)
                return -EINVAL;
        *ret = (uint16_t) v;
        return 0;
}

/* An address of n bytes at s (IPv6 without its brackets) in canonical form. */
static int ip_parse(const char *s, size_t n, bool v6, char out[PORTSPEC_IP_MAX]) {
        char tmp[PORTSPEC_IP_MAX];
        unsigned char bin[16];
        if (n == 0 || n >= sizeof(tmp))
                return -EINVAL;
        memcpy(tmp, s, n);
        tmp[n] = '\0';
        int af = v6 ? AF_INET6 : AF_INET;
        if (inet_pton(af, tmp, bin) != 1 || !inet_ntop(af, bin, out, PORTSPEC_IP_MAX))
                return -EINVAL;
        return 0;
}

/* The host part: "[v6]:" or "v4:" or nothing; *s moves past it. */
static int host_part(const char **s, size_t ncolon_needed, struct port_spec *ret, bool *ret_given, const char **why) {
        const char *p = *s;
        *ret_given = false;
        snprintf(ret->host_ip, sizeof(ret->host_ip), "127.0.0.1");
        if (*p == '[') {
                const char *end = strchr(p, ']');
                if (!end || end[1] != ':')
                        return *why = "an IPv6 host address goes in brackets, followed by ':'", -EINVAL;
                if (ip_parse(p + 1, (size_t) (end - p - 1), true, ret->host_ip) < 0)
                        return *why = "not an IPv6 address in the brackets", -EINVAL;
                *s = end + 2;
                *ret_given = true;
                return 0;
        }
        size_t colons = 0;
        for (const char *c = p; *c && *c != '/'; c++)
                colons += *c == ':';
        if (colons > ncolon_needed)
                return *why = "too many ':' (an IPv6 host address goes in brackets)", -EINVAL;
        if (colons < ncolon_needed)
                return 0;
        const char *c = strchr(p, ':');
        if (ip_parse(p, (size_t) (c - p), false, ret->host_ip) < 0)
                return *why = "the host address is not an IPv4 address", -EINVAL;
        *s = c + 1;
        *ret_given = true;
        return 0;
}

static int proto_part(const char *slash, struct port_spec *ret, bool *ret_given, const char **why) {
        *ret_given = slash != NULL;
        ret->proto = PORT_TCP;
        if (slash && port_proto_parse(slash + 1, &ret->proto) < 0)
                return *why = "the protocol must be tcp or udp", -EINVAL;
        return 0;
}

int port_spec_parse(const char *s, struct port_spec *ret, const char **ret_why) {
        const char *why = NULL;
        bool given;
        *ret = (struct port_spec) { 0 };
        if (!s || !*s || strlen(s) > 128)
                return *ret_why = "empty or too long", -EINVAL;
        int r = host_part(&s, 2, ret, &given, &why);
        if (r == 0) {
                const char *slash = strchr(s, '/'), *colon = strchr(s, ':');
                size_t end = slash ? (size_t) (slash - s) : strlen(s);
                if (!colon || (size_t) (colon - s) > end)
                        why = "expected HOSTPORT:GUESTPORT", r = -EINVAL;
                else if (port_parse(s, (size_t) (colon - s), &ret->host_port) < 0)
                        why = "the host port must be a number 1..65535", r = -EINVAL;
                else if (port_parse(colon + 1, end - (size_t) (colon - s) - 1, &ret->guest_port) < 0)
                        why = "the guest port must be a number 1..65535", r = -EINVAL;
                else
                        r = proto_part(slash, ret, &given, &why);
        }
        if (r < 0)
                *ret_why = why;
        return r;
}

int port_key_parse(const char *s, struct port_spec *ret, bool *ret_any_ip, bool *ret_any_proto, const char **ret_why) {
        const char *why = NULL;
        bool ip_given = false, proto_given = false;
        *ret = (struct port_spec) { 0 };
        if (!s || !*s || strlen(s) > 128)
                return *ret_why = "empty or too long", -EINVAL;
        int r = host_part(&s, 1, ret, &ip_given, &why);
        if (r == 0) {
                const char *slash = strchr(s, '/');
                size_t end = slash ? (size_t) (slash - s) : strlen(s);
                if (port_parse(s, end, &ret->host_port) < 0)
                        why = "the host port must be a number 1..65535", r = -EINVAL;
                else
                        r = proto_part(slash, ret, &proto_given, &why);
        }
        if (r < 0) {
                *ret_why = why;
                return r;
        }
        *ret_any_ip = !ip_given;
        *ret_any_proto = !proto_given;
        return 0;
}

void port_spec_format(const struct port_spec *s, char *buf) {
        bool v6 = port_spec_is_v6(s);
        snprintf(buf, PORTSPEC_TEXT_MAX, "%s%s%s:%u:%u/%s", v6 ? "[" : "", s->host_ip, v6 ? "]" : "",
                 (unsigned) s->host_port, (unsigned) s->guest_port, port_proto_name(s->proto));
}
