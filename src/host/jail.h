/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * Firecracker under its jailer (the mechanism; the rules are hostops.c's).
 * The jailer makes <chroot_base>/<exec file name>/<jail id>/root, copies the
 * exec file in, chroots there in a mount namespace of its own, makes
 * /dev/kvm and /dev/net/tun, drops to uid:gid and execs Firecracker in
 * place with its own --id (so nothing after "--" may repeat it). Everything
 * the VMM opens must be inside that root: the VM's files are hard-linked in
 * (the chroot is on the state dir's filesystem; a block device gets a node
 * of its own) and given to uid:gid when only the VM has them. The jail id of
 * VM <id> is "banger-<id>".
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "op_error.h"

struct host_jail {
        char *jailer;      /* owned: its real path, a root-owned file only root can write */
        char *exec_file;   /* owned: Firecracker's real path, likewise */
        char *chroot_base; /* owned: <state>/jail */
        uid_t uid;         /* who Firecracker runs as */
        gid_t gid;
};
void host_jail_done(struct host_jail *j);

/* <chroot_base>/<basename of exec_file>/banger-<id>/root */
char *jail_root(const struct host_jail *j, const char *id);
/* The jailer's argv for VM id, with `--cgroup` for each of cgroups
 * (NULL-terminated, may be NULL): Firecracker gets `--api-sock /api.sock`. */
char **jail_argv(const struct host_jail *j, const char *id, char *const *cgroups);
/* Pure. The cgroup v2 limits of a VM of vcpu CPUs and memory_mib MiB, for
 * the controllers the cgroup2 root offers (controllers: its
 * cgroup.controllers line; a controller it lacks would make the jailer
 * fail): memory.max (the guest's RAM and 128 MiB for Firecracker),
 * cpu.max (vcpu CPUs' worth). NULL-terminated, possibly empty. */
char **jail_cgroup_limits(const char *controllers, int vcpu, int memory_mib);
/* The cgroup2 root's cgroup.controllers line (from /proc/mounts), or NULL
 * without a cgroup2 mount. */
char *jail_cgroup2_controllers(void);
/* Makes root and puts each open file in as names[i] (a regular file: a
 * hard link of that very file; a block device: a node of it); files only
 * this VM has, and the root, become uid:gid's. The VMM sees them as
 * "/<name>". */
_warn_unused_ int jail_prepare(const struct host_jail *j, const char *root, const int *fds, const char *const *names,
                               size_t n, struct op_error *e);
/* argv detached: its own session, stdout and stderr to log_fd, stdin
 * /dev/null, not a child of the caller (whoever watches it uses a pidfd).
 * Async-signal-safe between fork and exec. */
_warn_unused_ int jail_spawn(char *const *argv, int log_fd, pid_t *ret_pid, struct op_error *e);
/* Every jail of VM id under chroot_base (any exec name), and the empty
 * cgroup the jailer made for it: how many, or -errno. */
int jail_remove(const char *chroot_base, const char *id);
/* The VM ids with a jail under chroot_base (NULL-terminated): how many, or -errno. */
int jail_list(const char *chroot_base, char ***ret_ids);
