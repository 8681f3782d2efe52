/* SPDX-License-Identifier: MIT */
#include "agent_client.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

#include "clock.h"
#include "jsonx.h"
#include "macro.h"
#include "strbuf.h"

#define AGENT_MAX_ANSWER (1u << 20)

static bool wait_gone(const struct agent_wait *w) {
        return w && w->abort_fd >= 0 && poll(&(struct pollfd) { .fd = w->abort_fd, .events = POLLIN }, 1, 0) > 0;
}

static bool wait_cancelled(const struct agent_wait *w) {
        return w && w->cancelled && w->cancelled(w->ud);
}

static bool hybrid_vsock(const char *socket_path) {
        const char *base = strrchr(socket_path, '/') ? strrchr(socket_path, '/') + 1 : socket_path;
        return strcmp(base, AGENT_VSOCK_NAME) == 0;
}

/* Firecracker's side of CONNECT: "OK <host port>\n", read byte by byte (what
 * follows is the agent's). It closes the connection when nothing in the
 * guest listens on the port: that is a refusal, retried like one. */
static int vsock_handshake(int fd) {
        char req[32], line[64];
        size_t n = (size_t) snprintf(req, sizeof(req), "CONNECT %d\n", AGENT_VSOCK_PORT), got = 0;
        if (send(fd, req, n, MSG_NOSIGNAL) != (ssize_t) n)
                return -ECONNREFUSED;
        int64_t deadline = mono_ms_now() + 2000;
        while (got < sizeof(line) - 1) {
                int64_t left = deadline - mono_ms_now();
                if (left <= 0 || poll(&(struct pollfd) { .fd = fd, .events = POLLIN }, 1, (int) left) <= 0)
                        return -ETIMEDOUT;
                ssize_t k = read(fd, line + got, 1);
                if (k <= 0)
                        return k == 0 || errno == ECONNRESET ? -ECONNREFUSED : -errno;
                if (line[got++] == '\n')
                        break;
        }
        line[got] = '\0';
        unsigned port;
        return sscanf(line, "OK %u\n", &port) == 1 ? 0 : -EPROTO;
}

bool agent_addr_vsock(const char *addr, unsigned *ret_cid) {
        static const char pre[] = AGENT_VSOCK_ADDR_PREFIX;
        if (!addr || strncmp(addr, pre, strlen(pre)) != 0 || !isdigit((unsigned char) addr[strlen(pre)]))
                return false;
        char *end;
        errno = 0;
        unsigned long cid = strtoul(addr + strlen(pre), &end, 10);
        if (errno || (*end && *end != '/') || cid < AGENT_VSOCK_CID_MIN || cid > AGENT_VSOCK_CID_MAX)
                return false;
        *ret_cid = (unsigned) cid;
        return true;
}

char *agent_addr_vsock_new(unsigned cid, const char *tag) {
        return xasprintf(AGENT_VSOCK_ADDR_PREFIX "%u/%s", cid, tag);
}

/* AF_VSOCK to (cid, port), non-blocking; the connect waits at most 1 s (a
 * guest whose driver is not up yet leaves it pending). */
static int vsock_connect_real(unsigned cid, unsigned port, int *ret_fd) {
        _cleanup_close_ int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                if (errno != EINPROGRESS)
                        return -errno;
                int err = 0;
                socklen_t len = sizeof(err);
                int n = poll(&(struct pollfd) { .fd = fd, .events = POLLOUT }, 1, 1000);
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -ETIMEDOUT;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                        return -errno;
                if (err)
                        return -err;
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static _Atomic(agent_vsock_connect_fn) vsock_connect_fn = vsock_connect_real;

void agent_set_vsock_connect(agent_vsock_connect_fn fn) {
        vsock_connect_fn = fn ? fn : vsock_connect_real;
}

int agent_vsock_errno(int r) {
        switch (-r) {
        case ECONNREFUSED: /* nothing listens on the port (yet) */
        case ECONNRESET:   /* the guest's transport reset (a restore) */
        case ETIMEDOUT:    /* the guest's driver is not up yet */
                return -ECONNREFUSED;
        case ENODEV:       /* no VM with that CID (yet, or any more) */
        case EHOSTUNREACH:
        case ENETUNREACH:
                return -ENOENT;
        default:
                return r;
        }
}

static int unix_connect(const char *socket_path, int *ret_fd) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(socket_path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return -errno;
        int rc = hybrid_vsock(socket_path) ? vsock_handshake(fd) : 0;
        if (rc < 0)
                return rc;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int agent_socket_connect(const char *addr, int *ret_fd) {
        unsigned cid;
        if (!agent_addr_vsock(addr, &cid))
                return strncmp(addr, AGENT_VSOCK_ADDR_PREFIX, strlen(AGENT_VSOCK_ADDR_PREFIX)) == 0
                               ? -EINVAL
                               : unix_connect(addr, ret_fd);
        int fd = -1, rc = agent_vsock_errno(vsock_connect_fn(cid, AGENT_VSOCK_PORT, &fd));
        if (rc < 0)
                return rc;
        *ret_fd = fd;
        return 0;
}

/* The VMM binds the agent's socket a moment after its control socket
 * answers: a missing or refusing socket is retried until the deadline. */
static int agent_connect(const char *socket_path, int64_t deadline, const struct agent_wait *w, int *ret_fd,
                         struct op_error *err) {
        for (;;) {
                int en = -agent_socket_connect(socket_path, ret_fd);
                if (en == 0)
                        return 0;
                if ((en != ENOENT && en != ECONNREFUSED) || wait_gone(w) || mono_ms_now() + 50 > deadline ||
                    wait_cancelled(w))
                        return op_fail(err, -en, "cannot reach the agent at %s: %s", socket_path, strerror(en));
                poll(NULL, 0, 50);
        }
}

/* Consumes complete lines of `in`: 1 with *ret_result when our answer came,
 * 0 when more is needed, -EPROTO for an error answer. */
static int take_answer(struct strbuf *in, int id, const char *method, json_t **ret_result, struct op_error *err) {
        char *nl;
        while ((nl = memchr(in->buf, '\n', in->len))) {
                _cleanup_json_ json_t *j = json_loadb(in->buf, (size_t) (nl - in->buf), 0, NULL);
                size_t used = (size_t) (nl - in->buf) + 1;
                memmove(in->buf, in->buf + used, in->len - used);
                in->len -= used;
                if (!j || json_integer_value(json_object_get(j, "id")) != id)
                        continue; /* not our answer (a stale one from a previous client) */
                json_t *res = json_object_get(j, "result");
                if (json_is_object(res)) {
                        *ret_result = json_incref(res);
                        return 1;
                }
                json_t *e = json_object_get(j, "error");
                return op_fail(err, -EPROTO, "agent %s: %s", method,
                               e ? strempty(json_string_value(json_object_get(e, "message"))) : "malformed answer");
        }
        return in->len > AGENT_MAX_ANSWER ? op_fail(err, -EPROTO, "agent %s: answer too large", method) : 0;
}

/* Writes `out` and reads until the answer to id, the deadline, or a cancel. */
static int exchange(int fd, const char *out, int id, const char *method, int64_t deadline, const struct agent_wait *w,
                    json_t **ret_result, struct op_error *err) {
        _cleanup_strbuf_ struct strbuf in = STRBUF_INIT;
        size_t sent = 0, len = strlen(out);
        for (;;) {
                int64_t left = deadline - mono_ms_now();
                if (left <= 0)
                        return -ETIMEDOUT;
                if (wait_cancelled(w))
                        return -ECANCELED;
                struct pollfd pf[2] = { { .fd = fd, .events = (short) (POLLIN | (sent < len ? POLLOUT : 0)) },
                                        { .fd = w ? w->abort_fd : -1, .events = POLLIN } };
                int n = poll(pf, 2, (int) (left < 100 ? left : 100));
                if (n < 0 && errno != EINTR)
                        return -errno;
                if (n <= 0)
                        continue;
                if (pf[1].revents)
                        return -ECANCELED;
                if ((pf[0].revents & POLLOUT) && sent < len) {
                        ssize_t k = send(fd, out + sent, len - sent, MSG_NOSIGNAL);
                        if (k < 0 && errno != EAGAIN)
                                return -errno;
                        sent += k > 0 ? (size_t) k : 0;
                }
                if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
                        char buf[4096];
                        ssize_t k = recv(fd, buf, sizeof(buf), 0);
                        if (k == 0 || (k < 0 && errno != EAGAIN))
                                return k == 0 ? -ECONNRESET : -errno;
                        if (k > 0)
                                strbuf_add(&in, buf, (size_t) k);
                        int r = take_answer(&in, id, method, ret_result, err);
                        if (r != 0)
                                return r < 0 ? r : 0;
                }
        }
}

int agent_call(const char *socket_path, const char *method, int timeout_ms, const struct agent_wait *w,
               json_t **ret_result, struct op_error *err) {
        static _Atomic int next_id = 1;
        int id = next_id++;
        _cleanup_close_ int fd = -1;
        int64_t deadline = mono_ms_now() + timeout_ms;

        int r = agent_connect(socket_path, deadline, w, &fd, err);
        if (r < 0)
                return r;
        _cleanup_json_ json_t *req = json_pack("{s:i, s:i, s:s}", "v", 1, "id", id, "method", method);
        _cleanup_free_ char *line = json_dump_compact(req), *out = xasprintf("%s\n", line);
        r = exchange(fd, out, id, method, mono_ms_now() + timeout_ms, w, ret_result, err);
        if (r == -EPROTO || r >= 0)
                return r;
        if (r == -ETIMEDOUT)
                return op_fail(err, r, "the agent did not answer '%s' within %d ms", method, timeout_ms);
        if (r == -ECANCELED)
                return op_fail(err, r, "agent '%s' call abandoned", method);
        return op_fail(err, r, "agent '%s': %s", method, strerror(-r));
}
