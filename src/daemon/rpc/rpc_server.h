/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * The Unix-socket RPC server: accept, SO_PEERCRED check (only the owner uid
 * and root), one thread per connection, bounded message size and connection
 * count. Requests on a connection are answered in order by the line handler
 * it was given; it knows nothing of what the lines mean.
 *
 * Lock: `mu` guards the connection list; it is a leaf (no thread is created
 * under it). accept, reap and close run on one thread (the daemon's loop).
 */

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "op_error.h"

#define RPC_MAX_CONNECTIONS 64
/* A connection with no request in flight, or half a request, this long is
 * closed (clients reconnect); at the connection limit the longest-idle one
 * is closed first, so idle clients cannot lock everybody out. */
#define RPC_IDLE_TIMEOUT_MS (30 * 1000)
/* A client that reads none of what it is sent for this long is closed: a
 * slow reader holds its connection's slot no longer than that. */
#define RPC_SEND_TIMEOUT_MS (15 * 1000)

/* One request line in, one response line out (malloc'd). fd is the client
 * connection (progress lines, hang-up checks). */
typedef char *(*rpc_line_handler_fn)(void *ud, const char *line, size_t len, uid_t uid, pid_t pid, int fd);

struct rpc_server;

struct rpc_conn {
        int fd; /* owned by the connection thread until it finishes */
        pthread_t thread;
        uid_t uid;
        pid_t pid;
        bool finished;
        int64_t idle_since_ms;     /* waiting for a request since then; 0 while one runs (under server->mu) */
        bool evicted;              /* closed to make room (under server->mu) */
        struct rpc_server *server; /* borrowed */
        struct rpc_conn *next;
};

struct rpc_server {
        pthread_mutex_t mu; /* leaf */
        int listen_fd;
        struct rpc_conn *conns;
        size_t n_conns;
        size_t n_evicted; /* of n_conns, shut down to make room and not reaped yet */
        bool closing;
        uid_t owner;
        rpc_line_handler_fn handler;
        void *ud;
};

/* Binds `path` with mode 0600; the caller holds the daemon lock, so an
 * existing socket file is stale and removed. Clients must be `owner` or root. */
_warn_unused_ int rpc_server_listen(struct rpc_server *s, const char *path, uid_t owner, rpc_line_handler_fn handler, void *ud,
                      struct op_error *e);
/* Accepts one pending connection (call when listen_fd is readable). */
void rpc_server_accept(struct rpc_server *s);
/* Joins finished connection threads. */
void rpc_server_reap(struct rpc_server *s);
/* Stops accepting, shuts every connection down and joins all threads. */
void rpc_server_close(struct rpc_server *s);
