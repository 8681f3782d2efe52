/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * bangerd's composition root. It wires subsystems together and owns nothing
 * but their handles; each subsystem owns its state and its lock.
 *
 * Lock order (docs/ARCHITECTURE.md keeps the full list):
 *   vm_locks[id] -> workspace_locks[id] -> {create_vm_mu, image_ops_mu}
 *     -> subsystem-local leaf locks (opstate.mu, rpc_server.mu, store.write_mu, log)
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "artifacts/artifacts.h"
#include "config.h"
#include "hostinfo.h"
#include "layout.h"
#include "ops/opstate.h"
#include "rpc/rpc_server.h"
#include "store/store.h"
#include "vm/vms.h"
#include "net/dnsd.h"

struct daemon_options {
        bool foreground;      /* also log to stderr */
        int ready_fd;         /* -1, or a pipe: "READY\n" / "ERROR <msg>\n" */
        const char *log_level; /* overrides config when set */
};

struct daemon {
        struct layout layout;   /* owned */
        struct config *config;  /* owned */
        struct store *store;    /* owned */
        struct opstate_registry ops;
        struct rpc_server server;
        struct artifacts artifacts; /* kernels + images; owns image_ops_mu */
        bool artifacts_ready;
        struct vms vms;             /* the VM service; owns the per-VM locks */
        bool vms_ready;
        struct dnsd dns;            /* the `vm` zone on dns_listen */
        char *dns_error;            /* why DNS is not served, or NULL */

        /* Host facts probed at start (read-only afterwards). */
        struct tool_info qemu;
        struct tool_info firecracker;
        struct kvm_state kvm;
        struct vmm_choice vmm;          /* guarded by accel_mu */
        pthread_mutex_t accel_mu;       /* leaf: the vmm/accel choice */
        pthread_t probe_thread;         /* the KVM boot probe, when one runs */
        bool probe_running;             /* guarded by accel_mu */
        bool probe_started;             /* guarded by accel_mu; the thread to join */
        _Atomic bool stopping;

        int lock_fd;   /* flock on bangerd.lock: one daemon per state dir */
        int log_fd;
        int signal_fd; /* SIGTERM/SIGINT/SIGHUP */
        int wake_fd;   /* eventfd: daemon.shutdown asks the loop to stop */
        uid_t uid;
        int64_t started_mono_ms;
        /* What ping reports as our commit: the build's, unless the test seam
         * $BANGERD_TEST_COMMIT stands in for "a daemon of another build". */
        const char *reported_commit;
};

int daemon_open(const struct daemon_options *opts, struct daemon **ret, char **ret_err);
/* Serves until a signal or daemon.shutdown; returns 0 on a clean stop. */
int daemon_serve(struct daemon *d);
/* Stops serving and releases everything. Never touches running VMs. */
void daemon_close(struct daemon *d);

/* (Re)considers the accelerator: a cached KVM verdict, else a boot probe in
 * the background when a kernel is present. Called at start and after kernel
 * pulls/imports. */
void daemon_accel_refresh(struct daemon *d);
/* Copies the current choice (thread-safe). */
void daemon_vmm_choice(struct daemon *d, char **ret_vmm, char **ret_vmm_reason, char **ret_accel,
                       char **ret_accel_reason);

/* Asks daemon_serve() to return (thread-safe). */
void daemon_request_stop(struct daemon *d);
