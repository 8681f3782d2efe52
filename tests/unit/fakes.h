/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Fakes for the VM service's unit tests, for what cannot run unprivileged:
 *  - priv ops that keep a ledger of every call and of what is "live" on the
 *    fake host (TAPs, NAT rules, address guards), and that check each call
 *    against the real rules of src/host/hostops.c (a call that breaks one is
 *    recorded as a violation);
 *  - a VMM backend whose "VM" is a real process (sleep) in its own session,
 *    so pidfds, the exit watcher and reconcile work for real;
 *  - an agent that answers health/sync/poweroff/stats from the ledger.
 * Any operation can be made to fail by name (fake_fail_at).
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "vm/vms.h"

enum fake_health {
        HEALTH_OK,        /* the agent answers, sshd listens */
        HEALTH_FAIL,      /* the agent answers with an error */
        HEALTH_BLOCK,     /* never answers: returns when cancelled, aborted or timed out */
        HEALTH_NO_SSHD,   /* the agent answers, sshd never listens */
};

void fake_init(const char *bridge, const char *bridge_ip, int prefix, const char *const *roots);
void fake_done(void); /* kills every fake VMM still running */

/* The tables handed to vms_deps. */
const struct priv_ops *fake_priv(void);
extern const struct vmm_backend fake_vmm;
/* fake_vmm under the name "firecracker" (index 1 of the tests' VMM table:
 * fake_choose_vmm gives it for want "firecracker"). */
extern const struct vmm_backend fake_fc_vmm;
int fake_agent_call(void *ud, const char *socket_path, const char *method, int timeout_ms,
                    const struct agent_wait *w, json_t **ret, struct op_error *e);
int fake_choose_vmm(void *ud, const char *want, size_t *ret_index, char **ret_accel, struct op_error *e);

/* Injection: the named operation fails from now on ("tap_create",
 * "guard_enable", "nat_enable", "ip_forward", "bridge_ensure",
 * "vmm_start", "agent_health", ...); NULL clears it. */
void fake_fail_at(const char *op);
void fake_health_mode(enum fake_health m);

/* The ledger. */
size_t fake_live_taps(void);
size_t fake_live_nat(void);
size_t fake_live_guards(void);
bool fake_has_tap(const char *name);
size_t fake_live_vmms(void);          /* fake VMM processes alive */
size_t fake_calls(const char *op);    /* how many calls of op so far */
size_t fake_violations(void);         /* calls that broke a host rule */
const char *fake_log(void);           /* every call, one per line (for failure messages) */
void fake_reset_calls(void);
/* State a test sets up by hand ("the host after a crash"). */
void fake_put_tap(const char *name);
void fake_put_rules(const char *vm_id);
/* Device-mapper root disks: usable or not (default not); the banger-<id>
 * devices live (every create is checked: the table's shape, the origin
 * read-only and regular, the COW sparse and at least the origin's size). */
void fake_dm_available(bool on);
size_t fake_live_dm(void);
bool fake_has_dm(const char *vm_id);
void fake_put_dm(const char *vm_id); /* as a crash would leave one */
/* A fake VMM process for vm id (as if started by an earlier daemon). */
pid_t fake_spawn_vmm(const char *id);
/* Kills a fake VMM as a crash would. */
void fake_crash_vmm(pid_t pid);
