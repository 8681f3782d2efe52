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

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "artifacts/artifacts.h"
#include "config.h"
#include "hostinfo.h"
#include "layout.h"
#include "opstate.h"
#include "rpc_server.h"
#include "store/store.h"

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

        /* Host facts probed at start (read-only afterwards). */
        struct tool_info qemu;
        struct tool_info firecracker;
        struct kvm_state kvm;
        struct vmm_choice vmm;

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

/* Asks daemon_serve() to return (thread-safe). */
void daemon_request_stop(struct daemon *d);
int64_t mono_ms_now(void);
