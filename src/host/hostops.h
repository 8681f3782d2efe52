/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * The closed list of privileged host operations. Each one checks its own
 * arguments against a policy as if its caller were hostile, then acts:
 * bangerd's in-process priv ops (daemon/priv/local.c) call these, and the
 * root helper serves exactly these. A refusal is RPC_UNAUTHORIZED with
 * -EPERM (or RPC_BAD_REQUEST with -EINVAL for malformed values), and its
 * message names the rule that was broken.
 *
 * The rules:
 *  - bridge: the policy's bridge only (br-fc or br-fc-*);
 *  - TAP: banger's names only (bg<12 hex>, tap-pool-<0..255>); deleting one
 *    also needs the kernel to say it is a tun device attached to the
 *    policy's bridge (or to nothing);
 *  - VM ids: 16 lowercase hex digits (they name nft rules: banger-vm:<id>);
 *  - addresses: inside the policy's network, not its network, broadcast or
 *    bridge address;
 *  - MACs: six lowercase hex pairs separated by ':', unicast (the group bit
 *    of the first octet clear), not all zero;
 *  - paths: absolute, normalised, below one of the policy's roots, and no
 *    component (the root's own ancestors excepted) is a symlink;
 *  - package names, suites, mirrors, labels: fixed character sets;
 *  - a root disk snapshot (device-mapper): the origin and the COW file are
 *    paths as above, opened without following a symlink at any component,
 *    regular files, not one file; the origin (opened read-only) at least
 *    1 MiB and whole 512-byte sectors; the COW file the policy owner's, at
 *    least the origin's size and at most HOST_DM_COW_MAX.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "op_error.h"
#include "jail.h"

#define HOST_POLICY_MAX_ROOTS 6

struct host_policy {
        char *bridge;         /* owned */
        char *bridge_ip;      /* owned: the bridge's address */
        uint32_t bridge_addr; /* host order */
        int prefix;
        char *roots[HOST_POLICY_MAX_ROOTS + 1]; /* owned, NULL-terminated: directories banger owns */
        uid_t owner_uid;      /* who gets TAPs and built images (the daemon's user) */
        gid_t owner_gid;
        char *agent_bin;      /* owned: the banger-agent every built image gets; NULL: no builds */
        char *work_base;      /* owned: where builds keep their trees; NULL: /var/tmp */
        /* Firecracker under its jailer (jail.h): jail_on with jail filled in
         * (uid:gid the owner's), else jail_why says why not (hostinfo_jail);
         * jail_base (<state>/jail) also when off: jails are removed whatever
         * the setting is now. */
        bool jail_on, jail_refused;
        struct host_jail jail;
        char *jail_why;
        char *jail_base;
};

/* roots: NULL-terminated, absolute (made canonical here). */
_warn_unused_ int host_policy_init(struct host_policy *p, const char *bridge, const char *bridge_ip, int prefix,
                     const char *const *roots, struct op_error *e);
void host_policy_done(struct host_policy *p);

/* The rules, one by one (also used by tests and the helper's decoder). */
_warn_unused_ int host_check_bridge(const struct host_policy *p, const char *name, struct op_error *e);
_warn_unused_ int host_check_tap_name(const char *name, struct op_error *e);
_warn_unused_ int host_check_vm_id(const char *id, struct op_error *e);
_warn_unused_ int host_check_guest_ip(const struct host_policy *p, const char *ip, struct op_error *e);
_warn_unused_ int host_check_mac(const char *mac, struct op_error *e);
/* must_exist: the path itself must exist (and not be a symlink). */
_warn_unused_ int host_check_path(const struct host_policy *p, const char *path, bool must_exist, struct op_error *e);

/* Networking. */
_warn_unused_ int hostop_bridge_ensure(const struct host_policy *p, const char *bridge, struct op_error *e);
_warn_unused_ int hostop_tap_create(const struct host_policy *p, const char *tap, const char *bridge, struct op_error *e);
/* 0 also when the TAP is already gone. */
_warn_unused_ int hostop_tap_delete(const struct host_policy *p, const char *tap, struct op_error *e);
/* An fd of the TAP for a VMM that may not open /dev/net/tun itself: a
 * banger TAP on the policy's bridge only. */
_warn_unused_ int hostop_tap_open(const struct host_policy *p, const char *tap, int *ret_fd, struct op_error *e);
bool hostop_link_exists(const struct host_policy *p, const char *name);
_warn_unused_ int hostop_nat_enable(const struct host_policy *p, const char *vm_id, const char *ip, struct op_error *e);
_warn_unused_ int hostop_nat_disable(const struct host_policy *p, const char *vm_id, struct op_error *e);
/* The guard of one VM (src/host/nft.h): its port sends only from its MAC
 * and IPv4 (no IPv6), reaches the host only with replies, and, isolated,
 * nothing of the other guests'. */
_warn_unused_ int hostop_guard_enable(const struct host_policy *p, const char *vm_id, const char *tap, const char *ip,
                                      const char *mac, bool isolate, struct op_error *e);
_warn_unused_ int hostop_guard_disable(const struct host_policy *p, const char *vm_id, struct op_error *e);
_warn_unused_ int hostop_ip_forward(const struct host_policy *p, struct op_error *e);
/* 0 routed, 1 no systemd-resolved on this host. */
_warn_unused_ int hostop_dns_route(const struct host_policy *p, const char *listen_addr, struct op_error *e);
void hostop_dns_unroute(const struct host_policy *p);

/* Root disks as device-mapper snapshots (dmsnap.h): banger-<vm_id>. */
#define HOST_DM_ORIGIN_MIN (1ull << 20)
#define HOST_DM_COW_MAX (1ull << 40)
struct stat;
/* The rule on the two files (pure: on their fstat). */
_warn_unused_ int host_check_dm_files(const struct host_policy *p, const struct stat *origin, const struct stat *cow,
                                      struct op_error *e);
/* Device-mapper and loop devices usable here (root, /dev/mapper/control). */
bool hostop_dm_available(const struct host_policy *p);
/* *ret_dev: /dev/mapper/banger-<vm_id>, the policy owner's (0600). */
_warn_unused_ int hostop_dm_snapshot_create(const struct host_policy *p, const char *vm_id, const char *origin_path,
                                            const char *cow_path, char **ret_dev, struct op_error *e);
/* 0 also when it is already gone; its loops go with it. */
_warn_unused_ int hostop_dm_snapshot_remove(const struct host_policy *p, const char *vm_id, struct op_error *e);
/* The vm ids of every banger-* device, NULL-terminated. */
_warn_unused_ int hostop_dm_snapshot_list(const struct host_policy *p, char ***ret_vm_ids, struct op_error *e);

/* Firecracker under its jailer (jail.h), each argument checked here: the
 * VM id; the files below banger's dirs, regular, opened without a symlink
 * anywhere (or the VM's own /dev/mapper/banger-<id>, a block device),
 * their names distinct; the log an existing regular file below them;
 * vcpu 1-32 and memory_mib 64 MiB-1 TiB (the cgroup limits, where the host's
 * cgroup2 root has the controllers: jail_cgroup_limits). The
 * jailer runs detached, Firecracker as the owner: *ret_pid its pid,
 * *ret_root the chroot. -EOPNOTSUPP (with the reason) when jailing is off. */
_warn_unused_ int hostop_fc_jail_start(const struct host_policy *p, const char *vm_id, const char *const *files,
                                       size_t n, const char *log_path, int vcpu, int memory_mib, pid_t *ret_pid,
                                       char **ret_root, struct op_error *e);
/* Every jail of the VM (0 when none). */
_warn_unused_ int hostop_fc_jail_remove(const struct host_policy *p, const char *vm_id, struct op_error *e);
_warn_unused_ int hostop_fc_jail_list(const struct host_policy *p, char ***ret_vm_ids, struct op_error *e);
#define HOST_JAIL_MAX_FILES 12

/* Image builds: the whole Debian build as one operation of a fixed shape.
 * out_dir is below a root, exists and is reached without a symlink (it is
 * opened component by component, and everything after goes through that
 * fd); rootfs.ext4, work-seed.ext4 and build.log must not exist in it yet
 * and come back belonging to the policy's owner. */
struct hostop_debian_build {
        const char *suite;           /* [a-z]+ */
        const char *mirror;          /* http(s)://, no spaces or quotes */
        const char *const *packages; /* NULL-terminated Debian package names */
        const char *init_mode;       /* "fast" | "systemd" */
        const char *out_dir;
};
_warn_unused_ int hostop_build_debian(const struct host_policy *p, const struct hostop_debian_build *req,
                                      bool (*cancelled)(void *ud), void *cancel_ud, uint64_t *ret_rootfs_size,
                                      struct op_error *e);
/* Without root: mmdebstrap's unshare mode into out_dir's debian.tar and
 * build.log (debian_build_tar), the same checks. */
_warn_unused_ int hostop_build_debian_tar(const struct host_policy *p, const struct hostop_debian_build *req,
                                          bool (*cancelled)(void *ud), void *cancel_ud, struct op_error *e);
/* The work dirs of builds whose builder died (see debianbuild.h): how many
 * were removed. Run where builds run, at start. */
int hostop_sweep_builds(const struct host_policy *p);
