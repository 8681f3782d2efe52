/* SPDX-License-Identifier: MIT */
#include "procscan.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "macro.h"
#include "strbuf.h"

bool proc_alive(pid_t pid) {
        char path[64];
        if (pid <= 0 || (kill(pid, 0) < 0 && errno == ESRCH))
                return false;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        char line[512];
        ssize_t n = fd < 0 ? -1 : read(fd, line, sizeof(line) - 1);
        if (n <= 0)
                return kill(pid, 0) == 0 || errno == EPERM; /* no /proc: trust the signal */
        line[n] = '\0';
        const char *paren = strrchr(line, ')'); /* "pid (comm) S ...": comm may hold anything */
        return !paren || (paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X');
}

char *proc_link(pid_t pid, const char *link) {
        char path[64], buf[4096];
        snprintf(path, sizeof(path), "/proc/%d/%s", (int) pid, link);
        ssize_t n = readlink(path, buf, sizeof(buf) - 1);
        if (n <= 0)
                return NULL;
        buf[n] = '\0';
        return xstrdup(buf);
}

void proc_scan(uid_t uid, bool (*fn)(pid_t pid, char *const *argv, int argc, void *ud), void *ud) {
        _cleanup_(closedirp) DIR *d = opendir("/proc");
        struct dirent *de;
        pid_t self = getpid();
        while (d && (de = readdir(d))) {
                if (de->d_name[0] < '1' || de->d_name[0] > '9')
                        continue;
                pid_t pid = (pid_t) atoi(de->d_name);
                char path[64];
                struct stat st;
                snprintf(path, sizeof(path), "/proc/%d", (int) pid);
                if (pid == self || stat(path, &st) < 0 || (uid != PROC_ANY_UID && st.st_uid != uid))
                        continue;
                snprintf(path, sizeof(path), "/proc/%d/cmdline", (int) pid);
                _cleanup_free_ char *text = NULL;
                size_t len;
                if (read_file(path, 256 * 1024, &text, &len) < 0 || len == 0)
                        continue;
                char *argv[PROC_SCAN_MAX_ARGS + 1];
                int argc = 0;
                for (size_t i = 0; i < len && argc < PROC_SCAN_MAX_ARGS; i += strlen(text + i) + 1)
                        argv[argc++] = text + i;
                argv[argc] = NULL;
                if (fn(pid, argv, argc, ud))
                        break;
        }
}
