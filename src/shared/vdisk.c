/* SPDX-License-Identifier: MIT */
#include "vdisk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int sysfs_find_dev(const char *class_dir, const char *prefix, const char *attr, const char *value, char *ret_dev,
                   size_t n) {
        DIR *d = opendir(class_dir);
        struct dirent *de;
        int r = -ENOENT;

        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                char path[300], buf[64] = "";
                if (de->d_name[0] == '.' || strncmp(de->d_name, prefix, strlen(prefix)) != 0)
                        continue;
                snprintf(path, sizeof(path), "%s/%s/%s", class_dir, de->d_name, attr);
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                ssize_t k = read(fd, buf, sizeof(buf) - 1);
                close(fd);
                if (k <= 0)
                        continue;
                buf[k] = '\0';
                buf[strcspn(buf, "\n")] = '\0';
                if (strcmp(buf, value) == 0) {
                        snprintf(ret_dev, n, "/dev/%s", de->d_name);
                        r = 0;
                        break;
                }
        }
        closedir(d);
        return r;
}

int vdisk_find(const char *serial, char *ret_dev, size_t n) {
        return sysfs_find_dev("/sys/block", "vd", "serial", serial, ret_dev, n);
}

/* The ext2/3/4 superblock: 1024 bytes in; s_magic at 56 (0xEF53, little
 * endian), s_volume_name at 120 (16 bytes, NUL-padded). */
int vdisk_has_label(const char *dev, const char *label) {
        uint8_t sb[136];
        int fd = open(dev, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t k = pread(fd, sb, sizeof(sb), 1024);
        int en = errno;
        close(fd);
        if (k < 0)
                return -en;
        if (k != (ssize_t) sizeof(sb) || sb[56] != 0x53 || sb[57] != 0xEF)
                return 0;
        char name[17];
        memcpy(name, sb + 120, 16);
        name[16] = '\0';
        return strcmp(name, label) == 0;
}
