/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * The privileged-operations boundary: one table, one entry per operation
 * that needs root. The daemon reaches bridge, TAPs, nftables, IP forwarding,
 * resolvectl, mmdebstrap, unmounts and mkfs only through it. Every entry
 * validates its own arguments (src/host/hostops.h has the rules) whoever
 * calls it.
 *
 * Implementations:
 *   local.c    in-process, as the daemon's own user (user mode, as root);
 *   (later)    a client of the root helper, which serves the same list;
 *   tests      a fake that records calls in a ledger (tests/unit/fakes.c).
 *
 * All return 0 or -errno with *e set; e may be NULL.
 */

#include <stdbool.h>
#include <stdint.h>

#include "op_error.h"

struct priv_debootstrap {
        const char *suite, *mirror;
        const char *const *packages; /* NULL-terminated */
        const char *dir;             /* must not exist */
        const char *log_path;
};

struct priv_ops {
        const char *name; /* "local", "fake", ... */
        void *ud;

        /* The bridge is created when missing (with the policy's address) and
         * never deleted; TAPs come and go with VMs. */
        int (*bridge_ensure)(void *ud, const char *bridge, struct op_error *e);
        int (*tap_create)(void *ud, const char *tap, const char *bridge, struct op_error *e);
        /* 0 also when it was already gone. */
        int (*tap_delete)(void *ud, const char *tap, struct op_error *e);
        bool (*link_exists)(void *ud, const char *name);
        /* NAT and the address guard of one VM, found again by its id alone. */
        int (*nat_enable)(void *ud, const char *vm_id, const char *ip, struct op_error *e);
        int (*nat_disable)(void *ud, const char *vm_id, struct op_error *e);
        int (*guard_enable)(void *ud, const char *vm_id, const char *tap, const char *ip, struct op_error *e);
        int (*guard_disable)(void *ud, const char *vm_id, struct op_error *e);
        int (*ip_forward)(void *ud, struct op_error *e);
        /* 0 routed, 1 the host has no systemd-resolved. */
        int (*dns_route)(void *ud, const char *listen_addr, struct op_error *e);
        void (*dns_unroute)(void *ud);

        int (*mmdebstrap)(void *ud, const struct priv_debootstrap *req, bool (*cancelled)(void *cud), void *cancel_ud,
                          struct op_error *e);
        /* How many mount points were unmounted, or -errno. */
        int (*umount_below)(void *ud, const char *dir, struct op_error *e);
        int (*mkfs_ext4)(void *ud, const char *dir, const char *label, uint64_t size_bytes, const char *out,
                         struct op_error *e);
};

/* The in-process table for user mode. bridge/bridge_ip/prefix and the
 * directories banger owns (NULL-terminated) make its policy. */
struct priv_local;
_warn_unused_ int priv_local_new(const char *bridge, const char *bridge_ip, int prefix, const char *const *roots,
                   struct priv_local **ret, struct op_error *e);
const struct priv_ops *priv_local_ops(struct priv_local *l);
void priv_local_free(struct priv_local *l);
