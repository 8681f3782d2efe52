/* SPDX-License-Identifier: MIT */
#include "caps.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "macro.h"
#include "strbuf.h"

/* ---- work disk: the persistent /root ---------------------------------------- */

static int workdisk_prepare(const struct vm_cap_ctx *c, struct op_error *e) {
        struct stat st;
        if (lstat(c->work_disk, &st) < 0)
                return op_fail(e, -errno, "work disk %s: %s (the VM's files are incomplete; delete and recreate it)",
                               c->work_disk, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return op_fail(e, -EBADFD, "work disk %s is not a regular file", c->work_disk);
        if (c->ret_work_disk)
                *c->ret_work_disk = c->work_disk;
        return 0;
}

const struct vm_cap vm_cap_workdisk = { .name = "work disk", .prepare_host = workdisk_prepare };

/* ---- the guard: a VM's frames carry its own MAC and IPv4, no IPv6; it
 * reaches the host only with replies; isolated, no other guest ---------------- */

static int guard_prepare(const struct vm_cap_ctx *c, struct op_error *e) {
        if (c->user_net) /* the VMM's own network: nothing of the host's */
                return 0;
        int r = c->priv->guard_enable(c->priv->ud, c->vm_id, c->tap, c->ip, c->mac, c->isolate, e);
        return r < 0 ? op_prefix(e, "address guard") : 0;
}

static int guard_cleanup(const struct vm_cap_ctx *c, struct op_error *e) {
        if (c->user_net)
                return 0;
        int r = c->priv->guard_disable(c->priv->ud, c->vm_id, e);
        return r < 0 ? op_prefix(e, "removing the address guard") : 0;
}

const struct vm_cap vm_cap_guard = { .name = "guard", .prepare_host = guard_prepare, .cleanup = guard_cleanup };

/* ---- NAT: outbound access for VMs created with --nat ------------------------------ */

static int nat_prepare(const struct vm_cap_ctx *c, struct op_error *e) {
        if (!c->nat || c->user_net) /* user-mode networking always reaches out */
                return 0;
        int r = c->priv->ip_forward(c->priv->ud, e);
        if (r == 0)
                r = c->priv->nat_enable(c->priv->ud, c->vm_id, c->ip, e);
        return r < 0 ? op_prefix(e, "NAT") : 0;
}

/* Always: the VM's setting may have changed since its rules were made. */
static int nat_cleanup(const struct vm_cap_ctx *c, struct op_error *e) {
        if (c->user_net)
                return 0;
        int r = c->priv->nat_disable(c->priv->ud, c->vm_id, e);
        return r < 0 ? op_prefix(e, "removing NAT rules") : 0;
}

const struct vm_cap vm_cap_nat = { .name = "nat", .prepare_host = nat_prepare, .cleanup = nat_cleanup };

/* ---- DNS: <name>.vm ---------------------------------------------------------------- */

/* Records come from the store at query time (net/dnsd.c), so a VM needs
 * nothing of its own; what the host needs is systemd-resolved routing ~vm
 * to bangerd on the bridge, set up once (undone when the daemon stops). A
 * failure only costs name resolution through the host's resolver: logged,
 * never fatal to the start. */
static int dns_prepare(const struct vm_cap_ctx *c, struct op_error *e) {
        (void) e;
        if (c->user_net || !c->dns_listen || strcmp(c->dns_listen, "off") == 0 || !c->dns_routed ||
            atomic_exchange(c->dns_routed, true))
                return 0;
        _cleanup_op_error_ struct op_error de = OP_ERROR_INIT;
        int r = c->priv->dns_route(c->priv->ud, c->dns_listen, &de);
        if (r < 0)
                log_warn("routing ~vm to %s on %s with resolvectl: %s", c->dns_listen, c->bridge,
                         op_error_message(&de));
        else if (r == 0)
                log_info("systemd-resolved routes ~vm to %s on %s", c->dns_listen, c->bridge);
        return 0;
}

const struct vm_cap vm_cap_dns = { .name = "dns", .prepare_host = dns_prepare };

/* ---- port forwards: host ports relayed to the guest ----------------------------------- */

static int forwards_load(const struct vm_cap_ctx *c, struct port_spec **ret, size_t *ret_n, struct op_error *e) {
        *ret = NULL;
        *ret_n = 0;
        if (!c->fwd || !c->forwards)
                return 0;
        int r = c->forwards(c->forwards_ud, c->vm_id, ret, ret_n);
        return r < 0 ? op_fail(e, r, "reading the VM's port forwards: %s", strerror(-r)) : 0;
}

/* Before boot: every host port is free (a clear error now rather than a
 * guest booted for nothing). */
static int forward_prepare(const struct vm_cap_ctx *c, struct op_error *e) {
        struct port_spec *fs;
        size_t n;
        int r = forwards_load(c, &fs, &n, e);
        for (size_t i = 0; i < n && r == 0; i++)
                if (!fwd_is_open(c->fwd, c->vm_id, &fs[i]))
                        r = fwd_check(&fs[i], e);
        free(fs);
        return r;
}

/* Once the guest answers: the listeners (what opened is closed by cleanup
 * when one fails); with user-mode networking the VMM's forwards (they go
 * with it). */
static int forward_post_start(const struct vm_cap_ctx *c, struct op_error *e) {
        struct port_spec *fs;
        size_t n;
        int r = forwards_load(c, &fs, &n, e);
        for (size_t i = 0; i < n && r == 0; i++)
                r = c->user_net ? c->hostfwd(c->forwards_ud, c->vm_id, &fs[i], e)
                                : fwd_open(c->fwd, c->vm_id, &fs[i], c->ip, e);
        free(fs);
        return r;
}

static int forward_cleanup(const struct vm_cap_ctx *c, struct op_error *e) {
        (void) e;
        if (c->fwd)
                fwd_close_owner(c->fwd, c->vm_id);
        return 0;
}

const struct vm_cap vm_cap_forward = { .name = "forward", .prepare_host = forward_prepare,
                                       .post_start = forward_post_start, .cleanup = forward_cleanup };

/* ---- the table ----------------------------------------------------------------------- */

static const struct vm_cap *const default_caps[] = { &vm_cap_workdisk, &vm_cap_guard, &vm_cap_nat, &vm_cap_dns,
                                                      &vm_cap_forward };

const struct vm_cap *const *vm_caps_default(size_t *ret_n) {
        *ret_n = ELEMENTSOF(default_caps);
        return default_caps;
}

int vm_caps_prepare(const struct vm_cap *const *caps, size_t n, const struct vm_cap_ctx *c, size_t *ret_done,
                    struct op_error *e) {
        *ret_done = 0;
        for (size_t i = 0; i < n; i++) {
                if (caps[i]->prepare_host) {
                        int r = caps[i]->prepare_host(c, e);
                        if (r < 0)
                                return r;
                }
                *ret_done = i + 1;
        }
        return 0;
}

int vm_caps_post_start(const struct vm_cap *const *caps, size_t n, const struct vm_cap_ctx *c, struct op_error *e) {
        for (size_t i = 0; i < n; i++)
                if (caps[i]->post_start) {
                        int r = caps[i]->post_start(c, e);
                        if (r < 0)
                                return r;
                }
        return 0;
}

int vm_caps_cleanup(const struct vm_cap *const *caps, size_t n, const struct vm_cap_ctx *c, struct op_error *e) {
        _cleanup_strbuf_ struct strbuf msgs = STRBUF_INIT;
        int first = 0;
        for (size_t i = n; i-- > 0;) {
                if (!caps[i]->cleanup)
                        continue;
                _cleanup_op_error_ struct op_error ce = OP_ERROR_INIT;
                int r = caps[i]->cleanup(c, &ce);
                if (r < 0) {
                        if (!first)
                                first = r;
                        strbuf_addf(&msgs, "%s%s", msgs.len ? "; " : "", op_error_message(&ce));
                }
        }
        return first ? op_fail(e, first, "%s", msgs.buf) : 0;
}
