/* SPDX-License-Identifier: MIT */
#pragma once

/* Shared between the VM service's files; not for other subsystems. */

#include <jansson.h>
#include <sys/types.h>

#include "store/store_vms.h"
#include "vms.h"
#include "vm/agent_transport.h"

#define VM_AGENT_BOOT_TIMEOUT_MS 180000 /* systemd images under TCG are slow */
#define VM_STOP_GUEST_TIMEOUT_MS 15000
#define VM_KILL_WAIT_MS 5000

/* ---- paths (service.c) ---- */
struct vm_paths {
        char *dir, *run, *overlay, *work, *repo, *console, *console_prev, *handles, *hostkey, *cpio, *initrd, *qmp;
        char *agent;      /* the agent's address (agent_client.h): agent_sock, or "vsock:<cid>/<id>" while
                           * the VM runs with a vhost-vsock device (its handles' CID) */
        char *agent_sock; /* the UNIX socket of its virtio-serial port (Firecracker: hybrid vsock) */
        /* Firecracker with a device-mapper root: overlay is root.cow, the
         * COW of banger-<id> over the image's rootfs (disks.c); else a copy,
         * root.raw. Decided by the file the VM has. */
        bool dm_root;
};
void vm_paths_init(struct vms *v, const struct vm_row *r, struct vm_paths *p);
void vm_paths_done(struct vm_paths *p);
/* The VM has a repo disk (made with it since repo disks exist): a regular
 * file, never a symlink. */
bool vm_has_repo_disk(const struct vm_paths *p);
char *known_hosts_path(struct vms *v);
char *vm_kh_patterns(const struct vm_row *r); /* "<name>.vm,<ip>" for known_hosts */
char *vm_tap_name(const char *id);            /* bg<first 12 hex digits of the id> */
bool vm_state_active(const char *state);      /* starting, running or stopping */
/* The spec limits, one place for create and set (0 = not given). */
_warn_unused_ int vm_spec_check(const struct vm_create_req *q, struct op_error *e);
_warn_unused_ int vms_get_row(struct vms *v, const char *ref, struct vm_row *ret, struct op_error *e);
/* The VM row's state; a store failure is logged (the row stays what it was). */
void vms_set_state(struct vms *v, const struct vm_row *r, const char *state, const char *last_error);

/* ---- the lock sets (lockset.c) ---- */
struct vm_lock *vms_lock(struct vms *v, const char *id);
void vms_unlock(struct vms *v, struct vm_lock *l);
/* Resolves ref, takes the VM's lock, re-reads the row (commands.c). */
_warn_unused_ int vms_lock_row(struct vms *v, const char *ref, struct vm_row *row, struct vm_lock **ret_lock,
                               struct op_error *e);
/* workspace_locks[id]: taken without the VM's lock (never both). */
struct vm_lock *vms_workspace_lock(struct vms *v, const char *id);
void vms_workspace_unlock(struct vms *v, struct vm_lock *l);

/* ---- handles (handles.c): what a running VM holds ---- */
struct vm_handles {
        pid_t pid;
        char tap[16];  /* "" when none */
        char vmm[16];  /* backend name, "" when unknown */
        unsigned ssh_port; /* user-mode networking: 127.0.0.1:<port> reaches the guest's sshd; 0: none */
        unsigned vsock_cid; /* QEMU with a vhost-vsock device: the guest's CID (the agent's address); 0: none */
        char dm[40];   /* its root disk's DM device (/dev/mapper/banger-<id>), "" when none */
};
bool handle_get(struct vms *v, const char *id, struct vm_handles *ret);
void handle_put(struct vms *v, const char *id, const struct vm_handles *h);
void handle_drop(struct vms *v, const char *id);
void handles_free(struct vms *v);
/* A guest CID >= from for VM id, unique among the VMs of the handles cache
 * (kept in id's entry, made when missing, so a concurrent start never gets
 * it; released with the handles). 0: none left. */
unsigned vms_cid_claim(struct vms *v, const char *id, unsigned from);
bool vms_tap_in_use(void *ud, const char *name); /* tap_in_use_fn; ud: the vms */
/* handles.json (and the row's teardown mirror): write / read. Never trusts
 * what it reads: a pid is only ever used after the backend re-identified
 * it, a TAP name only after the priv ops checked it. */
_warn_unused_ int handles_write(struct vms *v, const struct vm_row *r, const struct vm_paths *p, const struct vm_handles *h);
void handles_read(const struct vm_row *r, const struct vm_paths *p, struct vm_handles *ret);
/* The backend that runs (or ran) a VM: by name, else the first. */
const struct vmm_entry *vms_vmm_by_name(struct vms *v, const char *name);
/* The VMM pid if the VM is running (and the process really is its VMM),
 * else 0; *ret (optional) gets its handles. */
pid_t vms_live_pid(struct vms *v, const struct vm_row *r, const struct vm_paths *p, struct vm_handles *ret);
/* A QEMU command line's vhost-vsock guest CID (NUL-separated argv of len
 * bytes, as /proc/<pid>/cmdline); 0: none. (reconcile.c) */
unsigned vms_vsock_cid_of_cmdline(const char *cmd, size_t len);
/* A VMM whose handles are lost, found by its identity in /proc. */
pid_t vms_find_vmm(struct vms *v, const char *id, const struct vmm_entry **ret_vmm);

/* ---- the exit watcher (watcher.c) ---- */
_warn_unused_ int vms_watcher_start(struct vms *v, struct op_error *e);
void vms_watcher_stop(struct vms *v);
void vms_watch(struct vms *v, const char *id, pid_t pid);
bool pidfd_wait(int pidfd, int timeout_ms); /* true: the process exited */
void pidfd_reap(int pidfd);

/* ---- boot files (start.c) ---- */
struct boot_files {
        char *kernel, *initramfs, *rootfs, *work_seed, *init_mode;
        char *modules_disk; /* the kernel's modules.ext4, or NULL (none, or the image names its own kernel) */
        uint64_t rootfs_size;
};
void vms_boot_files_done(struct boot_files *b);
_warn_unused_ int vms_resolve_boot(struct vms *v, const char *image_id, struct boot_files *b, struct op_error *e);

/* ---- lifecycle under the VM's lock (start.c, stop.c) ---- */
/* start: on failure the VM is in 'error' with last_error and nothing runs. */
_warn_unused_ int vms_start_locked(struct vms *v, struct vm_row *r, const struct progress *pr, struct op_error *e);
/* wait_ssh false: running once the agent answers, sshd or not. */
_warn_unused_ int vms_start_locked_ex(struct vms *v, struct vm_row *r, const struct progress *pr, bool wait_ssh,
                                      struct op_error *e);
struct vm_identify;
struct vm_start_opts {
        bool wait_ssh;
        int state_fd;  /* >= 0: the guest resumes from this saved state instead of booting (snapshot.c) */
        const struct vm_identify *identify; /* with state_fd: re-identified before anything sees it (a fork) */
        bool fresh;    /* the VM's first boot (create): a template may stand in (templates.c) */
        bool cold;     /* never from a template */
        enum agent_transport saved_transport; /* with state_fd: the agent's transport the state was saved with */
};
_warn_unused_ int vms_start_opts_locked(struct vms *v, struct vm_row *r, const struct progress *pr,
                                        const struct vm_start_opts *o, struct op_error *e);
/* How long saving or loading a guest's state may take. */
#define VM_STATE_TIMEOUT_MS 300000
_warn_unused_ int vms_stop_locked(struct vms *v, struct vm_row *r, bool graceful, struct op_error *e);
_warn_unused_ int vms_kill_locked(struct vms *v, struct vm_row *r, int sig, struct op_error *e);
/* Every trace of a VM: its VMM (killed), runtime, files, known_hosts, row. */
_warn_unused_ int vms_destroy_locked(struct vms *v, const struct vm_row *r, struct op_error *e);
/* A Firecracker VM's COW file under its device-mapper root (disks.c). */
#define VM_ROOT_COW "root.cow"
/* In a VM's dir while its create makes its files. */
#define VM_CREATING_MARKER ".creating"
/* <vm_dir>/<prefix><random>: a prepare's local clone (workspace.c), swept at start */
#define VM_WS_STAGING_PREFIX ".ws-staging-"
/* A delete was accepted (vm.delete with background): reconcile finishes it. */
#define VM_DELETING_MARKER ".deleting"
/* A guest resumed from a state not its own is being re-identified (start.c):
 * a VMM found running with it is killed by reconcile, never adopted. */
#define VM_IDENTIFYING_MARKER ".identifying"

/* ---- re-identification (identity.c) ---- */
struct vm_identify {
        bool full;         /* a new identity (another VM's or a template's state); else only the clock and entropy */
        const char *old_ip; /* the address the saved guest had (a snapshot of a VM), or NULL (a template: none) */
        bool mount_work;   /* mount the work disk on /root, and the repo disk on /root/repo when it
                            * holds a complete workspace (a template never did) */
};
/* Does the guest's agent have a feature its health names ("identify", "freeze")? */
bool vms_agent_has(struct vms *v, const struct vm_paths *p, const char *feature);
/* argv (NULL-terminated) run as root through the agent, to its exit. */
_warn_unused_ int vms_agent_run(struct vms *v, const struct vm_paths *p, const char *const *argv, int in_fd, int out_fd,
                                int err_fd, int timeout_ms, int *ret_status, struct op_error *e);
_warn_unused_ int vms_identify(struct vms *v, const struct vm_row *r, const struct vm_paths *p,
                               const struct vm_identify *q, struct op_error *e);

/* ---- templates for warm starts (templates.c) ---- */
struct tpl_spec {
        char key[65];
        char *image_id, *rootfs, *kernel, *initramfs, *init_mode, *accel;
        char *modules_disk; /* NULL: none */
        const struct vmm_entry *vmm;
        int64_t vcpu, memory_mib, disk_bytes, overlay_bytes;
};
void tpl_spec_done(struct tpl_spec *s);
void vms_tpl_init(struct vms *v);
void vms_tpl_done(struct vms *v); /* waits for the builds (they stop: `stopping`) */
/* The template a new VM's first boot would use (its key, and what a build needs). */
void vms_tpl_spec(struct vms *v, const struct vm_row *r, const struct boot_files *bf, const char *accel,
                  const struct vmm_entry *vmm, struct tpl_spec *ret);
/* A ready template's dir (malloc'd), or NULL. */
char *vms_tpl_find(struct vms *v, const char *key);
/* A background build of s's template, unless it exists, is being built or
 * failed lately; takes s's contents. */
void vms_tpl_kick(struct vms *v, struct tpl_spec *s);
/* Stale templates removed; at_start also builds a dead daemon left (their VMM killed). */
void vms_tpl_sweep(struct vms *v, bool at_start);

/* ---- snapshots (snapshot.c): <vm_dir>/snapshots/<name>/ ---- */
/* What a crash left: half-written snapshots (removed), a restore that did
 * not finish copying (finished: the VM stays stopped), a guest left paused
 * by a snapshot in progress (resumed). Called by reconcile. */
void vms_snapshots_recover(struct vms *v, const struct vm_row *r, bool running);
/* `vm create --from-snapshot VM:NAME`: what the new VM takes from the snapshot */
struct vm_fork {
        char *dir, *image_id, *ip; /* ip: the source's address in the saved state */
        int64_t vcpu, memory_mib, disk_bytes, overlay_bytes;
        bool repo;
        enum agent_transport transport; /* the agent's device in the snapshot's state */
};
void vm_fork_done(struct vm_fork *f);
_warn_unused_ int vms_fork_resolve(struct vms *v, const char *spec, struct vm_fork *ret, struct op_error *e);
/* The new VM's disks: copies of the snapshot's; its own host key, pinned. */
_warn_unused_ int vms_fork_disks(struct vms *v, const struct vm_row *r, const struct vm_fork *f, struct op_error *e);
/* disks.c: the VM's SSH host key made and pinned in banger's known_hosts. */
_warn_unused_ int vms_pin_host_key(struct vms *v, const struct vm_row *r, const struct vm_paths *p, struct op_error *e);

/* fn on a running VM (its row and paths); then its activity is recorded, or
 * the error is prefixed with its name. */
typedef int (*vms_running_fn)(struct vms *v, const struct vm_row *r, const struct vm_paths *p, void *ud,
                              struct op_error *e);
_warn_unused_ int vms_with_running(struct vms *v, const char *ref, vms_running_fn fn, void *ud, struct op_error *e);

/* workspace.c: the guest's side of workspaces (prepare there, export in
 * workspace_export.c). */
#define GUEST_REPO "/root/repo"
/* ssh argv to the VM as root with banger's key and pinned host key. */
char **workspace_ssh_argv(struct vms *v, const struct vm_row *r, const char *remote);
/* A guest shell script through the agent (bash -c, as over ssh), with our
 * fds. 1 when the agent is too old for it (the caller uses ssh). */
_warn_unused_ int workspace_agent_script(struct vms *v, const struct vm_paths *p, const char *script, int in_fd,
                                         int out_fd, int err_fd, int timeout_ms, int *ret_status, struct op_error *e);

/* workspace.c: a create's workspace, written into the work disk before its
 * first boot (the guest boots with /root/repo there). */
_warn_unused_ int workspace_preboot_check(const struct workspace_req *q, struct op_error *e);
_warn_unused_ int workspace_preboot(struct vms *v, const struct vm_row *row, const char *repo_disk,
                                    const struct workspace_req *q, const struct progress *pr, struct op_error *e);
_warn_unused_ int workspace_preboot_finish(struct vms *v, const struct vm_row *row, const struct workspace_req *q,
                                           struct op_error *e);
/* What a VM held on the host once its VMM is gone: the capability hooks'
 * cleanup, the TAP, sockets, handles. Errors are logged, nothing stops. */
void vms_release_runtime(struct vms *v, const struct vm_row *r, const struct vm_paths *p, const char *tap);
/* The same without the hooks: the TAP, sockets, handles, the record (and a
 * Firecracker VM's jail). */
void vms_release_host(struct vms *v, const struct vm_row *r, const struct vm_paths *p, const char *tap);
/* A Firecracker VM's jails (chroots under <state>/jail), whatever the
 * daemon's jailer is now. Logged, never fails. */
void vms_jail_release(struct vms *v, const struct vm_row *r);
/* The context the capability hooks see. */
void vms_cap_ctx(struct vms *v, const struct vm_row *r, const struct vm_paths *p, const char *tap,
                 struct vm_cap_ctx *ret);

/* ---- disks.c: the files a VM gets before its first boot ---- */
_warn_unused_ int vms_prepare_disks(struct vms *v, const struct vm_row *r, const struct boot_files *bf, struct op_error *e);
/* The root disk of a new VM (dmroot.c): for Firecracker where device-mapper
 * is usable a sparse root.cow (p->overlay and dm_root switched to it), else
 * the backend's (a qcow2 overlay, a raw copy). */
_warn_unused_ int vms_root_disk_create(struct vms *v, const struct vm_row *r, struct vm_paths *p,
                                       const struct boot_files *bf, struct op_error *e);
/* A device-mapper root disk (p->dm_root): banger-<id> over rootfs with the
 * VM's root.cow, made anew (a leftover of a crash removed first); *ret_dev
 * the device the VMM boots from. The VMM must be gone before its removal. */
_warn_unused_ int vms_dm_root_attach(struct vms *v, const struct vm_row *r, const struct vm_paths *p,
                                     const char *rootfs, char **ret_dev, struct op_error *e);
/* Removes a VM's DM device when it has one (its VMM gone); logged, never fatal. */
void vms_dm_root_release(struct vms *v, const struct vm_row *r, const struct vm_paths *p);
/* Reconcile: every banger-* device of a VM that does not run goes. */
void vms_dm_sweep(struct vms *v);

/* ---- port forwards (forwards.c) ---- */
/* vm_cap_ctx.forwards (ud: the vms). */
int vms_forwards_of(void *ud, const char *vm_id, struct port_spec **ret, size_t *ret_n);
/* The VM's forwards for `vm show` (open or not, live connections). */
json_t *vms_forwards_json(struct vms *v, const struct vm_row *r);
/* Before anything is recorded: no host port twice, none clashing with a
 * forward of any VM (self: the VM they are for, named so in the error;
 * 0.0.0.0 / :: clash with every address of their family), every one free on
 * the host. */
_warn_unused_ int vms_forwards_validate(struct vms *v, const char *self, bool user_net, const struct port_spec *fs,
                                        size_t n, struct op_error *e);
/* vm_cap_ctx.hostfwd (ud: the vms): the forward made by the VMM of a
 * user-mode VM (its lock held). */
int vms_hostfwd_add(void *ud, const char *vm_id, const struct port_spec *f, struct op_error *e);
/* The rows (create: right after the VM's row; its delete takes them along). */
_warn_unused_ int vms_forwards_record(struct vms *v, const struct vm_row *r, const struct port_spec *fs, size_t n,
                                      struct op_error *e);
/* Reconcile adopted a running VM: its forwards listen again (failures logged). */
void vms_forwards_adopt(struct vms *v, const struct vm_row *r);

/* ---- JSON (commands.c) ---- */
json_t *vm_json_by_id(struct vms *v, const char *id);

/* ---- create.c ---- */
bool vms_create_in_flight(struct vms *v, const char *id);
void vms_creates_done(struct vms *v); /* cancels, waits for, frees the create ops */

/* ---- housekeeping.c ---- */
void vms_hk_kick(struct vms *v);           /* refill the TAP pool now */
void vms_housekeeping_stop(struct vms *v); /* sets `stopping`, joins the thread */
