/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * bangerd-root: the root helper of a system install. It serves exactly the
 * privileged operations of src/host/hostops.h, one request per connection,
 * to root and to the install's owner (SO_PEERCRED), and re-checks every
 * argument itself (docs/PROTOCOL.md, "The root helper"). It links the host
 * layer and core only: no store, no VMs, no network listeners.
 */

#include <stdatomic.h>
#include <stdbool.h>

#include "hostops.h"
#include "install.h"
#include "macro.h"

struct helper {
        struct install_info install;
        struct host_policy policy;
        char *socket_path;
        char *pid_path;
        int listen_fd;
        int signal_fd;
};

/* Set on SIGTERM: builds in flight cancel themselves (and still answer). */
extern atomic_bool helper_stopping;

/* One connection: reads one request, answers it, closes fd. */
void helper_serve_conn(struct helper *h, int fd);

/* The method table, for docs and tests: NULL-terminated names. */
extern const char *const helper_methods[];
