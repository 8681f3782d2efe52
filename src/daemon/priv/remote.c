/* SPDX-License-Identifier: MIT */
/*
 * The privileged operations as a client of the root helper (system mode):
 * one connection per operation, one JSON request on it (docs/PROTOCOL.md,
 * "The root helper"), the caller's op_id along so both logs tell one story.
 * A long build is cancelled by half-closing the connection; the helper then
 * stops, cleans up and still answers.
 */
#include "priv.h"
#include "hostinfo.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "jsonx.h"
#include "log.h"
#include "macro.h"
#include "rpc.h"
#include "strbuf.h"

#define CALL_TIMEOUT_MS 60000
#define BUILD_TIMEOUT_MS (40 * 60 * 1000)

struct priv_remote {
        char *socket; /* owned */
        struct priv_ops ops;
};

static int helper_connect(const char *path, int *ret_fd, struct op_error *e) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(path) >= sizeof(sa.sun_path))
                return op_fail(e, -ENAMETOOLONG, "root helper socket path too long: %s", path);
        memcpy(sa.sun_path, path, strlen(path) + 1);
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return op_fail(e, -errno, "socket: %s", strerror(errno));
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return op_fail(e, -errno, "the root helper does not answer at %s: %s (sudo banger system restart)",
                               path, strerror(errno));
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* A connection with the request on it (the caller's op id along). */
static int send_request(struct priv_remote *pr, const char *method, const json_t *params, int *ret_fd,
                        struct op_error *e) {
        _cleanup_close_ int fd = -1;
        const char *op = log_get_op_id();
        int r = helper_connect(pr->socket, &fd, e);
        if (r < 0)
                return r;
        _cleanup_free_ char *req = rpc_request_encode_op(1, method, params, rpc_op_id_valid(op) ? op : NULL);
        if ((r = rpc_write_line(fd, req)) < 0)
                return op_fail(e, r, "root helper (%s): %s", method, strerror(-r));
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Waits for the one answer line; a cancel half-closes and keeps waiting
 * (the helper answers once it has cleaned up). */
static int read_answer(int fd, int timeout_ms, bool (*cancelled)(void *), void *cud, char **ret, size_t *ret_len) {
        struct rpc_line_reader lr;
        int64_t deadline = mono_ms_now() + timeout_ms;
        bool half_closed = false;
        char *line;
        int r = -ETIMEDOUT;
        rpc_line_reader_init(&lr, fd, RPC_MAX_MESSAGE);
        while (mono_ms_now() < deadline) {
                if (!half_closed && cancelled && cancelled(cud)) {
                        shutdown(fd, SHUT_WR);
                        half_closed = true;
                        deadline = mono_ms_now() + CALL_TIMEOUT_MS;
                }
                r = rpc_line_reader_next(&lr, 250, &line, ret_len);
                if (r == -ETIMEDOUT)
                        continue;
                if (r > 0)
                        *ret = xstrndup(line, *ret_len);
                break;
        }
        rpc_line_reader_done(&lr);
        return r > 0 ? 0 : r == 0 ? -ECONNRESET : r;
}

/* The helper's answer line: 0 with *ret (optional) the result, or its error. */
static int decode_answer(const char *method, const char *answer, size_t len, json_t **ret, struct op_error *e) {
        _cleanup_free_ char *msg = NULL;
        struct rpc_response resp = { 0 };
        int r = rpc_response_decode(answer, len, &resp, &msg);
        if (r < 0)
                return op_fail(e, r, "root helper (%s): %s", method, strempty(msg));
        if (resp.is_error)
                r = op_fail_as(e, resp.code, rpc_code_to_errno(resp.code), "%s", strempty(resp.message));
        else if (ret)
                *ret = json_incref(resp.result);
        rpc_response_done(&resp);
        return r;
}

/* One request, one answer; *ret (optional) gets the result object. */
static int call(struct priv_remote *pr, const char *method, json_t *params, int timeout_ms, bool (*cancelled)(void *),
                void *cud, json_t **ret, struct op_error *e) {
        _cleanup_json_ json_t *p = params;
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *answer = NULL;
        size_t len;
        int r = send_request(pr, method, p, &fd, e);
        if (r < 0)
                return r;
        if ((r = read_answer(fd, timeout_ms, cancelled, cud, &answer, &len)) < 0)
                return op_fail(e, r, "root helper (%s): %s", method, strerror(-r));
        return decode_answer(method, answer, len, ret, e);
}

/* The answer line and the one fd that came with it (SCM_RIGHTS). */
static int read_answer_fd(int fd, char **ret, size_t *ret_len, int *ret_fd) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        int64_t deadline = mono_ms_now() + CALL_TIMEOUT_MS;
        *ret_fd = -1;
        while (!memchr(sb.buf ? sb.buf : "", '\n', sb.len)) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                int64_t left = deadline - mono_ms_now();
                if (left <= 0 || poll(&p, 1, (int) left) <= 0)
                        return -ETIMEDOUT;
                char buf[4096];
                union {
                        struct cmsghdr h;
                        char space[CMSG_SPACE(sizeof(int))];
                } ctl;
                struct iovec iov = { buf, sizeof(buf) };
                struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.space,
                                    .msg_controllen = sizeof(ctl.space) };
                ssize_t n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
                if (n <= 0)
                        return n == 0 ? -ECONNRESET : -errno;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
                        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && *ret_fd < 0)
                                memcpy(ret_fd, CMSG_DATA(c), sizeof(int));
                if (sb.len + (size_t) n > 64 * 1024)
                        return -EMSGSIZE;
                strbuf_add(&sb, buf, (size_t) n);
        }
        *ret_len = (size_t) ((char *) memchr(sb.buf, '\n', sb.len) - sb.buf);
        *ret = xstrndup(sb.buf, *ret_len);
        return 0;
}

static int r_tap_open(void *ud, const char *tap, int *ret_fd, struct op_error *e) {
        _cleanup_json_ json_t *p = json_pack("{s:s}", "tap", tap);
        _cleanup_close_ int fd = -1, got = -1;
        _cleanup_free_ char *answer = NULL;
        size_t len;
        int r = send_request(ud, "priv.tap_open", p, &fd, e);
        if (r < 0)
                return r;
        if ((r = read_answer_fd(fd, &answer, &len, &got)) < 0)
                return op_fail(e, r, "root helper (priv.tap_open): %s", strerror(-r));
        if ((r = decode_answer("priv.tap_open", answer, len, NULL, e)) < 0)
                return r;
        if (got < 0)
                return op_fail(e, -EPROTO, "root helper (priv.tap_open): no descriptor came with the answer");
        *ret_fd = TAKE_FD(got);
        return 0;
}

static int simple(void *ud, const char *method, json_t *params, struct op_error *e) {
        return call(ud, method, params, CALL_TIMEOUT_MS, NULL, NULL, NULL, e);
}

static int r_bridge_ensure(void *ud, const char *bridge, struct op_error *e) {
        return simple(ud, "priv.bridge_ensure", json_pack("{s:s}", "bridge", bridge), e);
}

static int r_tap_create(void *ud, const char *tap, const char *bridge, struct op_error *e) {
        return simple(ud, "priv.tap_create", json_pack("{s:s, s:s}", "tap", tap, "bridge", bridge), e);
}

static int r_tap_delete(void *ud, const char *tap, struct op_error *e) {
        return simple(ud, "priv.tap_delete", json_pack("{s:s}", "tap", tap), e);
}

static bool r_link_exists(void *ud, const char *name) {
        _cleanup_json_ json_t *res = NULL;
        if (call(ud, "priv.link_exists", json_pack("{s:s}", "name", name), CALL_TIMEOUT_MS, NULL, NULL, &res, NULL) < 0)
                return false;
        return json_is_true(json_object_get(res, "exists"));
}

static int r_nat_enable(void *ud, const char *vm_id, const char *ip, struct op_error *e) {
        return simple(ud, "priv.nat_enable", json_pack("{s:s, s:s}", "vm_id", vm_id, "ip", ip), e);
}

static int r_nat_disable(void *ud, const char *vm_id, struct op_error *e) {
        return simple(ud, "priv.nat_disable", json_pack("{s:s}", "vm_id", vm_id), e);
}

static int r_guard_enable(void *ud, const char *vm_id, const char *tap, const char *ip, const char *mac, bool isolate,
                          struct op_error *e) {
        return simple(ud, "priv.guard_enable",
                      json_pack("{s:s, s:s, s:s, s:s, s:b}", "vm_id", vm_id, "tap", tap, "ip", ip, "mac", mac, "isolate",
                                isolate),
                      e);
}

static int r_guard_disable(void *ud, const char *vm_id, struct op_error *e) {
        return simple(ud, "priv.guard_disable", json_pack("{s:s}", "vm_id", vm_id), e);
}

static int r_ip_forward(void *ud, struct op_error *e) {
        return simple(ud, "priv.ip_forward", NULL, e);
}

static int r_dns_route(void *ud, const char *listen_addr, struct op_error *e) {
        _cleanup_json_ json_t *res = NULL;
        int r = call(ud, "priv.dns_route", json_pack("{s:s}", "listen", listen_addr), CALL_TIMEOUT_MS, NULL, NULL, &res,
                     e);
        return r < 0 ? r : json_is_true(json_object_get(res, "routed")) ? 0 : 1;
}

static void r_dns_unroute(void *ud) {
        (void) simple(ud, "priv.dns_unroute", NULL, NULL);
}

static int r_build_debian(void *ud, const struct priv_debian_build *q, bool (*cancelled)(void *), void *cud,
                          uint64_t *ret_rootfs_size, struct op_error *e) {
        json_t *pk = json_array();
        for (const char *const *p = q->packages; p && *p; p++)
                json_array_append_new(pk, json_string(*p));
        _cleanup_json_ json_t *res = NULL;
        int r = call(ud, "priv.build_debian",
                     json_pack("{s:s, s:s, s:o, s:s, s:s}", "suite", q->suite, "mirror", q->mirror, "packages", pk,
                               "init_mode", q->init_mode, "out_dir", q->out_dir),
                     BUILD_TIMEOUT_MS, cancelled, cud, &res, e);
        if (r == 0)
                *ret_rootfs_size = (uint64_t) json_integer_value(json_object_get(res, "rootfs_size_bytes"));
        return r;
}

static bool r_dm_available(void *ud) {
        _cleanup_json_ json_t *res = NULL;
        if (call(ud, "priv.dm_available", NULL, CALL_TIMEOUT_MS, NULL, NULL, &res, NULL) < 0)
                return false;
        return json_is_true(json_object_get(res, "available"));
}

static int r_dm_snapshot_create(void *ud, const char *vm_id, const char *origin_path, const char *cow_path,
                                char **ret_dev, struct op_error *e) {
        _cleanup_json_ json_t *res = NULL;
        int r = call(ud, "priv.dm_snapshot_create",
                     json_pack("{s:s, s:s, s:s}", "vm_id", vm_id, "origin", origin_path, "cow", cow_path),
                     CALL_TIMEOUT_MS, NULL, NULL, &res, e);
        if (r < 0)
                return r;
        const char *dev = json_string_value(json_object_get(res, "device"));
        _cleanup_free_ char *want = xasprintf("/dev/mapper/banger-%s", vm_id);
        if (!dev || strcmp(dev, want) != 0) /* the helper names the device it made; we know its name */
                return op_fail(e, -EPROTO, "root helper (priv.dm_snapshot_create): device '%s', expected %s",
                               strempty(dev), want);
        *ret_dev = xstrdup(dev);
        return 0;
}

static int r_dm_snapshot_remove(void *ud, const char *vm_id, struct op_error *e) {
        return simple(ud, "priv.dm_snapshot_remove", json_pack("{s:s}", "vm_id", vm_id), e);
}

/* A method whose answer is {"vm_ids": [...]}: the ids, NULL-terminated. */
static int ids_call(void *ud, const char *method, char ***ret_vm_ids, struct op_error *e) {
        _cleanup_json_ json_t *res = NULL;
        int r = call(ud, method, NULL, CALL_TIMEOUT_MS, NULL, NULL, &res, e);
        if (r < 0)
                return r;
        json_t *a = json_object_get(res, "vm_ids");
        if (!json_is_array(a))
                return op_fail(e, -EPROTO, "root helper (%s): no vm_ids", method);
        char **ids = xcalloc(json_array_size(a) + 1, sizeof(char *));
        size_t k = 0;
        for (size_t i = 0; i < json_array_size(a); i++) {
                const char *id = json_string_value(json_array_get(a, i));
                if (id)
                        ids[k++] = xstrdup(id);
        }
        *ret_vm_ids = ids;
        return 0;
}

static int r_dm_snapshot_list(void *ud, char ***ret_vm_ids, struct op_error *e) {
        return ids_call(ud, "priv.dm_snapshot_list", ret_vm_ids, e);
}

static int r_fc_jail_info(void *ud, struct priv_jail_info *ret, struct op_error *e) {
        _cleanup_json_ json_t *res = NULL;
        int r = call(ud, "priv.fc_jail_info", NULL, CALL_TIMEOUT_MS, NULL, NULL, &res, e);
        if (r < 0)
                return r;
        const char *mode = json_string_value(json_object_get(res, "mode"));
        const char *exec = json_string_value(json_object_get(res, "exec_file"));
        const char *why = json_string_value(json_object_get(res, "reason"));
        int m = !mode ? -1 : strcmp(mode, "on") == 0 ? JAIL_ON : strcmp(mode, "off") == 0 ? JAIL_OFF
                : strcmp(mode, "refused") == 0 ? JAIL_REFUSED : -1;
        if (m < 0 || (m == JAIL_ON && (!exec || exec[0] != '/')))
                return op_fail(e, -EPROTO, "root helper (priv.fc_jail_info): no valid mode/exec_file");
        *ret = (struct priv_jail_info) { .mode = m, .exec_file = m == JAIL_ON ? xstrdup(exec) : NULL,
                                         .reason = why ? xstrdup(why) : NULL };
        return 0;
}

static int r_fc_jail_start(void *ud, const char *vm_id, const char *const *files, size_t n, const char *log_path,
                           int vcpu, int memory_mib, pid_t *ret_pid, char **ret_root, struct op_error *e) {
        json_t *fa = json_array();
        for (size_t i = 0; i < n; i++)
                json_array_append_new(fa, json_string(files[i]));
        _cleanup_json_ json_t *res = NULL;
        int r = call(ud, "priv.fc_jail_start",
                     json_pack("{s:s, s:o, s:s, s:i, s:i}", "vm_id", vm_id, "files", fa, "log", log_path, "vcpu", vcpu,
                               "memory_mib", memory_mib),
                     CALL_TIMEOUT_MS, NULL, NULL, &res, e);
        if (r < 0)
                return r;
        json_int_t pid = json_integer_value(json_object_get(res, "pid"));
        const char *root = json_string_value(json_object_get(res, "root"));
        _cleanup_free_ char *suffix = xasprintf("/banger-%s/root", vm_id);
        /* the chroot is where the helper says, but only one of this VM's */
        if (pid <= 1 || !root || root[0] != '/' || strstr(root, "/../") || strlen(root) <= strlen(suffix) ||
            strcmp(root + strlen(root) - strlen(suffix), suffix) != 0)
                return op_fail(e, -EPROTO, "root helper (priv.fc_jail_start): bad pid or root");
        *ret_pid = (pid_t) pid;
        *ret_root = xstrdup(root);
        return 0;
}

static int r_fc_jail_remove(void *ud, const char *vm_id, struct op_error *e) {
        return simple(ud, "priv.fc_jail_remove", json_pack("{s:s}", "vm_id", vm_id), e);
}

static int r_fc_jail_list(void *ud, char ***ret_vm_ids, struct op_error *e) {
        return ids_call(ud, "priv.fc_jail_list", ret_vm_ids, e);
}

struct priv_remote *priv_remote_new(const char *socket_path) {
        struct priv_remote *r = xcalloc(1, sizeof(*r));
        r->socket = xstrdup(socket_path);
        r->ops = (struct priv_ops) {
                .name = "helper", .ud = r,
                .bridge_ensure = r_bridge_ensure, .tap_create = r_tap_create, .tap_delete = r_tap_delete, .tap_open = r_tap_open,
                .link_exists = r_link_exists, .nat_enable = r_nat_enable, .nat_disable = r_nat_disable,
                .guard_enable = r_guard_enable, .guard_disable = r_guard_disable, .ip_forward = r_ip_forward,
                .dns_route = r_dns_route, .dns_unroute = r_dns_unroute, .build_debian = r_build_debian,
                .dm_available = r_dm_available, .dm_snapshot_create = r_dm_snapshot_create,
                .dm_snapshot_remove = r_dm_snapshot_remove, .dm_snapshot_list = r_dm_snapshot_list,
                .fc_jail_info = r_fc_jail_info, .fc_jail_start = r_fc_jail_start, .fc_jail_remove = r_fc_jail_remove,
                .fc_jail_list = r_fc_jail_list,
        };
        return r;
}

const struct priv_ops *priv_remote_ops(struct priv_remote *r) {
        return &r->ops;
}

void priv_remote_free(struct priv_remote *r) {
        if (!r)
                return;
        free(r->socket);
        free(r);
}
