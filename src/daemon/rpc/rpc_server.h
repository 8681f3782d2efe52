/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The Unix-socket RPC server: accept, SO_PEERCRED check (only our uid and
 * root), one thread per connection, bounded message size and connection
 * count. Requests on a connection are answered in order.
 *
 * Lock: `mu` guards the connection list; it is a leaf.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct daemon;

#define RPC_MAX_CONNECTIONS 64
#define RPC_IDLE_TIMEOUT_MS (10 * 60 * 1000)

struct rpc_conn {
        int fd; /* owned by the connection thread until it finishes */
        pthread_t thread;
        uid_t uid;
        pid_t pid;
        bool finished;
        struct daemon *d; /* borrowed */
        struct rpc_conn *next;
};

struct rpc_server {
        pthread_mutex_t mu; /* leaf */
        int listen_fd;
        struct rpc_conn *conns;
        size_t n_conns;
        bool closing;
};

/* Binds `path` with mode 0600; the caller holds the daemon lock, so an
 * existing socket file is stale and removed. */
int rpc_server_listen(struct rpc_server *s, const char *path, char **ret_err);
/* Accepts one pending connection (call when listen_fd is readable). */
void rpc_server_accept(struct rpc_server *s, struct daemon *d);
/* Joins finished connection threads. */
void rpc_server_reap(struct rpc_server *s);
/* Stops accepting, shuts every connection down and joins all threads. */
void rpc_server_close(struct rpc_server *s);

/* A fresh "op-xxxxxx" id. */
void rpc_new_op_id(char buf[static 16]);
