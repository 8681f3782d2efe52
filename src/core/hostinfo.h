/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The impure edge of configuration and host inspection: reads config.toml and
 * apt sources, asks the kernel about CPUs/memory, looks for QEMU, Firecracker
 * and /dev/kvm. Shared by bangerd and the CLI's doctor.
 */

#include <stdbool.h>
#include <sys/types.h>

#include "config.h"
#include "layout.h"

/* apt dir: $BANGER_APT_DIR (tests) or /etc/apt. */
const char *hostinfo_apt_dir(void);

/* Loads the config file (absent is fine) against host facts.
 * On failure *ret_err is "<file>:<line>: <message>". */
int hostinfo_load_config(const struct layout *l, struct config **ret, char **ret_err);

struct kvm_state {
        bool present;     /* /dev/kvm exists */
        bool openable;    /* opens read-write */
        bool create_vm;   /* KVM_CREATE_VM succeeds */
        int api_version;  /* KVM_GET_API_VERSION, or -1 */
        char *error;      /* owned; why not, when not */
};

int hostinfo_kvm(struct kvm_state *ret);

/* Does this process hold CAP_NET_ADMIN (bridge, TAPs, nftables)? From
 * /proc/self/status; without it (and without a root helper) bangerd is
 * rootless: VMs use user-mode networking. */
bool hostinfo_net_admin(void);
/* Can this process give QEMU guests a vsock (/dev/vhost-vsock opens
 * read-write)? When not, *ret_why says why ("no /dev/vhost-vsock", ...;
 * owned), else NULL. _at: another device path (tests). */
bool hostinfo_vhost_vsock(char **ret_why);
bool hostinfo_vhost_vsock_at(const char *dev, char **ret_why);
void kvm_state_done(struct kvm_state *k);

/* Can this user run mmdebstrap's unshare mode (a Debian image build without
 * root)? mmdebstrap, newuidmap/newgidmap, 65536 subordinate ids in
 * /etc/subuid and /etc/subgid, user namespaces allowed. When not: what is
 * missing (*ret_what) and how to add it (*ret_how), both owned. */
bool hostinfo_unshare_ready(char **ret_what, char **ret_how);

struct tool_info {
        char *path;    /* owned; NULL when not found */
        char *version; /* owned; first line of --version, may be NULL */
};

/* Finds `bin` (a name or path) and runs `bin --version` (2 s timeout). */
void hostinfo_tool(const char *bin, struct tool_info *ret);

/* Whether Firecracker VMs run under its jailer (jailer_bin), decided from
 * the host: the jailer is installed, bangerd is root (the jailer chroots,
 * makes device nodes and drops to the owner's uid:gid), and both the jailer
 * and the Firecracker it copies into each jail are regular files of root's
 * that no one else can write (bangerd runs them as root). */
enum jail_mode {
        JAIL_NONE,    /* no Firecracker */
        JAIL_OFF,     /* no jailer, or bangerd not root: Firecracker runs as bangerd's user */
        JAIL_ON,
        JAIL_REFUSED, /* a jailer that cannot be trusted: Firecracker VMs are refused */
};
struct jail_plan {
        enum jail_mode mode;
        char *jailer;    /* owned; JAIL_ON: its real path */
        char *exec_file; /* owned; JAIL_ON: Firecracker's real path */
        char *reason;    /* owned; what and why, for doctor and the logs */
};
void hostinfo_jail(const char *jailer_bin, const char *firecracker_path, uid_t euid, struct jail_plan *ret);
void jail_plan_done(struct jail_plan *p);
void tool_info_done(struct tool_info *t);

/* true for the VMM backends this build can drive. */
bool hostinfo_vmm_implemented(const char *name);
/* Which VMM and accelerator bangerd uses, and why. "auto" only ever picks an
 * implemented backend. */
struct vmm_choice {
        const char *vmm;   /* static: "qemu" or "firecracker" */
        char *vmm_reason;  /* owned */
        const char *accel; /* static: "kvm" or "tcg" */
        char *accel_reason;
};

/* kvm_probe: 1 a boot under KVM worked, 0 it did not, -1 not probed;
 * probe_detail says what happened (or why there was no probe). */
void hostinfo_choose_vmm(const struct config *c, const struct tool_info *qemu, const struct tool_info *fc,
                         const struct kvm_state *kvm, int kvm_probe, const char *probe_detail,
                         struct vmm_choice *ret);
void vmm_choice_done(struct vmm_choice *v);

/* Firecracker's version (its `--version` line, "Firecracker v1.14.1") against
 * the window banger is built for (FC_VERSION_MIN to FC_VERSION_TESTED):
 * 0 inside, 1 newer (may work: a warning), -1 older or unreadable (refused);
 * *why says which (malloc'd). */
#define FC_VERSION_MIN "1.5"
#define FC_VERSION_TESTED "1.14"
int hostinfo_fc_version(const char *version_line, char **why);
