/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The daemon's one connection to each guest agent, multiplexed (protocol
 * version 2, src/agent/frame.h). A link is made at the first exec on a VM
 * and kept while execs or calls use it; a thread per link owns the socket
 * and relays every channel's frames between the agent and the channel's
 * client (a CLI connection after vm.exec, or a socketpair of the daemon's
 * own). While a link is up, agent calls (health, stats, sync, poweroff)
 * travel on it as FRAME_CALL; without one they use a connection of their
 * own (agent_client.c), as QEMU serves one client at a time. The registry
 * owns its lock; a link's lock is taken after it, never before.
 */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent_client.h"
#include "macro.h"
#include "op_error.h"

struct agent_links;
struct agent_exec;

struct agent_links *agent_links_new(void);
/* Ends every exec (its client is told why); the links close once their
 * users let go. Then free waits for the link threads. */
void agent_links_stop(struct agent_links *L);
void agent_links_free(struct agent_links *L);

/* agent_call() through the VM's link when it has one. */
_warn_unused_ int agent_links_call(struct agent_links *L, const char *socket_path, const char *method, int timeout_ms,
                                   const struct agent_wait *w, json_t **ret_result, struct op_error *e);

/* Starts an exec (spec: frame.h's FRAME_OPEN payload) and waits for the
 * agent to say it runs. -EPROTONOSUPPORT: the agent speaks only version 1. */
_warn_unused_ int agent_exec_open(struct agent_links *L, const char *socket_path, const uint8_t *spec, size_t spec_len,
                                  int timeout_ms, struct agent_exec **ret, uint32_t *ret_pid, struct op_error *e);
/* Hands the channel's client side to the link (frames on client_fd, which
 * the caller keeps and closes after agent_exec_wait). */
void agent_exec_attach(struct agent_exec *x, int client_fd);
/* Until the exec ended (EXIT relayed), failed, or its client left; frees x.
 * Without attach: closes the channel (the guest kills the process group). */
void agent_exec_finish(struct agent_exec *x);

/* A whole exec with the daemon's own fds (in_fd -1: empty stdin, out_fd or
 * err_fd -1: discarded). 0 with the exit status (code, or 128+signal) in
 * *ret_status; -errno with *e when it could not run or was cut off. */
_warn_unused_ int agent_exec_fds(struct agent_links *L, const char *socket_path, const uint8_t *spec, size_t spec_len,
                                 int in_fd, int out_fd, int err_fd, const struct agent_wait *w, int *ret_status,
                                 struct op_error *e);

/* Why the last link to this VM's agent was lost mid-use, or NULL (a new
 * successful call or link clears it); malloc'd. */
char *agent_links_lost(struct agent_links *L, const char *socket_path);
