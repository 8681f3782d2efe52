/* SPDX-License-Identifier: MIT */
/*
 * The Firecracker backend, built against its published API
 * (../shared/reference/firecracker-api-v1.14.1.yaml): the process is started
 * with only --api-sock and --id, then configured over the API (machine,
 * boot source, drives by banger's serials as drive ids, the TAP, the hybrid
 * vsock for the agent, entropy, the serial console into console.log) and
 * started with InstanceStart. Raw disks only: the root disk is a copy of the
 * image's rootfs (reflinked where the filesystem can). Under the jailer
 * (jailer.c) every file is hard-linked into the VM's chroot and the VMM sees
 * it as "/<name>"; the daemon reaches the chroot's sockets through symlinks
 * at the usual paths of the run dir.
 *
 * A saved state (vm snapshot) is Firecracker's two files, its state and the
 * guest memory, as the entries "vmstate" and "memory" of a tar (libarchive)
 * written to the state fd; restore takes them back out beside the API socket
 * and loads them into a VMM started with b->incoming.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "jsonx.h"
#include "macro.h"
#include "proc_spawn.h"
#include "strbuf.h"
#include "vmm.h"

#define FC_API_MS 5000
#define FC_VSOCK_GUEST_CID 3
#define FC_COPY_BUF (1u << 16)
#define FC_STATE_MAX (64u << 20) /* Firecracker's own state file: device and vCPU state */

static bool name_ok(const char *s) {
        return s && *s && strlen(s) <= 48 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == strlen(s);
}

/* What the VMM is told, host paths or, jailed, the names in its chroot. */
struct fc_view {
        const char *api, *kernel, *initrd, *root, *work, *repo, *modules, *console, *log, *metrics, *vsock;
        char *owned[11];
};

static void fc_view_done(struct fc_view *v) {
        for (size_t i = 0; i < ELEMENTSOF(v->owned); i++)
                free(v->owned[i]);
}

static const char *jailed_name(struct fc_view *v, size_t slot, const char *host) {
        const char *base = strrchr(host, '/') ? strrchr(host, '/') + 1 : host;
        return v->owned[slot] = xasprintf("/%s", base);
}

/* Firecracker's own log (its /logger) and metrics (its /metrics), beside
 * the console log; made empty at each start. */
char *fc_log_path(const char *console_log) {
        return vmm_sibling_path(console_log, FC_LOG_NAME);
}

static char *fc_metrics_path(const char *console_log) {
        return vmm_sibling_path(console_log, "firecracker.metrics");
}

static int fc_view_init(const struct vm_boot *b, struct fc_view *v) {
        *v = (struct fc_view) { .api = b->qmp_socket, .kernel = b->kernel, .initrd = b->initrd, .root = b->root_disk,
                                .work = b->work_disk, .repo = b->work_disk ? b->repo_disk : NULL,
                                .modules = b->modules_disk, .console = b->console_log, .vsock = b->agent_socket };
        v->log = v->owned[9] = fc_log_path(b->console_log);
        v->metrics = v->owned[10] = fc_metrics_path(b->console_log);
        if (!b->jail)
                return 0;
        const char **slots[] = { &v->kernel, &v->initrd, &v->root, &v->work, &v->repo, &v->modules, &v->console };
        for (size_t i = 0; i < ELEMENTSOF(slots); i++)
                if (*slots[i])
                        *slots[i] = jailed_name(v, i, *slots[i]);
        v->api = v->owned[7] = xstrdup("/api.sock");
        v->vsock = b->agent_socket ? (v->owned[8] = xstrdup("/agent.vsock")) : NULL;
        free(v->owned[9]);
        free(v->owned[10]);
        v->log = v->owned[9] = xstrdup("/" FC_LOG_NAME);
        v->metrics = v->owned[10] = xstrdup("/firecracker.metrics");
        /* two files of one name would be one file in the chroot */
        for (size_t i = 0; i < ELEMENTSOF(slots); i++)
                for (size_t k = i + 1; k < ELEMENTSOF(slots); k++)
                        if (*slots[i] && *slots[k] && strcmp(*slots[i], *slots[k]) == 0)
                                return -EEXIST;
        return 0;
}

static char *fc_kernel_cmdline(const struct vm_boot *b) {
        _cleanup_free_ char *base = vm_kernel_cmdline(b);
        /* Firecracker: no PCI; a guest reboot (the i8042 reset) ends the VMM */
        return xasprintf("%s reboot=k pci=off", base);
}

static int fc_build_argv(const struct vm_boot *b, const char *bin, char ***ret, struct op_error *e) {
        if (!name_ok(b->id) || !b->qmp_socket)
                return op_fail(e, -EINVAL, "incomplete or invalid VM boot description");
        _cleanup_free_ char *id = xasprintf("banger-%s", b->id);
        /* (jailed, the jailer's argv is made where it runs: src/host/jail.c) */
        char *args[] = { (char *) "--api-sock", (char *) b->qmp_socket, (char *) "--id", id, NULL };
        char **v = xmalloc(6 * sizeof(char *));
        v[0] = xstrdup(bin);
        for (size_t i = 0; args[i]; i++)
                v[i + 1] = xstrdup(args[i]);
        v[5] = NULL;
        *ret = v;
        return 0;
}

static int put(const char *api, const char *path, json_t *body, struct op_error *e) {
        int rc = fc_api(api, "PUT", path, body, FC_API_MS, NULL, e);
        json_decref(body);
        return rc;
}

static int put_drive(const char *api, const char *id, const char *path, bool ro, struct op_error *e) {
        /* the drive id is what the guest reads as the disk's serial (banger-init finds its disks by it) */
        _cleanup_free_ char *url = xasprintf("/drives/%s", id);
        return put(api, url,
                   json_pack("{s:s, s:s, s:b, s:b, s:s}", "drive_id", id, "path_on_host", path, "is_root_device", 0,
                             "is_read_only", ro, "cache_type", "Unsafe"),
                   e);
}

/* Everything before InstanceStart, in the order Firecracker's docs use. */
static int fc_configure(const struct vm_boot *b, const struct fc_view *v, struct op_error *e) {
        const char *api = b->qmp_socket;
        _cleanup_free_ char *cmdline = fc_kernel_cmdline(b);
        /* first its log and metrics (API errors, device events: `vm logs --vmm`) */
        int rc = put(api, "/logger",
                     json_pack("{s:s, s:s, s:b, s:b}", "log_path", v->log, "level", "Info", "show_level", 1,
                               "show_log_origin", 0),
                     e);
        if (rc == 0)
                rc = put(api, "/metrics", json_pack("{s:s}", "metrics_path", v->metrics), e);
        if (rc == 0)
                rc = put(api, "/machine-config",
                         json_pack("{s:i, s:i, s:b}", "vcpu_count", b->vcpu, "mem_size_mib", b->memory_mib, "smt", 0),
                         e);
        if (rc == 0)
                rc = put(api, "/boot-source",
                         json_pack("{s:s, s:s, s:s}", "kernel_image_path", v->kernel, "initrd_path", v->initrd,
                                   "boot_args", cmdline),
                         e);
        if (rc == 0)
                rc = put_drive(api, "rootfs", v->root, false, e);
        if (rc == 0 && v->work)
                rc = put_drive(api, "work", v->work, false, e);
        if (rc == 0 && v->repo)
                rc = put_drive(api, "repo", v->repo, false, e);
        if (rc == 0 && v->modules)
                rc = put_drive(api, "modules", v->modules, true, e);
        if (rc == 0 && b->net == VM_NET_TAP)
                rc = put(api, "/network-interfaces/net0",
                         json_pack("{s:s, s:s, s:s}", "iface_id", "net0", "host_dev_name", b->tap, "guest_mac", b->mac),
                         e);
        if (rc == 0 && v->vsock)
                rc = put(api, "/vsock", json_pack("{s:i, s:s}", "guest_cid", FC_VSOCK_GUEST_CID, "uds_path", v->vsock),
                         e);
        if (rc == 0)
                rc = put(api, "/entropy", json_object(), e);
        if (rc == 0)
                rc = put(api, "/serial", json_pack("{s:s}", "serial_out_path", v->console), e);
        return rc;
}

/* Jailed: whoever does the privileged work makes the chroot with the VM's
 * files in it and starts the jailer (detached: not our child, watched by
 * its pidfd); then the symlinks the daemon reaches its sockets by. */
static int fc_jail_launch(const struct vm_boot *b, struct vm_proc *ret, struct op_error *e) {
        _cleanup_free_ char *log = fc_log_path(b->console_log), *metrics = fc_metrics_path(b->console_log);
        _cleanup_free_ char *out = vmm_log_path(b->console_log), *root = NULL;
        const char *files[] = { b->kernel,       b->initrd,      b->root_disk, b->work_disk,
                                b->work_disk ? b->repo_disk : NULL, b->modules_disk, b->console_log, log, metrics };
        const char *have[ELEMENTSOF(files)];
        size_t n = 0;
        for (size_t i = 0; i < ELEMENTSOF(files); i++)
                if (files[i])
                        have[n++] = files[i];
        /* the jailer's and Firecracker's output, appended to by them */
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return op_fail(e, -errno, "cannot create %s: %s", out, strerror(errno));
        close(fd);
        pid_t pid = 0;
        int rc = b->jail->start(b->jail->ud, b->id, have, n, out, b->vcpu, b->memory_mib, &pid, &root, e);
        if (rc < 0)
                return rc;
        *ret = (struct vm_proc) { .pid = pid, .pidfd = (int) pidfd_open(pid, 0) };
        if (ret->pidfd < 0) /* gone already: what it said is in vmm.log */
                return vmm_proc_died("firecracker (jailed)", ret, b->console_log, e);
        _cleanup_free_ char *api = path_join(root, "api.sock"), *vsock = path_join(root, "agent.vsock");
        rc = fc_jail_socket_link(api, b->qmp_socket, e);
        if (rc == 0 && b->agent_socket)
                rc = fc_jail_socket_link(vsock, b->agent_socket, e);
        if (rc < 0) {
                vmm_proc_kill(ret, SIGKILL);
                close(ret->pidfd);
                *ret = (struct vm_proc) { .pid = 0, .pidfd = -1 };
        }
        return rc;
}

static int fc_start(const struct vm_boot *b, const char *bin, struct vm_proc *ret, struct op_error *e) {
        _cleanup_strv_free_ char **argv = NULL;
        struct fc_view v;

        *ret = (struct vm_proc) { .pid = 0, .pidfd = -1 };
        if (!name_ok(b->id) || !name_ok(b->name) || b->vcpu < 1 || b->vcpu > 32 || b->memory_mib < 64 ||
            !b->kernel || !b->initrd || !b->root_disk || !b->qmp_socket || !b->console_log ||
            (b->net == VM_NET_TAP && (!b->tap || !name_ok(b->tap) || !b->mac)))
                return op_fail(e, -EINVAL, "incomplete or invalid VM boot description");
        if (b->net == VM_NET_USER || b->net == VM_NET_DETACHED)
                return op_fail(e, -EOPNOTSUPP, "firecracker has no %s network (use --net bridge, or vmm qemu)",
                               b->net == VM_NET_USER ? "user-mode" : "detached");
        if (b->ram_file)
                return op_fail(e, -EOPNOTSUPP, "firecracker cannot map guest RAM from a file at boot");
        if (fc_view_init(b, &v) < 0) {
                fc_view_done(&v);
                return op_fail(e, -EEXIST, "two of the VM's files have one name: the jailer's chroot cannot hold both");
        }
        /* Firecracker binds the sockets itself and refuses a path that exists */
        unlink(b->qmp_socket);
        if (b->agent_socket)
                unlink(b->agent_socket);
        /* the console, log and metrics files exist before the VMM (jailed: they
         * are hard-linked in; Firecracker before 1.14 opens, never creates them) */
        int rc = 0;
        _cleanup_free_ char *log = fc_log_path(b->console_log), *metrics = fc_metrics_path(b->console_log);
        const char *made[] = { b->console_log, log, metrics };
        for (size_t i = 0; rc == 0 && i < ELEMENTSOF(made); i++) {
                int fd = open(made[i], O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
                if (fd < 0)
                        rc = op_fail(e, -errno, "cannot create %s: %s", made[i], strerror(errno));
                else
                        close(fd);
        }
        if (rc == 0 && b->jail)
                rc = fc_jail_launch(b, ret, e);
        else if (rc == 0 && (rc = fc_build_argv(b, bin, &argv, e)) == 0)
                rc = vmm_proc_spawn(argv, b->console_log, -1, 0, ret, e);
        bool running = rc == 0;
        if (rc == 0 && (rc = vmm_proc_wait_socket("firecracker", ret, b->qmp_socket, b->console_log, 10000, e)) < 0)
                running = false; /* reaped there */
        /* incoming: the state comes with fc_restore (snapshot/load wants a VMM not configured yet) */
        if (rc == 0 && !b->incoming && (rc = fc_configure(b, &v, e)) == 0)
                rc = put(b->qmp_socket, "/actions", json_pack("{s:s}", "action_type", "InstanceStart"), e);
        fc_view_done(&v);
        if (rc < 0 && running) {
                vmm_proc_kill(ret, SIGKILL);
                (void) spawn_wait(ret->pid);
                if (ret->pidfd >= 0)
                        close(ret->pidfd);
        }
        if (rc < 0) { /* nothing of the VMM is left: Firecracker never removes the sockets it bound */
                *ret = (struct vm_proc) { .pid = 0, .pidfd = -1 };
                unlink(b->qmp_socket);
                if (b->agent_socket)
                        unlink(b->agent_socket);
        }
        return rc;
}

static int fc_stop(const struct vm_boot *b, const struct vm_proc *p, int timeout_ms, struct op_error *e) {
        if (p->pid <= 0)
                return op_fail(e, -EINVAL, "invalid pid %d", (int) p->pid);
        /* the guest should be down already; Ctrl-Alt-Del makes a guest still up
         * reboot, which ends Firecracker */
        _cleanup_json_ json_t *cad = json_pack("{s:s}", "action_type", "SendCtrlAltDel");
        if (!vmm_proc_wait_exit(p, 0) && fc_api(b->qmp_socket, "PUT", "/actions", cad, 2000, NULL, NULL) < 0) {
                /* API gone: the signals below */
        }
        if (vmm_proc_wait_exit(p, timeout_ms))
                return 0;
        vmm_proc_kill(p, SIGKILL);
        if (!vmm_proc_wait_exit(p, 2000))
                return op_fail(e, -ETIMEDOUT, "firecracker (pid %d) did not exit", (int) p->pid);
        return 0;
}

static bool fc_owns(pid_t pid, const char *bin, const char *id) {
        _cleanup_free_ char *want = xasprintf("banger-%s", id);
        return vmm_proc_argv_has(pid, bin, "--id", want);
}

static int patch_vm(const struct vm_boot *b, const char *state, struct op_error *e) {
        _cleanup_json_ json_t *body = json_pack("{s:s}", "state", state);
        return fc_api(b->qmp_socket, "PATCH", "/vm", body, FC_API_MS, NULL, e);
}

static int fc_pause(const struct vm_boot *b, struct op_error *e) {
        return patch_vm(b, "Paused", e);
}

static int fc_resume(const struct vm_boot *b, struct op_error *e) {
        return patch_vm(b, "Resumed", e);
}

/* Where saved-state files go: beside the API socket the VMM sees (the run
 * dir, or the chroot the symlink points into), and what the VMM calls them. */
static int state_paths(const struct vm_boot *b, const char *name, char **ret_host, char **ret_vmm, struct op_error *e) {
        struct stat st;
        _cleanup_free_ char *target = NULL;
        if (lstat(b->qmp_socket, &st) < 0)
                return op_fail(e, -errno, "%s: %s", b->qmp_socket, strerror(errno));
        if (S_ISLNK(st.st_mode)) { /* jailed */
                char buf[PATH_MAX];
                ssize_t n = readlink(b->qmp_socket, buf, sizeof(buf) - 1);
                if (n <= 0)
                        return op_fail(e, -errno, "readlink %s: %s", b->qmp_socket, strerror(errno));
                buf[n] = '\0';
                target = xstrdup(buf);
        }
        const char *sock = target ? target : b->qmp_socket, *slash = strrchr(sock, '/');
        if (!slash)
                return op_fail(e, -EINVAL, "%s: not an absolute path", sock);
        *ret_host = xasprintf("%.*s/%s", (int) (slash - sock), sock, name);
        *ret_vmm = target ? xasprintf("/%s", name) : xstrdup(*ret_host);
        return 0;
}

static int tar_add_file(struct archive *a, const char *name, const char *path, struct op_error *e) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return op_fail(e, fd < 0 ? -errno : -EINVAL, "firecracker's %s file %s: %s", name, path,
                               fd < 0 ? strerror(errno) : "not a regular file");
        struct archive_entry *en = archive_entry_new();
        archive_entry_set_pathname(en, name);
        archive_entry_set_filetype(en, AE_IFREG);
        archive_entry_set_perm(en, 0600);
        archive_entry_set_size(en, st.st_size);
        int rc = archive_write_header(a, en) == ARCHIVE_OK ? 0 : -EIO;
        archive_entry_free(en);
        _cleanup_free_ char *buf = xmalloc(FC_COPY_BUF); /* per call: VMs save their states concurrently */
        for (ssize_t n; rc == 0 && (n = read(fd, buf, FC_COPY_BUF)) != 0;) {
                if (n < 0)
                        rc = errno == EINTR ? 0 : -errno;
                else if (archive_write_data(a, buf, (size_t) n) != n)
                        rc = -EIO;
        }
        return rc < 0 ? op_fail(e, rc, "writing the saved state (%s): %s", name,
                                rc == -EIO ? archive_error_string(a) : strerror(-rc))
                      : 0;
}

static int fc_snapshot(const struct vm_boot *b, int state_fd, int timeout_ms, struct op_error *e) {
        _cleanup_free_ char *sh = NULL, *sv = NULL, *mh = NULL, *mv = NULL;
        int rc = state_paths(b, "save.vmstate", &sh, &sv, e);
        if (rc == 0)
                rc = state_paths(b, "save.mem", &mh, &mv, e);
        if (rc == 0)
                rc = patch_vm(b, "Paused", e);
        if (rc < 0)
                return rc;
        unlink(sh);
        unlink(mh);
        _cleanup_json_ json_t *body = json_pack("{s:s, s:s, s:s}", "snapshot_type", "Full", "snapshot_path", sv,
                                                "mem_file_path", mv);
        rc = fc_api(b->qmp_socket, "PUT", "/snapshot/create", body, timeout_ms, NULL, e);
        if (rc == 0) {
                struct archive *a = archive_write_new();
                archive_write_set_format_pax_restricted(a);
                if (archive_write_open_fd(a, state_fd) != ARCHIVE_OK)
                        rc = op_fail(e, -EIO, "writing the saved state: %s", archive_error_string(a));
                if (rc == 0)
                        rc = tar_add_file(a, "vmstate", sh, e);
                if (rc == 0)
                        rc = tar_add_file(a, "memory", mh, e);
                if (archive_write_close(a) != ARCHIVE_OK && rc == 0)
                        rc = op_fail(e, -EIO, "writing the saved state: %s", archive_error_string(a));
                archive_write_free(a);
        }
        unlink(sh);
        unlink(mh);
        return rc;
}

/* One entry of the saved state into path (a new file, at most max bytes). */
static int untar_entry(struct archive *a, struct archive_entry *en, const char *path, int64_t max, struct op_error *e) {
        if (archive_entry_filetype(en) != AE_IFREG || archive_entry_size(en) < 0 || archive_entry_size(en) > max)
                return op_fail(e, -EINVAL, "the saved state's %s is not a regular file of at most %lld bytes",
                               archive_entry_pathname(en), (long long) max);
        unlink(path);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return op_fail(e, -errno, "cannot create %s: %s", path, strerror(errno));
        _cleanup_free_ char *buf = xmalloc(FC_COPY_BUF);
        for (la_ssize_t n; (n = archive_read_data(a, buf, FC_COPY_BUF)) != 0;) {
                if (n < 0)
                        return op_fail(e, -EIO, "reading the saved state: %s", archive_error_string(a));
                if (write_all(fd, buf, (size_t) n) < 0)
                        return op_fail(e, -errno, "writing %s: %s", path, strerror(errno));
        }
        return 0;
}

static int fc_restore(const struct vm_boot *b, int state_fd, int timeout_ms, struct op_error *e) {
        if (!b->incoming)
                return op_fail(e, -EINVAL, "the VMM was not started to receive a state");
        _cleanup_free_ char *sh = NULL, *sv = NULL, *mh = NULL, *mv = NULL;
        int rc = state_paths(b, "load.vmstate", &sh, &sv, e);
        if (rc == 0)
                rc = state_paths(b, "load.mem", &mh, &mv, e);
        if (rc < 0)
                return rc;
        struct archive *a = archive_read_new();
        struct archive_entry *en;
        bool got_state = false, got_mem = false;
        archive_read_support_format_tar(a);
        if (archive_read_open_fd(a, state_fd, 1 << 16) != ARCHIVE_OK)
                rc = op_fail(e, -EIO, "reading the saved state: %s", archive_error_string(a));
        while (rc == 0 && archive_read_next_header(a, &en) == ARCHIVE_OK) {
                const char *name = archive_entry_pathname(en);
                if (name && strcmp(name, "vmstate") == 0 && !got_state)
                        rc = untar_entry(a, en, sh, FC_STATE_MAX, e), got_state = true;
                else if (name && strcmp(name, "memory") == 0 && !got_mem)
                        rc = untar_entry(a, en, mh, (int64_t) b->memory_mib << 20, e), got_mem = true;
                else
                        rc = op_fail(e, -EINVAL, "the saved state has an unexpected entry");
        }
        archive_read_free(a);
        if (rc == 0 && (!got_state || !got_mem))
                rc = op_fail(e, -EINVAL, "the saved state lacks its %s", got_state ? "memory" : "vmstate");
        if (rc == 0) {
                _cleanup_json_ json_t *body = json_pack("{s:s, s:{s:s, s:s}, s:b}", "snapshot_path", sv, "mem_backend",
                                                        "backend_type", "File", "backend_path", mv, "resume_vm", 0);
                rc = fc_api(b->qmp_socket, "PUT", "/snapshot/load", body, timeout_ms, NULL, e);
        }
        /* loaded: the VMM holds the memory mapped, and has read its state */
        unlink(sh);
        unlink(mh);
        return rc;
}

/* The root disk: Firecracker boots raw files only. */
static int fc_root_disk_create(const char *path, const char *rootfs, uint64_t size_bytes, struct op_error *e) {
        _cleanup_close_ int in = open(rootfs, O_RDONLY | O_CLOEXEC);
        if (in < 0)
                return op_fail(e, -errno, "cannot open %s: %s", rootfs, strerror(errno));
        int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (out < 0)
                return op_fail(e, -errno, "cannot create %s: %s", path, strerror(errno));
        int rc = 0;
        if (ioctl(out, FICLONE, in) < 0) { /* no reflinks here: a sparse copy */
                close(out);
                out = -1;
                unlink(path);
                rc = copy_file_sparse(rootfs, path, 0600);
                if (rc < 0)
                        return op_fail(e, rc, "copying %s: %s", rootfs, strerror(-rc));
                out = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
        }
        struct stat st;
        if (out < 0 || fstat(out, &st) < 0)
                rc = -errno;
        else if ((uint64_t) st.st_size < size_bytes && ftruncate(out, (off_t) size_bytes) < 0)
                rc = -errno;
        if (out >= 0)
                close(out);
        if (rc < 0) {
                unlink(path);
                return op_fail(e, rc, "root disk %s: %s", path, strerror(-rc));
        }
        return 0;
}

const struct vmm_backend vmm_firecracker = {
        .name = "firecracker",
        .root_disk_create = fc_root_disk_create,
        .warm_templates = false,
        .build_argv = fc_build_argv,
        .start = fc_start,
        .stop = fc_stop,
        .kill = vmm_proc_kill,
        .owns = fc_owns,
        .pause = fc_pause,
        .resume = fc_resume,
        .snapshot = fc_snapshot,
        .restore = fc_restore,
};
