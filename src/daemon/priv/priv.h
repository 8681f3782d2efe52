/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The privileged-operations seam. Everything that needs (or may later need)
 * root goes through these few functions, so the root helper of a later issue
 * replaces this file and nothing else: building a root filesystem, making
 * ext4 images (and, with the VM lifecycle, bridge/TAP/nft).
 *
 * In user mode they run in-process as the daemon's user: as root they do the
 * real thing; otherwise mmdebstrap uses --mode=unshare (user namespaces).
 */

#include <stdbool.h>
#include <stdint.h>

struct priv_cancel {
        bool (*cancelled)(void *ud);
        void *ud;
};

/* Debian root filesystem into `dir` (must not exist or be empty). The tail of
 * mmdebstrap's output is in *ret_err on failure; -ECANCELED when cancelled. */
int priv_mmdebstrap(const char *suite, const char *mirror, const char *const *packages, const char *dir,
                    const char *log_path, const struct priv_cancel *c, char **ret_err);

/* Lazily unmounts every mount point at or below `dir` (deepest first).
 * Returns how many were unmounted. */
int priv_umount_below(const char *dir);

/* ext4 image of `dir` (mkfs.ext4 -d), `size_bytes` large (sparse). */
int priv_mkfs_ext4_from_dir(const char *dir, const char *label, uint64_t size_bytes, const char *out,
                            char **ret_err);

/* Networking (bridge mode). The bridge is created on first need and never
 * deleted automatically; TAPs come and go with running VMs. */
int priv_bridge_ensure(const char *name, const char *addr, int prefix, char **ret_err);
int priv_tap_create(const char *name, const char *bridge, char **ret_err);
/* 0 also when the TAP was already gone. */
int priv_tap_delete(const char *name, char **ret_err);
bool priv_link_exists(const char *name);

/* NAT for one VM in nftables' `inet banger` (net/nat.h); disable is
 * idempotent and finds the rules by the VM id alone. */
int priv_nat_enable(const char *vm_id, const char *tap, const char *ip, const char *bridge, char **ret_err);
int priv_nat_disable(const char *vm_id, char **ret_err);

/* On hosts with systemd-resolved: route the `vm` domain to bangerd's DNS on
 * the bridge (resolvectl dns/domain), and undo it. 0 when done, 1 when the
 * host has no systemd-resolved (nothing to do), -errno on failure. */
int priv_dns_route(const char *bridge, const char *listen_addr, char **ret_err);
void priv_dns_unroute(const char *bridge);
int priv_antispoof_enable(const char *vm_id, const char *tap, const char *ip, char **ret_err);
int priv_antispoof_disable(const char *vm_id, char **ret_err);
