/* SPDX-License-Identifier: MIT */
#include "rpc_server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "macro.h"
#include "rpc.h"
#include "strbuf.h"

int rpc_server_listen(struct rpc_server *s, const char *path, uid_t owner, rpc_line_handler_fn handler, void *ud,
                      struct op_error *e) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        mode_t old;

        *s = (struct rpc_server) { .listen_fd = -1, .owner = owner, .handler = handler, .ud = ud };
        pthread_mutex_init(&s->mu, NULL);
        if (strlen(path) >= sizeof(sa.sun_path)) {
                return op_fail(e, -ENAMETOOLONG, "socket path %s is longer than %zu bytes", path, sizeof(sa.sun_path) - 1);
        }
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return op_fail(e, -errno, "socket: %s", strerror(errno));
        if (unlink(path) < 0 && errno != ENOENT) {
                return op_fail(e, -errno, "cannot remove stale socket %s: %s", path, strerror(errno));
        }
        old = umask(0177); /* 0600 from birth: no window with a wider mode */
        int r = bind(fd, (struct sockaddr *) &sa, sizeof(sa));
        umask(old);
        if (r < 0) {
                return op_fail(e, -errno, "cannot bind %s: %s", path, strerror(errno));
        }
        if (chmod(path, 0600) < 0 || listen(fd, 64) < 0) {
                return op_fail(e, -errno, "cannot listen on %s: %s", path, strerror(errno));
        }
        s->listen_fd = TAKE_FD(fd);
        return 0;
}

static void reply_and_close(int fd, enum rpc_code code, const char *msg) {
        char op[RPC_OP_ID_SIZE];
        rpc_op_id_new(op);
        _cleanup_free_ char *line = rpc_response_encode_error(false, 0, code, msg, op);
        (void) rpc_write_line(fd, line);
        close(fd);
}

/* false once the connection was evicted: a request read in that instant is
 * not run (its client sees the connection close, and nothing happened) */
static bool set_idle(struct rpc_conn *c, bool idle) {
        pthread_mutex_lock(&c->server->mu);
        c->idle_since_ms = idle ? mono_ms_now() : 0;
        bool ok = !c->evicted;
        pthread_mutex_unlock(&c->server->mu);
        return ok;
}

static void *conn_main(void *arg) {
        struct rpc_conn *c = arg;
        struct rpc_line_reader lr;
        char *line;
        size_t len;
        int r;

        rpc_line_reader_init(&lr, c->fd, RPC_MAX_MESSAGE);
        for (;;) {
                (void) set_idle(c, true);
                r = rpc_line_reader_next(&lr, RPC_IDLE_TIMEOUT_MS, &line, &len);
                if (!set_idle(c, false))
                        break;
                if (r == -EMSGSIZE) {
                        char op[RPC_OP_ID_SIZE];
                        rpc_op_id_new(op);
                        log_set_op_id(op);
                        log_warn("rejecting oversized request from uid=%u pid=%d", (unsigned) c->uid, (int) c->pid);
                        _cleanup_free_ char *resp = rpc_response_encode_error(
                                false, 0, RPC_BAD_REQUEST, "request exceeds the 1 MiB message limit", op);
                        (void) rpc_write_line(c->fd, resp);
                        log_set_op_id(NULL);
                        break;
                }
                if (r <= 0)
                        break;
                if (len == 0)
                        continue;
                _cleanup_free_ char *resp = c->server->handler(c->server->ud, line, len, c->uid, c->pid, c->fd);
                if (!resp)
                        break; /* the handler used the connection itself (vm.exec) */
                int w = rpc_write_line(c->fd, resp);
                if (w == -EAGAIN)
                        log_warn("closing the connection of pid=%d: it read nothing of its answers for %d s",
                                 (int) c->pid, RPC_SEND_TIMEOUT_MS / 1000);
                if (w < 0)
                        break;
        }
        rpc_line_reader_done(&lr);
        shutdown(c->fd, SHUT_RDWR);

        pthread_mutex_lock(&c->server->mu);
        c->finished = true;
        pthread_mutex_unlock(&c->server->mu);
        return NULL;
}

/* Under mu: the connection idle the longest is shut down (its thread sees
 * EOF and finishes); the new client takes its place. */
static void evict_idlest(struct rpc_server *s) {
        struct rpc_conn *oldest = NULL;
        for (struct rpc_conn *c = s->conns; c; c = c->next)
                if (!c->finished && !c->evicted && c->idle_since_ms &&
                    (!oldest || c->idle_since_ms < oldest->idle_since_ms))
                        oldest = c;
        if (!oldest)
                return;
        log_info("closing the connection of pid=%d, idle %lld ms, to make room", (int) oldest->pid,
                 (long long) (mono_ms_now() - oldest->idle_since_ms));
        oldest->evicted = true;
        s->n_evicted++;
        shutdown(oldest->fd, SHUT_RDWR);
}

void rpc_server_accept(struct rpc_server *s) {
        struct ucred cred;
        socklen_t cl = sizeof(cred);
        int fd;

        fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
                return;
        struct timeval sndto = { .tv_sec = RPC_SEND_TIMEOUT_MS / 1000 };
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &sndto, sizeof(sndto)) < 0) {
                close(fd);
                return;
        }
        /* Who the client is comes from the kernel, never from the request. */
        if (cred.uid != s->owner && cred.uid != 0) {
                log_warn("refusing connection from uid=%u pid=%d (only uid %u and root are served)",
                         (unsigned) cred.uid, (int) cred.pid, (unsigned) s->owner);
                reply_and_close(fd, RPC_UNAUTHORIZED, "this daemon serves only its own user and root");
                return;
        }

        pthread_mutex_lock(&s->mu);
        if (!s->closing && s->n_conns >= RPC_MAX_CONNECTIONS)
                evict_idlest(s);
        if (s->closing || s->n_conns >= RPC_MAX_CONNECTIONS + s->n_evicted) {
                bool closing = s->closing;
                pthread_mutex_unlock(&s->mu);
                log_warn("refusing connection from pid=%d: %s", (int) cred.pid,
                         closing ? "shutting down" : "too many connections");
                reply_and_close(fd, RPC_OPERATION_FAILED,
                                closing ? "daemon is shutting down" : "too many connections to the daemon");
                return;
        }
        struct rpc_conn *c = xcalloc(1, sizeof(*c));
        *c = (struct rpc_conn) { .fd = fd, .uid = cred.uid, .pid = cred.pid, .server = s, .next = s->conns };
        s->conns = c;
        s->n_conns++;
        pthread_mutex_unlock(&s->mu);
        /* outside the leaf lock; reap and close run on this thread, so the
         * entry cannot be joined before its thread exists */
        int r = pthread_create(&c->thread, NULL, conn_main, c);
        if (r == 0)
                return;
        pthread_mutex_lock(&s->mu);
        for (struct rpc_conn **pp = &s->conns; *pp; pp = &(*pp)->next)
                if (*pp == c) {
                        *pp = c->next;
                        s->n_conns--;
                        break;
                }
        pthread_mutex_unlock(&s->mu);
        free(c);
        reply_and_close(fd, RPC_OPERATION_FAILED, "cannot start a connection thread");
}

/* Unlinks finished connections under the lock; joins them outside it. */
static struct rpc_conn *take_finished(struct rpc_server *s, bool all) {
        struct rpc_conn *done = NULL, **pp;

        pthread_mutex_lock(&s->mu);
        for (pp = &s->conns; *pp;) {
                struct rpc_conn *c = *pp;
                if (all || c->finished) {
                        *pp = c->next;
                        c->next = done;
                        done = c;
                        s->n_conns--;
                        s->n_evicted -= c->evicted;
                } else
                        pp = &c->next;
        }
        pthread_mutex_unlock(&s->mu);
        return done;
}

static void join_list(struct rpc_conn *c) {
        while (c) {
                struct rpc_conn *next = c->next;
                pthread_join(c->thread, NULL);
                close(c->fd);
                free(c);
                c = next;
        }
}

void rpc_server_reap(struct rpc_server *s) {
        join_list(take_finished(s, false));
}

void rpc_server_close(struct rpc_server *s) {
        pthread_mutex_lock(&s->mu);
        s->closing = true;
        /* Wake every connection thread blocked reading its next request; a
         * request being handled still gets its response written. */
        for (struct rpc_conn *c = s->conns; c; c = c->next)
                shutdown(c->fd, SHUT_RD);
        pthread_mutex_unlock(&s->mu);
        join_list(take_finished(s, true));
        if (s->listen_fd >= 0)
                close(s->listen_fd);
        s->listen_fd = -1;
        pthread_mutex_destroy(&s->mu);
}
