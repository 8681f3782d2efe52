/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "init.h"

static double uptime(void) {
        struct timespec ts;
        clock_gettime(CLOCK_BOOTTIME, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

void init_stage(const char *stage, const char *fmt, ...) {
        char detail[256] = "";
        va_list ap;

        if (fmt) {
                va_start(ap, fmt);
                vsnprintf(detail, sizeof(detail), fmt, ap);
                va_end(ap);
        }
        printf("banger-init: stage=%s t=%.3f%s%s\n", stage, uptime(), *detail ? " " : "", detail);
        fflush(stdout);
}

void init_log(const char *fmt, ...) {
        va_list ap;

        fputs("banger-init: ", stdout);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        fputc('\n', stdout);
        fflush(stdout);
}

void init_poweroff(bool reboot_instead) {
        sync();
        reboot(reboot_instead ? RB_AUTOBOOT : RB_POWER_OFF);
        for (;;)
                pause();
}

void init_fatal(const char *fmt, ...) {
        va_list ap;

        fputs("banger-init: FATAL: ", stdout);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        fputs("\nbanger-init: powering off\n", stdout);
        fflush(stdout);
        init_poweroff(false);
}

int init_write_file(const char *path, const char *data, size_t len, unsigned mode) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return -errno;
        while (len) {
                ssize_t n = write(fd, data, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        int e = errno;
                        close(fd);
                        return -e;
                }
                data += n;
                len -= (size_t) n;
        }
        fchmod(fd, mode);
        return close(fd) < 0 ? -errno : 0;
}

int init_mkdir_p(const char *path, unsigned mode) {
        char buf[512];

        if (strlen(path) >= sizeof(buf))
                return -ENAMETOOLONG;
        strcpy(buf, path);
        for (char *s = buf + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = '\0';
                if (mkdir(buf, mode) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}
