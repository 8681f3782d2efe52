/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Capability hooks (the design notes' vmCaps): what a VM gets from the host
 * besides its VMM and TAP, each as one unit with three steps:
 *
 *   prepare_host  before boot, with the TAP up: make the host ready (rules,
 *                 routes) and contribute to the boot (the work disk);
 *   post_start    once the guest answers;
 *   cleanup       after the VMM is gone (stop, kill, delete, the exit
 *                 watcher, reconcile, a failed start). Idempotent, and it
 *                 must work from the VM id alone: after a crash nothing else
 *                 may be known.
 *
 * The VM service runs the table in order for prepare_host/post_start and
 * stops at the first failure; cleanup runs every hook in reverse order even
 * when some fail, and joins their errors. Hooks reach the host only through
 * the priv ops in the context. This folder includes nothing of the VM
 * service: the context carries what a hook may use.
 */

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/forward.h"
#include "op_error.h"
#include "portspec.h"
#include "priv/priv.h"

struct vm_cap_ctx {
        const struct priv_ops *priv; /* borrowed */
        const char *vm_id, *vm_name;
        const char *ip;          /* guest IPv4; NULL in cleanup after a crash */
        const char *mac;         /* the guest's MAC (the VM row's) */
        const char *tap;         /* NULL in cleanup, and with user-mode networking */
        bool user_net;           /* user-mode networking: no TAP, bridge, guard, NAT or ~vm route */
        const char *bridge;
        bool nat;                /* the VM's NAT setting */
        bool isolate;            /* no traffic with other guests (the VM row's) */
        const char *work_disk;   /* <vm_dir>/work.ext4 */
        uint64_t work_disk_bytes;
        const char *dns_listen;  /* config dns_listen, or "off" */
        _Atomic bool *dns_routed; /* daemon-wide: the ~vm route is set up once */
        const char **ret_work_disk; /* prepare_host of the work disk: what to boot with */
        struct fwd *fwd;         /* the daemon's port forward relay; NULL: none */
        /* The VM's recorded port forwards (*ret malloc'd). */
        int (*forwards)(void *ud, const char *vm_id, struct port_spec **ret, size_t *ret_n);
        /* user_net: a forward the VMM itself makes (it keeps it for its life). */
        int (*hostfwd)(void *ud, const char *vm_id, const struct port_spec *f, struct op_error *e);
        void *forwards_ud;
};

struct vm_cap {
        const char *name;
        int (*prepare_host)(const struct vm_cap_ctx *c, struct op_error *e);
        int (*post_start)(const struct vm_cap_ctx *c, struct op_error *e);
        int (*cleanup)(const struct vm_cap_ctx *c, struct op_error *e);
};

extern const struct vm_cap vm_cap_workdisk, vm_cap_guard, vm_cap_nat, vm_cap_dns, vm_cap_forward;

/* The table the VM service runs, in order. */
const struct vm_cap *const *vm_caps_default(size_t *ret_n);

/* prepare_host of caps[0..n) in order; on failure *ret_done says how many
 * succeeded (their cleanup is the caller's) and e says which failed. */
int vm_caps_prepare(const struct vm_cap *const *caps, size_t n, const struct vm_cap_ctx *c, size_t *ret_done,
                    struct op_error *e);
int vm_caps_post_start(const struct vm_cap *const *caps, size_t n, const struct vm_cap_ctx *c, struct op_error *e);
/* cleanup of caps[0..n) in reverse; every hook runs. The first error's
 * errno, every message joined with "; ". */
int vm_caps_cleanup(const struct vm_cap *const *caps, size_t n, const struct vm_cap_ctx *c, struct op_error *e);
