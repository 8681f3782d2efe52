/* SPDX-License-Identifier: MIT */
/*
 * Guest side (banger-init, banger-agent --identify; libc only): network
 * configuration over rtnetlink (the Debian cloud kernel has no ip=
 * autoconfiguration): link up, one IPv4 address, a default route; an
 * address removed, the MAC changed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "guestnet.h"

struct nlreq {
        struct nlmsghdr nh;
        union {
                struct ifinfomsg ifi;
                struct ifaddrmsg ifa;
                struct rtmsg rt;
        };
        char attrs[256];
};

static void add_attr(struct nlreq *r, unsigned short type, const void *data, size_t len) {
        struct rtattr *a = (struct rtattr *) ((char *) r + NLMSG_ALIGN(r->nh.nlmsg_len));
        a->rta_type = type;
        a->rta_len = (unsigned short) RTA_LENGTH(len);
        memcpy(RTA_DATA(a), data, len);
        r->nh.nlmsg_len = NLMSG_ALIGN(r->nh.nlmsg_len) + RTA_ALIGN(a->rta_len);
}

/* Sends one request and waits for its ACK; returns 0 or -errno from the kernel. */
static int talk(struct nlreq *r) {
        struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
        char buf[4096];
        int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
        int ret = -EIO;

        if (fd < 0)
                return -errno;
        r->nh.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
        r->nh.nlmsg_seq = 1;
        if (sendto(fd, r, r->nh.nlmsg_len, 0, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                ret = -errno;
                goto out;
        }
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0) {
                ret = -errno;
                goto out;
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *) buf; NLMSG_OK(h, (unsigned) n); h = NLMSG_NEXT(h, n)) {
                if (h->nlmsg_type == NLMSG_ERROR) {
                        struct nlmsgerr *e = NLMSG_DATA(h);
                        ret = e->error; /* 0 is the ACK */
                        break;
                }
        }
out:
        close(fd);
        return ret;
}

static int link_up(int ifindex) {
        struct nlreq r = { 0 };
        r.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
        r.nh.nlmsg_type = RTM_NEWLINK;
        r.ifi.ifi_family = AF_UNSPEC;
        r.ifi.ifi_index = ifindex;
        r.ifi.ifi_flags = IFF_UP;
        r.ifi.ifi_change = IFF_UP;
        return talk(&r);
}

int guestnet_lo_up(void) {
        int idx = (int) if_nametoindex("lo");
        return idx ? link_up(idx) : -ENODEV;
}

/* "a.b.c.d/N" into addr and prefix. */
static int parse_cidr(const char *ip_cidr, struct in_addr *addr, long *prefix) {
        char addr_s[32];
        snprintf(addr_s, sizeof(addr_s), "%s", ip_cidr);
        char *slash = strchr(addr_s, '/');
        if (!slash)
                return -EINVAL;
        *slash = '\0';
        *prefix = strtol(slash + 1, NULL, 10);
        if (inet_pton(AF_INET, addr_s, addr) != 1 || *prefix < 1 || *prefix > 32)
                return -EINVAL;
        return 0;
}

int guestnet_del_addr(const char *iface, const char *ip_cidr) {
        struct in_addr addr;
        long prefix;
        int idx = (int) if_nametoindex(iface), r = parse_cidr(ip_cidr, &addr, &prefix);
        if (r < 0)
                return r;
        if (!idx)
                return -ENODEV;
        struct nlreq a = { 0 };
        a.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
        a.nh.nlmsg_type = RTM_DELADDR;
        a.ifa.ifa_family = AF_INET;
        a.ifa.ifa_prefixlen = (unsigned char) prefix;
        a.ifa.ifa_index = (unsigned) idx;
        add_attr(&a, IFA_LOCAL, &addr, sizeof(addr));
        r = talk(&a);
        return r == -EADDRNOTAVAIL ? 0 : r; /* not there: nothing to delete */
}

int guestnet_set_mac(const char *iface, const char *mac) {
        unsigned char m[6];
        unsigned v[6];
        int idx = (int) if_nametoindex(iface);
        if (sscanf(mac, "%2x:%2x:%2x:%2x:%2x:%2x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6 || strlen(mac) != 17)
                return -EINVAL;
        if (!idx)
                return -ENODEV;
        for (int i = 0; i < 6; i++)
                m[i] = (unsigned char) v[i];
        struct nlreq r = { 0 };
        r.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifinfomsg));
        r.nh.nlmsg_type = RTM_NEWLINK;
        r.ifi.ifi_family = AF_UNSPEC;
        r.ifi.ifi_index = idx;
        add_attr(&r, IFLA_ADDRESS, m, sizeof(m));
        return talk(&r);
}

int guestnet_up(const char *iface, const char *ip_cidr, const char *gw) {
        struct in_addr addr, gwa;
        long prefix;
        int idx = 0, r = parse_cidr(ip_cidr, &addr, &prefix);
        struct timespec step = { 0, 10 * 1000 * 1000 };

        if (r < 0)
                return r;
        /* The NIC appears once virtio_net has probed it; bounded wait. */
        for (int i = 0; i < 300 && !(idx = (int) if_nametoindex(iface)); i++)
                nanosleep(&step, NULL);
        if (!idx)
                return -ENODEV;

        struct nlreq a = { 0 };
        a.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg));
        a.nh.nlmsg_type = RTM_NEWADDR;
        a.nh.nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
        a.ifa.ifa_family = AF_INET;
        a.ifa.ifa_prefixlen = (unsigned char) prefix;
        a.ifa.ifa_index = (unsigned) idx;
        add_attr(&a, IFA_LOCAL, &addr, sizeof(addr));
        add_attr(&a, IFA_ADDRESS, &addr, sizeof(addr));
        r = talk(&a);
        if (r < 0)
                return r;
        r = link_up(idx);
        if (r < 0 || !gw || !*gw)
                return r;
        if (inet_pton(AF_INET, gw, &gwa) != 1)
                return -EINVAL;

        struct nlreq rt = { 0 };
        rt.nh.nlmsg_len = NLMSG_LENGTH(sizeof(struct rtmsg));
        rt.nh.nlmsg_type = RTM_NEWROUTE;
        rt.nh.nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
        rt.rt.rtm_family = AF_INET;
        rt.rt.rtm_table = RT_TABLE_MAIN;
        rt.rt.rtm_protocol = RTPROT_BOOT;
        rt.rt.rtm_scope = RT_SCOPE_UNIVERSE;
        rt.rt.rtm_type = RTN_UNICAST;
        add_attr(&rt, RTA_GATEWAY, &gwa, sizeof(gwa));
        add_attr(&rt, RTA_OIF, &idx, sizeof(idx));
        return talk(&rt);
}
