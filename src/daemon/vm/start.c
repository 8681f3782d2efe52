/* SPDX-License-Identifier: MIT */
/*
 * Starting a VM, with its lock held, in steps that each undo exactly what
 * they did when a later one fails:
 *   resolve   boot files of the image, the VMM and accelerator, the run dir;
 *   network   bridge ensured, a TAP (from the pool or created) on it, and
 *             the teardown record naming it before anything else happens;
 *   caps      the capability hooks' prepare_host (work disk, guard, NAT, DNS);
 *   boot      the per-VM cpio and initrd, a Firecracker VM's device-mapper
 *             root disk (dmroot.c), the VMM started, handles written,
 *             the exit watcher told;
 *   ready     the agent answers and sshd listens; then the hooks' post_start.
 * On failure the VM is left in 'error' with last_error and nothing running.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "ipnet.h"
#include "jsonx.h"
#include "log.h"
#include "store/store_artifacts.h"
#include "strbuf.h"
#include "testhook.h"
#include "artifacts/modulesdisk.h"
#include "vm/agent_transport.h"
#include "vm/guestcfg.h"
#include "vms_internal.h"

struct start {
        struct vms *v;
        struct vm_row *r;
        const struct progress *pr;
        struct vm_paths p;
        struct boot_files bf;
        const struct vmm_entry *vmm;
        char *accel;
        char *tap;             /* once the network step made or took it (bridge mode) */
        unsigned ssh_port;     /* user-mode networking: the host port of the guest's sshd */
        bool tap_from_pool;
        size_t caps_touched;   /* hooks whose prepare_host ran (a failed one included) */
        const char *work_disk; /* from the work disk hook */
        struct vm_proc proc;   /* pid 0 until booted */
        char *dm_dev;          /* a device-mapper root (dmroot.c) once made; the VMM boots it */
        const struct vm_start_opts *o;
        int state_fd;          /* >= 0: the guest resumes from this saved state */
        bool warm;             /* from a template (state_fd is its state, owned) */
        char *ram_file;        /* warm: the template's RAM, mapped privately */
        bool kick;             /* no template yet: build one once this cold first boot worked */
        struct tpl_spec tpl;
        const struct vm_identify *identify; /* after the restore, before anything else: a new identity */
        struct vm_identify warm_identify;
};

/* ---- boot files of an image ------------------------------------------------ */

void vms_boot_files_done(struct boot_files *b) {
        free(b->kernel);
        free(b->initramfs);
        free(b->rootfs);
        free(b->work_seed);
        free(b->init_mode);
        free(b->modules_disk);
        *b = (struct boot_files) { 0 };
}

static int kernel_files(struct vms *v, const struct image_row *img, struct boot_files *b, struct op_error *e) {
        struct kernel_row k = { 0 };
        int r = store_kernel_get(v->deps.store, img->kernel_name, &k);
        if (r < 0)
                return op_fail_as(e, RPC_NOT_FOUND, r, "kernel '%s' of image '%s' is not installed (banger kernel pull %s)",
                                  img->kernel_name, img->name, img->kernel_name);
        _cleanup_free_ char *x = path_join(k.dir, "vmlinux"), *z = path_join(k.dir, "vmlinuz");
        _cleanup_free_ char *m = path_join(k.dir, MODULES_DISK_FILE);
        b->kernel = xstrdup(access(x, R_OK) == 0 ? x : z);
        b->modules_disk = access(m, R_OK) == 0 ? TAKE_PTR(m) : NULL;
        kernel_row_done(&k);
        return kernel_initramfs(v->deps.artifacts, img->kernel_name, &b->initramfs, e);
}

int vms_resolve_boot(struct vms *v, const char *image_id, struct boot_files *b, struct op_error *e) {
        struct image_row img = { 0 };
        int r = store_image_get(v->deps.store, image_id, &img);
        if (r < 0)
                return op_not_found(e, "image '%s' not found", image_id);
        b->rootfs = xstrdup(img.rootfs_path);
        b->work_seed = img.work_seed_path ? xstrdup(img.work_seed_path) : NULL;
        b->init_mode = xstrdup(img.init_mode ? img.init_mode : "systemd");
        struct stat st;
        b->rootfs_size = stat(img.rootfs_path, &st) == 0 ? (uint64_t) st.st_size : 0;
        if (img.kernel_name)
                r = kernel_files(v, &img, b, e);
        else if (img.kernel_path && img.initrd_path) {
                b->kernel = xstrdup(img.kernel_path);
                b->initramfs = xstrdup(img.initrd_path);
        } else
                r = op_fail(e, -ENOENT, "image '%s' has no kernel", img.name);
        image_row_done(&img);
        return r;
}

/* ---- the steps ---------------------------------------------------------------- */

/* A template has a work and a repo disk of the VM's disk size (the guest
 * read their sizes): so must the VM. */
static bool template_disks(struct start *s) {
        struct stat w, r;
        return vm_has_repo_disk(&s->p) && stat(s->p.work, &w) == 0 && stat(s->p.repo, &r) == 0 &&
               w.st_size == s->r->disk_size_bytes && r.st_size == s->r->disk_size_bytes;
}

/* The template's root overlay becomes the VM's (a copy: the VM owns its
 * disks; a few MiB) and its state is what the VMM loads. */
static int step_warm(struct start *s, const char *dir, struct op_error *e) {
        _cleanup_free_ char *rootq = path_join(dir, "root.qcow2"), *state = path_join(dir, "state");
        progress_stage(s->pr, "warm", "from template %.12s", s->tpl.key);
        int fd = open(state, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return op_fail(e, -errno, "template %.12s: %s: %s", s->tpl.key, state, strerror(errno));
        int rc = copy_file_sparse(rootq, s->p.overlay, 0600);
        if (rc < 0) {
                close(fd);
                return op_fail(e, rc, "template %.12s: copying its overlay: %s", s->tpl.key, strerror(-rc));
        }
        s->warm = true;
        s->state_fd = fd;
        s->ram_file = path_join(dir, "ram");
        s->warm_identify = (struct vm_identify) { .full = true, .mount_work = true };
        s->identify = &s->warm_identify;
        return 0;
}

static int step_resolve(struct start *s, struct op_error *e) {
        struct vms *v = s->v;
        size_t idx = 0;
        int rc = vms_resolve_boot(v, s->r->image_id, &s->bf, e);
        if (rc < 0)
                return rc;
        if ((rc = v->deps.choose_vmm(v->deps.choose_ud, s->r->firecracker ? "firecracker" : "qemu", &idx, &s->accel,
                                     e)) < 0)
                return rc;
        if (idx >= v->deps.n_vmms)
                return op_fail(e, -EOPNOTSUPP, "no VMM backend to boot with");
        s->vmm = &v->deps.vmms[idx];
        if (mkdir_p(s->p.run, 0700) < 0)
                return op_fail(e, -errno, "cannot create %s: %s", s->p.run, strerror(errno));
        /* a new VM may resume from a template: its disks are those a template has */
        /* (templates boot for the bridge: a user-mode VM boots cold) */
        /* (a template's agent is on virtio-serial: not for a config that insists on vsock) */
        const struct config *c = config_live_get(v->deps.config);
        if (!s->o->fresh || s->o->cold || s->state_fd >= 0 || s->r->user_net || strcmp(c->warm_start, "on") != 0 ||
            !agent_transport_warm_ok(c->qemu_agent_transport) || !s->vmm->backend->restore ||
            !s->vmm->backend->warm_templates || !template_disks(s))
                return 0;
        vms_tpl_spec(v, s->r, &s->bf, s->accel, s->vmm, &s->tpl);
        _cleanup_free_ char *dir = vms_tpl_find(v, s->tpl.key);
        s->kick = !dir;
        return dir ? step_warm(s, dir, e) : 0;
}

static int record_tap(struct start *s, struct op_error *e) {
        struct vm_handles h = { .ssh_port = s->ssh_port };
        snprintf(h.tap, sizeof(h.tap), "%s", strempty(s->tap));
        snprintf(h.vmm, sizeof(h.vmm), "%s", s->vmm->backend->name);
        /* before the VMM exists: a crash from here on still finds the TAP */
        int rc = handles_write(s->v, s->r, &s->p, &h);
        return rc < 0 ? op_fail(e, rc, "recording the VM's handles: %s", strerror(-rc)) : 0;
}

/* A free port on 127.0.0.1 for the VMM to forward to the guest's sshd
 * (the kernel's pick; the VMM binds it a moment later). */
static int free_loopback_port(unsigned *ret, struct op_error *e) {
        _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ||
            getsockname(fd, (struct sockaddr *) &sa, &len) < 0)
                return op_fail(e, -errno, "no free port on 127.0.0.1 for the guest's ssh: %s", strerror(errno));
        *ret = ntohs(sa.sin_port);
        return 0;
}

/* User-mode networking: nothing on the host but the VMM's own port for ssh. */
static int step_user_network(struct start *s, struct op_error *e) {
        int rc = free_loopback_port(&s->ssh_port, e);
        if (rc < 0)
                return rc;
        progress_stage(s->pr, "network", "user-mode, ssh on 127.0.0.1:%u", s->ssh_port);
        return record_tap(s, e);
}

static int step_network(struct start *s, struct op_error *e) {
        struct vms *v = s->v;
        if (s->r->user_net)
                return step_user_network(s, e);
        if (v->deps.rootless)
                return op_fail_as(e, RPC_UNAUTHORIZED, -EPERM,
                                  "vm %s uses bridge networking, which needs CAP_NET_ADMIN or the root helper "
                                  "(banger system install); this daemon has neither",
                                  s->r->name);
        const struct priv_ops *priv = v->deps.priv;
        const char *bridge = config_live_get(v->deps.config)->bridge_name;
        progress_stage(s->pr, "network", "bridge %s, TAP for %s", bridge, s->r->guest_ip);
        int rc = priv->bridge_ensure(priv->ud, bridge, e);
        if (rc < 0)
                return op_prefix(e, "bridge %s", bridge);
        if (tap_pool_take(&v->pool, &s->tap)) {
                s->tap_from_pool = true;
                vms_hk_kick(v);
        } else {
                s->tap = vm_tap_name(s->r->id);
                (void) priv->tap_delete(priv->ud, s->tap, NULL); /* a leftover from a crash */
                if ((rc = priv->tap_create(priv->ud, s->tap, bridge, e)) < 0) {
                        free(TAKE_PTR(s->tap));
                        return rc;
                }
        }
        return record_tap(s, e);
}

static int step_caps(struct start *s, struct op_error *e) {
        struct vm_cap_ctx c;
        size_t done = 0;
        vms_cap_ctx(s->v, s->r, &s->p, s->tap, &c);
        c.ret_work_disk = &s->work_disk;
        int rc = vm_caps_prepare(s->v->deps.caps, s->v->deps.n_caps, &c, &done, e);
        s->caps_touched = rc < 0 ? done + 1 : done;
        if (rc == 0 && progress_cancelled(s->pr))
                rc = op_fail(e, -ECANCELED, "cancelled");
        return rc;
}

static int concat_files(const char *a, const char *b, const char *out) {
        _cleanup_close_ int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        const char *in[] = { a, b };
        if (fd < 0)
                return -errno;
        for (size_t i = 0; i < 2; i++) {
                _cleanup_close_ int src = open(in[i], O_RDONLY | O_CLOEXEC);
                char buf[1 << 16];
                ssize_t n;
                if (src < 0)
                        return -errno;
                while ((n = read(src, buf, sizeof(buf))) > 0)
                        if (write_all(fd, buf, (size_t) n) < 0)
                                return -EIO;
                if (n < 0)
                        return -errno;
        }
        return 0;
}

/* The per-VM configuration cpio appended to the kernel's initramfs. */
static int write_initrd(struct start *s, struct op_error *e) {
        const struct config *c = config_live_get(s->v->deps.config);
        _cleanup_free_ char *ak = NULL, *pubpath = xasprintf("%s.pub", c->ssh_key_path);
        size_t len;
        int rc = read_file(pubpath, 1 << 16, &ak, &len);
        if (rc < 0)
                return op_fail(e, rc, "cannot read %s: %s", pubpath, strerror(-rc));
        bool user = s->r->user_net;
        struct guestcfg g = { .hostname = s->r->name, .ip = user ? VM_USER_NET_GUEST : s->r->guest_ip,
                              .dns = user ? VM_USER_NET_DNS : c->default_dns, .host_key_dir = s->p.hostkey,
                              .authorized_keys = ak, .host_alias_ip = user ? VM_USER_NET_HOST : NULL };
        if ((rc = guestcfg_write(&g, s->p.cpio, e)) < 0)
                return op_prefix(e, "guest configuration");
        if ((rc = concat_files(s->bf.initramfs, s->p.cpio, s->p.initrd)) < 0)
                return op_fail(e, rc, "writing %s: %s", s->p.initrd, strerror(-rc));
        return 0;
}

/* The last line the VMM wrote to vmm.log (beside the console), if any. */
/* Its last lines (QEMU explains a state it cannot load in the line before
 * its last), one line, made harmless. */
static char *vmm_tail(const struct vm_paths *p) {
        _cleanup_free_ char *log = path_join(p->dir, "vmm.log"), *text = NULL;
        size_t len;
        if (read_file_nofollow(log, 1u << 20, &text, &len) < 0 || len == 0)
                return NULL;
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
                text[--len] = '\0';
        char *from = len > 600 ? text + len - 600 : text;
        for (char *c = from; *c; c++)
                if (*c == '\n')
                        *c = '|';
        return str_defuse(xstrdup(from), '?');
}

static char *vmm_said(const struct vm_paths *p) {
        _cleanup_free_ char *dir = xstrdup(p->console), *log = NULL;
        char *slash = strrchr(dir, '/');
        if (!slash)
                return NULL;
        *slash = '\0';
        log = path_join(dir, "vmm.log");
        return file_last_line(log, 300);
}

/* While it exists, the VM's guest is not (yet) itself: a daemon that dies
 * then leaves a VMM reconcile must not adopt (reconcile.c). */
static int identifying(struct start *s, bool on, struct op_error *e) {
        _cleanup_free_ char *m = path_join(s->p.dir, VM_IDENTIFYING_MARKER);
        const char *what = s->warm ? "warm\n" : "fork\n";
        int rc = on ? write_file_atomic(m, what, strlen(what), 0600) : (unlink(m) < 0 && errno != ENOENT ? -errno : 0);
        return rc < 0 ? op_fail(e, rc, "%s: %s", m, strerror(-rc)) : 0;
}

/* A guest CID >= from for the VM's vhost-vsock device, and the agent's address with it. */
static int claim_cid(struct start *s, struct vm_boot *b, unsigned from, struct op_error *e) {
        unsigned cid = vms_cid_claim(s->v, s->r->id, from);
        if (!cid)
                return op_fail(e, -EADDRNOTAVAIL, "no free guest CID for the agent's vsock");
        free(s->p.agent);
        s->p.agent = agent_addr_vsock_new(cid, s->r->id);
        b->vsock_cid = cid;
        return 0;
}

/* QEMU: the agent's transport of this boot (agent_transport.h); a vsock
 * gets a CID no other VM of ours holds. */
static int step_transport(struct start *s, struct vm_boot *b, struct op_error *e) {
        if (s->r->firecracker)
                return 0; /* its own hybrid vsock */
        _cleanup_free_ char *dev_why = NULL, *why = NULL;
        bool dev = s->v->deps.vsock_usable && s->v->deps.vsock_usable(&dev_why);
        struct agent_transport_ask q = {
                .config = config_live_get(s->v->deps.config)->qemu_agent_transport, .device = dev,
                .device_why = dev_why, .saved = s->o->saved_transport,
                .kind = s->warm ? VM_BOOT_WARM : s->state_fd >= 0 ? VM_BOOT_STATE : VM_BOOT_COLD,
        };
        enum agent_transport t;
        int rc = agent_transport_decide(&q, &t, &why);
        if (rc < 0)
                return op_fail(e, rc, "vm %s: %s", s->r->name, why);
        return t == AGENT_TRANSPORT_VSOCK ? claim_cid(s, b, AGENT_VSOCK_CID_MIN, e) : 0;
}

/* A start that failed for something another try avoids: the guest CID
 * held by a VM banger does not know of (vhost-vsock said EADDRINUSE), or
 * user mode's ssh port taken since it was picked. 0: try again with b. */
static int start_retry(struct start *s, struct vm_boot *b, int rc, struct op_error *e) {
        if (rc == -EADDRINUSE && b->vsock_cid) {
                unsigned was = b->vsock_cid;
                log_info("vm %s: guest CID %u is taken on this host; trying another", s->r->name, was);
                op_error_done(e);
                return claim_cid(s, b, was + 1, e);
        }
        _cleanup_free_ char *said = s->r->user_net ? vmm_tail(&s->p) : NULL;
        if (!said || !strstr(said, "host forwarding rule"))
                return rc;
        op_error_done(e);
        if ((rc = free_loopback_port(&s->ssh_port, e)) < 0)
                return rc;
        log_info("vm %s: port %u for its ssh was taken meanwhile; trying %u", s->r->name, b->hostfwd_port, s->ssh_port);
        b->hostfwd_port = s->ssh_port;
        return 0;
}

static int step_boot(struct start *s, struct op_error *e) {
        const struct config *c = config_live_get(s->v->deps.config);
        struct ipv4_subnet net;
        _cleanup_free_ char *msg = NULL;
        progress_stage(s->pr, "boot", "%s, %s", s->vmm->backend->name, s->accel);
        if (ipv4_subnet_init(&net, c->bridge_ip, (int) c->cidr, &msg) < 0)
                return op_fail(e, -EINVAL, "%s", msg);
        int rc = write_initrd(s, e);
        if (rc < 0)
                return rc;
        rename(s->p.console, s->p.console_prev);
        unlink(s->p.qmp);
        unlink(s->p.agent_sock);
        bool user = s->r->user_net;
        _cleanup_free_ char *ip_cidr = user ? xasprintf(VM_USER_NET_GUEST "/%d", VM_USER_NET_PREFIX)
                                            : xasprintf("%s/%d", s->r->guest_ip, net.prefix);
        /* QEMU gets the TAP as an fd: it runs as the daemon's user, who may
         * not open /dev/net/tun */
        _cleanup_close_ int tap_fd = -1;
        const struct priv_ops *priv = s->v->deps.priv;
        if (!user && (rc = priv->tap_open(priv->ud, s->tap, &tap_fd, e)) < 0)
                return rc;
        /* undone by the release (stop.c) once the VMM is gone */
        if (s->p.dm_root && (rc = vms_dm_root_attach(s->v, s->r, &s->p, s->bf.rootfs, &s->dm_dev, e)) < 0)
                return rc;
        struct vm_boot b = {
                .id = s->r->id, .name = s->r->name, .vcpu = (int) s->r->vcpu, .memory_mib = (int) s->r->memory_mib,
                .accel = s->accel, .tsc_khz = s->v->deps.tsc_khz, .kernel = s->bf.kernel, .initrd = s->p.initrd,
                .init_mode = s->bf.init_mode, .root_disk = s->dm_dev ? s->dm_dev : s->p.overlay, .work_disk = s->work_disk,
                .repo_disk = vm_has_repo_disk(&s->p) ? s->p.repo : NULL, .modules_disk = s->bf.modules_disk,
                .net = user ? VM_NET_USER : VM_NET_TAP, .tap = s->tap, .tap_fd = tap_fd, .mac = s->r->mac,
                .ip_cidr = ip_cidr, .gateway = user ? VM_USER_NET_HOST : c->bridge_ip, .hostfwd_port = s->ssh_port,
                .qmp_socket = s->p.qmp, .agent_socket = s->p.agent_sock, .console_log = s->p.console,
                .incoming = s->state_fd >= 0, .ram_file = s->ram_file, .jail = s->vmm->jail,
        };
        if ((rc = step_transport(s, &b, e)) < 0 || (s->identify && (rc = identifying(s, true, e)) < 0))
                return rc;
        for (int tries = 1; (rc = s->vmm->backend->start(&b, s->vmm->bin, &s->proc, e)) < 0; tries++) {
                s->proc = (struct vm_proc) { .pid = 0, .pidfd = -1 };
                if (tries == 8 || (rc = start_retry(s, &b, rc, e)) < 0)
                        return rc;
        }
        if (b.incoming) {
                progress_stage(s->pr, "restore", "RAM and device state");
                rc = s->vmm->backend->restore(&b, s->state_fd, VM_STATE_TIMEOUT_MS, e);
                if (rc == 0)
                        rc = s->vmm->backend->resume(&b, e);
                if (rc < 0) { /* QEMU says why it could not load it */
                        pidfd_wait(s->proc.pidfd, 500);
                        _cleanup_free_ char *said = vmm_tail(&s->p);
                        return op_fail(e, rc, "restoring the saved state: %s%s%s", op_error_message(e),
                                       said ? "; the VMM said: " : "", strempty(said));
                }
        }
        struct vm_handles h = { .pid = s->proc.pid, .ssh_port = s->ssh_port, .vsock_cid = b.vsock_cid };
        snprintf(h.tap, sizeof(h.tap), "%s", strempty(s->tap));
        snprintf(h.vmm, sizeof(h.vmm), "%s", s->vmm->backend->name);
        snprintf(h.dm, sizeof(h.dm), "%s", strempty(s->dm_dev));
        vms_watch(s->v, s->r->id, s->proc.pid);
        rc = handles_write(s->v, s->r, &s->p, &h);
        return rc < 0 ? op_fail(e, rc, "recording the VM's handles: %s", strerror(-rc)) : 0;
}

static bool start_cancelled(void *ud) {
        return progress_cancelled(ud);
}

/* ret_sshd: listening; ret_no_sshd: the image has none (an agent too old
 * to say counts as having one). */
static int health(struct start *s, int timeout_ms, bool *ret_sshd, bool *ret_no_sshd, struct op_error *e) {
        struct agent_wait w = { .abort_fd = s->proc.pidfd, .cancelled = start_cancelled, .ud = (void *) s->pr };
        _cleanup_json_ json_t *h = NULL;
        int rc = s->v->deps.agent_call(s->v->deps.agent_ud, s->p.agent, "health", timeout_ms, &w, &h, e);
        *ret_sshd = rc == 0 && json_is_true(json_object_get(h, "sshd_listening"));
        *ret_no_sshd = rc == 0 && json_is_false(json_object_get(h, "sshd_installed"));
        return rc;
}


/* A guest resumed from a state that is not its own becomes this VM before
 * anything else sees it; sshd (restarted with the VM's host key) is asked
 * about again. */
static int step_identify(struct start *s, bool *sshd, bool *no_sshd, struct op_error *e) {
        progress_stage(s->pr, "identity", "%s, %s, %s", s->r->name, s->r->guest_ip, s->r->mac);
        int rc = vms_identify(s->v, s->r, &s->p, s->identify, e);
        if (rc < 0)
                return op_prefix(e, "re-identifying the guest");
        test_crash_point("identity:done");
        if ((rc = identifying(s, false, e)) < 0)
                return rc;
        return health(s, 10000, sshd, no_sshd, e);
}

/* The agent answers first; sshd follows (systemd images start it late). */
static int step_ready(struct start *s, struct op_error *e) {
        bool sshd = false, no_sshd = false;
        progress_stage(s->pr, "wait for agent", NULL);
        int64_t deadline = s->v->deps.mono_ms() + s->v->deps.agent_boot_timeout_ms;
        /* asked again every 10 s: one answer lost on the way (a guest port
         * that flaps while the guest boots) costs 10 s, not the whole wait */
        int rc;
        do {
                int64_t left = deadline - s->v->deps.mono_ms();
                rc = health(s, left < 10000 ? (int) (left > 0 ? left : 1) : 10000, &sshd, &no_sshd, e);
        } while (rc == -ETIMEDOUT && s->v->deps.mono_ms() < deadline && !pidfd_wait(s->proc.pidfd, 0) &&
                 !progress_cancelled(s->pr));
        if (rc == 0 && s->identify)
                rc = step_identify(s, &sshd, &no_sshd, e);
        if (rc == 0 && !sshd && no_sshd)
                progress_stage(s->pr, "wait for ssh", "no sshd in the image (commands go through the agent)");
        else if (rc == 0 && !sshd && !s->o->wait_ssh)
                progress_stage(s->pr, "wait for ssh", "not waited for (commands go through the agent)");
        else if (rc == 0 && !sshd) {
                progress_stage(s->pr, "wait for ssh", NULL);
                while (rc == 0 && !sshd && s->v->deps.mono_ms() < deadline && !pidfd_wait(s->proc.pidfd, 100))
                        rc = health(s, 5000, &sshd, &no_sshd, e);
                if (rc == 0 && !sshd)
                        rc = op_fail(e, -ETIMEDOUT, "sshd did not start listening in the guest");
        } else if (rc == 0)
                progress_stage(s->pr, "wait for ssh", "sshd already listening");
        if (rc < 0) {
                if (progress_cancelled(s->pr))
                        return op_fail(e, -ECANCELED, "cancelled");
                /* a VMM on its way out drops the agent's socket before its pidfd
                 * says so: a dropped connection gets a moment to be seen dead */
                bool dropped = rc == -ECONNRESET || rc == -EPIPE || rc == -ECONNREFUSED;
                if (pidfd_wait(s->proc.pidfd, dropped ? 1000 : 0)) {
                        _cleanup_free_ char *said = vmm_said(&s->p);
                        return op_fail(e, -EIO, "%s exited while the guest booted%s%s (console: %s)",
                                       s->vmm->backend->name, said ? ": " : "", strempty(said), s->p.console);
                }
                /* op_fail formats before it frees the old message; the guest's
                 * last word says where its boot stopped */
                _cleanup_free_ char *said = file_last_line(s->p.console, 200);
                return op_fail(e, rc, "%s (console: %s%s%s%s)", op_error_message(e), s->p.console,
                               said ? ", its last line: \"" : "", strempty(said), said ? "\"" : "");
        }
        struct vm_cap_ctx c;
        vms_cap_ctx(s->v, s->r, &s->p, s->tap, &c);
        return vm_caps_post_start(s->v->deps.caps, s->v->deps.n_caps, &c, e);
}

/* What the VM's last boot was, for `vm show` (cold, or warm from a template). */
static void record_boot(struct start *s) {
        _cleanup_free_ char *f = path_join(s->p.dir, "boot");
        _cleanup_free_ char *text = s->warm       ? xasprintf("warm %s\n", s->tpl.key)
                                    : s->identify ? xstrdup("forked\n")
                                                  : xstrdup(s->state_fd >= 0 ? "restored\n" : "cold\n");
        if (write_file_atomic(f, text, strlen(text), 0600) < 0)
                log_info("vm %s: cannot record how it booted", s->r->name);
}

/* ---- undo and the whole ---------------------------------------------------------- */

static void start_undo(struct start *s) {
        struct vms *v = s->v;
        _cleanup_free_ char *m = path_join(s->p.dir, VM_IDENTIFYING_MARKER);
        unlink(m);
        if (s->proc.pid > 0) {
                s->vmm->backend->kill(&s->proc, SIGKILL);
                pidfd_wait(s->proc.pidfd, VM_KILL_WAIT_MS);
                pidfd_reap(s->proc.pidfd);
        }
        if (s->caps_touched) {
                struct vm_cap_ctx c;
                _cleanup_op_error_ struct op_error ce = OP_ERROR_INIT;
                vms_cap_ctx(v, s->r, &s->p, s->tap, &c);
                if (vm_caps_cleanup(v->deps.caps, s->caps_touched, &c, &ce) < 0)
                        log_warn("vm %s: undoing the start: %s", s->r->name, op_error_message(&ce));
        }
        /* the TAP, sockets, handles and the teardown record */
        vms_release_host(v, s->r, &s->p, s->tap);
}

static void start_done(struct start *s) {
        if (s->proc.pidfd >= 0)
                close(s->proc.pidfd);
        if (s->warm && s->state_fd >= 0)
                close(s->state_fd);
        tpl_spec_done(&s->tpl);
        free(s->ram_file);
        vms_boot_files_done(&s->bf);
        vm_paths_done(&s->p);
        free(s->accel);
        free(s->tap);
        free(s->dm_dev);
}

int vms_start_locked(struct vms *v, struct vm_row *r, const struct progress *pr, struct op_error *e) {
        struct vm_start_opts o = { .wait_ssh = true, .state_fd = -1 };
        return vms_start_opts_locked(v, r, pr, &o, e);
}

int vms_start_locked_ex(struct vms *v, struct vm_row *r, const struct progress *pr, bool wait_ssh, struct op_error *e) {
        struct vm_start_opts o = { .wait_ssh = wait_ssh, .state_fd = -1 };
        return vms_start_opts_locked(v, r, pr, &o, e);
}

static int start_once(struct start *s, struct op_error *e) {
        struct vms *v = s->v;
        struct vm_row *r = s->r;
        vm_paths_init(v, r, &s->p);
        vms_set_state(v, r, "starting", NULL);
        int rc = step_resolve(s, e);
        if (rc == 0)
                rc = step_network(s, e);
        if (rc == 0)
                rc = step_caps(s, e);
        if (rc == 0)
                rc = step_boot(s, e);
        if (rc == 0)
                rc = step_ready(s, e);
        if (rc < 0) {
                start_undo(s);
                vms_set_state(v, r, "error", op_error_message(e));
                log_warn("vm %s: start failed: %s", r->name, op_error_message(e));
        } else {
                record_boot(s);
                vms_set_state(v, r, "running", NULL);
                int tr = store_vm_touch(v->deps.store, r->id);
                if (tr < 0)
                        log_warn("vm %s: recording its start time: %s", r->name, strerror(-tr));
        }
        return rc;
}

/* A warm start that failed leaves the VM's overlay a copy of the template's:
 * a fresh one for the cold boot. */
static int fresh_overlay(struct start *s, struct op_error *e) {
        unlink(s->p.overlay);
        return s->vmm->backend->root_disk_create(s->p.overlay, s->bf.rootfs, (uint64_t) s->r->system_overlay_size_bytes,
                                                 e);
}

int vms_start_opts_locked(struct vms *v, struct vm_row *r, const struct progress *pr, const struct vm_start_opts *o,
                          struct op_error *e) {
        struct start s = { .v = v, .r = r, .pr = pr, .proc = { .pid = 0, .pidfd = -1 }, .o = o,
                           .state_fd = o->state_fd, .identify = o->identify };
        int rc = start_once(&s, e);
        if (rc < 0 && s.warm && !progress_cancelled(pr) && !v->stopping) {
                struct vm_start_opts cold = *o;
                cold.cold = true;
                _cleanup_json_ json_t *gone = NULL;
                log_warn("vm %s: the warm start from template %.12s failed (%s); booting cold", r->name, s.tpl.key,
                         op_error_message(e));
                progress_stage(pr, "warm", "failed (%s); booting cold", op_error_message(e));
                op_error_done(e);
                if (vm_template_rm(v, s.tpl.key, false, &gone, NULL) < 0) /* rebuilt by a later create */
                        log_info("template %.12s: already gone", s.tpl.key);
                rc = fresh_overlay(&s, e);
                start_done(&s);
                s = (struct start) { .v = v, .r = r, .pr = pr, .proc = { .pid = 0, .pidfd = -1 }, .o = &cold,
                                     .state_fd = -1 };
                if (rc == 0)
                        rc = start_once(&s, e);
                s.o = o; /* `cold` goes out of scope */
        }
        if (rc == 0 && s.kick) /* in the background, after this start */
                vms_tpl_kick(v, &s.tpl);
        start_done(&s);
        return rc;
}
