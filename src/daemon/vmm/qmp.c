/* SPDX-License-Identifier: MIT */
/*
 * QMP, QEMU's control socket: a session (greeting, capabilities, commands
 * with arguments, a file descriptor passed with `getfd`), one-shot commands,
 * and migration of a paused guest's state to and from a file (what
 * snapshots are made of). Events are skipped; no half-close (QEMU takes it
 * for a disconnect).
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "jsonx.h"
#include "macro.h"
#include "rpc.h"
#include "vmm.h"

void qmp_close(struct qmp *q) {
        if (q->fd >= 0) {
                rpc_line_reader_done(&q->lr);
                close(q->fd);
        }
        q->fd = -1;
}

/* Reads until the answer to what was sent (or the greeting): its "return"
 * in *ret (may be NULL), a QMP error as -EIO with QEMU's description. */
static int qmp_answer(struct qmp *q, const char *what, int timeout_ms, bool greeting, json_t **ret, struct op_error *e) {
        for (;;) {
                char *l;
                size_t n;
                int r = rpc_line_reader_next(&q->lr, timeout_ms, &l, &n);
                if (r <= 0) {
                        r = r == 0 ? -ECONNRESET : r;
                        return op_fail(e, r, "QMP %s: %s", what, r == -ETIMEDOUT ? "no answer" : strerror(-r));
                }
                _cleanup_json_ json_t *j = json_loadb(l, n, 0, NULL);
                if (!j || json_object_get(j, "event"))
                        continue;
                if (greeting && json_object_get(j, "QMP"))
                        return 0;
                json_t *err = json_object_get(j, "error");
                if (err)
                        return op_fail(e, -EIO, "QMP %s: %s", what,
                                       strempty(json_string_value(json_object_get(err, "desc"))));
                json_t *res = json_object_get(j, "return");
                if (res) {
                        if (ret)
                                *ret = json_incref(res);
                        return 0;
                }
        }
}

int qmp_exec(struct qmp *q, const char *command, json_t *args, int pass_fd, int timeout_ms, json_t **ret,
             struct op_error *e) {
        _cleanup_json_ json_t *req = json_pack("{s:s}", "execute", command);
        if (args)
                json_object_set(req, "arguments", args);
        _cleanup_free_ char *line = json_dump_compact(req);
        _cleanup_free_ char *framed = xasprintf("%s\n", line);
        struct iovec iov = { .iov_base = framed, .iov_len = strlen(framed) };
        union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } u;
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        if (pass_fd >= 0) { /* SCM_RIGHTS with the command's own bytes (getfd) */
                memset(&u, 0, sizeof(u));
                mh.msg_control = u.buf;
                mh.msg_controllen = sizeof(u.buf);
                struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
        }
        ssize_t w;
        do
                w = sendmsg(q->fd, &mh, MSG_NOSIGNAL);
        while (w < 0 && errno == EINTR);
        if (w < 0)
                return op_fail(e, -errno, "QMP %s: %s", command, strerror(errno));
        if ((size_t) w < iov.iov_len && write_all(q->fd, framed + w, iov.iov_len - (size_t) w) < 0)
                return op_fail(e, -EIO, "QMP %s: a short write", command);
        return qmp_answer(q, command, timeout_ms, false, ret, e);
}

int qmp_open(struct qmp *q, const char *socket_path, int timeout_ms, struct op_error *e) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        q->fd = -1;
        if (strlen(socket_path) >= sizeof(sa.sun_path))
                return op_fail(e, -ENAMETOOLONG, "QMP socket path too long: %s", socket_path);
        memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int r = -errno;
                if (fd >= 0)
                        close(fd);
                return op_fail(e, r, "cannot reach QMP at %s: %s", socket_path, strerror(-r));
        }
        q->fd = fd;
        rpc_line_reader_init(&q->lr, fd, 1u << 20);
        int r = qmp_answer(q, "greeting", timeout_ms, true, NULL, e);
        if (r == 0)
                r = qmp_exec(q, "qmp_capabilities", NULL, -1, timeout_ms, NULL, e);
        if (r < 0)
                qmp_close(q);
        return r;
}

int qmp_command(const char *socket_path, const char *command, int timeout_ms, char **ret_json, struct op_error *e) {
        struct qmp q;
        _cleanup_json_ json_t *res = NULL;
        int r = qmp_open(&q, socket_path, timeout_ms, e);
        if (r < 0)
                return r;
        r = qmp_exec(&q, command, NULL, -1, timeout_ms, &res, e);
        qmp_close(&q);
        /* `quit` closes the socket before answering sometimes: that is success */
        if (r == -ECONNRESET && strcmp(command, "quit") == 0) {
                op_error_done(e);
                return 0;
        }
        if (r == 0 && ret_json)
                *ret_json = json_dump_compact(res);
        return r;
}

static void sleep_ms(int ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

/* Polls query-migrate (either side) until the migration ends. */
static int migration_wait(struct qmp *q, int timeout_ms, struct op_error *e) {
        for (int waited = 0;; waited += 10) {
                _cleanup_json_ json_t *st = NULL;
                int r = qmp_exec(q, "query-migrate", NULL, -1, 5000, &st, e);
                if (r < 0)
                        return r;
                const char *s = json_string_value(json_object_get(st, "status"));
                if (s && strcmp(s, "completed") == 0)
                        return 0;
                if (s && (strcmp(s, "failed") == 0 || strcmp(s, "cancelled") == 0))
                        return op_fail(e, -EIO, "the migration %s: %s", s,
                                       strempty(json_string_value(json_object_get(st, "error-desc"))));
                if (waited >= timeout_ms) {
                        if (qmp_exec(q, "migrate_cancel", NULL, -1, 5000, NULL, NULL) < 0) {
                                /* the error below says enough */
                        }
                        return op_fail(e, -ETIMEDOUT, "the migration did not end within %d s (status %s)",
                                       timeout_ms / 1000, strempty(s));
                }
                sleep_ms(10);
        }
}

/* The fd as QEMU's "snap", then `cmd` {uri: "fd:snap"}, then the wait. */
static int migrate_fd(struct qmp *q, const char *cmd, int fd, int timeout_ms, struct op_error *e) {
        _cleanup_json_ json_t *name = json_pack("{s:s}", "fdname", "snap");
        _cleanup_json_ json_t *uri = json_pack("{s:s}", "uri", "fd:snap");
        int r = qmp_exec(q, "getfd", name, fd, 5000, NULL, e);
        if (r == 0)
                r = qmp_exec(q, cmd, uri, -1, 5000, NULL, e);
        return r < 0 ? r : migration_wait(q, timeout_ms, e);
}

static int ignore_shared_on(struct qmp *q, struct op_error *e) {
        _cleanup_json_ json_t *caps = json_pack("{s:[{s:s, s:b}]}", "capabilities", "capability", "x-ignore-shared", "state", 1);
        return qmp_exec(q, "migrate-set-capabilities", caps, -1, 5000, NULL, e);
}

int qmp_save_state(const char *socket_path, int fd, bool ignore_shared, int timeout_ms, struct op_error *e) {
        struct qmp q;
        /* the default cap (128 MiB/s) is for live migration over a network */
        _cleanup_json_ json_t *bw = json_pack("{s:I}", "max-bandwidth", (json_int_t) 1 << 40);
        int r = qmp_open(&q, socket_path, 5000, e);
        if (r < 0)
                return r;
        r = qmp_exec(&q, "stop", NULL, -1, 5000, NULL, e);
        if (r == 0)
                r = qmp_exec(&q, "migrate-set-parameters", bw, -1, 5000, NULL, e);
        if (r == 0 && ignore_shared)
                r = ignore_shared_on(&q, e);
        if (r == 0)
                r = migrate_fd(&q, "migrate", fd, timeout_ms, e);
        qmp_close(&q);
        return r;
}

int qmp_load_state(const char *socket_path, int fd, bool ignore_shared, int timeout_ms, struct op_error *e) {
        struct qmp q;
        int r = qmp_open(&q, socket_path, 5000, e);
        if (r < 0)
                return r;
        if (ignore_shared) /* the stream's layout says so: both ends must know */
                r = ignore_shared_on(&q, e);
        if (r == 0)
                r = migrate_fd(&q, "migrate-incoming", fd, timeout_ms, e);
        qmp_close(&q);
        return r;
}
