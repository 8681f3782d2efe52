/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * bangerd's composition root: it creates each subsystem, hands each one its
 * dependencies (vms_deps, rpc_services, the priv ops, the VMM table) and
 * owns only their handles; each subsystem owns its state and its lock. This
 * is the only file that knows every subsystem; nothing includes it but
 * main.c.
 *
 * Lock order (docs/ARCHITECTURE.md keeps the full list):
 *   vm_locks[id] -> workspace_locks[id] -> {create_mu, image_ops_mu}
 *     -> leaf locks (ops.mu, server.mu, accel_mu, store.write_mu, log, ...)
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "artifacts/artifacts.h"
#include "config.h"
#include "hostinfo.h"
#include "install.h"
#include "layout.h"
#include "net/dnsd.h"
#include "net/forward.h"
#include "op_error.h"
#include "ops/opstate.h"
#include "priv/priv.h"
#include "rpc/dispatch.h"
#include "rpc/rpc_server.h"
#include "store/store.h"
#include "vm/vms.h"

struct daemon_options {
        const struct install_info *install; /* system mode; NULL: user mode (XDG dirs, in-process priv ops) */
        bool foreground;       /* also log to stderr */
        int ready_fd;          /* -1, or a pipe: "READY\n" / "ERROR <msg>\n" */
        const char *log_level; /* overrides config when set */
};

struct daemon {
        struct layout layout;   /* owned */
        struct config_live config; /* owned: the running snapshot; reload swaps it */
        bool config_ready;
        bool log_level_forced; /* bangerd --log-level: a reload keeps it */
        struct store *store;    /* owned */
        struct opstate_registry ops;
        struct priv_local *priv;   /* owned: the privileged operations in-process (user mode) */
        struct priv_remote *helper; /* owned: ... or through the root helper (system mode) */
        const struct priv_ops *priv_ops; /* the one of the two in use */
        bool rootless;          /* no helper and no CAP_NET_ADMIN: VMs default to user-mode networking */
        struct rpc_server server;
        struct rpc_services services; /* what RPC handlers may use */
        struct artifacts artifacts; /* kernels + images; owns image_ops_mu */
        bool artifacts_ready;
        struct vmm_entry vmms[2];   /* the VMM backends: QEMU, Firecracker */
        struct vms vms;             /* the VM service; owns the per-VM locks */
        struct fwd *fwd;            /* owned: the port forward relay (after vms_done, freed) */
        struct agent_links *links;  /* owned: the multiplexed agent connections */
        bool vms_ready;
        struct dnsd dns;            /* the `vm` zone on dns_listen */
        char *dns_error;            /* why DNS is not served, or NULL */

        /* Host facts probed at start (read-only afterwards). */
        struct tool_info qemu;
        struct tool_info firecracker;
        struct priv_jail_info jail;     /* Firecracker under its jailer, or why not (the priv ops say) */
        struct vm_jailer fc_jailer;     /* jail.mode == JAIL_ON: vmms[1].jail */
        struct kvm_state kvm;
        struct vmm_choice vmm;          /* guarded by accel_mu */
        pthread_mutex_t accel_mu;       /* leaf: the vmm/accel choice */
        pthread_t probe_thread;         /* the KVM boot probe, when one runs */
        _Atomic bool probe_claimed;     /* one probe per daemon life */
        _Atomic bool probe_started;     /* probe_thread is to be joined */
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

int daemon_open(const struct daemon_options *opts, struct daemon **ret, struct op_error *e);
/* Serves until a signal or daemon.shutdown; returns 0 on a clean stop. */
int daemon_serve(struct daemon *d);
/* Stops serving and releases everything. Never touches running VMs. */
void daemon_close(struct daemon *d);
