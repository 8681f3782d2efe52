/* SPDX-License-Identifier: MIT */
#include "agent_client.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "jsonx.h"
#include "macro.h"
#include "rpc.h"
#include "strbuf.h"

int agent_call(const char *socket_path, const char *method, int timeout_ms, const struct agent_wait *w,
               json_t **ret_result, char **ret_err) {
        static _Atomic int next_id = 1;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = -1;
        int id = next_id++;

        if (strlen(socket_path) >= sizeof(sa.sun_path)) {
                *ret_err = xasprintf("agent socket path too long: %s", socket_path);
                return -ENAMETOOLONG;
        }
        memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
        int64_t connect_deadline = mono_ms_now() + timeout_ms;
        /* QEMU binds the agent's socket a moment after QMP answers: a missing
         * or refusing socket is retried within the timeout */
        for (;;) {
                fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
                if (fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0)
                        break;
                int e = errno;
                if (fd >= 0)
                        close(fd);
                fd = -1;
                bool gone = w && w->abort_fd >= 0 && poll(&(struct pollfd) { .fd = w->abort_fd, .events = POLLIN }, 1, 0) > 0;
                if ((e != ENOENT && e != ECONNREFUSED) || gone || mono_ms_now() + 50 > connect_deadline ||
                    (w && w->cancelled && w->cancelled(w->ud))) {
                        *ret_err = xasprintf("cannot reach the agent at %s: %s", socket_path, strerror(e));
                        return -e;
                }
                poll(NULL, 0, 50);
        }
        _cleanup_json_ json_t *req = json_pack("{s:i, s:i, s:s}", "v", 1, "id", id, "method", method);
        _cleanup_free_ char *line = json_dump_compact(req);
        struct strbuf in = STRBUF_INIT;
        size_t sent = 0, len = strlen(line);
        int64_t deadline = mono_ms_now() + timeout_ms;
        int r = -ETIMEDOUT;

        /* the request plus its newline */
        _cleanup_free_ char *out = xasprintf("%s\n", line);
        len++;
        for (;;) {
                int64_t left = deadline - mono_ms_now();
                if (left <= 0)
                        break;
                if (w && w->cancelled && w->cancelled(w->ud)) {
                        r = -ECANCELED;
                        break;
                }
                struct pollfd pf[2] = { { .fd = fd, .events = (short) (POLLIN | (sent < len ? POLLOUT : 0)) },
                                        { .fd = w ? w->abort_fd : -1, .events = POLLIN } };
                int n = poll(pf, 2, (int) (left < 100 ? left : 100));
                if (n < 0 && errno != EINTR) {
                        r = -errno;
                        break;
                }
                if (n <= 0)
                        continue;
                if (pf[1].revents) {
                        r = -ECANCELED;
                        break;
                }
                if ((pf[0].revents & POLLOUT) && sent < len) {
                        ssize_t k = send(fd, out + sent, len - sent, MSG_NOSIGNAL);
                        if (k < 0 && errno != EAGAIN) {
                                r = -errno;
                                break;
                        }
                        if (k > 0)
                                sent += (size_t) k;
                }
                if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
                        char buf[4096];
                        ssize_t k = recv(fd, buf, sizeof(buf), 0);
                        if (k == 0 || (k < 0 && errno != EAGAIN)) {
                                r = k == 0 ? -ECONNRESET : -errno;
                                break;
                        }
                        if (k > 0)
                                strbuf_add(&in, buf, (size_t) k);
                        char *nl;
                        while ((nl = memchr(in.buf, '\n', in.len))) {
                                _cleanup_json_ json_t *j = json_loadb(in.buf, (size_t) (nl - in.buf), 0, NULL);
                                size_t used = (size_t) (nl - in.buf) + 1;
                                memmove(in.buf, in.buf + used, in.len - used);
                                in.len -= used;
                                if (!j || json_integer_value(json_object_get(j, "id")) != id)
                                        continue; /* not our answer (a stale one from a previous client) */
                                json_t *res = json_object_get(j, "result");
                                if (json_is_object(res)) {
                                        *ret_result = json_incref(res);
                                        strbuf_release(&in);
                                        return 0;
                                }
                                json_t *e = json_object_get(j, "error");
                                *ret_err = xasprintf("agent %s: %s", method,
                                                     e ? strempty(json_string_value(json_object_get(e, "message")))
                                                       : "malformed answer");
                                strbuf_release(&in);
                                return -EPROTO;
                        }
                        if (in.len > 1u << 20) {
                                r = -EPROTO;
                                break;
                        }
                }
        }
        strbuf_release(&in);
        *ret_err = r == -ETIMEDOUT ? xasprintf("the agent did not answer '%s' within %d ms", method, timeout_ms)
                 : r == -ECANCELED ? xasprintf("agent '%s' call abandoned", method)
                                   : xasprintf("agent '%s': %s", method, strerror(-r));
        return r;
}
