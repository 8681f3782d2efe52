/* SPDX-License-Identifier: MIT */
#include "netlink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "op_error.h"
#include "strbuf.h"

#define NLBUF 8192

DEFINE_TRIVIAL_CLEANUP_FUNC(struct mnl_socket *, mnl_socket_close);

/* One request, one ACK. */
static int nl_talk(struct nlmsghdr *nlh, const char *what, struct op_error *e) {
        _cleanup_(mnl_socket_closep) struct mnl_socket *nl = mnl_socket_open(NETLINK_ROUTE);
        char buf[NLBUF];

        if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
                return op_fail(e, -errno, "%s: netlink: %s", what, strerror(errno));
        }
        nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
        nlh->nlmsg_seq = (unsigned) time(NULL);
        unsigned portid = mnl_socket_get_portid(nl);
        if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
                return op_fail(e, -errno, "%s: netlink send: %s", what, strerror(errno));
        }
        ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
        if (n < 0 || mnl_cb_run(buf, (size_t) n, nlh->nlmsg_seq, portid, NULL, NULL) < 0) {
                int en = errno ? errno : EIO;
                return op_fail(e, -en, "%s: %s", what, strerror(en));
        }
        return 0;
}

static struct nlmsghdr *link_msg(char *buf, uint16_t type, uint16_t flags, int ifindex) {
        struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
        nlh->nlmsg_type = type;
        nlh->nlmsg_flags = flags;
        struct ifinfomsg *ifm = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifm));
        ifm->ifi_family = AF_UNSPEC;
        ifm->ifi_index = ifindex;
        return nlh;
}

static int link_set(const char *name, int master_index, bool up, struct op_error *e) {
        char buf[NLBUF];
        int idx = (int) if_nametoindex(name);
        if (idx == 0) {
                return op_fail(e, -ENOENT, "link %s: %s", name, strerror(errno));
        }
        struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, 0, idx);
        struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
        if (up) {
                ifm->ifi_change = IFF_UP;
                ifm->ifi_flags = IFF_UP;
        }
        if (master_index > 0)
                mnl_attr_put_u32(nlh, IFLA_MASTER, (uint32_t) master_index);
        _cleanup_free_ char *what = xasprintf("configuring %s", name);
        return nl_talk(nlh, what, e);
}

bool nl_link_exists(const char *name) {
        return if_nametoindex(name) > 0;
}

static int addr_add(const char *name, const char *addr, int prefix, struct op_error *e) {
        char buf[NLBUF];
        struct in_addr a;
        int idx = (int) if_nametoindex(name);
        if (idx == 0 || inet_pton(AF_INET, addr, &a) != 1) {
                return op_fail(e, -EINVAL, "cannot address %s with %s", name, addr);
        }
        struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
        nlh->nlmsg_type = RTM_NEWADDR;
        nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
        struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
        ifa->ifa_family = AF_INET;
        ifa->ifa_prefixlen = (unsigned char) prefix;
        ifa->ifa_scope = RT_SCOPE_UNIVERSE;
        ifa->ifa_index = (unsigned) idx;
        mnl_attr_put_u32(nlh, IFA_LOCAL, a.s_addr);
        mnl_attr_put_u32(nlh, IFA_ADDRESS, a.s_addr);
        _cleanup_free_ char *what = xasprintf("adding %s/%d to %s", addr, prefix, name);
        _cleanup_op_error_ struct op_error e2 = OP_ERROR_INIT;
        int r = nl_talk(nlh, what, &e2);
        if (r == -EEXIST)
                return 0; /* already there */
        if (r < 0)
                op_error_move(e, &e2);
        return r;
}

int nl_bridge_ensure(const char *name, const char *addr, int prefix, struct op_error *e) {
        char buf[NLBUF];
        int r;

        if (!nl_link_exists(name)) {
                struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, 0);
                mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
                struct nlattr *li = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
                mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "bridge");
                mnl_attr_nest_end(nlh, li);
                _cleanup_free_ char *what = xasprintf("creating bridge %s", name);
                _cleanup_op_error_ struct op_error e2 = OP_ERROR_INIT;
                r = nl_talk(nlh, what, &e2);
                if (r < 0 && r != -EEXIST) { /* a concurrent creator is fine */
                        op_error_move(e, &e2);
                        return r;
                }
        }
        if ((r = addr_add(name, addr, prefix, e)) < 0)
                return r;
        return link_set(name, 0, true, e);
}

/* A queue of TAP `name` (made when missing) with banger's flags. */
static int tun_attach(const char *name, int *ret_fd, struct op_error *e) {
        struct ifreq ifr = { 0 };
        _cleanup_close_ int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        if (strlen(name) >= IFNAMSIZ)
                return op_fail(e, -EINVAL, "TAP name %s is longer than %d bytes", name, IFNAMSIZ - 1);
        if (fd < 0)
                return op_fail(e, -errno, "cannot open /dev/net/tun: %s", strerror(errno));
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        memcpy(ifr.ifr_name, name, strlen(name));
        if (ioctl(fd, TUNSETIFF, &ifr) < 0)
                return op_fail(e, -errno, "cannot attach to TAP %s: %s", name, strerror(errno));
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int nl_tap_create(const char *name, const char *bridge, uid_t owner, struct op_error *e) {
        _cleanup_close_ int fd = -1;
        int r = tun_attach(name, &fd, e);
        if (r < 0)
                return r;
        if (ioctl(fd, TUNSETOWNER, (unsigned long) owner) < 0 || ioctl(fd, TUNSETPERSIST, 1) < 0) {
                r = op_fail(e, -errno, "cannot create TAP %s: %s", name, strerror(errno));
                (void) ioctl(fd, TUNSETPERSIST, 0);
                return r;
        }
        int master = (int) if_nametoindex(bridge);
        if (master == 0)
                r = op_fail(e, -ENOENT, "bridge %s does not exist", bridge);
        else
                r = link_set(name, master, true, e);
        if (r < 0)
                (void) nl_link_delete(name, NULL); /* undo; the first error is the one to report */
        return r;
}

int nl_tap_open(const char *name, int *ret_fd, struct op_error *e) {
        return tun_attach(name, ret_fd, e);
}

int nl_link_delete(const char *name, struct op_error *e) {
        char buf[NLBUF];
        int idx = (int) if_nametoindex(name);
        if (idx == 0)
                return -ENOENT;
        struct nlmsghdr *nlh = link_msg(buf, RTM_DELLINK, 0, idx);
        _cleanup_free_ char *what = xasprintf("deleting %s", name);
        int r = nl_talk(nlh, what, e);
        return r == -ENODEV ? -ENOENT : r;
}

struct link_info_cb {
        struct nl_link_info *info;
};

static int linkinfo_attr(const struct nlattr *a, void *data) {
        struct nl_link_info *info = data;
        if (mnl_attr_get_type(a) == IFLA_INFO_KIND && mnl_attr_validate(a, MNL_TYPE_STRING) >= 0)
                snprintf(info->kind, sizeof(info->kind), "%s", mnl_attr_get_str(a));
        return MNL_CB_OK;
}

static int link_attr(const struct nlattr *a, void *data) {
        struct nl_link_info *info = data;
        switch (mnl_attr_get_type(a)) {
        case IFLA_MASTER:
                if (mnl_attr_validate(a, MNL_TYPE_U32) >= 0)
                        info->master_index = (int) mnl_attr_get_u32(a);
                break;
        case IFLA_LINKINFO:
                mnl_attr_parse_nested(a, linkinfo_attr, info);
                break;
        default:
                break;
        }
        return MNL_CB_OK;
}

static int link_msg_cb(const struct nlmsghdr *nlh, void *data) {
        struct nl_link_info *info = data;
        struct ifinfomsg *ifm = mnl_nlmsg_get_payload(nlh);
        info->index = ifm->ifi_index;
        mnl_attr_parse(nlh, sizeof(*ifm), link_attr, info);
        return MNL_CB_OK;
}

int nl_link_info(const char *name, struct nl_link_info *ret, struct op_error *e) {
        _cleanup_(mnl_socket_closep) struct mnl_socket *nl = mnl_socket_open(NETLINK_ROUTE);
        char buf[NLBUF];
        int idx = (int) if_nametoindex(name);
        struct nl_link_info info = { 0 };

        if (idx == 0)
                return op_fail(e, -ENOENT, "link %s does not exist", name);
        if (!nl || mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0)
                return op_fail(e, -errno, "netlink: %s", strerror(errno));
        struct nlmsghdr *nlh = link_msg(buf, RTM_GETLINK, NLM_F_REQUEST, idx);
        nlh->nlmsg_seq = (unsigned) time(NULL);
        unsigned portid = mnl_socket_get_portid(nl);
        if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
                return op_fail(e, -errno, "netlink send: %s", strerror(errno));
        ssize_t n = mnl_socket_recvfrom(nl, buf, sizeof(buf));
        if (n < 0 || mnl_cb_run(buf, (size_t) n, nlh->nlmsg_seq, portid, link_msg_cb, &info) < 0) {
                int en = errno ? errno : EIO;
                return op_fail(e, en == ENODEV ? -ENOENT : -en, "link %s: %s", name, strerror(en));
        }
        if (info.master_index > 0 && !if_indextoname((unsigned) info.master_index, info.master))
                info.master[0] = '\0';
        *ret = info;
        return 0;
}
