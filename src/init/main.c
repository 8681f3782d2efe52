/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "init.h"
#include "../shared/guestnet.h"
#include "../shared/vdisk.h"

#define NEWROOT "/newroot"

static void console_stdio(void) {
        int fd = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (fd < 0)
                return;
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (fd > 2)
                close(fd);
}

static void mount_or_die(const char *src, const char *dst, const char *type, unsigned long flags, const char *opts) {
        mkdir(dst, 0755);
        if (mount(src, dst, type, flags, opts) < 0)
                init_fatal("cannot mount %s on %s: %s", type, dst, strerror(errno));
}

static dev_t rootfs_dev;

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        (void) ftw;
        if (st->st_dev != rootfs_dev || strcmp(path, "/") == 0)
                return 0;
        if (type == FTW_DP)
                rmdir(path);
        else
                unlink(path);
        return 0;
}

/* switch_root: free the initramfs, move the new root onto /, chroot. */
static void switch_root(void) {
        static const char *const moves[] = { "/dev", "/proc", "/sys" };
        struct stat st;

        for (size_t i = 0; i < sizeof(moves) / sizeof(moves[0]); i++) {
                char dst[64];
                snprintf(dst, sizeof(dst), NEWROOT "%s", moves[i]);
                mkdir(dst, 0755);
                if (mount(moves[i], dst, NULL, MS_MOVE, NULL) < 0)
                        init_fatal("cannot move %s into the new root: %s", moves[i], strerror(errno));
        }
        if (stat("/", &st) == 0) {
                rootfs_dev = st.st_dev;
                nftw("/", remove_entry, 32, FTW_DEPTH | FTW_MOUNT | FTW_PHYS);
        }
        if (chdir(NEWROOT) < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 || chdir("/") < 0)
                init_fatal("switch_root failed: %s", strerror(errno));
}

static void mount_disk(const char *serial, const char *dst, const char *fstype, const char *what) {
        char dev[64];
        int r = init_find_disk(serial, dev, sizeof(dev), 5000);

        if (r < 0)
                init_fatal("%s disk with serial '%s' not found", what, serial);
        mkdir(dst, 0755);
        if (mount(dev, dst, fstype, MS_NOATIME, NULL) < 0)
                init_fatal("cannot mount %s disk %s on %s: %s", what, dev, dst, strerror(errno));
        init_stage(strcmp(what, "root") == 0 ? "root-mounted" : "work-mounted", "dev=%s", dev);
}

/* The repo disk holds /root/repo once the host wrote a workspace into it
 * (its label says it is complete); never fatal: without it the VM boots
 * with /root/repo on the work disk. */
static void mount_repo(const char *serial) {
        char dev[64];
        if (init_find_disk(serial, dev, sizeof(dev), 1000) < 0) {
                init_log("warning: repo disk with serial '%s' not found", serial);
                return;
        }
        int r = vdisk_has_label(dev, VDISK_REPO_LABEL);
        if (r <= 0) {
                init_stage("repo-empty", "dev=%s", dev);
                return;
        }
        mkdir(NEWROOT VDISK_REPO_MOUNT, 0755);
        if (mount(dev, NEWROOT VDISK_REPO_MOUNT, "ext4", MS_NOATIME, NULL) < 0) {
                init_log("warning: cannot mount the repo disk %s on %s: %s", dev, VDISK_REPO_MOUNT, strerror(errno));
                return;
        }
        init_stage("repo-mounted", "dev=%s", dev);
}

/* The kernel's module tree (a read-only disk the host built at kernel pull)
 * on /lib/modules/<release>, so that modprobe works in any image; mounted
 * after switch_root, so that a /lib symlink resolves in the new root. Never
 * fatal: without it the VM boots with the initramfs's modules only. */
static void mount_modules(const char *serial) {
        struct utsname u;
        char dev[64], dst[sizeof(u.release) + 16];
        if (init_find_disk(serial, dev, sizeof(dev), 1000) < 0) {
                init_log("warning: modules disk with serial '%s' not found", serial);
                return;
        }
        if (uname(&u) < 0 || !u.release[0] || strchr(u.release, '/') || u.release[0] == '.') {
                init_log("warning: no usable kernel release for the modules disk");
                return;
        }
        snprintf(dst, sizeof(dst), "/lib/modules/%s", u.release);
        int r = init_mkdir_p(dst, 0755);
        if (r < 0) {
                init_log("warning: cannot create %s: %s", dst, strerror(-r));
                return;
        }
        if (mount(dev, dst, "ext4", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOATIME, NULL) < 0) {
                init_log("warning: cannot mount the modules disk %s on %s: %s", dev, dst, strerror(errno));
                return;
        }
        init_stage("modules-mounted", "dev=%s release=%s", dev, u.release);
}

int main(void) {
        struct init_params p;
        char cmdline[4096] = "";
        int r, n;

        if (getpid() != 1) {
                fputs("banger-init: must run as PID 1 (it is the guest's init)\n", stderr);
                return 1;
        }
        mount_or_die("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
        console_stdio();
        mount_or_die("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        mount_or_die("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        init_stage("start", NULL);

        int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
                ssize_t k = read(fd, cmdline, sizeof(cmdline) - 1);
                cmdline[k > 0 ? k : 0] = '\0';
                close(fd);
        }
        r = init_parse_cmdline(cmdline, &p);
        if (r < 0)
                init_fatal("bad banger.* parameters on the kernel command line: %s", strerror(-r));

        r = init_load_modules("/etc/banger/modules.order", &n);
        if (r < 0)
                init_fatal("loading modules failed: %s", strerror(-r));
        init_stage("modules-loaded", "count=%d", n);

        if (guestnet_lo_up() < 0)
                init_log("warning: cannot bring lo up");
        if (p.ip[0]) {
                r = guestnet_up(p.iface, p.ip, p.gw);
                if (r < 0)
                        init_fatal("configuring %s as %s via %s failed: %s", p.iface, p.ip, p.gw, strerror(-r));
                init_stage("network", "iface=%s ip=%s gw=%s", p.iface, p.ip, p.gw[0] ? p.gw : "-");
        }
        if (sethostname(p.hostname, strlen(p.hostname)) < 0)
                init_log("warning: cannot set hostname: %s", strerror(errno));

        mount_disk(p.root_serial, NEWROOT, p.rootfstype, "root");
        if (p.work_serial[0])
                mount_disk(p.work_serial, NEWROOT "/root", "ext4", "work");
        if (p.work_serial[0] && p.repo_serial[0])
                mount_repo(p.repo_serial);

        r = init_apply_config("/banger/root", NEWROOT, &n);
        if (r < 0)
                init_fatal("applying the per-VM configuration failed: %s", strerror(-r));
        init_stage("config-applied", "files=%d", n);

        switch_root();
        if (p.modules_serial[0])
                mount_modules(p.modules_serial);
        if (strcmp(p.mode, "fast") == 0)
                init_fast_main(&p);

        init_stage("init-started", "mode=systemd init=%s", p.init);
        char *argv[] = { p.init, NULL };
        execv(p.init, argv);
        init_fatal("cannot exec %s: %s", p.init, strerror(errno));
}
