/* SPDX-License-Identifier: MIT */
/*
 * The composition root (daemon.h): it opens the subsystems in order, wires
 * each one's dependencies, serves, and closes them in reverse. What is left
 * here of its own is the accelerator choice (host facts, the KVM boot
 * probe) and the signal/wake loop.
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "accel.h"
#include "clock.h"
#include "fsutil.h"
#include "hostinfo.h"
#include "log.h"
#include "macro.h"
#include "store/store_artifacts.h"
#include "strbuf.h"
#include "version.h"
#include "vm/agent_client.h"
#include "vm/agent_link.h"

static const char *env_get(const char *name) {
        return getenv(name);
}

/* One daemon per state dir: an flock held for the daemon's lifetime. */
static int take_lock(struct daemon *d, struct op_error *e) {
        _cleanup_close_ int fd = open(d->layout.lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        char buf[32] = { 0 };

        if (fd < 0)
                return op_fail(e, -errno, "cannot open %s: %s", d->layout.lock_path, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                int en = errno;
                ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
                if (n > 0)
                        buf[strcspn(buf, "\n")] = '\0';
                if (en == EWOULDBLOCK)
                        return op_fail(e, -en, "another bangerd%s%s%s is already running for %s",
                                       n > 0 ? " (pid " : "", n > 0 ? buf : "", n > 0 ? ")" : "", d->layout.state_dir);
                return op_fail(e, -en, "cannot lock %s: %s", d->layout.lock_path, strerror(en));
        }
        int len = snprintf(buf, sizeof(buf), "%d\n", (int) getpid());
        if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t) len, 0) < 0)
                log_warn("cannot write our pid to %s (the lock is what counts)", d->layout.lock_path);
        d->lock_fd = TAKE_FD(fd);
        return 0;
}

static int setup_signals(struct daemon *d, struct op_error *e) {
        sigset_t mask;

        /* Blocked in every thread (threads inherit the mask): only the
         * signalfd sees them. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        d->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        d->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (d->signal_fd < 0 || d->wake_fd < 0)
                return op_fail(e, -errno, "cannot set up signal handling: %s", strerror(errno));
        return 0;
}

/* ---- the VMM and accelerator --------------------------------------------- */

static void set_choice(struct daemon *d, int probe, const char *detail) {
        struct vmm_choice c;
        hostinfo_choose_vmm(config_live_get(&d->config), &d->qemu, &d->firecracker, &d->kvm, probe, detail, &c);
        /* auto never picks a Firecracker its jailer setting would refuse */
        if (strcmp(c.vmm, "firecracker") == 0 && strcmp(config_live_get(&d->config)->vmm, "auto") == 0 &&
            d->jail.mode == JAIL_REFUSED) {
                free(c.vmm_reason);
                c.vmm = "qemu";
                c.vmm_reason = xasprintf("firecracker is refused: %s", strempty(d->jail.reason));
        }
        log_info("vmm=%s (%s) accel=%s (%s)", c.vmm, c.vmm_reason, c.accel, c.accel_reason);
        pthread_mutex_lock(&d->accel_mu);
        vmm_choice_done(&d->vmm);
        d->vmm = c;
        pthread_mutex_unlock(&d->accel_mu);
}

static void copy_choice(void *ud, struct rpc_vmm_choice *ret) {
        struct daemon *d = ud;
        pthread_mutex_lock(&d->accel_mu);
        *ret = (struct rpc_vmm_choice) { xstrdup(d->vmm.vmm), xstrdup(d->vmm.vmm_reason), xstrdup(d->vmm.accel),
                                         xstrdup(d->vmm.accel_reason) };
        pthread_mutex_unlock(&d->accel_mu);
}

/* vms_deps.choose_vmm: the backend asked for, else the daemon's choice;
 * Firecracker only when it is installed and not older than banger drives. */
static int choose_vmm(void *ud, const char *want, size_t *ret_index, char **ret_accel, struct op_error *e) {
        struct daemon *d = ud;
        struct rpc_vmm_choice c;
        copy_choice(ud, &c);
        const char *name = want ? want : c.vmm;
        int r = 0;
        _cleanup_free_ char *why = NULL;
        if (strcmp(name, "firecracker") == 0 && !d->firecracker.path)
                r = op_fail(e, -ENOENT, "firecracker is not installed (firecracker_bin = \"%s\" in %s)",
                            config_live_get(&d->config)->firecracker_bin, d->layout.config_file);
        else if (strcmp(name, "firecracker") == 0 && hostinfo_fc_version(d->firecracker.version, &why) < 0)
                r = op_fail(e, -EOPNOTSUPP, "firecracker at %s: %s", d->firecracker.path, why);
        else if (strcmp(name, "firecracker") == 0 && d->jail.mode == JAIL_REFUSED)
                r = op_fail(e, -EPERM, "%s", d->jail.reason);
        bool found = false;
        for (size_t i = 0; r == 0 && !found && i < ELEMENTSOF(d->vmms); i++)
                if (strcmp(d->vmms[i].backend->name, name) == 0) {
                        *ret_index = i;
                        *ret_accel = TAKE_PTR(c.accel);
                        found = true;
                }
        if (r == 0 && !found)
                r = op_fail(e, -EOPNOTSUPP, "no %s backend in this build", name);
        rpc_vmm_choice_done(&c);
        return r;
}

struct probe_job {
        struct daemon *d;
        char *vmlinux, *initramfs;
};

static bool probe_cancelled(void *ud) {
        return atomic_load(&((struct daemon *) ud)->stopping);
}

static void *probe_main(void *arg) {
        struct probe_job *j = arg;
        struct accel_verdict v;
        log_info("probing KVM: booting %s under -accel kvm", j->vmlinux);
        int r = accel_probe(j->d->layout.cache_dir, j->d->qemu.path, j->vmlinux, j->initramfs, host_tsc_khz(), 10000,
                            probe_cancelled, j->d, &v);
        if (r == 0)
                set_choice(j->d, v.kvm_works ? 1 : 0, v.detail);
        else if (r != -ECANCELED)
                log_warn("KVM boot probe failed to run: %s", strerror(-r));
        free(j->vmlinux);
        free(j->initramfs);
        free(j);
        return NULL;
}

/* The first kernel with a vmlinux, and its initramfs. */
static int probe_kernel(struct daemon *d, char **ret_vmlinux, char **ret_initramfs) {
        struct kernel_row *rows = NULL;
        size_t n = 0;
        int r = -ENOENT;

        if (store_kernel_list(d->store, &rows, &n) < 0)
                return -EIO;
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *vl = path_join(rows[i].dir, "vmlinux");
                char *ir = NULL;
                if (r < 0 && access(vl, R_OK) == 0 && kernel_initramfs(&d->artifacts, rows[i].name, &ir, NULL) == 0) {
                        *ret_vmlinux = TAKE_PTR(vl);
                        *ret_initramfs = ir;
                        r = 0;
                }
        }
        for (size_t i = 0; i < n; i++)
                kernel_row_done(&rows[i]);
        free(rows);
        return r;
}

/* (Re)considers the accelerator: a cached KVM verdict, else a boot probe in
 * the background when a kernel is present. At start and after kernel
 * pulls/imports (from RPC threads). */
static void accel_refresh(void *ud) {
        struct daemon *d = ud;
        _cleanup_free_ char *vmlinux = NULL, *initramfs = NULL;
        struct accel_verdict v;

        if (strcmp(config_live_get(&d->config)->accel, "auto") != 0 || !d->kvm.create_vm || !d->qemu.path) {
                set_choice(d, -1, NULL);
                return;
        }
        if (probe_kernel(d, &vmlinux, &initramfs) < 0) {
                set_choice(d, -1, "no kernel pulled yet to probe with");
                return;
        }
        if (accel_cached(d->layout.cache_dir, vmlinux, &v)) {
                set_choice(d, v.kvm_works ? 1 : 0, v.detail);
                return;
        }
        /* One probe per daemon life (its verdict is cached for the next). */
        if (atomic_load(&d->stopping) || atomic_exchange(&d->probe_claimed, true))
                return;
        set_choice(d, -1, "boot probe running");
        struct probe_job *j = xcalloc(1, sizeof(*j));
        *j = (struct probe_job) { d, TAKE_PTR(vmlinux), TAKE_PTR(initramfs) };
        int r = pthread_create(&d->probe_thread, NULL, probe_main, j);
        if (r == 0) {
                atomic_store(&d->probe_started, true);
                return;
        }
        log_warn("cannot start the KVM boot probe: %s", strerror(r));
        free(j->vmlinux);
        free(j->initramfs);
        free(j);
}

static void probe_host(struct daemon *d) {
        if (accel_kill_stale_probe(d->layout.cache_dir))
                log_info("start-up sweep: killed the KVM probe a previous daemon left");
        hostinfo_tool(config_live_get(&d->config)->qemu_bin, &d->qemu);
        hostinfo_kvm(&d->kvm);
        set_choice(d, -1, NULL);
}

/* ---- wiring ------------------------------------------------------------------- */

static int agent_call_fn(void *ud, const char *socket_path, const char *method, int timeout_ms,
                         const struct agent_wait *w, json_t **ret, struct op_error *e) {
        return agent_links_call(ud, socket_path, method, timeout_ms, w, ret, e);
}

static int exec_open_fn(void *ud, const char *socket_path, const uint8_t *spec, size_t spec_len, int timeout_ms,
                        struct agent_exec **ret, uint32_t *ret_pid, struct op_error *e) {
        return agent_exec_open(ud, socket_path, spec, spec_len, timeout_ms, ret, ret_pid, e);
}

static int exec_fds_fn(void *ud, const char *socket_path, const uint8_t *spec, size_t spec_len, int in_fd, int out_fd,
                       int err_fd, const struct agent_wait *w, int *ret_status, struct op_error *e) {
        return agent_exec_fds(ud, socket_path, spec, spec_len, in_fd, out_fd, err_fd, w, ret_status, e);
}

static char *exec_lost_fn(void *ud, const char *socket_path) {
        return agent_links_lost(ud, socket_path);
}

static const struct vms_agent_exec_ops agent_exec_ops = {
        .open = exec_open_fn, .attach = agent_exec_attach, .finish = agent_exec_finish, .fds = exec_fds_fn,
        .lost = exec_lost_fn,
};

/* SIGHUP and daemon.reload: config.toml is read again. A file that does not
 * load leaves the running config as it is; otherwise the new snapshot is
 * published whole, keys read only at start keeping their running values
 * (reported as needing a restart), and the log level and housekeeping
 * intervals take effect now. */
static int reload_config(void *ud, json_t **ret, struct op_error *e) {
        struct daemon *d = ud;
        _cleanup_free_ char *msg = NULL;
        struct config *next = NULL;
        pthread_mutex_lock(&d->config.lock);
        int r = hostinfo_load_config(&d->layout, &next, &msg);
        if (r < 0) {
                pthread_mutex_unlock(&d->config.lock);
                log_warn("reload: %s; the running config is kept", msg);
                return op_fail(e, -EINVAL, "%s; the running config is kept", msg);
        }
        const struct config *cur = config_live_get(&d->config);
        json_t *diff = config_diff(cur, next, true);
        int level = log_level_from_string(next->log_level);
        json_t *warnings = json_array();
        for (char **w = next->warnings; w && *w; w++) {
                log_warn("config %s: %s", d->layout.config_file, *w);
                json_array_append_new(warnings, json_string(*w));
        }
        config_live_publish(&d->config, next);
        pthread_mutex_unlock(&d->config.lock);
        if (!d->log_level_forced && level >= 0)
                log_set_level((enum log_level) level);
        if (d->vms_ready)
                vms_config_changed(&d->vms);
        size_t k;
        json_t *c;
        json_array_foreach(json_object_get(diff, "changed"), k, c) {
                _cleanup_free_ char *from = json_dump_compact(json_object_get(c, "running"));
                _cleanup_free_ char *to = json_dump_compact(json_object_get(c, "file"));
                log_info("reload: %s %s -> %s", json_string_value(json_object_get(c, "key")), from, to);
        }
        json_array_foreach(json_object_get(diff, "needs_restart"), k, c) {
                _cleanup_free_ char *to = json_dump_compact(json_object_get(c, "file"));
                log_warn("reload: %s = %s needs a restart of bangerd", json_string_value(json_object_get(c, "key")), to);
        }
        log_info("reloaded %s: %zu changed, %zu need a restart", d->layout.config_file,
                 json_array_size(json_object_get(diff, "changed")), json_array_size(json_object_get(diff, "needs_restart")));
        json_object_set_new(diff, "path", json_string(d->layout.config_file));
        json_object_set_new(diff, "warnings", warnings);
        *ret = diff;
        return 0;
}

static void request_stop(void *ud) {
        struct daemon *d = ud;
        uint64_t one = 1;
        if (write(d->wake_fd, &one, sizeof(one)) < 0) {
                /* counter saturated: a stop is already pending */
        }
}

/* Layout, config, state and runtime dirs, the log, the lock. */
static int open_base(struct daemon *d, const struct daemon_options *opts, struct op_error *e) {
        _cleanup_free_ char *msg = NULL;
        int r = 0;
        if (opts->install)
                install_layout(opts->install, &d->layout);
        else
                r = layout_resolve(&d->layout, env_get, d->uid, &msg);
        struct config *c = NULL;
        if (r < 0 || (r = hostinfo_load_config(&d->layout, &c, &msg)) < 0)
                return op_take_msg(e, r, &msg);
        config_live_init(&d->config, c);
        d->config_ready = true;
        if ((r = layout_prepare_state(&d->layout, &msg)) < 0 ||
            (r = layout_prepare_runtime(&d->layout, d->uid, &msg)) < 0)
                return op_take_msg(e, r, &msg);
        d->log_fd = open(d->layout.log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (d->log_fd < 0)
                return op_fail(e, -errno, "cannot open log %s: %s", d->layout.log_path, strerror(errno));
        d->log_level_forced = opts->log_level != NULL;
        int level = log_level_from_string(opts->log_level ? opts->log_level : c->log_level);
        log_setup(d->log_fd, level < 0 ? LOG_LEVEL_INFO : (enum log_level) level, opts->foreground);
        if ((r = take_lock(d, e)) < 0)
                return r;
        log_info("bangerd %s (commit %s) starting in %s mode; state=%s runtime=%s", banger_version(), banger_commit(),
                 opts->install ? "system" : "user", d->layout.state_dir, d->layout.runtime_dir);
        for (char **w = c->warnings; w && *w; w++)
                log_warn("config %s: %s", d->layout.config_file, *w);
        return 0;
}

/* Port forwards hold 6 fds per connection (net/forward.h): the soft limit
 * (1024 under systemd) goes up to the hard one. */
static void raise_nofile(void) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                        log_warn("raising the open file limit: %s", strerror(errno));
        }
}

/* vm_jailer.start: through the privileged operations. */
static int jailer_start(void *ud, const char *vm_id, const char *const *files, size_t n, const char *log_path,
                        int vcpu, int memory_mib, pid_t *ret_pid, char **ret_root, struct op_error *e) {
        const struct priv_ops *p = ud;
        return p->fc_jail_start(p->ud, vm_id, files, n, log_path, vcpu, memory_mib, ret_pid, ret_root, e);
}

/* Whether Firecracker runs under its jailer is for whoever does the
 * privileged work to say (this process as root, or the root helper). */
static void jail_setup(struct daemon *d) {
        const struct priv_ops *p = d->priv_ops;
        _cleanup_op_error_ struct op_error e = OP_ERROR_INIT;
        if (!d->firecracker.path || !p->fc_jail_info)
                return;
        if (p->fc_jail_info(p->ud, &d->jail, &e) < 0) { /* never unjailed by accident */
                d->jail = (struct priv_jail_info) { .mode = JAIL_REFUSED };
                d->jail.reason = xasprintf("asking %s whether firecracker runs jailed: %s; firecracker VMs are "
                                           "refused until bangerd restarts",
                                           p->name, op_error_message(&e));
        }
        if (d->jail.mode == JAIL_ON) {
                d->fc_jailer = (struct vm_jailer) { .start = jailer_start, .ud = (void *) p };
                d->vmms[1].bin = d->jail.exec_file;
                d->vmms[1].jail = &d->fc_jailer;
        }
        if (d->jail.reason)
                log_info("%s", d->jail.reason);
}

static struct vms_deps vms_deps_of(struct daemon *d) {
        size_t n_caps;
        const struct vm_cap *const *caps = vm_caps_default(&n_caps);
        d->vmms[0] = (struct vmm_entry) { &vmm_qemu, config_live_get(&d->config)->qemu_bin };
        d->vmms[1] = (struct vmm_entry) { &vmm_firecracker, config_live_get(&d->config)->firecracker_bin };
        /* before reconcile: a jailed Firecracker is known by the exec file's name */
        jail_setup(d);
        return (struct vms_deps) {
                .layout = &d->layout, .config = &d->config, .store = d->store, .artifacts = &d->artifacts,
                .ops = &d->ops, .priv = d->priv_ops, .vmms = d->vmms, .n_vmms = ELEMENTSOF(d->vmms),
                .choose_vmm = choose_vmm, .choose_ud = d, .agent_call = agent_call_fn, .agent_exec = &agent_exec_ops, .agent_ud = d->links, .mono_ms = mono_ms_now,
                .wall_ms = wall_ms, .tsc_khz = host_tsc_khz(), .caps = caps, .n_caps = n_caps, .fwd = d->fwd,
                .rootless = d->rootless, .vsock_usable = hostinfo_vhost_vsock,
        };
}

/* In system mode the root helper does what needs root; in user mode this
 * process does, under the same checks; rootless (no helper, no
 * CAP_NET_ADMIN), VMs use user-mode networking and need none of it. */
static int open_priv(struct daemon *d, const struct daemon_options *opts, struct op_error *e) {
        const char *roots[] = { d->layout.state_dir, d->layout.cache_dir, d->layout.runtime_dir, NULL };
        if (opts->install) {
                hostinfo_tool(config_live_get(&d->config)->firecracker_bin, &d->firecracker);
                _cleanup_free_ char *sock = install_helper_socket(opts->install);
                d->helper = priv_remote_new(sock);
                d->priv_ops = priv_remote_ops(d->helper);
                return 0;
        }
        _cleanup_free_ char *agent = find_companion("BANGER_AGENT", "banger-agent");
        const struct config *c = config_live_get(&d->config);
        hostinfo_tool(c->firecracker_bin, &d->firecracker);
        d->rootless = !hostinfo_net_admin();
        if (d->rootless)
                log_info("rootless: no CAP_NET_ADMIN and no root helper; VMs use user-mode networking");
        int r = priv_local_new(c->bridge_name, c->bridge_ip, (int) c->cidr, roots, agent,
                               &d->priv, e);
        if (r < 0)
                return r;
        d->priv_ops = priv_local_ops(d->priv);
        /* as root, this process runs the jailer itself */
        struct jail_plan jp;
        _cleanup_free_ char *base = path_join(d->layout.state_dir, VM_JAIL_DIR);
        hostinfo_jail(c->jailer_bin, d->firecracker.path, geteuid(), &jp);
        priv_local_set_jail(d->priv, &jp, base, d->uid, getgid());
        jail_plan_done(&jp);
        return 0;
}

/* The store, the privileged operations, artifacts, the VM service. */
static int open_services(struct daemon *d, const struct daemon_options *opts, struct op_error *e) {
        int r;
        if ((r = store_open(d->layout.db_path, 0, d->layout.vms_dir, &d->store, e)) < 0 ||
            (r = open_priv(d, opts, e)) < 0 ||
            (r = artifacts_init(&d->artifacts, &d->layout, &d->config, d->store, d->priv_ops, e)) < 0)
                return r;
        d->artifacts_ready = true;
        if ((r = setup_signals(d, e)) < 0)
                return r;
        d->links = agent_links_new();
        raise_nofile();
        _cleanup_free_ char *vsock_why = NULL;
        if (hostinfo_vhost_vsock(&vsock_why))
                log_info("QEMU VMs can reach their agent over vsock (/dev/vhost-vsock; qemu_agent_transport = \"%s\")",
                         config_live_get(&d->config)->qemu_agent_transport);
        else
                log_info("%s: QEMU VMs reach their agent over virtio-serial", vsock_why);
        d->fwd = fwd_new();
        /* after the signal mask: the VM service's threads inherit it */
        struct vms_deps deps = vms_deps_of(d);
        if ((r = vms_init(&d->vms, &deps, e)) < 0)
                return r;
        d->vms_ready = true;
        vms_reconcile(&d->vms);
        return vms_start_housekeeping(&d->vms, e);
}

static void open_dns(struct daemon *d) {
        _cleanup_op_error_ struct op_error de = OP_ERROR_INIT;
        if (strcmp(config_live_get(&d->config)->dns_listen, "off") == 0)
                d->dns_error = xstrdup("disabled (dns_listen = \"off\")");
        else if (d->rootless)
                d->dns_error = xstrdup("rootless: no bridge to serve the vm zone on");
        else if (dnsd_start(&d->dns, config_live_get(&d->config)->dns_listen, vms_dns_lookup, &d->vms, &de) < 0) {
                d->dns_error = xstrdup(op_error_message(&de));
                log_warn("%s; <name>.vm names will not resolve", d->dns_error);
        } else
                log_info("serving the vm zone on %s (udp, tcp)", config_live_get(&d->config)->dns_listen);
}

static void fill_services(struct daemon *d) {
        d->services = (struct rpc_services) {
                .layout = &d->layout, .config = &d->config, .ops = &d->ops, .artifacts = &d->artifacts,
                .vms = &d->vms, .reported_commit = d->reported_commit, .started_mono_ms = d->started_mono_ms,
                .dns_listen = config_live_get(&d->config)->dns_listen, .dns_serving = d->dns.started, .dns_error = d->dns_error,
                .rootless = d->rootless,
                .ud = d, .vmm_choice = copy_choice, .accel_refresh = accel_refresh, .request_stop = request_stop,
                .reload = reload_config,
        };
}

int daemon_open(const struct daemon_options *opts, struct daemon **ret, struct op_error *e) {
        struct daemon *d = xcalloc(1, sizeof(*d));
        int r;

        d->lock_fd = d->log_fd = d->signal_fd = d->wake_fd = -1;
        d->dns.udp_fd = d->dns.tcp_fd = d->dns.wake_fd = -1;
        d->server.listen_fd = -1;
        d->uid = getuid();
        d->started_mono_ms = mono_ms_now();
        d->reported_commit = getenv("BANGERD_TEST_COMMIT") ? getenv("BANGERD_TEST_COMMIT") : banger_commit();
        opstate_init(&d->ops, 10 * 60 * 1000);
        pthread_mutex_init(&d->accel_mu, NULL);

        if ((r = open_base(d, opts, e)) < 0 || (r = open_services(d, opts, e)) < 0)
                goto fail;
        open_dns(d);
        probe_host(d);
        fill_services(d);
        r = rpc_server_listen(&d->server, d->layout.socket_path, d->uid, rpc_dispatch_line, &d->services, e);
        if (r < 0)
                goto fail;
        accel_refresh(d);
        log_info("listening on %s", d->layout.socket_path);
        *ret = d;
        return 0;
fail:
        if (d->log_fd >= 0)
                log_error("start-up failed: %s", op_error_message(e));
        daemon_close(d);
        return r;
}

int daemon_serve(struct daemon *d) {
        for (;;) {
                struct pollfd p[3] = {
                        { .fd = d->server.listen_fd, .events = POLLIN },
                        { .fd = d->signal_fd, .events = POLLIN },
                        { .fd = d->wake_fd, .events = POLLIN },
                };
                /* Wake at least every few seconds to reap finished connections
                 * and prune finished operations. */
                int r = poll(p, 3, 5000);
                if (r < 0 && errno != EINTR)
                        return log_error_errno(-errno, "poll failed");
                rpc_server_reap(&d->server);
                opstate_prune(&d->ops, wall_ms());
                if (r <= 0)
                        continue;
                if (p[1].revents & POLLIN) {
                        struct signalfd_siginfo si = { 0 };
                        if (read(d->signal_fd, &si, sizeof(si)) == sizeof(si) && si.ssi_signo == SIGHUP) {
                                _cleanup_op_error_ struct op_error re = OP_ERROR_INIT;
                                _cleanup_json_ json_t *res = NULL;
                                log_info("received SIGHUP: reloading %s", d->layout.config_file);
                                (void) reload_config(d, &res, &re); /* it logs what happened */
                        } else if (si.ssi_signo) {
                                log_info("received %s, stopping (running VMs are left running)",
                                         strsignal((int) si.ssi_signo));
                                return 0;
                        }
                }
                if (p[2].revents & POLLIN) {
                        log_info("stopping on request (running VMs are left running)");
                        return 0;
                }
                if (p[0].revents & POLLIN)
                        rpc_server_accept(&d->server);
        }
}

static void close_fds(struct daemon *d) {
        if (d->lock_fd >= 0) {
                log_info("bangerd stopped");
                close(d->lock_fd);
        }
        if (d->signal_fd >= 0)
                close(d->signal_fd);
        if (d->wake_fd >= 0)
                close(d->wake_fd);
}

void daemon_close(struct daemon *d) {
        if (!d)
                return;
        atomic_store(&d->stopping, true);
        if (d->links)
                agent_links_stop(d->links); /* execs end; their connections can then close */
        if (d->server.listen_fd >= 0) {
                rpc_server_close(&d->server); /* no handler can start a probe after this */
                /* Still holding the lock: the socket is ours to remove. */
                unlink(d->layout.socket_path);
        }
        if (atomic_load(&d->probe_started))
                pthread_join(d->probe_thread, NULL); /* the probe polls `stopping` */
        dnsd_stop(&d->dns);
        free(d->dns_error);
        if (d->vms_ready)
                vms_done(&d->vms); /* cancels creates in flight; running VMs stay */
        fwd_free(d->fwd); /* their forwards pause until the next daemon adopts them */
        agent_links_free(d->links);
        if (d->artifacts_ready)
                artifacts_done(&d->artifacts);
        priv_local_free(d->priv);
        priv_remote_free(d->helper);
        store_close(d->store);
        opstate_done(&d->ops);
        vmm_choice_done(&d->vmm);
        tool_info_done(&d->qemu);
        tool_info_done(&d->firecracker);
        priv_jail_info_done(&d->jail);
        kvm_state_done(&d->kvm);
        close_fds(d);
        if (d->config_ready)
                config_live_done(&d->config);
        layout_done(&d->layout);
        pthread_mutex_destroy(&d->accel_mu);
        log_setup(-1, LOG_LEVEL_INFO, true);
        if (d->log_fd >= 0)
                close(d->log_fd);
        free(d);
}
