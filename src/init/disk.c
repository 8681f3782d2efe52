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

static int scan(const char *serial, char *ret_dev, size_t n) {
        DIR *d = opendir("/sys/block");
        struct dirent *de;
        int r = -ENOENT;

        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                char path[300], buf[64] = "";
                if (strncmp(de->d_name, "vd", 2) != 0)
                        continue;
                snprintf(path, sizeof(path), "/sys/block/%s/serial", de->d_name);
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                ssize_t k = read(fd, buf, sizeof(buf) - 1);
                close(fd);
                if (k <= 0)
                        continue;
                buf[k] = '\0';
                buf[strcspn(buf, "\n")] = '\0';
                if (strcmp(buf, serial) == 0) {
                        snprintf(ret_dev, n, "/dev/%s", de->d_name);
                        r = 0;
                        break;
                }
        }
        closedir(d);
        return r;
}

/* Device probing after the module load is asynchronous on some kernels: a
 * bounded wait (no udev to tell us) rather than an unbounded hang. */
int init_find_disk(const char *serial, char *ret_dev, size_t n, int timeout_ms) {
        struct timespec step = { 0, 10 * 1000 * 1000 };

        for (int waited = 0;; waited += 10) {
                if (scan(serial, ret_dev, n) == 0)
                        return 0;
                if (waited >= timeout_ms)
                        return -ENOENT;
                nanosleep(&step, NULL);
        }
}
