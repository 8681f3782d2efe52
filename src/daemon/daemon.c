/* SPDX-License-Identifier: MIT */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <time.h>
#include <stdlib.h>
#include <unistd.h>

#include "accel.h"
#include "clock.h"
#include "fsutil.h"
#include "store/store_artifacts.h"
#include "log.h"
#include "macro.h"
#include "strbuf.h"
#include "version.h"

static const char *env_get(const char *name) {
        return getenv(name);
}

/* One daemon per state dir: an flock held for the daemon's lifetime. */
static int take_lock(struct daemon *d, char **ret_err) {
        _cleanup_close_ int fd = open(d->layout.lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        char buf[32] = { 0 };

        if (fd < 0) {
                *ret_err = xasprintf("cannot open %s: %s", d->layout.lock_path, strerror(errno));
                return -errno;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                int e = errno;
                ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
                if (n > 0)
                        buf[strcspn(buf, "\n")] = '\0';
                if (e == EWOULDBLOCK)
                        *ret_err = xasprintf("another bangerd%s%s%s is already running for %s", n > 0 ? " (pid " : "",
                                             n > 0 ? buf : "", n > 0 ? ")" : "", d->layout.state_dir);
                else
                        *ret_err = xasprintf("cannot lock %s: %s", d->layout.lock_path, strerror(e));
                return -e;
        }
        int len = snprintf(buf, sizeof(buf), "%d\n", (int) getpid());
        if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t) len, 0) < 0) {
                /* the pid is informational; the lock is what counts */
        }
        d->lock_fd = TAKE_FD(fd);
        return 0;
}

static int setup_signals(struct daemon *d, char **ret_err) {
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
        if (d->signal_fd < 0 || d->wake_fd < 0) {
                *ret_err = xasprintf("cannot set up signal handling: %s", strerror(errno));
                return -errno;
        }
        return 0;
}

static void set_choice(struct daemon *d, int probe, const char *detail) {
        struct vmm_choice c;
        hostinfo_choose_vmm(d->config, &d->qemu, &d->firecracker, &d->kvm, probe, detail, &c);
        log_info("vmm=%s (%s) accel=%s (%s)", c.vmm, c.vmm_reason, c.accel, c.accel_reason);
        pthread_mutex_lock(&d->accel_mu);
        vmm_choice_done(&d->vmm);
        d->vmm = c;
        pthread_mutex_unlock(&d->accel_mu);
}

void daemon_vmm_choice(struct daemon *d, char **ret_vmm, char **ret_vmm_reason, char **ret_accel,
                       char **ret_accel_reason) {
        pthread_mutex_lock(&d->accel_mu);
        *ret_vmm = xstrdup(d->vmm.vmm);
        *ret_vmm_reason = xstrdup(d->vmm.vmm_reason);
        *ret_accel = xstrdup(d->vmm.accel);
        *ret_accel_reason = xstrdup(d->vmm.accel_reason);
        pthread_mutex_unlock(&d->accel_mu);
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
        pthread_mutex_lock(&j->d->accel_mu);
        j->d->probe_running = false;
        pthread_mutex_unlock(&j->d->accel_mu);
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
                struct art_error e = { 0 };
                char *ir = NULL;
                if (r < 0 && access(vl, R_OK) == 0 && kernel_initramfs(&d->artifacts, rows[i].name, &ir, &e) == 0) {
                        *ret_vmlinux = TAKE_PTR(vl);
                        *ret_initramfs = ir;
                        r = 0;
                }
                art_error_done(&e);
        }
        for (size_t i = 0; i < n; i++)
                kernel_row_done(&rows[i]);
        free(rows);
        return r;
}

void daemon_accel_refresh(struct daemon *d) {
        _cleanup_free_ char *vmlinux = NULL, *initramfs = NULL;
        struct accel_verdict v;

        if (strcmp(d->config->accel, "auto") != 0 || !d->kvm.create_vm || !d->qemu.path) {
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
        pthread_mutex_lock(&d->accel_mu);
        bool go = !d->probe_started && !atomic_load(&d->stopping);
        if (go)
                d->probe_started = d->probe_running = true;
        pthread_mutex_unlock(&d->accel_mu);
        if (!go)
                return;
        set_choice(d, -1, "boot probe running");
        struct probe_job *j = xcalloc(1, sizeof(*j));
        *j = (struct probe_job) { d, TAKE_PTR(vmlinux), TAKE_PTR(initramfs) };
        pthread_mutex_lock(&d->accel_mu);
        if (pthread_create(&d->probe_thread, NULL, probe_main, j) != 0) {
                d->probe_started = d->probe_running = false;
                free(j->vmlinux);
                free(j->initramfs);
                free(j);
        }
        pthread_mutex_unlock(&d->accel_mu);
}

static void probe_host(struct daemon *d) {
        hostinfo_tool(d->config->qemu_bin, &d->qemu);
        hostinfo_tool(d->config->firecracker_bin, &d->firecracker);
        hostinfo_kvm(&d->kvm);
        set_choice(d, -1, NULL);
}

int daemon_open(const struct daemon_options *opts, struct daemon **ret, char **ret_err) {
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

        r = layout_resolve(&d->layout, env_get, d->uid, ret_err);
        if (r < 0)
                goto fail;
        r = hostinfo_load_config(&d->layout, &d->config, ret_err);
        if (r < 0)
                goto fail;
        r = layout_prepare_state(&d->layout, ret_err);
        if (r < 0)
                goto fail;
        r = layout_prepare_runtime(&d->layout, d->uid, ret_err);
        if (r < 0)
                goto fail;

        d->log_fd = open(d->layout.log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (d->log_fd < 0) {
                *ret_err = xasprintf("cannot open log %s: %s", d->layout.log_path, strerror(errno));
                r = -errno;
                goto fail;
        }
        int level = log_level_from_string(opts->log_level ? opts->log_level : d->config->log_level);
        log_setup(d->log_fd, level < 0 ? LOG_LEVEL_INFO : (enum log_level) level, opts->foreground);

        r = take_lock(d, ret_err);
        if (r < 0)
                goto fail;
        log_info("bangerd %s (commit %s) starting; state=%s runtime=%s", banger_version(), banger_commit(),
                 d->layout.state_dir, d->layout.runtime_dir);
        for (char **w = d->config->warnings; w && *w; w++)
                log_warn("config %s: %s", d->layout.config_file, *w);

        r = store_open(d->layout.db_path, 0, &d->store, ret_err);
        if (r < 0)
                goto fail;
        r = artifacts_init(&d->artifacts, &d->layout, d->config, d->store, ret_err);
        if (r < 0)
                goto fail;
        d->artifacts_ready = true;
        r = setup_signals(d, ret_err);
        if (r < 0)
                goto fail;
        /* after the signal mask: the VM service's threads inherit it */
        r = vms_init(&d->vms, d, ret_err);
        if (r < 0)
                goto fail;
        d->vms_ready = true;
        vms_reconcile(&d->vms);
        r = vms_start_housekeeping(&d->vms, ret_err);
        if (r < 0)
                goto fail;
        if (strcmp(d->config->dns_listen, "off") == 0)
                d->dns_error = xstrdup("disabled (dns_listen = \"off\")");
        else if (dnsd_start(&d->dns, d->config->dns_listen, vms_dns_lookup, &d->vms, &d->dns_error) < 0)
                log_warn("%s; <name>.vm names will not resolve", d->dns_error);
        else
                log_info("serving the vm zone on %s (udp, tcp)", d->config->dns_listen);
        probe_host(d);
        r = rpc_server_listen(&d->server, d->layout.socket_path, ret_err);
        if (r == 0)
                daemon_accel_refresh(d);
        if (r < 0)
                goto fail;
        log_info("listening on %s", d->layout.socket_path);
        *ret = d;
        return 0;
fail:
        if (*ret_err && d->log_fd >= 0)
                log_error("start-up failed: %s", *ret_err);
        daemon_close(d);
        return r;
}

void daemon_request_stop(struct daemon *d) {
        uint64_t one = 1;
        if (write(d->wake_fd, &one, sizeof(one)) < 0) {
                /* counter saturated: a stop is already pending */
        }
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
                        struct signalfd_siginfo si;
                        if (read(d->signal_fd, &si, sizeof(si)) == sizeof(si)) {
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
                        rpc_server_accept(&d->server, d);
        }
}

void daemon_close(struct daemon *d) {
        if (!d)
                return;
        atomic_store(&d->stopping, true);
        if (d->server.listen_fd >= 0) {
                rpc_server_close(&d->server); /* no handler can start a probe after this */
                /* Still holding the lock: the socket is ours to remove. */
                unlink(d->layout.socket_path);
        }
        pthread_mutex_lock(&d->accel_mu);
        bool join = d->probe_started;
        pthread_mutex_unlock(&d->accel_mu);
        if (join)
                pthread_join(d->probe_thread, NULL); /* the probe polls `stopping` */
        dnsd_stop(&d->dns);
        free(d->dns_error);
        if (d->vms_ready)
                vms_done(&d->vms); /* cancels creates in flight; running VMs stay */
        if (d->artifacts_ready)
                artifacts_done(&d->artifacts);
        store_close(d->store);
        opstate_done(&d->ops);
        vmm_choice_done(&d->vmm);
        tool_info_done(&d->qemu);
        tool_info_done(&d->firecracker);
        kvm_state_done(&d->kvm);
        if (d->lock_fd >= 0) {
                log_info("bangerd stopped");
                close(d->lock_fd);
        }
        if (d->signal_fd >= 0)
                close(d->signal_fd);
        if (d->wake_fd >= 0)
                close(d->wake_fd);
        config_free(d->config);
        layout_done(&d->layout);
        pthread_mutex_destroy(&d->accel_mu);
        log_setup(-1, LOG_LEVEL_INFO, true);
        if (d->log_fd >= 0)
                close(d->log_fd);
        free(d);
}
