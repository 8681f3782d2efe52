/* SPDX-License-Identifier: MIT */
#include "repodisk.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto.h"
#include "../shared/vdisk.h"

static bool answer(char *buf, size_t n, size_t *pos, const char *key, bool ok, const char *why) {
        char s[64];
        snprintf(s, sizeof(s), "{\"%s\":%s", key, ok ? "true" : "false");
        bool r = json_put_raw(buf, n, pos, s);
        if (!ok)
                r = r && json_put_raw(buf, n, pos, ",\"error\":") && json_put_string(buf, n, pos, why);
        return r && json_put_raw(buf, n, pos, "}");
}

/* /root/repo is (the top of) a mount of dev */
static bool mounted(const char *dev) {
        struct stat m, d;
        return stat(VDISK_REPO_MOUNT, &m) == 0 && stat(dev, &d) == 0 && S_ISBLK(d.st_mode) && m.st_dev == d.st_rdev;
}

/* The guest's page cache of the disk would hide what the host wrote. */
static int drop_cache(const char *dev) {
        int fd = open(dev, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int r = ioctl(fd, BLKFLSBUF, 0) < 0 ? -errno : 0;
        close(fd);
        return r;
}

bool agent_repo_detach(char *buf, size_t n, size_t *pos) {
        char dev[64], why[160];
        if (vdisk_find(VDISK_REPO_SERIAL, dev, sizeof(dev)) < 0)
                return answer(buf, n, pos, "detached", false, "this VM has no repo disk");
        for (int i = 0; i < 8 && mounted(dev); i++)
                if (umount2(VDISK_REPO_MOUNT, UMOUNT_NOFOLLOW) < 0) {
                        snprintf(why, sizeof(why), "cannot unmount %s: %s", VDISK_REPO_MOUNT, strerror(errno));
                        return answer(buf, n, pos, "detached", false, why);
                }
        if (mounted(dev))
                return answer(buf, n, pos, "detached", false, "the repo disk is still mounted");
        int r = drop_cache(dev);
        if (r < 0) {
                snprintf(why, sizeof(why), "cannot drop the cache of %s: %s", dev, strerror(-r));
                return answer(buf, n, pos, "detached", false, why);
        }
        return answer(buf, n, pos, "detached", true, NULL);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f) {
        (void) st;
        (void) flag;
        if (f->level == 0)
                return 0;
        return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

bool agent_repo_attach(char *buf, size_t n, size_t *pos) {
        char dev[64], why[160];
        if (vdisk_find(VDISK_REPO_SERIAL, dev, sizeof(dev)) < 0)
                return answer(buf, n, pos, "attached", false, "this VM has no repo disk");
        if (mounted(dev))
                return answer(buf, n, pos, "attached", false, "the repo disk is mounted already");
        int r = drop_cache(dev);
        if (r == 0)
                r = vdisk_has_label(dev, VDISK_REPO_LABEL);
        if (r <= 0) {
                snprintf(why, sizeof(why), "the repo disk %s %s", dev,
                         r < 0 ? strerror(-r) : "is not marked complete");
                return answer(buf, n, pos, "attached", false, why);
        }
        struct stat st;
        if (lstat(VDISK_REPO_MOUNT, &st) == 0 && !S_ISDIR(st.st_mode))
                unlink(VDISK_REPO_MOUNT);
        else if (lstat(VDISK_REPO_MOUNT, &st) == 0 &&
                 nftw(VDISK_REPO_MOUNT, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0) {
                snprintf(why, sizeof(why), "cannot empty %s: %s", VDISK_REPO_MOUNT, strerror(errno));
                return answer(buf, n, pos, "attached", false, why);
        }
        if (mkdir(VDISK_REPO_MOUNT, 0755) < 0 && errno != EEXIST) {
                snprintf(why, sizeof(why), "mkdir %s: %s", VDISK_REPO_MOUNT, strerror(errno));
                return answer(buf, n, pos, "attached", false, why);
        }
        if (mount(dev, VDISK_REPO_MOUNT, "ext4", MS_NOATIME, NULL) < 0) {
                snprintf(why, sizeof(why), "cannot mount %s on %s: %s", dev, VDISK_REPO_MOUNT, strerror(errno));
                return answer(buf, n, pos, "attached", false, why);
        }
        return answer(buf, n, pos, "attached", true, NULL);
}
