/* SPDX-License-Identifier: MIT */
/* The port forward relay (net/forward.c) on real loopback sockets: an echo
 * server stands in for the guest. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/forward.h"
#include "op_error.h"

/* ---- an echo "guest" ---------------------------------------------------------------- */

struct echo {
        int fd;
        uint16_t port;
        bool udp;
        pthread_t t;
        atomic_bool stop;
};

static void *echo_conn(void *arg) {
        int c = (int) (intptr_t) arg;
        char buf[65536];
        ssize_t r;
        while ((r = recv(c, buf, sizeof(buf), 0)) > 0)
                for (ssize_t off = 0; off < r;) {
                        ssize_t w = send(c, buf + off, (size_t) (r - off), MSG_NOSIGNAL);
                        if (w <= 0)
                                goto out;
                        off += w;
                }
out:
        close(c);
        return NULL;
}

static void *echo_main(void *arg) {
        struct echo *s = arg;
        while (!atomic_load(&s->stop)) {
                struct pollfd p = { .fd = s->fd, .events = POLLIN };
                if (poll(&p, 1, 50) <= 0)
                        continue;
                if (s->udp) {
                        char buf[2048];
                        struct sockaddr_storage peer;
                        socklen_t len = sizeof(peer);
                        ssize_t r = recvfrom(s->fd, buf, sizeof(buf), 0, (struct sockaddr *) &peer, &len);
                        if (r > 0)
                                sendto(s->fd, buf, (size_t) r, 0, (struct sockaddr *) &peer, len);
                        continue;
                }
                int c = accept(s->fd, NULL, NULL);
                pthread_t t;
                if (c >= 0 && pthread_create(&t, NULL, echo_conn, (void *) (intptr_t) c) == 0)
                        pthread_detach(t);
        }
        return NULL;
}

static int bound(int type, uint16_t *ret_port) {
        int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &a, &len), 0);
        *ret_port = ntohs(a.sin_port);
        return fd;
}

static void echo_start(struct echo *s, bool udp) {
        memset(s, 0, sizeof(*s));
        s->udp = udp;
        s->fd = bound(udp ? SOCK_DGRAM : SOCK_STREAM, &s->port);
        if (!udp)
                assert_int_equal(listen(s->fd, 16), 0);
        assert_int_equal(pthread_create(&s->t, NULL, echo_main, s), 0);
}

static void echo_stop(struct echo *s) {
        atomic_store(&s->stop, true);
        pthread_join(s->t, NULL);
        close(s->fd);
}

/* A port nobody uses now (bound and released). */
static uint16_t free_port(int type) {
        uint16_t p;
        close(bound(type, &p));
        return p;
}

static struct port_spec spec(const char *ip, uint16_t host, uint16_t guest, enum port_proto proto) {
        struct port_spec s = { .proto = proto, .host_port = host, .guest_port = guest };
        snprintf(s.host_ip, sizeof(s.host_ip), "%s", ip);
        return s;
}

static int dial(const struct port_spec *s) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(s->host_port) };
        inet_pton(AF_INET, s->host_ip, &a.sin_addr);
        assert_int_equal(connect(fd, (struct sockaddr *) &a, sizeof(a)), 0);
        struct timeval tv = { .tv_sec = 20 };
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        return fd;
}

static size_t read_all(int fd, char *buf, size_t max) {
        size_t n = 0;
        ssize_t r;
        while (n < max && (r = recv(fd, buf + n, max - n, 0)) > 0)
                n += (size_t) r;
        return n;
}

/* ---- TCP -------------------------------------------------------------------------------- */

static void test_tcp_relay_half_close(void **state) {
        (void) state;
        struct echo g;
        echo_start(&g, false);
        struct fwd *F = fwd_new();
        struct port_spec s = spec("127.0.0.1", free_port(SOCK_STREAM), g.port, PORT_TCP);
        _cleanup_op_error_ struct op_error e = OP_ERROR_INIT;
        assert_int_equal(fwd_open(F, "vm1", &s, "127.0.0.1", &e), 0);
        assert_true(fwd_is_open(F, "vm1", &s));
        assert_int_equal(fwd_open(F, "vm1", &s, "127.0.0.1", &e), 0); /* again: nothing new */

        int c = dial(&s);
        assert_int_equal(send(c, "hello", 5, 0), 5);
        shutdown(c, SHUT_WR); /* the echo ends once it sees EOF: the half-close went through */
        char buf[16] = { 0 };
        assert_int_equal(read_all(c, buf, sizeof(buf)), 5);
        assert_string_equal(buf, "hello");
        close(c);

        assert_int_equal(fwd_close_owner(F, "vm1"), 1);
        assert_false(fwd_is_open(F, "vm1", &s));
        fwd_free(F);
        echo_stop(&g);
}

struct writer {
        int fd;
        size_t n;
};

static void *writer_main(void *arg) {
        struct writer *w = arg;
        char *b = malloc(w->n);
        for (size_t i = 0; i < w->n; i++)
                b[i] = (char) (i * 7 + 3);
        for (size_t off = 0; off < w->n;) {
                ssize_t r = send(w->fd, b + off, w->n - off, MSG_NOSIGNAL);
                if (r <= 0)
                        break;
                off += (size_t) r;
        }
        shutdown(w->fd, SHUT_WR);
        free(b);
        return NULL;
}

/* Both directions full at once: the relay must not stall either. */
static void test_tcp_bulk_both_ways(void **state) {
        (void) state;
        struct echo g;
        echo_start(&g, false);
        struct fwd *F = fwd_new();
        struct port_spec s = spec("127.0.0.1", free_port(SOCK_STREAM), g.port, PORT_TCP);
        assert_int_equal(fwd_open(F, "vm1", &s, "127.0.0.1", NULL), 0);
        int c = dial(&s);
        struct writer w = { .fd = c, .n = 8u << 20 };
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
        char *got = malloc(w.n + 1);
        size_t n = read_all(c, got, w.n + 1);
        pthread_join(t, NULL);
        assert_int_equal(n, w.n);
        for (size_t i = 0; i < n; i += 4093)
                assert_int_equal(got[i], (char) (i * 7 + 3));
        free(got);
        close(c);
        fwd_free(F); /* closes what is open */
        echo_stop(&g);
}

static void test_in_use_and_bad_address(void **state) {
        (void) state;
        uint16_t port;
        int taken = bound(SOCK_STREAM, &port);
        assert_int_equal(listen(taken, 1), 0);
        struct port_spec s = spec("127.0.0.1", port, 22, PORT_TCP);
        _cleanup_op_error_ struct op_error e = OP_ERROR_INIT;
        assert_int_equal(fwd_check(&s, &e), -EADDRINUSE);
        assert_int_equal(e.code, RPC_ALREADY_EXISTS);
        assert_non_null(strstr(op_error_message(&e), "in use"));
        struct fwd *F = fwd_new();
        op_error_done(&e);
        assert_int_equal(fwd_open(F, "vm1", &s, "127.0.0.1", &e), -EADDRINUSE);
        assert_false(fwd_is_open(F, "vm1", &s));
        close(taken);
        /* free again */
        assert_int_equal(fwd_check(&s, NULL), 0);

        /* another owner's forward holds the port too */
        assert_int_equal(fwd_open(F, "vm1", &s, "127.0.0.1", NULL), 0);
        op_error_done(&e);
        assert_int_equal(fwd_open(F, "vm2", &s, "127.0.0.1", &e), -EADDRINUSE);
        assert_int_equal(fwd_check(&s, NULL), -EADDRINUSE);

        /* not an address of this host (TEST-NET-1) */
        struct port_spec x = spec("192.0.2.1", free_port(SOCK_STREAM), 22, PORT_TCP);
        op_error_done(&e);
        assert_int_equal(fwd_check(&x, &e), -EADDRNOTAVAIL);
        assert_int_equal(e.code, RPC_BAD_REQUEST);
        assert_non_null(strstr(op_error_message(&e), "not an address of this host"));
        op_error_done(&e);
        assert_int_equal(fwd_open(F, "vm1", &s, "not-an-ip", &e), -EINVAL);
        fwd_free(F);
        /* fwd_free closed the listener: the port is free */
        assert_int_equal(fwd_check(&s, NULL), 0);
}

/* Closing a forward cuts its live connections, and frees the port at once. */
static void test_close_cuts_connections(void **state) {
        (void) state;
        struct echo g;
        echo_start(&g, false);
        struct fwd *F = fwd_new();
        struct port_spec s = spec("127.0.0.1", free_port(SOCK_STREAM), g.port, PORT_TCP);
        assert_int_equal(fwd_open(F, "vm1", &s, "127.0.0.1", NULL), 0);
        int c = dial(&s);
        char b[8];
        assert_int_equal(send(c, "ping", 4, 0), 4);
        assert_int_equal(recv(c, b, 4, 0), 4); /* connected through */
        assert_int_equal(fwd_active(F, "vm1", &s), 1);
        assert_true(fwd_close(F, "vm1", &s));
        assert_false(fwd_close(F, "vm1", &s));
        assert_int_equal(read_all(c, b, sizeof(b)), 0); /* EOF, not a hang */
        close(c);
        assert_int_equal(fwd_check(&s, NULL), 0);
        /* and it opens again right away (TIME_WAITs do not hold it) */
        assert_int_equal(fwd_open(F, "vm1", &s, "127.0.0.1", NULL), 0);
        fwd_free(F);
        echo_stop(&g);
}

/* Nothing listens in the guest: the client sees the connection end. */
static void test_guest_refuses(void **state) {
        (void) state;
        struct fwd *F = fwd_new();
        struct port_spec s = spec("127.0.0.1", free_port(SOCK_STREAM), free_port(SOCK_STREAM), PORT_TCP);
        assert_int_equal(fwd_open(F, "vm1", &s, "127.0.0.1", NULL), 0);
        int c = dial(&s);
        char b[8];
        assert_int_equal(read_all(c, b, sizeof(b)), 0);
        close(c);
        fwd_free(F);
}

/* A connection open while the whole relay goes away (the daemon stops). */
static void test_free_with_live_connection(void **state) {
        (void) state;
        struct echo g;
        echo_start(&g, false);
        struct fwd *F = fwd_new();
        struct port_spec s = spec("127.0.0.1", free_port(SOCK_STREAM), g.port, PORT_TCP);
        assert_int_equal(fwd_open(F, "vm1", &s, "127.0.0.1", NULL), 0);
        int c = dial(&s);
        char b[4];
        assert_int_equal(send(c, "x", 1, 0), 1);
        assert_int_equal(recv(c, b, 1, 0), 1);
        fwd_free(F);
        assert_int_equal(read_all(c, b, sizeof(b)), 0);
        close(c);
        echo_stop(&g);
}

/* A client that resets its connection mid-stream: both directions end, the
 * connection is forgotten, nothing dies of SIGPIPE. */
static void test_client_reset(void **state) {
        (void) state;
        struct echo g;
        echo_start(&g, false);
        struct fwd *F = fwd_new();
        struct port_spec s = spec("127.0.0.1", free_port(SOCK_STREAM), g.port, PORT_TCP);
        assert_int_equal(fwd_open(F, "vm1", &s, "127.0.0.1", NULL), 0);
        int c = dial(&s);
        char *big = calloc(1, 256 << 10);
        assert_int_equal(send(c, big, 256 << 10, 0), 256 << 10); /* the echo sends it all back, unread */
        free(big);
        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
        setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(c); /* RST */
        for (int i = 0; i < 200 && fwd_active(F, "vm1", &s) > 0; i++)
                usleep(10000);
        assert_int_equal(fwd_active(F, "vm1", &s), 0);
        /* and the forward serves the next one */
        c = dial(&s);
        char b[8] = { 0 };
        assert_int_equal(send(c, "ok", 2, 0), 2);
        shutdown(c, SHUT_WR);
        assert_int_equal(read_all(c, b, sizeof(b)), 2);
        close(c);
        fwd_free(F);
        echo_stop(&g);
}

/* ---- UDP -------------------------------------------------------------------------------- */

static void test_udp_relay(void **state) {
        (void) state;
        struct echo g;
        echo_start(&g, true);
        struct fwd *F = fwd_new();
        struct port_spec s = spec("127.0.0.1", free_port(SOCK_DGRAM), g.port, PORT_UDP);
        assert_int_equal(fwd_open(F, "vm1", &s, "127.0.0.1", NULL), 0);
        /* a UDP port taken is taken for a second forward too (no SO_REUSEADDR sharing) */
        assert_int_equal(fwd_open(F, "vm2", &s, "127.0.0.1", NULL), -EADDRINUSE);

        int clients[2];
        for (int k = 0; k < 2; k++) {
                clients[k] = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
                struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(s.host_port),
                                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
                assert_int_equal(connect(clients[k], (struct sockaddr *) &a, sizeof(a)), 0);
                struct timeval tv = { .tv_sec = 10 };
                setsockopt(clients[k], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        }
        for (int k = 0; k < 2; k++) {
                char msg[16], b[16] = { 0 };
                snprintf(msg, sizeof(msg), "dgram-%d", k);
                assert_int_equal(send(clients[k], msg, strlen(msg), 0), (ssize_t) strlen(msg));
                assert_int_equal(recv(clients[k], b, sizeof(b), 0), (ssize_t) strlen(msg));
                assert_string_equal(b, msg); /* each client gets its own answer */
        }
        assert_int_equal(fwd_active(F, "vm1", &s), 2);
        close(clients[0]);
        close(clients[1]);
        fwd_free(F);
        echo_stop(&g);
}

int main(void) {
        signal(SIGPIPE, SIG_IGN); /* as bangerd: the relay splices into sockets */
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_tcp_relay_half_close),
                cmocka_unit_test(test_tcp_bulk_both_ways),
                cmocka_unit_test(test_in_use_and_bad_address),
                cmocka_unit_test(test_close_cuts_connections),
                cmocka_unit_test(test_guest_refuses),
                cmocka_unit_test(test_free_with_live_connection),
                cmocka_unit_test(test_client_reset),
                cmocka_unit_test(test_udp_relay),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
