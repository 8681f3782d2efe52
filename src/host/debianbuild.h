/* SPDX-License-Identifier: MIT */
#pragma once

/* The mechanism of a Debian image build (hostops.c checks the request). */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"
#include "op_error.h"

struct debian_build_req {
        const char *suite, *mirror;
        const char *const *packages; /* NULL-terminated */
        const char *init_mode;       /* "fast" | "systemd" */
        const char *agent_bin;       /* banger-agent, copied into the image */
        int out_fd;                  /* directory that gets rootfs.ext4, work-seed.ext4, build.log */
        const char *work_base;       /* where the private work dir goes ("/var/tmp") */
        uid_t owner_uid;             /* who gets the three files */
        gid_t owner_gid;
};

#define DEBIAN_WORK_PREFIX "banger-build-"
#define DEBIAN_TAR "debian.tar" /* debian_build_tar's output */

/* Room for the files, their inodes and ext4's own metadata, rounded to 64 MiB. */
uint64_t debian_ext4_size_for(uint64_t bytes, uint64_t floor);

/* The trees live in a fresh root-only work dir (work_base/banger-build-*,
 * with the builder's pid in it) that is gone when this returns; the three
 * files are created new (O_EXCL) in out_fd and handed to the owner. On
 * failure only build.log stays. */
_warn_unused_ int debian_build(const struct debian_build_req *q, bool (*cancelled)(void *ud), void *cancel_ud,
                               uint64_t *ret_rootfs_size, struct op_error *e);

/* banger's guest files on the tree at root: per-VM host keys removed, the
 * sshd drop-in, hostname, hosts, fstab, the agent (copied from agent_bin),
 * its unit for systemd images. */
_warn_unused_ int debian_customize(const char *root, const char *init_mode, const char *agent_bin,
                                   struct op_error *e);

/* Not root: mmdebstrap's unshare mode (needs newuidmap and a subordinate
 * id range: debian_unshare_check). The tree is made and customized inside
 * its user namespace (banger's files by a copy of this program run as
 * mmdebstrap's customize hook: debian_customize_hook_main) and comes out as
 * a tar of root-owned entries in out_fd's debian.tar (with build.log), for
 * the caller to make images of. The work dir (work_base/banger-build-*,
 * 0755 for the namespace's root to reach; its tmp/ world-writable, as
 * mmdebstrap asks of TMPDIR) is gone when this returns. On failure only
 * build.log stays. */
_warn_unused_ int debian_build_tar(const struct debian_build_req *q, bool (*cancelled)(void *ud), void *cancel_ud,
                                   struct op_error *e);
/* 0 when this user can run mmdebstrap's unshare mode; what is missing and
 * how to add it otherwise (-EPERM). */
_warn_unused_ int debian_unshare_check(struct op_error *e);
/* The customize hook's main (argv[1]: the tree; BANGER_INIT_MODE and
 * BANGER_AGENT from the environment). Exit status. */
int debian_customize_hook_main(int argc, char **argv);
/* true when this process was started as that hook */
bool debian_is_customize_hook(void);

/* Work dirs of builders that died (their pid gone): unmounted and removed.
 * How many. */
int debian_sweep_work(const char *work_base);
