/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * Port forwards (`--publish`, `vm forward`): bangerd listens on a host
 * address and relays every TCP connection, and every UDP flow, to a guest
 * port across the bridge. A relay in userspace rather than DNAT: it serves
 * 127.0.0.1 (DNAT from loopback to a bridge needs route_localnet on the
 * host), it needs no privilege for ports >= 1024, and what listens is what
 * `ss -ltnp` shows, owned by bangerd. The guest sees connections from the
 * bridge address.
 *
 * Each forward has an owner (a VM id). Threads: one per listener; two per
 * TCP connection (one per direction, so neither side's backlog stalls the
 * other); a UDP forward's flows live in its listener's thread. fwd.mu is a
 * leaf lock. Closing a forward closes its listener and cuts its
 * connections; fwd_free() closes every forward (VMs keep running; their
 * forwards come back when the daemon adopts them again). TCP bytes move
 * with splice(2) through a pipe per direction, which has no MSG_NOSIGNAL:
 * the process must ignore SIGPIPE (bangerd does).
 */

#include <stdbool.h>
#include <stddef.h>

#include "op_error.h"
#include "portspec.h"

#define FWD_MAX_CONNS 256      /* live TCP connections per forward; more are refused */
#define FWD_MAX_CONNS_TOTAL 1024 /* ... and of every forward (6 fds each: bangerd raises RLIMIT_NOFILE) */
#define FWD_UDP_MAX_FLOWS 256  /* UDP clients per forward; the idlest goes first */
#define FWD_UDP_IDLE_MS 120000 /* a UDP flow without traffic this long is dropped */
#define FWD_CONNECT_TIMEOUT_S 10

struct fwd;

struct fwd *fwd_new(void);
void fwd_free(struct fwd *F);
/* Could s's host side be bound now? Explains why not: the port is in use,
 * the address is not this host's, a port below 1024 without privilege. */
_warn_unused_ int fwd_check(const struct port_spec *s, struct op_error *e);
/* Listens on s's host side and relays to guest_ip (IPv4):s->guest_port.
 * Already open for this owner: 0. */
_warn_unused_ int fwd_open(struct fwd *F, const char *owner, const struct port_spec *s, const char *guest_ip,
                           struct op_error *e);
/* Closes the forward if open (true) and cuts its connections. */
bool fwd_close(struct fwd *F, const char *owner, const struct port_spec *s);
/* Every forward of owner; how many there were. */
size_t fwd_close_owner(struct fwd *F, const char *owner);
bool fwd_is_open(struct fwd *F, const char *owner, const struct port_spec *s);
/* Live TCP connections and UDP flows of a forward (0 when not open). */
size_t fwd_active(struct fwd *F, const char *owner, const struct port_spec *s);
