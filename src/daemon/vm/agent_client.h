/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * The host side of the guest agent protocol (docs/GUEST.md, version 1) over
 * the VM's virtio-serial socket. One request per connection: QEMU serves one
 * client at a time, and a half-close would look like a disconnect.
 */

#include <jansson.h>
#include <stdbool.h>

#include "op_error.h"

/* The agent's vsock port, and the name of the socket a Firecracker VM's
 * hybrid vsock listens on (its run dir): a connection there says
 * "CONNECT <port>\n" and gets "OK <n>\n" once the guest accepted. */
#define AGENT_VSOCK_PORT 1024
#define AGENT_VSOCK_NAME "agent.vsock"

/* One connection to the agent's socket (non-blocking, close-on-exec): the
 * virtio-serial port's, or the hybrid vsock's with its handshake done.
 * -ENOENT/-ECONNREFUSED while nothing listens (yet). */
_warn_unused_ int agent_socket_connect(const char *socket_path, int *ret_fd);

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
