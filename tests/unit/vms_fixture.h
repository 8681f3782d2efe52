/* SPDX-License-Identifier: MIT */
#pragma once

/* The VM service's test fixture (vms_fixture.c): setup/teardown per test. */

#include <stdbool.h>

#include "config.h"
#include "layout.h"
#include "store/store.h"
#include "vm/vms.h"

extern struct layout layout;
extern struct config *config;
extern struct config_live live;
extern struct store *store;
extern struct vms vms;

/* the agent's vsock on the fake host: is there a /dev/vhost-vsock, the CID a
 * VM outside banger holds (its start says EADDRINUSE), VMM starts so far */
extern bool vsock_dev;
extern unsigned busy_cid;
extern unsigned vmm_starts;
/* the guest CID VM id's VMM was last given (fails the test if it never booted) */
unsigned booted_cid(const char *id);

int setup(void **state);
int teardown(void **state);
void service_start(void);
/* Restarts the service as a new daemon would (VMs keep running). */
void restart_service(void);
void write_handles(const char *id, const char *text);

bool wait_until(bool (*cond)(void *), void *ud);
char *state_of(const char *ref);
bool is_state(const char *ref, const char *want);
bool stopped(void *ud);

/* Creates (and, unless no_start, starts) a VM; waits for the create: 0, or
 * the negative errno its status reports. */
int create_req(const struct vm_create_req *q, char **ret_id);
int create_vm(const char *name, bool nat, bool no_start, char **ret_id);
/* A Firecracker VM (the fake under that name) of banger's own image. */
int create_fc_vm(const char *name, bool no_start, char **ret_id);

/* No TAP, NAT, guard, VMM or DM device left, no host rule broken. */
void assert_host_clean(void);
void assert_no_runtime_files(const char *id);
