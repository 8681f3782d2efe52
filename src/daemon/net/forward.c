/* SPDX-License-Identifier: MIT */
#include "forward.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "strbuf.h"

#define RELAY_BUF 65536
#define THREAD_STACK (256 * 1024)
#define UDP_MAX_DGRAM 65536

struct listener;

struct conn {
        struct conn *next;
        struct listener *l;
        int cfd, gfd; /* client, guest */
};

struct flow {
        struct sockaddr_storage peer;
        socklen_t peer_len;
        int fd; /* connected to the guest */
        int64_t last_ms;
};

struct listener {
        struct listener *next;
        struct fwd *F;
        char *owner;
        struct port_spec spec;
        struct sockaddr_in guest;
        int fd, wake_fd;
        pthread_t thread;
        struct conn *conns; /* F->mu */
        size_t n_conns;     /* F->mu: TCP connections, or UDP flows */
        bool closing;       /* F->mu */
};

struct fwd {
        pthread_mutex_t mu;
        pthread_cond_t cond; /* a connection thread ended */
        struct listener *ls;
        size_t n_conns; /* TCP connections of every forward */
};

struct fwd *fwd_new(void) {
        struct fwd *F = xcalloc(1, sizeof(*F));
        pthread_mutex_init(&F->mu, NULL);
        pthread_cond_init(&F->cond, NULL);
        return F;
}

/* ---- addresses ------------------------------------------------------------------ */

static int host_addr(const struct port_spec *s, struct sockaddr_storage *ss, socklen_t *len) {
        memset(ss, 0, sizeof(*ss));
        if (port_spec_is_v6(s)) {
                struct sockaddr_in6 *a = (struct sockaddr_in6 *) ss;
                a->sin6_family = AF_INET6;
                a->sin6_port = htons(s->host_port);
                *len = sizeof(*a);
                return inet_pton(AF_INET6, s->host_ip, &a->sin6_addr) == 1 ? 0 : -EINVAL;
        }
        struct sockaddr_in *a = (struct sockaddr_in *) ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(s->host_port);
        *len = sizeof(*a);
        return inet_pton(AF_INET, s->host_ip, &a->sin_addr) == 1 ? 0 : -EINVAL;
}

static int bind_error(const struct port_spec *s, int err, struct op_error *e) {
        char t[PORTSPEC_TEXT_MAX];
        port_spec_format(s, t);
        switch (err) {
        case EADDRINUSE:
                return op_fail_as(e, RPC_ALREADY_EXISTS, -err,
                                  "forward %s: %s port %u on %s is in use by another program (pick another host port)",
                                  t, port_proto_name(s->proto), s->host_port, s->host_ip);
        case EADDRNOTAVAIL:
                return op_fail_as(e, RPC_BAD_REQUEST, -err, "forward %s: %s is not an address of this host", t,
                                  s->host_ip);
        case EACCES:
                return op_fail_as(e, RPC_UNAUTHORIZED, -err,
                                  "forward %s: binding port %u needs privilege (ports below "
                                  "net.ipv4.ip_unprivileged_port_start, usually 1024)",
                                  t, s->host_port);
        default:
                return op_fail(e, -err, "forward %s: %s", t, strerror(err));
        }
}

/* A socket bound to s's host side; listening when TCP. */
static int host_socket(const struct port_spec *s, bool listen_too, struct op_error *e) {
        struct sockaddr_storage ss;
        socklen_t len;
        if (host_addr(s, &ss, &len) < 0)
                return op_bad_request(e, "forward: bad host address %s", s->host_ip);
        /* non-blocking: poll may report a connection that is gone by the accept */
        int fd = socket(ss.ss_family, (s->proto == PORT_UDP ? SOCK_DGRAM : SOCK_STREAM | SOCK_NONBLOCK) | SOCK_CLOEXEC,
                        0);
        if (fd < 0)
                return op_fail(e, -errno, "forward: socket: %s", strerror(errno));
        int one = 1;
        /* TCP: a forward closed a moment ago leaves TIME_WAITs, which must
         * not keep it from opening again. Never for UDP: two sockets with it
         * may share a port. */
        if (s->proto == PORT_TCP)
                (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (ss.ss_family == AF_INET6)
                (void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (bind(fd, (struct sockaddr *) &ss, len) < 0 ||
            (listen_too && s->proto == PORT_TCP && listen(fd, 128) < 0)) {
                int err = errno;
                close(fd);
                return bind_error(s, err, e);
        }
        return fd;
}

int fwd_check(const struct port_spec *s, struct op_error *e) {
        /* a TCP bind beside a socket that only is bound succeeds: listen to be sure */
        int fd = host_socket(s, true, e);
        if (fd < 0)
                return fd;
        close(fd);
        return 0;
}

/* ---- TCP ---------------------------------------------------------------------------- */

static bool write_all(int fd, const char *b, size_t n) {
        while (n > 0) {
                ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return false;
                b += w;
                n -= (size_t) w;
        }
        return true;
}

static void cut(int from, int to) {
        shutdown(from, SHUT_RDWR);
        shutdown(to, SHUT_RDWR);
}

/* One direction with read/write (where splice does not apply). */
static void relay_copy(int from, int to) {
        char *buf = xmalloc(RELAY_BUF);
        for (;;) {
                ssize_t r = recv(from, buf, RELAY_BUF, 0);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r == 0) {
                        shutdown(to, SHUT_WR);
                        break;
                }
                if (r < 0 || !write_all(to, buf, (size_t) r)) {
                        cut(from, to);
                        break;
                }
        }
        free(buf);
}

/* Moves n bytes from the pipe to the socket. */
static bool drain(int pipe_r, int to, size_t n) {
        while (n > 0) {
                ssize_t w = splice(pipe_r, NULL, to, NULL, n, SPLICE_F_MOVE);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return false;
                n -= (size_t) w;
        }
        return true;
}

/* One direction until EOF (passed on as a half-close) or an error (which
 * ends both directions). The bytes go socket -> pipe -> socket with
 * splice, never through this process's memory. */
static void relay(int from, int to) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0) {
                relay_copy(from, to);
                return;
        }
        (void) fcntl(p[1], F_SETPIPE_SZ, RELAY_BUF);
        for (bool first = true;; first = false) {
                ssize_t r = splice(from, NULL, p[1], NULL, RELAY_BUF, SPLICE_F_MOVE);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0 && first && (errno == EINVAL || errno == ENOSYS)) {
                        relay_copy(from, to);
                        break;
                }
                if (r == 0) {
                        shutdown(to, SHUT_WR);
                        break;
                }
                if (r < 0 || !drain(p[0], to, (size_t) r)) {
                        cut(from, to);
                        break;
                }
        }
        close(p[0]);
        close(p[1]);
}

static void *back_main(void *arg) {
        struct conn *c = arg;
        relay(c->gfd, c->cfd);
        return NULL;
}

static int spawn(pthread_t *t, void *(*fn)(void *), void *arg, bool detached) {
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setstacksize(&a, THREAD_STACK);
        if (detached)
                pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        int r = pthread_create(t, &a, fn, arg);
        pthread_attr_destroy(&a);
        return -r;
}

/* fd is published in c->gfd before it connects, so a close can abort the
 * connect (shutdown) instead of waiting for its timeout. */
static int guest_connect(struct conn *c) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        struct timeval tv = { .tv_sec = FWD_CONNECT_TIMEOUT_S };
        (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        pthread_mutex_lock(&c->l->F->mu);
        c->gfd = fd;
        bool closing = c->l->closing;
        pthread_mutex_unlock(&c->l->F->mu);
        if (closing || connect(fd, (const struct sockaddr *) &c->l->guest, sizeof(c->l->guest)) < 0)
                return closing ? -ECANCELED : -errno;
        struct timeval none = { 0 };
        (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none));
        pthread_mutex_lock(&c->l->F->mu);
        closing = c->l->closing; /* closed while connecting: the relay must end at once */
        if (closing)
                shutdown(fd, SHUT_RDWR);
        pthread_mutex_unlock(&c->l->F->mu);
        return 0;
}

static void conn_unlink(struct conn *c) {
        struct fwd *F = c->l->F;
        pthread_mutex_lock(&F->mu);
        for (struct conn **p = &c->l->conns; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        break;
                }
        c->l->n_conns--;
        F->n_conns--;
        pthread_cond_broadcast(&F->cond);
        pthread_mutex_unlock(&F->mu);
}

static void *conn_main(void *arg) {
        struct conn *c = arg;
        int r = guest_connect(c);
        if (r == 0) {
                pthread_t back;
                if (spawn(&back, back_main, c, false) == 0) {
                        relay(c->cfd, c->gfd);
                        pthread_join(back, NULL);
                } else
                        cut(c->cfd, c->gfd); /* half a relay would leave the client hanging */
        } else
                log_debug("forward %s:%u: guest %s:%u: %s", c->l->spec.host_ip, c->l->spec.host_port,
                          inet_ntoa(c->l->guest.sin_addr), c->l->spec.guest_port, strerror(-r));
        conn_unlink(c);
        if (c->gfd >= 0)
                close(c->gfd);
        close(c->cfd);
        free(c);
        return NULL;
}

/* false: out of fds or memory (the caller backs off: the connection stays
 * queued, and poll would report it again at once) */
static bool tcp_accept(struct listener *l) {
        int cfd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0)
                return !(errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM);
        int one = 1;
        (void) setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct conn *c = xcalloc(1, sizeof(*c));
        *c = (struct conn) { .l = l, .cfd = cfd, .gfd = -1 };
        pthread_mutex_lock(&l->F->mu);
        bool room = l->n_conns < FWD_MAX_CONNS && l->F->n_conns < FWD_MAX_CONNS_TOTAL;
        if (room) {
                c->next = l->conns;
                l->conns = c;
                l->n_conns++;
                l->F->n_conns++;
        }
        pthread_mutex_unlock(&l->F->mu);
        pthread_t t;
        if (!room) {
                log_warn("forward %s:%u: %d connections on it or %d in all already; refusing one", l->spec.host_ip,
                         l->spec.host_port, FWD_MAX_CONNS, FWD_MAX_CONNS_TOTAL);
                close(cfd);
                free(c);
        } else if (spawn(&t, conn_main, c, true) < 0) {
                conn_unlink(c);
                close(cfd);
                free(c);
        }
        return true;
}

/* ---- UDP ---------------------------------------------------------------------------- */

struct udp_state {
        struct flow flows[FWD_UDP_MAX_FLOWS];
        size_t n;
        char *buf;
};

static void flow_drop(struct listener *l, struct udp_state *u, size_t i) {
        close(u->flows[i].fd);
        u->flows[i] = u->flows[--u->n];
        pthread_mutex_lock(&l->F->mu);
        l->n_conns = u->n;
        pthread_mutex_unlock(&l->F->mu);
}

static struct flow *flow_for(struct listener *l, struct udp_state *u, const struct sockaddr_storage *peer,
                             socklen_t len, int64_t now) {
        for (size_t i = 0; i < u->n; i++)
                if (u->flows[i].peer_len == len && memcmp(&u->flows[i].peer, peer, len) == 0)
                        return &u->flows[i];
        if (u->n == FWD_UDP_MAX_FLOWS) { /* the idlest makes room */
                size_t old = 0;
                for (size_t i = 1; i < u->n; i++)
                        if (u->flows[i].last_ms < u->flows[old].last_ms)
                                old = i;
                flow_drop(l, u, old);
        }
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return NULL;
        if (connect(fd, (const struct sockaddr *) &l->guest, sizeof(l->guest)) < 0) {
                close(fd);
                return NULL;
        }
        struct flow *f = &u->flows[u->n++];
        *f = (struct flow) { .peer_len = len, .fd = fd, .last_ms = now };
        memcpy(&f->peer, peer, len);
        pthread_mutex_lock(&l->F->mu);
        l->n_conns = u->n;
        pthread_mutex_unlock(&l->F->mu);
        return f;
}

static void udp_from_client(struct listener *l, struct udp_state *u, int64_t now) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        ssize_t r = recvfrom(l->fd, u->buf, UDP_MAX_DGRAM, MSG_DONTWAIT, (struct sockaddr *) &peer, &len);
        if (r < 0)
                return;
        struct flow *f = flow_for(l, u, &peer, len, now);
        if (f) {
                f->last_ms = now;
                (void) send(f->fd, u->buf, (size_t) r, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
}

static void udp_from_guest(struct listener *l, struct udp_state *u, size_t i, int64_t now) {
        struct flow *f = &u->flows[i];
        ssize_t r = recv(f->fd, u->buf, UDP_MAX_DGRAM, MSG_DONTWAIT);
        if (r < 0)
                return; /* ICMP unreachable and the like: the client retries */
        f->last_ms = now;
        (void) sendto(l->fd, u->buf, (size_t) r, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *) &f->peer,
                      f->peer_len);
}

static void udp_serve(struct listener *l) {
        struct udp_state *u = xcalloc(1, sizeof(*u));
        u->buf = xmalloc(UDP_MAX_DGRAM);
        for (;;) {
                struct pollfd p[2 + FWD_UDP_MAX_FLOWS] = { { .fd = l->wake_fd, .events = POLLIN },
                                                          { .fd = l->fd, .events = POLLIN } };
                for (size_t i = 0; i < u->n; i++)
                        p[2 + i] = (struct pollfd) { .fd = u->flows[i].fd, .events = POLLIN };
                size_t n = u->n;
                if (poll(p, 2 + n, 5000) < 0 && errno != EINTR)
                        break;
                if (p[0].revents)
                        break;
                int64_t now = mono_ms_now();
                /* guests first: a client's datagram may add or drop flows */
                for (size_t i = n; i-- > 0;)
                        if (p[2 + i].revents & POLLIN)
                                udp_from_guest(l, u, i, now);
                if (p[1].revents & POLLIN)
                        udp_from_client(l, u, now);
                for (size_t i = u->n; i-- > 0;)
                        if (now - u->flows[i].last_ms > FWD_UDP_IDLE_MS)
                                flow_drop(l, u, i);
        }
        while (u->n > 0)
                flow_drop(l, u, u->n - 1);
        free(u->buf);
        free(u);
}

/* ---- listeners ------------------------------------------------------------------------ */

static void *listener_main(void *arg) {
        struct listener *l = arg;
        if (l->spec.proto == PORT_UDP) {
                udp_serve(l);
                return NULL;
        }
        bool starved = false;
        for (;;) {
                struct pollfd p[2] = { { .fd = l->wake_fd, .events = POLLIN }, { .fd = l->fd, .events = POLLIN } };
                /* out of fds: only the wake-up for a while, then try again */
                if (poll(p, starved ? 1 : 2, starved ? 200 : -1) < 0 && errno != EINTR)
                        break;
                if (p[0].revents)
                        break;
                bool was = starved;
                starved = !starved && (p[1].revents & POLLIN) && !tcp_accept(l);
                if (starved && !was)
                        log_warn("forward %s:%u: accepting: %s; trying again in 200 ms", l->spec.host_ip,
                                 l->spec.host_port, strerror(errno));
        }
        return NULL;
}

static bool same(const struct listener *l, const char *owner, const struct port_spec *s) {
        return strcmp(l->owner, owner) == 0 && l->spec.proto == s->proto && l->spec.host_port == s->host_port &&
               strcmp(l->spec.host_ip, s->host_ip) == 0;
}

int fwd_open(struct fwd *F, const char *owner, const struct port_spec *s, const char *guest_ip, struct op_error *e) {
        struct in_addr gip;
        if (inet_pton(AF_INET, guest_ip, &gip) != 1)
                return op_fail(e, -EINVAL, "forward: bad guest address %s", guest_ip);
        if (fwd_is_open(F, owner, s))
                return 0;
        int fd = host_socket(s, true, e);
        if (fd < 0)
                return fd;
        struct listener *l = xcalloc(1, sizeof(*l));
        *l = (struct listener) { .F = F, .owner = xstrdup(owner), .spec = *s, .fd = fd,
                                 .wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK) };
        l->guest = (struct sockaddr_in) { .sin_family = AF_INET, .sin_port = htons(s->guest_port), .sin_addr = gip };
        int r = l->wake_fd < 0 ? -errno : spawn(&l->thread, listener_main, l, false);
        if (r < 0) {
                if (l->wake_fd >= 0)
                        close(l->wake_fd);
                close(fd);
                free(l->owner);
                free(l);
                return op_fail(e, r, "forward: %s", strerror(-r));
        }
        pthread_mutex_lock(&F->mu);
        l->next = F->ls;
        F->ls = l;
        pthread_mutex_unlock(&F->mu);
        return 0;
}

/* l is out of the list: stop its thread, cut its connections, wait for them. */
static void listener_close(struct fwd *F, struct listener *l) {
        uint64_t one = 1;
        if (write(l->wake_fd, &one, sizeof(one)) < 0)
                log_warn("forward %s:%u: waking its thread: %s", l->spec.host_ip, l->spec.host_port, strerror(errno));
        pthread_join(l->thread, NULL);
        close(l->fd); /* no new connections from here */
        pthread_mutex_lock(&F->mu);
        l->closing = true;
        for (struct conn *c = l->conns; c; c = c->next) {
                shutdown(c->cfd, SHUT_RDWR);
                if (c->gfd >= 0)
                        shutdown(c->gfd, SHUT_RDWR);
        }
        while (l->n_conns > 0 && l->spec.proto == PORT_TCP)
                pthread_cond_wait(&F->cond, &F->mu);
        pthread_mutex_unlock(&F->mu);
        close(l->wake_fd);
        free(l->owner);
        free(l);
}

/* Takes the matching listeners out of the list (s NULL: every one of owner, owner NULL: all). */
static struct listener *take(struct fwd *F, const char *owner, const struct port_spec *s) {
        struct listener *out = NULL;
        pthread_mutex_lock(&F->mu);
        for (struct listener **p = &F->ls; *p;) {
                struct listener *l = *p;
                if (!owner || (s ? same(l, owner, s) : strcmp(l->owner, owner) == 0)) {
                        *p = l->next;
                        l->next = out;
                        out = l;
                } else
                        p = &l->next;
        }
        pthread_mutex_unlock(&F->mu);
        return out;
}

static size_t close_list(struct fwd *F, struct listener *l) {
        size_t n = 0;
        while (l) {
                struct listener *next = l->next;
                listener_close(F, l);
                l = next;
                n++;
        }
        return n;
}

bool fwd_close(struct fwd *F, const char *owner, const struct port_spec *s) {
        return close_list(F, take(F, owner, s)) > 0;
}

size_t fwd_close_owner(struct fwd *F, const char *owner) {
        return close_list(F, take(F, owner, NULL));
}

bool fwd_is_open(struct fwd *F, const char *owner, const struct port_spec *s) {
        bool found = false;
        pthread_mutex_lock(&F->mu);
        for (struct listener *l = F->ls; l && !found; l = l->next)
                found = same(l, owner, s);
        pthread_mutex_unlock(&F->mu);
        return found;
}

size_t fwd_active(struct fwd *F, const char *owner, const struct port_spec *s) {
        size_t n = 0;
        pthread_mutex_lock(&F->mu);
        for (struct listener *l = F->ls; l; l = l->next)
                if (same(l, owner, s))
                        n = l->n_conns;
        pthread_mutex_unlock(&F->mu);
        return n;
}

void fwd_free(struct fwd *F) {
        if (!F)
                return;
        close_list(F, take(F, NULL, NULL));
        pthread_cond_destroy(&F->cond);
        pthread_mutex_destroy(&F->mu);
        free(F);
}
