/* SPDX-License-Identifier: MIT */
#include "ipnet.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "strbuf.h"

int ipv4_parse(const char *s, uint32_t *ret) {
        struct in_addr a;
        if (!s || inet_pton(AF_INET, s, &a) != 1)
                return -EINVAL;
        *ret = ntohl(a.s_addr);
        return 0;
}

int ipv4_port_parse(const char *s, uint32_t *ret_ip, uint16_t *ret_port) {
        const char *colon = s ? strrchr(s, ':') : NULL;
        char host[INET_ADDRSTRLEN];
        uint32_t ip;
        if (!colon || (size_t) (colon - s) >= sizeof(host) || colon[1] == '\0' ||
            strspn(colon + 1, "0123456789") != strlen(colon + 1) || strlen(colon + 1) > 5)
                return -EINVAL;
        memcpy(host, s, (size_t) (colon - s));
        host[colon - s] = '\0';
        long port = strtol(colon + 1, NULL, 10);
        if (ipv4_parse(host, &ip) < 0 || port < 1 || port > 65535)
                return -EINVAL;
        *ret_ip = ip;
        *ret_port = (uint16_t) port;
        return 0;
}

void ipv4_format(uint32_t a, char *buf) {
        snprintf(buf, 16, "%u.%u.%u.%u", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff);
}

int ipv4_subnet_init(struct ipv4_subnet *ret, const char *bridge_ip, int prefix, char **ret_err) {
        uint32_t ip;
        if (ipv4_parse(bridge_ip, &ip) < 0) {
                *ret_err = xasprintf("bridge_ip %s is not an IPv4 address", strempty(bridge_ip));
                return -EINVAL;
        }
        if (prefix < 8 || prefix > 30) {
                *ret_err = xasprintf("cidr /%d leaves no room for guests (8..30)", prefix);
                return -EINVAL;
        }
        uint32_t mask = 0xFFFFFFFFu << (32 - prefix);
        *ret = (struct ipv4_subnet) { .bridge = ip, .prefix = prefix, .network = ip & mask,
                                      .broadcast = (ip & mask) | ~mask };
        if (ip == ret->network || ip == ret->broadcast) {
                *ret_err = xasprintf("bridge_ip %s is the network or broadcast address of its /%d", bridge_ip, prefix);
                return -EINVAL;
        }
        return 0;
}

static int cmp_u32(const void *a, const void *b) {
        uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
        return x < y ? -1 : x > y;
}

int ipv4_alloc_lowest(const struct ipv4_subnet *n, const char *const *used, size_t n_used, uint32_t *ret) {
        _cleanup_free_ uint32_t *u = xmalloc((n_used + 1) * sizeof(uint32_t));
        size_t k = 0;
        for (size_t i = 0; i < n_used; i++)
                if (ipv4_parse(used[i], &u[k]) == 0)
                        k++;
        u[k++] = n->bridge;
        qsort(u, k, sizeof(uint32_t), cmp_u32);
        uint32_t cand = n->network + 1;
        for (size_t i = 0; i < k && cand < n->broadcast; i++) {
                if (u[i] < cand)
                        continue;
                if (u[i] > cand)
                        break;
                cand++;
        }
        if (cand >= n->broadcast)
                return -ENOSPC;
        *ret = cand;
        return 0;
}

void mac_for_ipv4(uint32_t a, char *buf) {
        snprintf(buf, 18, "52:54:%02x:%02x:%02x:%02x", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff);
}
