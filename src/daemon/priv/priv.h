/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * The privileged-operations boundary: one table, one entry per operation
 * that needs root. The daemon reaches bridge, TAPs, nftables, IP forwarding,
 * resolvectl, image builds (mmdebstrap, mkfs) and device-mapper root disks
 * only through it. Every entry
 * validates its own arguments (src/host/hostops.h has the rules) whoever
 * calls it.
 *
 * Implementations:
 *   local.c    in-process, as the daemon's own user (user mode, as root);
 *   remote.c   a client of the root helper (bangerd-root), which serves
 *              the same list over its socket (system mode);
 *   tests      a fake that records calls in a ledger (tests/unit/fakes.c).
 *
 * All return 0 or -errno with *e set; e may be NULL.
 */

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#include "op_error.h"

/* A Debian image build into out_dir (rootfs.ext4, work-seed.ext4, build.log,
 * all the daemon's user's). */
struct priv_debian_build {
        const char *suite, *mirror;
        const char *const *packages; /* NULL-terminated */
        const char *init_mode;       /* "fast" | "systemd" */
        const char *out_dir;         /* exists, below the state dir */
};

/* Why a daemon that has neither build_debian nor build_debian_tar builds
 * no Debian image, and what to do instead. */
#define PRIV_NO_BUILDS                                                                                              \
        "building a Debian image needs root: run banger as root, or install it once with `sudo banger system "    \
        "install` (its root helper builds images); without root, import a bundle (`banger image pull "            \
        "FILE.tar.zst`, written by `banger image export` elsewhere) or pull a container image (`banger image pull " \
        "docker.io/library/debian:bookworm`)"

struct jail_plan;
struct priv_jail_info {
        int mode;        /* enum jail_mode (hostinfo.h) */
        char *exec_file; /* JAIL_ON: Firecracker's real path */
        char *reason;
};
void priv_jail_info_done(struct priv_jail_info *i);

struct priv_ops {
        const char *name; /* "local", "fake", ... */
        void *ud;

        /* The bridge is created when missing (with the policy's address) and
         * never deleted; TAPs come and go with VMs. */
        int (*bridge_ensure)(void *ud, const char *bridge, struct op_error *e);
        int (*tap_create)(void *ud, const char *tap, const char *bridge, struct op_error *e);
        /* 0 also when it was already gone. */
        int (*tap_delete)(void *ud, const char *tap, struct op_error *e);
        /* An fd of an existing TAP on the bridge, for the VMM (which then
         * needs no access to /dev/net/tun); the caller closes it. */
        int (*tap_open)(void *ud, const char *tap, int *ret_fd, struct op_error *e);
        bool (*link_exists)(void *ud, const char *name);
        /* NAT and the guard of one VM, found again by its id alone. The
         * guard: the TAP sends only from `mac` and `ip` (no IPv6), the guest
         * reaches the host only with replies, and an `isolate`d VM nothing
         * of the other guests'. */
        int (*nat_enable)(void *ud, const char *vm_id, const char *ip, struct op_error *e);
        int (*nat_disable)(void *ud, const char *vm_id, struct op_error *e);
        int (*guard_enable)(void *ud, const char *vm_id, const char *tap, const char *ip, const char *mac,
                            bool isolate, struct op_error *e);
        int (*guard_disable)(void *ud, const char *vm_id, struct op_error *e);
        int (*ip_forward)(void *ud, struct op_error *e);
        /* 0 routed, 1 the host has no systemd-resolved. */
        int (*dns_route)(void *ud, const char *listen_addr, struct op_error *e);
        void (*dns_unroute)(void *ud);

        /* The trees of a build never touch out_dir: only the three files do
         * (and a dead builder's work dir is swept where builds run). NULL
         * without root and helper: build_debian_tar. */
        int (*build_debian)(void *ud, const struct priv_debian_build *req, bool (*cancelled)(void *cud),
                            void *cancel_ud, uint64_t *ret_rootfs_size, struct op_error *e);
        /* Without root and helper (build_debian NULL): mmdebstrap's unshare
         * mode, the customized tree as out_dir's debian.tar of root-owned
         * entries (and build.log) for the daemon to make the images of.
         * tar_check says first whether this user can (subordinate ids,
         * newuidmap) and what to add otherwise. NULL where build_debian is set. */
        int (*build_debian_tar)(void *ud, const struct priv_debian_build *req, bool (*cancelled)(void *cud),
                                void *cancel_ud, struct op_error *e);
        int (*build_tar_check)(void *ud, struct op_error *e);

        /* A Firecracker VM's root disk as a device-mapper snapshot
         * (src/host/dmsnap.h): the image's rootfs (read-only loop) under the
         * VM's sparse COW file (loop). dm_available: device-mapper usable
         * here; without it (or NULL) root disks are copies. create:
         * *ret_dev /dev/mapper/banger-<vm_id>, the daemon's user's; the
         * rules (hostops.h): paths below banger's dirs, regular files, no
         * symlink, the COW at least the origin's size. remove: 0 also when
         * gone; its loops go with it. list: the vm ids of every banger-*
         * device (NULL-terminated), for reconcile. */
        bool (*dm_available)(void *ud);
        int (*dm_snapshot_create)(void *ud, const char *vm_id, const char *origin_path, const char *cow_path,
                                  char **ret_dev, struct op_error *e);
        int (*dm_snapshot_remove)(void *ud, const char *vm_id, struct op_error *e);
        int (*dm_snapshot_list)(void *ud, char ***ret_vm_ids, struct op_error *e);

        /* Firecracker under its jailer (src/host/jail.h), decided by
         * whoever does the privileged work (hostinfo_jail with its config
         * and uid: root runs the jailer, Firecracker then runs as the
         * owner). jail_info: JAIL_ON with the exec file's real path (a
         * jailed VMM's argv[0] name), else why not; NULL: never jailed.
         * jail_start: the chroot with files in it and the jailer started
         * detached (the rules: hostops.h). remove: 0 also when none. */
        int (*fc_jail_info)(void *ud, struct priv_jail_info *ret, struct op_error *e);
        int (*fc_jail_start)(void *ud, const char *vm_id, const char *const *files, size_t n, const char *log_path,
                             int vcpu, int memory_mib, pid_t *ret_pid, char **ret_root, struct op_error *e);
        int (*fc_jail_remove)(void *ud, const char *vm_id, struct op_error *e);
        int (*fc_jail_list)(void *ud, char ***ret_vm_ids, struct op_error *e);
};

/* The local table's jail (user mode as root): plan from hostinfo_jail, the
 * jails under base, Firecracker as uid:gid. */
struct priv_local;
void priv_local_set_jail(struct priv_local *l, const struct jail_plan *plan, const char *base, uid_t uid, gid_t gid);

/* bangerd started as mmdebstrap's customize hook of an unshare build (a
 * copy of it, run inside the build's user namespace): then its main. */
bool priv_is_build_hook(void);
int priv_build_hook_main(int argc, char **argv);

/* The in-process table for user mode. bridge/bridge_ip/prefix, the
 * directories banger owns (NULL-terminated) and the agent built images get
 * make its policy. */
struct priv_local;
_warn_unused_ int priv_local_new(const char *bridge, const char *bridge_ip, int prefix, const char *const *roots,
                                 const char *agent_bin, struct priv_local **ret, struct op_error *e);
const struct priv_ops *priv_local_ops(struct priv_local *l);
void priv_local_free(struct priv_local *l);

/* The table as a client of the root helper at socket_path (system mode). */
struct priv_remote;
struct priv_remote *priv_remote_new(const char *socket_path);
const struct priv_ops *priv_remote_ops(struct priv_remote *r);
void priv_remote_free(struct priv_remote *r);
