/* SPDX-License-Identifier: MIT */
#include "sysops.h"

#include <errno.h>
#include <net/if.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mount.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "macro.h"
#include "op_error.h"
#include "proc_spawn.h"
#include "strbuf.h"

static char *tail(const char *s, size_t n) {
        size_t len = strlen(s);
        return xstrdup(len > n ? s + len - n : s);
}

int sys_mmdebstrap(const struct mmdebstrap_req *q, bool (*cancelled)(void *ud), void *cancel_ud, struct op_error *e) {
        _cleanup_strbuf_ struct strbuf inc = STRBUF_INIT;
        struct spawn_result res = { 0 };
        bool root = q->tar_fd < 0; /* the tree in dir (root mode) or a tar on tar_fd (unshare mode) */
        int r;

        for (const char *const *p = q->packages; p && *p; p++)
                strbuf_addf(&inc, "%s%s", inc.len ? "," : "", *p); /* names checked by hostops */
        _cleanup_free_ char *inc_arg = xasprintf("--include=%s", inc.buf);
        _cleanup_free_ char *hook = q->customize_hook ? xasprintf("--customize-hook=%s", q->customize_hook) : NULL;
        char *argv[20];
        size_t n = 0;
        static const char *const fixed[] = {
                "mmdebstrap", "--variant=apt", "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
                "--dpkgopt=path-include=/usr/share/doc/*/copyright", "--aptopt=Acquire::Languages \"none\"",
                "--aptopt=Acquire::Retries \"3\"", /* a mirror that stumbles once */
        };
        for (size_t i = 0; i < ELEMENTSOF(fixed); i++)
                argv[n++] = (char *) fixed[i];
        argv[n++] = (char *) (root ? "--mode=root" : "--mode=unshare");
        argv[n++] = (char *) (root ? "--format=directory" : "--format=tar");
        argv[n++] = inc_arg;
        if (hook)
                argv[n++] = hook;
        argv[n++] = (char *) q->suite;
        argv[n++] = (char *) (root ? q->dir : "-");
        argv[n++] = (char *) q->mirror;
        argv[n] = NULL;
        struct spawn_fd_map out = { .child_fd = 1, .parent_fd = q->tar_fd };
        struct spawn_opts o = { .capture_stdout = root, .capture_stderr = true, .timeout_ms = 30 * 60 * 1000,
                                .fds = root ? NULL : &out, .n_fds = root ? 0 : 1, .envp = q->envp,
                                .cancel = cancelled, .cancel_ud = cancel_ud,
                                /* apt and dpkg run below it: signal them all; it dies
                                 * with its caller (what it leaves is swept at start) */
                                .new_pgroup = true, .cancel_grace_ms = 5000, .die_with_parent = true };
        r = spawn_run(argv, &o, &res);
        if (r < 0)
                return op_fail(e, r, "cannot run mmdebstrap: %s (apt-get install mmdebstrap)", strerror(-r));
        if (q->log_fd >= 0 && (write_all(q->log_fd, res.out, res.out_len) < 0 || write_all(q->log_fd, res.err, res.err_len) < 0)) {
                /* the build log is a convenience, the outcome is not */
        }
        if (res.cancelled)
                r = -ECANCELED;
        else if (res.exit_code != 0) {
                _cleanup_free_ char *t = tail(res.err_len ? res.err : res.out, 600);
                r = op_fail(e, -EIO, "mmdebstrap failed (exit %d): %s", res.exit_code, t);
        }
        if (r == -ECANCELED)
                op_fail(e, r, "image build cancelled");
        spawn_result_done(&res);
        return r;
}

/* /proc/self/mountinfo escapes spaces etc. as \ooo */
static void unescape(char *s) {
        char *o = s;
        for (char *i = s; *i; i++) {
                if (i[0] == '\\' && i[1] >= '0' && i[1] <= '7' && i[2] && i[3]) {
                        *o++ = (char) ((i[1] - '0') * 64 + (i[2] - '0') * 8 + (i[3] - '0'));
                        i += 3;
                } else
                        *o++ = *i;
        }
        *o = '\0';
}

int sys_umount_below(const char *dir) {
        _cleanup_free_ char *text = NULL;
        size_t len, dl = strlen(dir), n = 0;
        char **points = NULL;
        int count = 0;

        if (read_file("/proc/self/mountinfo", 4u << 20, &text, &len) < 0)
                return 0;
        for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char mp[4096];
                if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
                        continue;
                unescape(mp);
                if (strncmp(mp, dir, dl) == 0 && (mp[dl] == '/' || mp[dl] == '\0')) {
                        points = xrealloc(points, (n + 1) * sizeof(char *));
                        points[n++] = xstrdup(mp);
                }
        }
        /* later mounts sit on top of earlier ones: undo in reverse */
        while (n > 0) {
                n--;
                if (umount2(points[n], MNT_DETACH) == 0)
                        count++;
                free(points[n]);
        }
        free(points);
        return count;
}

int sys_mkfs_ext4_from_dir(const char *dir, const char *label, uint64_t size_bytes, int out_fd,
                            struct op_error *e) {
        _cleanup_free_ char *out = xasprintf("/proc/%d/fd/%d", (int) getpid(), out_fd);
        if (ftruncate(out_fd, 0) < 0 || ftruncate(out_fd, (off_t) size_bytes) < 0)
                return op_fail(e, -errno, "cannot size the %s image: %s", label, strerror(errno));
        char *argv[] = { (char *) "mkfs.ext4", (char *) "-q", (char *) "-F", (char *) "-d", (char *) dir,
                         (char *) "-L", (char *) label, (char *) "-E", (char *) "root_owner=0:0", (char *) "-m",
                         (char *) "0", (char *) out, NULL };
        _cleanup_free_ char *msg = NULL;
        return op_take_msg(e, spawn_run_checked(argv, 20 * 60 * 1000, 0, "apt-get install e2fsprogs", &msg), &msg);
}

int sys_ip_forward_on(struct op_error *e) {
        const char *p = "/proc/sys/net/ipv4/ip_forward";
        _cleanup_free_ char *cur = NULL;
        size_t len;
        if (read_file(p, 16, &cur, &len) == 0 && cur[0] == '1')
                return 0;
        _cleanup_close_ int fd = open(p, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "1\n", 2) != 2)
                return op_fail(e, -errno, "cannot enable net.ipv4.ip_forward: %s", strerror(errno));
        return 0;
}

static bool have_resolved(void) {
        _cleanup_free_ char *path = NULL;
        return access("/run/systemd/resolve/io.systemd.Resolve", F_OK) == 0 && find_executable("resolvectl", &path) == 0;
}

int sys_dns_route(const char *bridge, const char *listen_addr, struct op_error *e) {
        if (!have_resolved())
                return 1;
        char *dns[] = { (char *) "resolvectl", (char *) "dns", (char *) bridge, (char *) listen_addr, NULL };
        char *dom[] = { (char *) "resolvectl", (char *) "domain", (char *) bridge, (char *) "~vm", NULL };
        _cleanup_free_ char *msg = NULL;
        int r = op_take_msg(e, spawn_run_checked(dns, 10000, 0, NULL, &msg), &msg);
        if (r == 0)
                r = op_take_msg(e, spawn_run_checked(dom, 10000, 0, NULL, &msg), &msg);
        return r;
}

void sys_dns_unroute(const char *bridge) {
        _cleanup_free_ char *err = NULL;
        char *rev[] = { (char *) "resolvectl", (char *) "revert", (char *) bridge, NULL };
        if (have_resolved() && if_nametoindex(bridge) > 0)
                spawn_run_checked(rev, 10000, 0, NULL, &err);
}
