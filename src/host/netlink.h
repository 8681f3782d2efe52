/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Host links over rtnetlink (libmnl) and the TUN driver: the bridge guests
 * sit on and one TAP per running VM. Operates in the caller's network
 * namespace. Called only through the privileged seam (priv.h).
 * All return 0 or -errno with *ret_err.
 */

#include <stdbool.h>

/* Creates the bridge when missing, adds addr/prefix when absent, sets it up. */
int nl_bridge_ensure(const char *name, const char *addr, int prefix, char **ret_err);
/* A persistent TAP (no packet info) attached to `bridge` and up. */
int nl_tap_create(const char *name, const char *bridge, char **ret_err);
/* -ENOENT when there is no such link. */
int nl_link_delete(const char *name, char **ret_err);
bool nl_link_exists(const char *name);
