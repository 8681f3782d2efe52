/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * Host links over rtnetlink (libmnl) and the TUN driver: the bridge guests
 * sit on and one TAP per running VM. Operates in the caller's network
 * namespace. Called only through the privileged seam (priv.h).
 * All return 0 or -errno with *e set (op_error.h).
 */

#include <stdbool.h>
#include <sys/types.h>

struct op_error;

/* Creates the bridge when missing, adds addr/prefix when absent, sets it up. */
_warn_unused_ int nl_bridge_ensure(const char *name, const char *addr, int prefix, struct op_error *e);
/* A persistent TAP (no packet info) attached to `bridge` and up. */
_warn_unused_ /* A persistent TAP owned by `owner` (who may open it: the VMM's user). */
_warn_unused_ int nl_tap_create(const char *name, const char *bridge, uid_t owner, struct op_error *e);
/* A queue of the existing TAP `name` (the flags it was made with), for a VMM. */
_warn_unused_ int nl_tap_open(const char *name, int *ret_fd, struct op_error *e);
/* -ENOENT when there is no such link. */
int nl_link_delete(const char *name, struct op_error *e);
bool nl_link_exists(const char *name);

struct nl_link_info {
        int index;
        char kind[16];   /* IFLA_INFO_KIND: "tun", "bridge", "veth"; "" for none */
        int master_index; /* 0 when not enslaved */
        char master[16];  /* its name, "" when none */
};
/* What the kernel says about a link: -ENOENT when there is none. */
_warn_unused_ int nl_link_info(const char *name, struct nl_link_info *ret, struct op_error *e);
