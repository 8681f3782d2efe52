/* SPDX-License-Identifier: MIT */
/*
 * Firecracker's jailer, the daemon's side: whoever does the privileged work
 * (priv ops: in-process as root, or the root helper) makes the chroot and
 * starts the jailer (src/host/jail.c); the sockets Firecracker binds in the
 * chroot are reached through symlinks at the run dir's usual (short) paths.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"
#include "vmm.h"

int fc_jail_socket_link(const char *target, const char *link, struct op_error *e) {
        (void) unlink(link);
        if (symlink(target, link) < 0)
                return op_fail(e, -errno, "cannot link %s to %s: %s", link, target, strerror(errno));
        return 0;
}
