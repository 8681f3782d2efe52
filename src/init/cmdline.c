/* SPDX-License-Identifier: MIT */
/* Pure: parses banger.* keys out of /proc/cmdline. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "init.h"

static int copy(char *dst, size_t n, const char *src, size_t len) {
        if (len >= n)
                return -ENAMETOOLONG;
        memcpy(dst, src, len);
        dst[len] = '\0';
        return 0;
}

int init_parse_cmdline(const char *cmdline, struct init_params *p) {
        static const struct {
                const char *key;
                size_t offset, size;
        } keys[] = {
#define K(k, f) { k, offsetof(struct init_params, f), sizeof(((struct init_params *) 0)->f) }
                K("banger.hostname", hostname), K("banger.root", root_serial), K("banger.work", work_serial),
                K("banger.repo", repo_serial), K("banger.modules", modules_serial),
                K("banger.rootfstype", rootfstype), K("banger.mode", mode), K("banger.init", init),
                K("banger.iface", iface), K("banger.ip", ip), K("banger.gw", gw),
#undef K
        };
        const char *s = cmdline;

        *p = (struct init_params) { 0 };
        snprintf(p->root_serial, sizeof(p->root_serial), "rootfs");
        snprintf(p->rootfstype, sizeof(p->rootfstype), "ext4");
        snprintf(p->mode, sizeof(p->mode), "systemd");
        snprintf(p->init, sizeof(p->init), "/sbin/init");
        snprintf(p->iface, sizeof(p->iface), "eth0");
        snprintf(p->hostname, sizeof(p->hostname), "banger");

        while (*s) {
                s += strspn(s, " \t\n");
                size_t len = strcspn(s, " \t\n");
                if (!len)
                        break;
                const char *eq = memchr(s, '=', len);
                if (len == 12 && memcmp(s, "banger.debug", 12) == 0)
                        p->debug = true;
                for (size_t i = 0; eq && i < sizeof(keys) / sizeof(keys[0]); i++) {
                        size_t kl = strlen(keys[i].key);
                        if ((size_t) (eq - s) != kl || memcmp(s, keys[i].key, kl) != 0)
                                continue;
                        int r = copy((char *) p + keys[i].offset, keys[i].size, eq + 1, len - kl - 1);
                        if (r < 0)
                                return r;
                }
                s += len;
        }
        if (strcmp(p->mode, "systemd") != 0 && strcmp(p->mode, "fast") != 0)
                return -EINVAL;
        if (p->init[0] != '/')
                return -EINVAL;
        return 0;
}
