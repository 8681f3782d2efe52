/* SPDX-License-Identifier: MIT */
/*
 * What every VMM backend does with its process the same way: start it in a
 * session of its own with its output in vmm.log, wait until its control
 * socket accepts (reporting why it died when it did), signal it through its
 * pidfd, and recognise it by its argv after a daemon restart.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fsutil.h"
#include "macro.h"
#include "proc_spawn.h"
#include "vmm.h"

char *vmm_sibling_path(const char *console_log, const char *name) {
        const char *slash = strrchr(console_log, '/');
        return slash ? xasprintf("%.*s/%s", (int) (slash - console_log), console_log, name) : xstrdup(name);
}

char *vmm_log_path(const char *console_log) {
        return vmm_sibling_path(console_log, VMM_LOG_NAME);
}

int vmm_proc_kill(const struct vm_proc *p, int sig) {
        /* kill(0 or -1, ...) would hit our own process group or everything */
        if (p->pid <= 0)
                return -EINVAL;
        if (p->pidfd >= 0)
                return pidfd_send_signal(p->pidfd, sig, NULL, 0) < 0 ? -errno : 0;
        return kill(p->pid, sig) < 0 ? -errno : 0;
}

bool vmm_proc_wait_exit(const struct vm_proc *p, int timeout_ms) {
        if (p->pidfd < 0)
                return false;
        struct pollfd pf = { .fd = p->pidfd, .events = POLLIN };
        return poll(&pf, 1, timeout_ms) > 0;
}

int vmm_proc_spawn(char **argv, const char *console_log, int extra_fd, int extra_at,
                   struct vm_proc *ret, struct op_error *e) {
        pid_t pid;
        /* its own session: a daemon restart (or its process group dying)
         * never takes the VM down; what it says goes to vmm.log beside the console */
        _cleanup_free_ char *vlog = vmm_log_path(console_log);
        _cleanup_close_ int lfd = open(vlog, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        _cleanup_close_ int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (lfd < 0 || nul < 0)
                return op_fail(e, -errno, "cannot open %s: %s", vlog, strerror(errno));
        struct spawn_fd_map map[] = { { 0, nul }, { 1, lfd }, { 2, lfd }, { extra_at, extra_fd } };
        struct spawn_opts o = { .new_session = true, .fds = map, .n_fds = extra_fd > 2 ? 4 : 3 };
        int r = spawn_start(argv, &o, &pid);
        if (r < 0)
                return op_fail(e, r, "cannot start %s: %s", argv[0], strerror(-r));
        *ret = (struct vm_proc) { .pid = pid, .pidfd = (int) pidfd_open(pid, 0) };
        return 0;
}

int vmm_proc_died(const char *what, const struct vm_proc *p, const char *console_log, struct op_error *e) {
        _cleanup_free_ char *vlog = vmm_log_path(console_log), *log = NULL;
        size_t len;
        int code = spawn_wait(p->pid);
        /* the VMM's own complaint first, else the console's tail */
        if (read_file_nofollow(vlog, 1u << 20, &log, &len) < 0 || len == 0) {
                free(log);
                log = NULL;
                if (read_file_nofollow(console_log, 1u << 20, &log, &len) < 0)
                        log = NULL;
        }
        while (log && len > 0 && (log[len - 1] == '\n' || log[len - 1] == '\r'))
                log[--len] = '\0';
        if (log)
                str_defuse(log, '?');
        return op_fail(e, -EIO, "%s exited at start (status %d)%s%s", what, code, log && *log ? ": " : "",
                       log ? log + (len > 400 ? len - 400 : 0) : "");
}

int vmm_proc_wait_socket(const char *what, const struct vm_proc *p, const char *socket_path, const char *console_log,
                         int timeout_ms, struct op_error *e) {
        for (int waited = 0; waited < timeout_ms; waited += 20) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };
                _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", socket_path);
                if (fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0)
                        return 0;
                struct pollfd pf = { .fd = p->pidfd, .events = POLLIN };
                if (p->pidfd >= 0 && poll(&pf, 1, 20) > 0) {
                        int rc = vmm_proc_died(what, p, console_log, e);
                        close(p->pidfd);
                        return rc;
                }
                if (p->pidfd < 0)
                        poll(NULL, 0, 20);
        }
        vmm_proc_kill(p, SIGKILL);
        (void) spawn_wait(p->pid);
        if (p->pidfd >= 0)
                close(p->pidfd);
        return op_fail(e, -ETIMEDOUT, "%s did not open its control socket %s within %d s", what, socket_path,
                       timeout_ms / 1000);
}

bool vmm_proc_argv_has(pid_t pid, const char *bin, const char *opt, const char *want) {
        _cleanup_free_ char *path = xasprintf("/proc/%d/cmdline", (int) pid), *cmd = NULL;
        size_t len;

        if (pid <= 0 || read_file(path, 1u << 20, &cmd, &len) < 0 || len == 0)
                return false;
        /* argv[0] is the binary (argv[1] when an interpreter runs it, as a
         * script of the tests), and "<opt> <want>" is in the argv */
        const char *base = strrchr(bin, '/') ? strrchr(bin, '/') + 1 : bin;
        bool named = false;
        for (size_t i = 0, k = 0; i < len && k < 2; k++) {
                const char *a = cmd + i, *b = strrchr(a, '/') ? strrchr(a, '/') + 1 : a;
                named = named || strcmp(b, base) == 0;
                i += strnlen(a, len - i) + 1;
        }
        if (!named)
                return false;
        for (size_t i = 0; i < len;) {
                const char *arg = cmd + i;
                size_t n = strnlen(arg, len - i);
                if (strcmp(arg, opt) == 0 && i + n + 1 < len && strcmp(cmd + i + n + 1, want) == 0)
                        return true;
                i += n + 1;
        }
        return false;
}
