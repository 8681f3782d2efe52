/* SPDX-License-Identifier: MIT */
/* The privileged operations in-process: each entry is the checked host
 * operation of src/host/hostops.c under the daemon's policy. */
#include "priv.h"

#include <stdlib.h>

#include "hostops.h"
#include "macro.h"
#include "strbuf.h"

struct priv_local {
        struct host_policy policy;
        struct priv_ops ops;
};

static int l_bridge_ensure(void *ud, const char *bridge, struct op_error *e) {
        return hostop_bridge_ensure(ud, bridge, e);
}

static int l_tap_create(void *ud, const char *tap, const char *bridge, struct op_error *e) {
        return hostop_tap_create(ud, tap, bridge, e);
}

static int l_tap_delete(void *ud, const char *tap, struct op_error *e) {
        return hostop_tap_delete(ud, tap, e);
}

static bool l_link_exists(void *ud, const char *name) {
        return hostop_link_exists(ud, name);
}

static int l_nat_enable(void *ud, const char *vm_id, const char *ip, struct op_error *e) {
        return hostop_nat_enable(ud, vm_id, ip, e);
}

static int l_nat_disable(void *ud, const char *vm_id, struct op_error *e) {
        return hostop_nat_disable(ud, vm_id, e);
}

static int l_guard_enable(void *ud, const char *vm_id, const char *tap, const char *ip, struct op_error *e) {
        return hostop_guard_enable(ud, vm_id, tap, ip, e);
}

static int l_guard_disable(void *ud, const char *vm_id, struct op_error *e) {
        return hostop_guard_disable(ud, vm_id, e);
}

static int l_ip_forward(void *ud, struct op_error *e) {
        return hostop_ip_forward(ud, e);
}

static int l_dns_route(void *ud, const char *listen_addr, struct op_error *e) {
        return hostop_dns_route(ud, listen_addr, e);
}

static void l_dns_unroute(void *ud) {
        hostop_dns_unroute(ud);
}

static int l_mmdebstrap(void *ud, const struct priv_debootstrap *q, bool (*cancelled)(void *cud), void *cancel_ud,
                        struct op_error *e) {
        struct hostop_debootstrap h = { .suite = q->suite, .mirror = q->mirror, .packages = q->packages,
                                        .dir = q->dir, .log_path = q->log_path };
        return hostop_mmdebstrap(ud, &h, cancelled, cancel_ud, e);
}

static int l_umount_below(void *ud, const char *dir, struct op_error *e) {
        return hostop_umount_below(ud, dir, e);
}

static int l_mkfs_ext4(void *ud, const char *dir, const char *label, uint64_t size_bytes, const char *out,
                       struct op_error *e) {
        return hostop_mkfs_ext4(ud, dir, label, size_bytes, out, e);
}

int priv_local_new(const char *bridge, const char *bridge_ip, int prefix, const char *const *roots,
                   struct priv_local **ret, struct op_error *e) {
        struct priv_local *l = xcalloc(1, sizeof(*l));
        int r = host_policy_init(&l->policy, bridge, bridge_ip, prefix, roots, e);
        if (r < 0) {
                free(l);
                return r;
        }
        l->ops = (struct priv_ops) {
                .name = "local", .ud = &l->policy,
                .bridge_ensure = l_bridge_ensure, .tap_create = l_tap_create, .tap_delete = l_tap_delete,
                .link_exists = l_link_exists, .nat_enable = l_nat_enable, .nat_disable = l_nat_disable,
                .guard_enable = l_guard_enable, .guard_disable = l_guard_disable, .ip_forward = l_ip_forward,
                .dns_route = l_dns_route, .dns_unroute = l_dns_unroute, .mmdebstrap = l_mmdebstrap,
                .umount_below = l_umount_below, .mkfs_ext4 = l_mkfs_ext4,
        };
        *ret = l;
        return 0;
}

const struct priv_ops *priv_local_ops(struct priv_local *l) {
        return &l->ops;
}

void priv_local_free(struct priv_local *l) {
        if (!l)
                return;
        host_policy_done(&l->policy);
        free(l);
}
