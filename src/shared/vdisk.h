/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Guest side (banger-init and banger-agent, libc only): devices found through
 * sysfs (no udev in a guest): virtio disks by the serial banger gave them
 * (/sys/block/vd* /serial), the agent's port by its name; and the repo disk's
 * "ready" mark.
 *
 * The repo disk (serial "repo") holds /root/repo when a workspace was written
 * by the host (docs/GUEST.md, "The repo disk"). The host formats it with the
 * label VDISK_REPO_LABEL_NEW and sets VDISK_REPO_LABEL only once every file is
 * written, so a guest never mounts a half-written one.
 */

#include <stddef.h>

#define VDISK_REPO_SERIAL "repo"
#define VDISK_REPO_LABEL "banger-repo"
#define VDISK_REPO_LABEL_NEW "banger-repo-new"
#define VDISK_REPO_MOUNT "/root/repo"

/* "/dev/<entry>" of the entry of class_dir whose name starts with prefix and
 * whose attr file holds value (one line): 0, -ENOENT, or -errno. */
int sysfs_find_dev(const char *class_dir, const char *prefix, const char *attr, const char *value, char *ret_dev,
                   size_t n);

/* "/dev/vdX" of the disk with that serial: 0, or -ENOENT. */
int vdisk_find(const char *serial, char *ret_dev, size_t n);

/* 1 when dev holds an ext4 (or ext2/3) superblock labelled label, 0 when it
 * does not, -errno when it cannot be read. */
int vdisk_has_label(const char *dev, const char *label);
