/* SPDX-License-Identifier: MIT */
/*
 * banger-agent --freeze: the guest's filesystems (/, /root, /root/repo)
 * frozen for a snapshot (FIFREEZE, deepest first: no write and no block I/O
 * in flight while the host pauses the guest and copies its disks), "frozen"
 * on stdout, then thawed (FITHAW) when stdin ends. A watchdog in a session
 * of its own thaws them too when this process dies any other way (the host's
 * channel lost: the agent kills the exec's process group) or after
 * FREEZE_MAX_S: a guest is never left frozen.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "identity.h"
#include "../shared/vdisk.h"

#define FREEZE_MAX_S 60

static const char *const points[] = { VDISK_REPO_MOUNT, "/root", "/" }; /* deepest first */

/* Is dir the root of a mount (not a directory of its parent's)? */
static bool mount_root(const char *dir) {
        struct stat a, b;
        char parent[64];
        if (strcmp(dir, "/") == 0)
                return true;
        snprintf(parent, sizeof(parent), "%s/..", dir);
        return stat(dir, &a) == 0 && stat(parent, &b) == 0 && a.st_dev != b.st_dev;
}

static void thaw_all(void) {
        for (size_t i = sizeof(points) / sizeof(points[0]); i-- > 0;) {
                int fd = open(points[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd >= 0) {
                        (void) ioctl(fd, FITHAW, 0); /* EINVAL when it was not frozen */
                        close(fd);
                }
        }
}

/* A child in its own session: thaws when the parent is gone, or at the limit. */
static int watchdog(void) {
        int p[2];
        if (pipe(p) < 0)
                return -errno;
        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                close(p[1]);
                setsid();
                struct pollfd pf = { .fd = p[0], .events = POLLIN };
                (void) poll(&pf, 1, FREEZE_MAX_S * 1000); /* EOF: the parent exited */
                thaw_all();
                _exit(0);
        }
        close(p[0]); /* p[1] stays open until we exit */
        return 0;
}

int agent_freeze_main(int argc, char **argv) {
        (void) argc;
        (void) argv;
        size_t frozen = 0;
        int r = watchdog();
        if (r < 0) {
                fprintf(stderr, "banger-agent --freeze: %s\n", strerror(-r));
                return 1;
        }
        for (size_t i = 0; i < sizeof(points) / sizeof(points[0]); i++) {
                if (!mount_root(points[i]))
                        continue;
                int fd = open(points[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (fd < 0 || ioctl(fd, FIFREEZE, 0) < 0) {
                        fprintf(stderr, "banger-agent --freeze: %s: %s\n", points[i], strerror(errno));
                        if (fd >= 0)
                                close(fd);
                        thaw_all();
                        return 1;
                }
                close(fd);
                frozen++;
        }
        printf("frozen %zu\n", frozen);
        fflush(stdout);
        char buf[64];
        while (read(STDIN_FILENO, buf, sizeof(buf)) > 0)
                ; /* until the host closes stdin */
        thaw_all();
        return 0;
}
