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

#include "fsutil.h"
#include "log.h"
#include "macro.h"
#include "strbuf.h"
#include "version.h"

int64_t mono_ms_now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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

static void probe_host(struct daemon *d) {
        hostinfo_tool(d->config->qemu_bin, &d->qemu);
        hostinfo_tool(d->config->firecracker_bin, &d->firecracker);
        hostinfo_kvm(&d->kvm);
        hostinfo_choose_vmm(d->config, &d->qemu, &d->firecracker, &d->kvm, &d->vmm);
        log_info("vmm=%s (%s) accel=%s (%s)", d->vmm.vmm, d->vmm.vmm_reason, d->vmm.accel, d->vmm.accel_reason);
}

int daemon_open(const struct daemon_options *opts, struct daemon **ret, char **ret_err) {
        struct daemon *d = xcalloc(1, sizeof(*d));
        int r;

        d->lock_fd = d->log_fd = d->signal_fd = d->wake_fd = -1;
        d->server.listen_fd = -1;
        d->uid = getuid();
        d->started_mono_ms = mono_ms_now();
        d->reported_commit = getenv("BANGERD_TEST_COMMIT") ? getenv("BANGERD_TEST_COMMIT") : banger_commit();
        opstate_init(&d->ops, 10 * 60 * 1000);

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
        probe_host(d);
        r = rpc_server_listen(&d->server, d->layout.socket_path, ret_err);
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
        if (d->server.listen_fd >= 0) {
                rpc_server_close(&d->server);
                /* Still holding the lock: the socket is ours to remove. */
                unlink(d->layout.socket_path);
        }
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
        log_setup(-1, LOG_LEVEL_INFO, true);
        if (d->log_fd >= 0)
                close(d->log_fd);
        free(d);
}
