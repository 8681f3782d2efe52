/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * The VMM backend interface: QEMU (microvm; qemu.c) and Firecracker
 * (firecracker.c, its API in fc_api.c, the jailer in jailer.c). A backend
 * boots what `struct vm_boot` describes, hands back the process identity,
 * and controls it.
 *
 * The VMM process outlives bangerd: it runs in its own session; bangerd
 * watches it through a pidfd and, after a restart, re-identifies it by pid
 * plus /proc/<pid>/cmdline (never by a bare pid).
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <jansson.h>

#include "op_error.h"
#include "portspec.h"

/* The user-mode network (QEMU's slirp defaults, written out): the guest's
 * address, the host as the guest sees it (its loopback), the DNS forwarder. */
#define VM_USER_NET_GUEST "10.0.2.15"
#define VM_USER_NET_PREFIX 24
#define VM_USER_NET_HOST "10.0.2.2"
#define VM_USER_NET_DNS "10.0.2.3"

enum vm_net {
        VM_NET_NONE,
        VM_NET_TAP,  /* bridge mode: a TAP the host attached to the bridge */
        VM_NET_USER, /* user-mode networking (slirp): no root; hostfwd_port reaches guest :22 */
        VM_NET_DETACHED, /* a NIC on nothing (a template's boot: the device has to exist, and a
                          * backend with a state of its own, such as slirp, could not be restored
                          * onto a TAP) */
};

struct vm_boot {
        const char *id;          /* banger's VM id: names the process */
        const char *name;        /* hostname */
        int vcpu;
        int memory_mib;
        const char *accel;       /* "kvm" or "tcg" */
        unsigned tsc_khz;        /* host TSC, for tsc_early_khz */
        const char *kernel;      /* vmlinux (PVH) or bzImage */
        const char *initrd;      /* per-kernel initramfs + per-VM cpio */
        const char *init_mode;   /* "systemd" | "fast" */
        const char *root_disk;   /* qcow2 overlay */
        const char *work_disk;   /* raw ext4, or NULL */
        const char *repo_disk;   /* raw, /root/repo once a workspace is in it (vdisk.h); NULL: none */
        const char *modules_disk; /* the kernel's read-only module tree (docs/GUEST.md); NULL: none */
        enum vm_net net;
        const char *tap;         /* VM_NET_TAP */
        int tap_fd;              /* VM_NET_TAP: an open queue of tap (> 2; the VMM gets it as fd 3), or
                                  * 0/-1: the VMM opens /dev/net/tun itself */
        const char *mac;
        const char *ip_cidr;     /* guest address for banger-init, or NULL */
        const char *gateway;
        unsigned hostfwd_port;   /* VM_NET_USER: 127.0.0.1:<port> -> guest 22 */
        const char *qmp_socket;  /* the VMM's control socket: QMP, or Firecracker's API */
        const char *agent_socket; /* QEMU: the virtio-serial port's socket; Firecracker: the
                                   * hybrid vsock's (the host says "CONNECT <port>") */
        unsigned vsock_cid;      /* QEMU: >= 3: the agent on a vhost-vsock device with this guest CID
                                  * instead of the virtio-serial port (agent_socket unused); 0: none */
        const char *console_log;
        bool incoming;           /* started paused, waiting for a saved state (the backend's restore) */
        const char *ram_file;    /* guest RAM mapped from this file (templates.c): shared by a template's
                                  * own boot (its RAM is the file, left out of the saved state), private
                                  * (copy-on-write) for a VM resumed from it; NULL: anonymous RAM */
        bool ram_file_shared;
        const struct vm_jailer *jail; /* Firecracker under its jailer; NULL: none */
        bool generic;            /* a template's boot: no identity on the command line, the work disk
                                  * attached but not mounted (docs/ARCHITECTURE.md, "Warm start") */
};

/* Firecracker under its jailer: whoever does the privileged work makes the
 * VM's chroot with files[] in it (each seen as "/<basename>") and starts the
 * jailer detached, with cgroup limits for vcpu and memory_mib where the host
 * has the controllers; Firecracker's pid and the chroot's root come back. */
struct vm_jailer {
        int (*start)(void *ud, const char *vm_id, const char *const *files, size_t n, const char *log_path,
                     int vcpu, int memory_mib, pid_t *ret_pid, char **ret_root, struct op_error *e);
        void *ud;
};

struct vm_proc {
        pid_t pid;
        int pidfd; /* -1 when not watched */
};

struct vmm_backend {
        const char *name;
        /* The root disk a VM of this backend boots: QEMU a qcow2 overlay on
         * the image's rootfs, Firecracker (raw disks only) a copy of it
         * (reflinked where the filesystem can) grown to size_bytes. */
        int (*root_disk_create)(const char *path, const char *rootfs, uint64_t size_bytes, struct op_error *e);
        bool warm_templates; /* templates (warm start) can be made and resumed */
        /* argv for the VMM (NULL-terminated, malloc'd strings); pure. */
        int (*build_argv)(const struct vm_boot *b, const char *bin, char ***ret_argv, struct op_error *e);
        int (*start)(const struct vm_boot *b, const char *bin, struct vm_proc *ret, struct op_error *e);
        /* Graceful: asks the VMM to quit (the guest should already be down). */
        int (*stop)(const struct vm_boot *b, const struct vm_proc *p, int timeout_ms, struct op_error *e);
        int (*kill)(const struct vm_proc *p, int sig);
        /* Is pid the VMM of VM id? (reconcile) */
        bool (*owns)(pid_t pid, const char *bin, const char *id);
        int (*pause)(const struct vm_boot *b, struct op_error *e);
        int (*resume)(const struct vm_boot *b, struct op_error *e);
        /* Pauses the guest and writes its RAM and device state to fd; the
         * guest stays paused (its disks flushed: copy them now, then resume). */
        int (*snapshot)(const struct vm_boot *b, int state_fd, int timeout_ms, struct op_error *e);
        /* A VMM started with b->incoming loads what snapshot wrote; the guest
         * stays paused until resume. */
        int (*restore)(const struct vm_boot *b, int state_fd, int timeout_ms, struct op_error *e);
        /* User-mode networking: a host port of f forwarded to the guest
         * (add), or no longer (remove; f's guest port unused); the VMM keeps
         * them for its life. NULL: not supported. */
        int (*hostfwd)(const struct vm_boot *b, bool add, const struct port_spec *f, struct op_error *e);
        /* Does the VMM forward f's host side now? */
        int (*hostfwd_has)(const struct vm_boot *b, const struct port_spec *f, bool *ret, struct op_error *e);
};

extern const struct vmm_backend vmm_qemu;
extern const struct vmm_backend vmm_firecracker;

/* ---- the VMM process (proc.c) ---- */
#define VMM_LOG_NAME "vmm.log"             /* the VMM's stdout and stderr */
#define FC_LOG_NAME "firecracker.log"       /* Firecracker's own log (its /logger) */
char *vmm_log_path(const char *console_log); /* vmm.log beside the console log */
char *vmm_sibling_path(const char *console_log, const char *name); /* name beside the console log */
char *fc_log_path(const char *console_log);  /* firecracker.log beside the console log */
int vmm_proc_kill(const struct vm_proc *p, int sig);
bool vmm_proc_wait_exit(const struct vm_proc *p, int timeout_ms);
/* argv in a session of its own, stdout and stderr to vmm.log, extra_fd (> 2)
 * as fd extra_at; *ret with a pidfd. */
_warn_unused_ int vmm_proc_spawn(char **argv, const char *console_log, int extra_fd, int extra_at,
                                 struct vm_proc *ret, struct op_error *e);
/* Reaps a VMM that died at start; the error says why (vmm.log, else the console). */
int vmm_proc_died(const char *what, const struct vm_proc *p, const char *console_log, struct op_error *e);
/* Until socket_path accepts; a VMM that exits meanwhile, or is still
 * silent at the timeout (then killed), is reaped, its pidfd closed. */
_warn_unused_ int vmm_proc_wait_socket(const char *what, const struct vm_proc *p, const char *socket_path,
                                       const char *console_log, int timeout_ms, struct op_error *e);
/* Is pid running bin (argv[0], or argv[1] under an interpreter) with "opt want" in its argv? */
bool vmm_proc_argv_has(pid_t pid, const char *bin, const char *opt, const char *want);

/* ---- Firecracker's API (fc_api.c) ---- */
/* One request on the API socket; body may be NULL (not stolen). 2xx: 0 and
 * the answer's JSON in *ret (may be NULL); 4xx/5xx: an error with
 * Firecracker's fault_message. */
_warn_unused_ int fc_api(const char *socket, const char *method, const char *path, json_t *body, int timeout_ms,
                         json_t **ret, struct op_error *e);

/* ---- the jailer (jailer.c) ---- */
/* link -> target: the daemon reaches a socket in the chroot by a path of
 * the run dir (short enough for sun_path whatever the chroot's length). */
_warn_unused_ int fc_jail_socket_link(const char *target, const char *link, struct op_error *e);

/* Does QEMU's complaint say the vhost-vsock guest CID is taken (EADDRINUSE)? */
bool qemu_said_cid_in_use(const char *said);

/* The kernel command line banger-init reads (docs/GUEST.md). */
char *vm_kernel_cmdline(const struct vm_boot *b);

/* qcow2 overlay with `backing` (raw, read-only) of virtual size bytes. */
_warn_unused_ int vm_overlay_create(const char *overlay, const char *backing, uint64_t size_bytes, struct op_error *e);

/* ---- QMP (qmp.c) ---- */
#include "rpc.h"
struct qmp {
        int fd;
        struct rpc_line_reader lr;
};
/* Connects, reads the greeting, negotiates capabilities. */
_warn_unused_ int qmp_open(struct qmp *q, const char *socket, int timeout_ms, struct op_error *e);
/* One command with optional arguments (not stolen) and an fd passed along
 * (SCM_RIGHTS; -1: none); its "return" in *ret (may be NULL). */
_warn_unused_ int qmp_exec(struct qmp *q, const char *command, json_t *args, int pass_fd, int timeout_ms, json_t **ret,
                           struct op_error *e);
void qmp_close(struct qmp *q);
/* One command on a connection of its own, its "return" in *ret_json (malloc'd JSON text). */
_warn_unused_ int qmp_command(const char *socket, const char *command, int timeout_ms, char **ret_json, struct op_error *e);
/* stop, then the state to fd (migration); the guest stays paused.
 * ignore_shared: RAM in a shared file is left out (x-ignore-shared). */
_warn_unused_ int qmp_save_state(const char *socket, int fd, bool ignore_shared, int timeout_ms, struct op_error *e);
/* A VMM started with `-incoming defer` loads the state from fd (saved with
 * ignore_shared: the RAM is already there, mapped from its file). */
_warn_unused_ int qmp_load_state(const char *socket, int fd, bool ignore_shared, int timeout_ms, struct op_error *e);
