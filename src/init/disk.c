/* SPDX-License-Identifier: MIT */
/*
 * Finds a virtio disk by the serial banger gave it (QEMU -drive ...,serial=).
 * Without udev, /dev/disk/by-id does not exist: read /sys/block/vd* /serial.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "init.h"
#include "../shared/vdisk.h"

/* Device probing after the module load is asynchronous on some kernels: a
 * bounded wait (no udev to tell us) rather than an unbounded hang. */
int init_find_disk(const char *serial, char *ret_dev, size_t n, int timeout_ms) {
        struct timespec step = { 0, 10 * 1000 * 1000 };

        for (int waited = 0;; waited += 10) {
                if (vdisk_find(serial, ret_dev, n) == 0)
                        return 0;
                if (waited >= timeout_ms)
                        return -ENOENT;
                nanosleep(&step, NULL);
        }
}
