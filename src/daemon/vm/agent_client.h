/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * The host side of the guest agent protocol (docs/GUEST.md, version 1) over
 * the VM's agent transport. One request per connection: QEMU serves one
 * client of a virtio-serial port at a time, and a half-close would look like
 * a disconnect.
 *
 * An agent address is one of:
 *   an absolute path   a UNIX socket: QEMU's virtio-serial port, or, named
 *                      AGENT_VSOCK_NAME, a Firecracker VM's hybrid vsock;
 *   "vsock:<cid>/<tag>" AF_VSOCK to (cid, AGENT_VSOCK_PORT): a QEMU VM's
 *                      vhost-vsock device. The tag (the VM's id) keeps the
 *                      address one VM's when a CID is reused later: links
 *                      and their "lost" notes are keyed by the address.
 */

#include <jansson.h>
#include <stdbool.h>

#include "op_error.h"

/* The agent's vsock port, and the name of the socket a Firecracker VM's
 * hybrid vsock listens on (its run dir): a connection there says
 * "CONNECT <port>\n" and gets "OK <n>\n" once the guest accepted. */
#define AGENT_VSOCK_PORT 1024
#define AGENT_VSOCK_NAME "agent.vsock"
#define AGENT_VSOCK_ADDR_PREFIX "vsock:"
/* Guest CIDs: 0-2 are the hypervisor, local and host; U32_MAX is "any". */
#define AGENT_VSOCK_CID_MIN 3u
#define AGENT_VSOCK_CID_MAX 0xfffffffeu

/* One connection to the agent (non-blocking, close-on-exec) at addr: the
 * virtio-serial port's socket, the hybrid vsock's with its handshake done,
 * or AF_VSOCK. -ENOENT/-ECONNREFUSED while nothing listens (yet): for
 * AF_VSOCK a refusal, a reset or a connect that times out (the guest's
 * driver not up) is -ECONNREFUSED, no VM with the CID -ENOENT. */
_warn_unused_ int agent_socket_connect(const char *addr, int *ret_fd);

/* Is addr "vsock:<cid>[/<tag>]" with a guest CID? */
bool agent_addr_vsock(const char *addr, unsigned *ret_cid);
char *agent_addr_vsock_new(unsigned cid, const char *tag); /* malloc'd */
/* An AF_VSOCK connect's -errno as agent_socket_connect reports it. */
int agent_vsock_errno(int r);
/* Test seam: how AF_VSOCK is connected (NULL: socket(2) and connect(2)). */
typedef int (*agent_vsock_connect_fn)(unsigned cid, unsigned port, int *ret_fd);
void agent_set_vsock_connect(agent_vsock_connect_fn fn);

struct agent_wait {
        int abort_fd;                  /* e.g. the VMM's pidfd: readable = give up; -1 for none */
        bool (*cancelled)(void *ud);   /* polled every 100 ms; NULL for none */
        void *ud;
        int timeout_ms;                /* agent_exec_fds: the whole exec, 0 for none (calls take theirs) */
};

/* {"v":1,"id":N,"method":m} -> the "result" object (new reference).
 * -ETIMEDOUT, -ECANCELED (abort_fd/cancelled), -EPROTO (an "error" answer or
 * garbage), -errno on connect; *err says what happened. */
_warn_unused_ int agent_call(const char *socket_path, const char *method, int timeout_ms, const struct agent_wait *w,
               json_t **ret_result, struct op_error *err);
