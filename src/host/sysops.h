/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * Host operations that need root, as plain mechanisms: no policy and no
 * argument checks (hostops.h checks every argument before calling these).
 * All return 0 or -errno with *e set.
 */

#include <stdbool.h>
#include <stdint.h>

struct op_error;

/* One mmdebstrap run. */
struct mmdebstrap_req {
        const char *suite, *mirror;
        const char *const *packages; /* NULL-terminated; names checked by the caller */
        /* tar_fd < 0: root mode (as root), the tree into dir (must not
         * exist or be empty); else unshare mode, a tar of it on tar_fd */
        const char *dir;
        int tar_fd;
        const char *customize_hook; /* an executable run as the tree's root with its path; NULL: none */
        char *const *envp;          /* NULL: inherit */
        int log_fd;                 /* its messages; -1: nowhere */
};

/* A Debian root filesystem (the mode from tar_fd).
 * -ECANCELED when cancelled() said so. */
_warn_unused_ int sys_mmdebstrap(const struct mmdebstrap_req *q, bool (*cancelled)(void *ud), void *cancel_ud,
                                 struct op_error *e);
/* Lazily unmounts every mount point at or below `dir` (deepest first);
 * how many. */
int sys_umount_below(const char *dir);
/* ext4 image of `dir` (mkfs.ext4 -d) into the open regular file out_fd,
 * size_bytes large (sparse): mkfs reaches the file through /proc, never
 * through a path someone else could swap. */
_warn_unused_ int sys_mkfs_ext4_from_dir(const char *dir, const char *label, uint64_t size_bytes, int out_fd,
                                         struct op_error *e);
/* net.ipv4.ip_forward = 1 (a no-op when it already is). */
_warn_unused_ int sys_ip_forward_on(struct op_error *e);
/* With systemd-resolved: route the `vm` domain to listen_addr on the bridge
 * (resolvectl dns/domain). 1 when the host has no systemd-resolved. */
_warn_unused_ int sys_dns_route(const char *bridge, const char *listen_addr, struct op_error *e);
void sys_dns_unroute(const char *bridge);
