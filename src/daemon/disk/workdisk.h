/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * The per-VM work disk: a sparse raw ext4 mounted on /root in the guest. It
 * starts as a copy of the image's work-seed (or an empty ext4), is grown to
 * the VM's disk size with resize2fs, and banger writes files into it with
 * libext2fs: no mount, no loop device, no root needed.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "op_error.h"

/* error_message() knows libext2fs's codes once this ran (idempotent, thread-safe). */
void ext2_errors_init(void);

/* seed may be NULL. Refuses a size smaller than the seed. */
_warn_unused_ int workdisk_create(const char *path, uint64_t size_bytes, const char *seed, struct op_error *e);

/* Grows the disk (file and filesystem) to size_bytes; shrinking is refused. */
_warn_unused_ int workdisk_grow(const char *path, uint64_t size_bytes, struct op_error *e);

/* Writes (creates or replaces) a regular file at fs_path (absolute inside
 * the work disk: "/.ssh/authorized_keys" is /root/.ssh/authorized_keys in
 * the guest), making missing parents (mode 0700) on the way. */
_warn_unused_ int workdisk_write_file(const char *image, const char *fs_path, const void *data, size_t len, mode_t mode,
                        uid_t uid, gid_t gid, struct op_error *e);

/* Many files in one open of the disk (a workspace written before boot). */
struct workdisk;
_warn_unused_ int workdisk_open(const char *image, struct workdisk **ret, struct op_error *e);
/* The host's src (regular file, directory or symlink; others are skipped)
 * at fs_path with its mode and mtime, owned uid:gid; missing parents are
 * made 0755 root-owned. */
_warn_unused_ int workdisk_put(struct workdisk *w, const char *fs_path, const char *src, uid_t uid, gid_t gid,
                               struct op_error *e);
/* A directory at fs_path (made with mode, root-owned, when missing; an
 * existing one is kept as it is). */
_warn_unused_ int workdisk_mkdir(struct workdisk *w, const char *fs_path, mode_t mode, struct op_error *e);
/* data as the regular file fs_path (replacing one), root-owned, mode. */
_warn_unused_ int workdisk_put_data(struct workdisk *w, const char *fs_path, const void *data, size_t len, mode_t mode,
                                    struct op_error *e);
/* A regular file of the image (no symlink followed, at most max bytes), NUL-terminated. */
_warn_unused_ int workdisk_read(struct workdisk *w, const char *fs_path, size_t max, char **ret, size_t *ret_len,
                                struct op_error *e);
uint64_t workdisk_bytes(const struct workdisk *w);
/* The filesystem's label, written at close. */
void workdisk_set_label(struct workdisk *w, const char *label);

/*
 * The repo disk: /root/repo of a VM whose workspace the host wrote (in the
 * guest: src/shared/vdisk.h). Created sparse and blank with the VM;
 * repodisk_reset makes it a new empty ext4 labelled label, in place (the
 * VMM keeps it open), while the guest has it unmounted.
 */
_warn_unused_ int repodisk_create(const char *path, uint64_t size_bytes, struct op_error *e);
_warn_unused_ int repodisk_reset(const char *path, const char *label, struct op_error *e);
/* Writes the bitmaps and the superblock back; frees w. */
int workdisk_close(struct workdisk *w, struct op_error *e);
