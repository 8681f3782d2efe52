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

/* Room for the files, their inodes and ext4's own metadata, rounded to 64 MiB. */
uint64_t debian_ext4_size_for(uint64_t bytes, uint64_t floor);

/* The trees live in a fresh root-only work dir (work_base/banger-build-*,
 * with the builder's pid in it) that is gone when this returns; the three
 * files are created new (O_EXCL) in out_fd and handed to the owner. On
 * failure only build.log stays. */
_warn_unused_ int debian_build(const struct debian_build_req *q, bool (*cancelled)(void *ud), void *cancel_ud,
                               uint64_t *ret_rootfs_size, struct op_error *e);

/* Work dirs of builders that died (their pid gone): unmounted and removed.
 * How many. */
int debian_sweep_work(const char *work_base);
