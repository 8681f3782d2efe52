/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * bangerd's DNS responder for the zone `vm` (src/core/dnsmsg.c answers):
 * UDP and TCP on one address (dns_listen, default 127.0.0.1:42069), served
 * by one thread. Records come from lookup() at query time, so they appear
 * when a VM starts and vanish when it stops, across daemon restarts too.
 */

#include <pthread.h>
#include <stdbool.h>

#include "dnsmsg.h"
#include "op_error.h"

struct dnsd {
        int udp_fd, tcp_fd, wake_fd;
        pthread_t thread;
        bool started;
        dns_lookup_fn lookup;
        void *ud;
        unsigned port;
};

/* 0, or -errno with *ret_err (e.g. the port is taken). */
_warn_unused_ int dnsd_start(struct dnsd *s, const char *addr, dns_lookup_fn lookup, void *ud, struct op_error *e);
void dnsd_stop(struct dnsd *s);
