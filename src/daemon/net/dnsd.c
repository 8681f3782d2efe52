/* SPDX-License-Identifier: MIT */
#include "dnsd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ipnet.h"
#include "log.h"
#include "macro.h"
#include "strbuf.h"

#define TCP_TIMEOUT_MS 2000

/* Reads exactly n bytes within the deadline (non-blocking fd). */
static bool read_full(int fd, uint8_t *b, size_t n) {
        size_t got = 0;
        while (got < n) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                if (poll(&p, 1, TCP_TIMEOUT_MS) <= 0)
                        return false;
                ssize_t k = recv(fd, b + got, n - got, 0);
                if (k <= 0)
                        return false;
                got += (size_t) k;
        }
        return true;
}

static void serve_tcp(struct dnsd *s) {
        _cleanup_close_ int c = accept4(s->tcp_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        uint8_t len[2], q[65535], r[514];
        if (c < 0 || !read_full(c, len, 2))
                return;
        size_t n = (size_t) ((len[0] << 8) | len[1]);
        if (n == 0 || !read_full(c, q, n))
                return;
        size_t m = dns_answer(q, n, s->lookup, s->ud, r + 2, sizeof(r) - 2);
        if (m == 0)
                return;
        r[0] = (uint8_t) (m >> 8);
        r[1] = (uint8_t) m;
        struct pollfd p = { .fd = c, .events = POLLOUT };
        if (poll(&p, 1, TCP_TIMEOUT_MS) > 0 && send(c, r, m + 2, MSG_NOSIGNAL) < 0)
                log_debug("dns: tcp reply: %s", strerror(errno));
}

static void *dns_main(void *arg) {
        struct dnsd *s = arg;
        log_set_op_id("dns");
        for (;;) {
                struct pollfd p[3] = { { .fd = s->udp_fd, .events = POLLIN }, { .fd = s->tcp_fd, .events = POLLIN },
                                       { .fd = s->wake_fd, .events = POLLIN } };
                if (poll(p, 3, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (p[2].revents)
                        break;
                if (p[0].revents & POLLIN) {
                        uint8_t q[4096], r[512];
                        struct sockaddr_storage from;
                        socklen_t fl = sizeof(from);
                        ssize_t n = recvfrom(s->udp_fd, q, sizeof(q), 0, (struct sockaddr *) &from, &fl);
                        if (n > 0) {
                                size_t m = dns_answer(q, (size_t) n, s->lookup, s->ud, r, sizeof(r));
                                if (m > 0)
                                        sendto(s->udp_fd, r, m, MSG_NOSIGNAL, (struct sockaddr *) &from, fl);
                        }
                }
                if (p[1].revents & POLLIN)
                        serve_tcp(s);
        }
        return NULL;
}

int dnsd_start(struct dnsd *s, const char *addr, dns_lookup_fn lookup, void *ud, struct op_error *e) {
        struct sockaddr_in sa = { .sin_family = AF_INET };
        uint32_t ip;
        uint16_t port;
        int one = 1;

        *s = (struct dnsd) { .udp_fd = -1, .tcp_fd = -1, .wake_fd = -1, .lookup = lookup, .ud = ud };
        if (ipv4_port_parse(addr, &ip, &port) < 0)
                return op_bad_request(e, "dns_listen %s is not IPv4:port", addr);
        s->port = port;
        sa.sin_addr.s_addr = htonl(ip);
        sa.sin_port = htons(port);
        s->udp_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        s->tcp_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (s->udp_fd >= 0 && s->tcp_fd >= 0)
                setsockopt(s->tcp_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (s->udp_fd < 0 || s->tcp_fd < 0 || s->wake_fd < 0 ||
            bind(s->udp_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ||
            bind(s->tcp_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(s->tcp_fd, 16) < 0) {
                int r = op_fail(e, -errno, "cannot serve DNS on %s: %s", addr, strerror(errno));
                dnsd_stop(s);
                return r;
        }
        if (pthread_create(&s->thread, NULL, dns_main, s) != 0) {
                dnsd_stop(s);
                return op_fail(e, -EAGAIN, "cannot start the DNS thread");
        }
        s->started = true;
        return 0;
}

void dnsd_stop(struct dnsd *s) {
        if (s->started) {
                uint64_t one = 1;
                if (write(s->wake_fd, &one, sizeof(one)) < 0)
                        log_warn("dns: waking the thread: %s", strerror(errno));
                pthread_join(s->thread, NULL);
                s->started = false;
        }
        if (s->udp_fd >= 0)
                close(s->udp_fd);
        if (s->tcp_fd >= 0)
                close(s->tcp_fd);
        if (s->wake_fd >= 0)
                close(s->wake_fd);
        s->udp_fd = s->tcp_fd = s->wake_fd = -1;
}
