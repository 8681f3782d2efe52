/* SPDX-License-Identifier: MIT */
/*
 * The exit watcher: one thread, an epoll set of the pidfds of running VMMs.
 * A VMM that exits on its own (guest poweroff, crash, kill -9) is released
 * under its VM's lock, unless a lifecycle operation already dealt with it
 * (then its handle is gone or names another process).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "strbuf.h"
#include "vms_internal.h"

struct watch {
        char id[17];
        pid_t pid;
        int pidfd;
        struct watch *next;
};

void pidfd_reap(int pidfd) {
        siginfo_t si;
        if (pidfd >= 0)
                waitid(P_PIDFD, (id_t) pidfd, &si, WEXITED | WNOHANG);
}

bool pidfd_wait(int pidfd, int timeout_ms) {
        struct pollfd pf = { .fd = pidfd, .events = POLLIN };
        if (pidfd < 0)
                return true;
        for (;;) {
                int n = poll(&pf, 1, timeout_ms);
                if (n < 0 && errno == EINTR)
                        continue;
                return n > 0;
        }
}

void vms_watch(struct vms *v, const char *id, pid_t pid) {
        int pidfd = (int) pidfd_open(pid, 0);
        if (pidfd < 0) {
                log_warn("vm %s: cannot watch pid %d: %s", id, (int) pid, strerror(errno));
                return;
        }
        struct watch *w = xcalloc(1, sizeof(*w));
        snprintf(w->id, sizeof(w->id), "%s", id);
        w->pid = pid;
        w->pidfd = pidfd;
        pthread_mutex_lock(&v->handles_mu);
        w->next = v->watches;
        v->watches = w;
        pthread_mutex_unlock(&v->handles_mu);
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = w };
        if (epoll_ctl(v->ep_fd, EPOLL_CTL_ADD, pidfd, &ev) < 0)
                log_warn("vm %s: epoll: %s", id, strerror(errno));
}

static void on_vmm_exit(struct vms *v, const char *id, pid_t pid) {
        struct vm_lock *l = vms_lock(v, id);
        struct vm_handles h;
        struct vm_row r = { 0 };
        struct vm_paths p = { 0 };
        if (!handle_get(v, id, &h) || h.pid != pid || store_vm_get(v->deps.store, id, &r) < 0)
                goto out;
        vm_paths_init(v, &r, &p);
        vms_release_runtime(v, &r, &p, h.tap);
        vms_set_state(v, &r, "stopped", NULL);
        log_info("vm %s: its VMM (pid %d) exited; marked stopped", r.name, (int) pid);
out:
        vm_paths_done(&p);
        vm_row_done(&r);
        vms_unlock(v, l);
}

static void unwatch(struct vms *v, struct watch *w) {
        epoll_ctl(v->ep_fd, EPOLL_CTL_DEL, w->pidfd, NULL);
        pidfd_reap(w->pidfd);
        pthread_mutex_lock(&v->handles_mu);
        for (struct watch **p = &v->watches; *p; p = &(*p)->next)
                if (*p == w) {
                        *p = w->next;
                        break;
                }
        pthread_mutex_unlock(&v->handles_mu);
        close(w->pidfd);
}

static void *watcher_main(void *arg) {
        struct vms *v = arg;
        log_set_op_id("watcher");
        while (!v->stopping) {
                struct epoll_event evs[8];
                int n = epoll_wait(v->ep_fd, evs, 8, -1);
                for (int i = 0; i < n; i++) {
                        struct watch *w = evs[i].data.ptr;
                        if (!w)
                                continue; /* the wake eventfd */
                        unwatch(v, w);
                        if (!v->stopping)
                                on_vmm_exit(v, w->id, w->pid);
                        free(w);
                }
        }
        return NULL;
}

int vms_watcher_start(struct vms *v, struct op_error *e) {
        v->ep_fd = epoll_create1(EPOLL_CLOEXEC);
        v->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (v->ep_fd < 0 || v->wake_fd < 0)
                return op_fail(e, -errno, "vm service: %s", strerror(errno));
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
        if (epoll_ctl(v->ep_fd, EPOLL_CTL_ADD, v->wake_fd, &ev) < 0)
                return op_fail(e, -errno, "vm service: epoll: %s", strerror(errno));
        int r = pthread_create(&v->watcher, NULL, watcher_main, v);
        if (r != 0)
                return op_fail(e, -r, "vm service: cannot start the exit watcher: %s", strerror(r));
        v->watcher_started = true;
        return 0;
}

void vms_watcher_stop(struct vms *v) {
        if (v->watcher_started) {
                uint64_t one = 1;
                if (write(v->wake_fd, &one, sizeof(one)) < 0)
                        log_warn("vm service: waking the watcher: %s", strerror(errno));
                pthread_join(v->watcher, NULL);
                v->watcher_started = false;
        }
        while (v->watches) {
                struct watch *w = v->watches;
                v->watches = w->next;
                close(w->pidfd);
                free(w);
        }
        if (v->ep_fd >= 0)
                close(v->ep_fd);
        if (v->wake_fd >= 0)
                close(v->wake_fd);
        v->ep_fd = v->wake_fd = -1;
}
