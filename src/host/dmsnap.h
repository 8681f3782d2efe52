/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * A VM's root disk as a device-mapper snapshot (the mechanism; the rules are
 * hostops.c's): a read-only loop of the image's rootfs as the origin, a loop
 * of the VM's sparse COW file, and `banger-<vm id>` =
 * `0 <origin sectors> snapshot <origin maj:min> <cow maj:min> P 8`
 * (persistent, 4 KiB chunks: the COW file keeps its exceptions across a
 * stop, so a restarted VM sees its own writes again).
 *
 * Loops are taken with LOOP_CTL_GET_FREE + LOOP_CONFIGURE and
 * LO_FLAGS_AUTOCLEAR: the kernel detaches each one when its last opener
 * closes it. While a snapshot exists the DM device holds both; removing it
 * releases them and they go. A create that fails at any step closes what it
 * opened (and removes a device it made), so its loops go at once.
 *
 * libdevmapper keeps global state: every call here is serialised by one
 * lock. Nothing here logs; libdevmapper's messages end up in the errors.
 */

#include <stdbool.h>
#include <stdint.h>

#include "op_error.h"

#define DMSNAP_PREFIX "banger-"
#define DMSNAP_CHUNK_SECTORS 8

/* Pure. "banger-<vm_id>". */
char *dmsnap_name(const char *vm_id);
/* Pure. The vm id of a banger snapshot's name, or NULL when name is not
 * one (DMSNAP_PREFIX + 16 lowercase hex digits). */
const char *dmsnap_name_vm_id(const char *name);
/* Pure. The snapshot target's table line, or NULL when it cannot be one
 * (no sectors, a device that is not "maj:min"). */
char *dmsnap_table(uint64_t origin_sectors, const char *origin_dev, const char *cow_dev);

/* /dev/mapper/control opens read-write and the driver answers (root, a
 * kernel with device-mapper, a /dev that has the node). */
bool dmsnap_available(void);

/* origin_fd: the rootfs opened read-only; cow_fd: the COW file opened
 * read-write (both regular files, checked by the caller). uid/gid own the
 * device node (mode 0600). *ret_dev: /dev/mapper/banger-<vm_id>. -EEXIST
 * when the VM has one already. */
_warn_unused_ int dmsnap_create(const char *vm_id, int origin_fd, int cow_fd, uid_t uid, gid_t gid, char **ret_dev,
                                struct op_error *e);
/* 0 also when it does not exist (or device-mapper is absent altogether);
 * libdevmapper retries a busy device a few times before -EBUSY. create and
 * list say -EOPNOTSUPP without /dev/mapper/control (libdevmapper, as root,
 * would otherwise make the node itself). */
_warn_unused_ int dmsnap_remove(const char *vm_id, struct op_error *e);
/* The vm ids of every banger-* device (NULL-terminated, possibly empty). */
_warn_unused_ int dmsnap_list(char ***ret_vm_ids, struct op_error *e);
