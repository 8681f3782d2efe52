/* SPDX-License-Identifier: MIT */
/*
 * Loads the modules listed (in dependency order, computed by the host when it
 * built the initramfs) in an order file, one path per line.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "init.h"

static int finit_module(int fd, const char *params, int flags) {
        return (int) syscall(SYS_finit_module, fd, params, flags);
}

int init_load_modules(const char *order_file, int *ret_loaded) {
        FILE *f = fopen(order_file, "re");
        char line[512];
        int loaded = 0;

        if (!f)
                return errno == ENOENT ? 0 : -errno;
        while (fgets(line, sizeof(line), f)) {
                line[strcspn(line, "\n")] = '\0';
                if (!line[0] || line[0] == '#')
                        continue;
                int fd = open(line, O_RDONLY | O_CLOEXEC);
                if (fd < 0) {
                        int e = errno;
                        fclose(f);
                        init_log("cannot open module %s: %s", line, strerror(e));
                        return -e;
                }
                if (finit_module(fd, "", 0) < 0 && errno != EEXIST) {
                        int e = errno;
                        close(fd);
                        fclose(f);
                        init_log("cannot load module %s: %s", line, strerror(e));
                        return -e;
                }
                close(fd);
                loaded++;
        }
        fclose(f);
        *ret_loaded = loaded;
        return 0;
}
