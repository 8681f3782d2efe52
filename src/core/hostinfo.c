/* SPDX-License-Identifier: MIT */
#include "hostinfo.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "aptsources.h"
#include "fsutil.h"
#include "macro.h"
#include "parse.h"
#include "proc_spawn.h"
#include "strbuf.h"

const char *hostinfo_apt_dir(void) {
        const char *d = getenv("BANGER_APT_DIR");
        return d && d[0] == '/' ? d : "/etc/apt";
}

int hostinfo_load_config(const struct layout *l, struct config **ret, char **ret_err) {
        _cleanup_free_ char *text = NULL, *mirror = NULL;
        struct config_error err;
        struct sysinfo si;
        size_t len = 0;
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        int r;

        r = read_file(l->config_file, 1u << 20, &text, &len);
        if (r < 0 && r != -ENOENT) {
                *ret_err = xasprintf("%s: %s", l->config_file,
                                     r == -EFBIG    ? "file is larger than 1 MiB"
                                     : r == -EBADFD ? "not a regular file (a FIFO, a directory or a device?)"
                                                    : strerror(-r));
                return r;
        }
        mirror = aptsources_read_host(hostinfo_apt_dir(), NULL);
        struct config_host host = {
                .state_dir = l->state_dir,
                .home = getenv("HOME"),
                .ncpus = n > 0 ? (unsigned) n : 1,
                .mem_bytes = sysinfo(&si) == 0 ? (uint64_t) si.totalram * si.mem_unit : 0,
                .apt_mirror = mirror,
        };
        r = config_load(text, len, &host, ret, &err);
        if (r < 0) {
                if (err.line)
                        *ret_err = xasprintf("%s:%u: %s", l->config_file, err.line, err.msg);
                else
                        *ret_err = xasprintf("%s: %s", l->config_file, err.msg);
                config_error_done(&err);
        }
        return r;
}

int hostinfo_kvm(struct kvm_state *ret) {
        struct stat st;
        _cleanup_close_ int fd = -1, vm = -1;

        *ret = (struct kvm_state) { .api_version = -1 };
        if (stat("/dev/kvm", &st) < 0) {
                ret->error = xasprintf("/dev/kvm: %s", strerror(errno));
                return 0;
        }
        ret->present = S_ISCHR(st.st_mode);
        if (!ret->present) {
                ret->error = xstrdup("/dev/kvm is not a character device");
                return 0;
        }
        fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd < 0) {
                ret->error = xasprintf("cannot open /dev/kvm: %s", strerror(errno));
                return 0;
        }
        ret->openable = true;
        ret->api_version = ioctl(fd, KVM_GET_API_VERSION, 0);
        vm = ioctl(fd, KVM_CREATE_VM, 0);
        if (vm < 0) {
                ret->error = xasprintf("KVM_CREATE_VM failed: %s", strerror(errno));
                return 0;
        }
        ret->create_vm = true;
        return 0;
}

void kvm_state_done(struct kvm_state *k) {
        free(k->error);
        k->error = NULL;
}

void hostinfo_tool(const char *bin, struct tool_info *ret) {
        struct spawn_opts o = { .capture_stdout = true, .capture_stderr = true, .timeout_ms = 2000 };
        struct spawn_result res = { 0 };

        *ret = (struct tool_info) { 0 };
        if (find_executable(bin, &ret->path) < 0)
                return;
        char *argv[] = { ret->path, (char *) "--version", NULL };
        if (spawn_run(argv, &o, &res) == 0 && res.exit_code == 0) {
                const char *src = res.out_len ? res.out : res.err;
                size_t n = strcspn(src, "\n");
                if (n)
                        ret->version = xstrndup(src, n);
        }
        spawn_result_done(&res);
}

/* A program bangerd runs as root: its real path, a regular file of root's
 * that only root can write; else why not. */
static char *root_exec(const char *path, char **ret_real) {
        *ret_real = realpath(path, NULL);
        struct stat st;
        if (!*ret_real || stat(*ret_real, &st) < 0)
                return xasprintf("%s: %s", path, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return xasprintf("%s is not a regular file", *ret_real);
        if (st.st_uid != 0)
                return xasprintf("%s belongs to uid %u, not root", *ret_real, (unsigned) st.st_uid);
        if (st.st_mode & (S_IWGRP | S_IWOTH))
                return xasprintf("%s is writable by others than root (mode %04o)", *ret_real,
                                 (unsigned) (st.st_mode & 07777));
        return NULL;
}

void hostinfo_jail(const char *jailer_bin, const char *firecracker_path, uid_t euid, struct jail_plan *ret) {
        *ret = (struct jail_plan) { .mode = JAIL_NONE };
        if (!firecracker_path)
                return;
        _cleanup_free_ char *jailer = NULL;
        if (strcmp(jailer_bin, "none") == 0) {
                ret->mode = JAIL_OFF;
                ret->reason = xstrdup("jailer_bin = \"none\": firecracker runs unjailed");
                return;
        }
        if (find_executable(jailer_bin, &jailer) < 0) {
                ret->mode = JAIL_OFF;
                ret->reason = xasprintf("no jailer (jailer_bin = \"%s\"): firecracker runs unjailed", jailer_bin);
                return;
        }
        if (euid != 0) {
                ret->mode = JAIL_OFF;
                ret->reason = xasprintf("the jailer (%s) needs root and bangerd runs as uid %u: firecracker runs "
                                        "unjailed as that user",
                                        jailer, (unsigned) euid);
                return;
        }
        char *why = root_exec(jailer, &ret->jailer);
        if (!why)
                why = root_exec(firecracker_path, &ret->exec_file);
        if (why) {
                ret->mode = JAIL_REFUSED;
                ret->reason = xasprintf("the jailer cannot be trusted: %s; firecracker VMs are refused (fix it, or "
                                        "set jailer_bin = \"none\" to run firecracker unjailed)",
                                        why);
                free(why);
                free(ret->jailer);
                free(ret->exec_file);
                ret->jailer = ret->exec_file = NULL;
                return;
        }
        ret->mode = JAIL_ON;
        ret->reason = xasprintf("firecracker runs under the jailer %s (a chroot per VM)", ret->jailer);
}

void jail_plan_done(struct jail_plan *p) {
        free(p->jailer);
        free(p->exec_file);
        free(p->reason);
        *p = (struct jail_plan) { 0 };
}

void tool_info_done(struct tool_info *t) {
        free(t->path);
        free(t->version);
        *t = (struct tool_info) { 0 };
}

/*
 * On nested hosts /dev/kvm can open and create VMs yet only run specially
 * built guests, so "KVM works" needs a boot probe (accel.h). Until a probe has
 * proven KVM, auto picks TCG and says why.
 */
bool hostinfo_vmm_implemented(const char *name) {
        /* the backends this build drives */
        static const char *const implemented[] = { "qemu", "firecracker" };
        for (size_t i = 0; i < ELEMENTSOF(implemented); i++)
                if (strcmp(name, implemented[i]) == 0)
                        return true;
        return false;
}

void hostinfo_choose_vmm(const struct config *c, const struct tool_info *qemu, const struct tool_info *fc,
                         const struct kvm_state *kvm, int kvm_probe, const char *probe_detail,
                         struct vmm_choice *ret) {
        bool kvm_proven = false;

        *ret = (struct vmm_choice) { 0 };
        if (strcmp(c->accel, "kvm") == 0) {
                ret->accel = "kvm";
                ret->accel_reason = xstrdup("accel = \"kvm\" in config");
                kvm_proven = true;
        } else if (strcmp(c->accel, "tcg") == 0) {
                ret->accel = "tcg";
                ret->accel_reason = xstrdup("accel = \"tcg\" in config");
        } else if (!kvm->create_vm) {
                ret->accel = "tcg";
                ret->accel_reason = xasprintf("KVM unusable: %s", kvm->error ? kvm->error : "unknown");
        } else if (kvm_probe == 1) {
                ret->accel = "kvm";
                ret->accel_reason = xstrdup(probe_detail ? probe_detail : "a boot probe under KVM worked");
                kvm_proven = true;
        } else {
                ret->accel = "tcg";
                if (kvm_probe == 0)
                        ret->accel_reason = xasprintf("/dev/kvm opens, but %s", probe_detail ? probe_detail : "a boot probe failed");
                else
                        ret->accel_reason = xasprintf("/dev/kvm opens, but no guest boot has proven it yet (%s)",
                                                      probe_detail ? probe_detail : "not probed");
        }

        if (strcmp(c->vmm, "qemu") == 0) {
                ret->vmm = "qemu";
                ret->vmm_reason = xstrdup("vmm = \"qemu\" in config");
        } else if (strcmp(c->vmm, "firecracker") == 0) {
                ret->vmm = "firecracker";
                ret->vmm_reason = xstrdup(fc->path ? "vmm = \"firecracker\" in config"
                                                   : "vmm = \"firecracker\" in config, but it is not installed");
        } else if (fc->path && kvm_proven && hostinfo_fc_version(fc->version, NULL) == 0) {
                ret->vmm = "firecracker";
                ret->vmm_reason = xasprintf("firecracker found at %s (%s) and KVM works", fc->path, fc->version);
        } else {
                /* auto never picks a backend that cannot boot here */
                _cleanup_free_ char *why = NULL;
                ret->vmm = "qemu";
                ret->vmm_reason = !fc->path ? xstrdup("firecracker is not installed")
                                  : hostinfo_fc_version(fc->version, &why) != 0
                                          ? xasprintf("firecracker at %s: %s", fc->path, why)
                                          : xstrdup("firecracker needs KVM, which is not proven here");
                if (!qemu->path) {
                        free(ret->vmm_reason);
                        ret->vmm_reason = xasprintf("firecracker is not installed; %s is not installed either",
                                                    c->qemu_bin);
                }
        }
}

static bool version_parse(const char *s, unsigned *maj, unsigned *min) {
        return s && sscanf(s, "%u.%u", maj, min) == 2;
}

int hostinfo_fc_version(const char *line, char **why) {
        unsigned maj, min, lo_maj, lo_min, hi_maj, hi_min;
        const char *v = line ? strstr(line, "Firecracker v") : NULL;
        (void) version_parse(FC_VERSION_MIN, &lo_maj, &lo_min);
        (void) version_parse(FC_VERSION_TESTED, &hi_maj, &hi_min);
        if (!v || !version_parse(v + strlen("Firecracker v"), &maj, &min)) {
                if (why)
                        *why = xasprintf("its version (%s) is not one banger can read", line ? line : "no --version output");
                return -1;
        }
        if (maj < lo_maj || (maj == lo_maj && min < lo_min)) {
                if (why)
                        *why = xasprintf("v%u.%u is older than %s, the oldest banger drives", maj, min, FC_VERSION_MIN);
                return -1;
        }
        if (maj > hi_maj || (maj == hi_maj && min > hi_min)) {
                if (why)
                        *why = xasprintf("v%u.%u is newer than %s.x, the newest banger is built against (may work)", maj,
                                         min, FC_VERSION_TESTED);
                return 1;
        }
        if (why)
                *why = xasprintf("v%u.%u, within %s to %s.x", maj, min, FC_VERSION_MIN, FC_VERSION_TESTED);
        return 0;
}

void vmm_choice_done(struct vmm_choice *v) {
        free(v->vmm_reason);
        free(v->accel_reason);
        *v = (struct vmm_choice) { 0 };
}

bool hostinfo_vhost_vsock_at(const char *dev, char **ret_why) {
        struct stat st;
        _cleanup_close_ int fd = -1;
        *ret_why = NULL;
        if (stat(dev, &st) < 0)
                *ret_why = errno == ENOENT ? xasprintf("no %s", dev) : xasprintf("%s: %s", dev, strerror(errno));
        else if (!S_ISCHR(st.st_mode))
                *ret_why = xasprintf("%s is not a character device", dev);
        else if ((fd = open(dev, O_RDWR | O_CLOEXEC)) < 0)
                *ret_why = xasprintf("cannot open %s: %s", dev, strerror(errno));
        return !*ret_why;
}

bool hostinfo_vhost_vsock(char **ret_why) {
        return hostinfo_vhost_vsock_at("/dev/vhost-vsock", ret_why);
}

bool hostinfo_net_admin(void) {
        _cleanup_free_ char *text = NULL;
        size_t len;
        if (read_file("/proc/self/status", 1 << 16, &text, &len) < 0)
                return geteuid() == 0;
        const char *c = strstr(text, "\nCapEff:");
        unsigned long long eff = 0;
        if (!c || sscanf(c + 9, "%llx", &eff) != 1)
                return geteuid() == 0;
        return (eff >> 12) & 1; /* CAP_NET_ADMIN */
}

/* The first line "<user>:<start>:<count>" of file for user has count >=
 * 65536: mmdebstrap reads the first line of the user's name, and maps 65536. */
static bool subid_range(const char *file, const char *user) {
        _cleanup_free_ char *text = NULL;
        size_t len;
        if (read_file(file, 1u << 20, &text, &len) < 0)
                return false;
        char *save = NULL;
        for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                char *c1 = strchr(l, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                int64_t count;
                if (!c2)
                        continue;
                *c1 = *c2 = '\0';
                if (strcmp(l, user) == 0)
                        return parse_int_range(c2 + 1, 65536, INT64_MAX, &count) == 0;
        }
        return false;
}

static bool sysctl_zero(const char *path) {
        _cleanup_free_ char *text = NULL;
        size_t len;
        return read_file_nofollow(path, 64, &text, &len) == 0 && text[0] == '0';
}

bool hostinfo_unshare_ready(char **ret_what, char **ret_how) {
        static const char *const tools[][2] = { { "mmdebstrap", "mmdebstrap" }, { "newuidmap", "uidmap" },
                                                { "newgidmap", "uidmap" } };
        struct passwd pwb, *pw = NULL;
        char buf[4096];
        const char *user = getpwuid_r(geteuid(), &pwb, buf, sizeof(buf), &pw) == 0 && pw ? pw->pw_name : "$USER";
        for (size_t i = 0; i < ELEMENTSOF(tools); i++) {
                _cleanup_free_ char *path = NULL;
                if (find_executable(tools[i][0], &path) < 0) {
                        *ret_what = xasprintf("%s (not found)", tools[i][0]);
                        *ret_how = xasprintf("as root: apt-get install %s", tools[i][1]);
                        return false;
                }
        }
        if (!subid_range("/etc/subuid", user) || !subid_range("/etc/subgid", user)) {
                *ret_what = xasprintf("65536 subordinate ids for %s in /etc/subuid and /etc/subgid", user);
                *ret_how = xasprintf("as root: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s "
                                     "(a range no other user has)", user);
                return false;
        }
        if (sysctl_zero("/proc/sys/kernel/unprivileged_userns_clone") || sysctl_zero("/proc/sys/user/max_user_namespaces")) {
                *ret_what = xstrdup("user namespaces, which this kernel does not allow users");
                *ret_how = xstrdup("as root: sysctl kernel.unprivileged_userns_clone=1 (and user.max_user_namespaces > 0)");
                return false;
        }
        return true;
}
