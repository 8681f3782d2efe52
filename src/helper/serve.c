/* SPDX-License-Identifier: MIT */
/*
 * One connection of the root helper: the peer is checked (root or the
 * install's owner), one request line is read (a second one is refused), its
 * params are decoded against the method's fixed field list (unknown keys
 * refused), the host operation runs with its own checks, one answer goes
 * back, and one log line says what happened under the caller's op id.
 */
#include "helper.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "jsonx.h"
#include "log.h"
#include "rpc.h"
#include "strbuf.h"

#define READ_TIMEOUT_MS 10000
#define MAX_PACKAGES 512

/* Every parameter any method takes; each method names the ones it takes. */
struct params {
        char *bridge, *tap, *name, *vm_id, *ip, *listen, *mac;
        char *suite, *mirror, *init_mode, *out_dir;
        char *origin, *cow, *log;
        bool isolate;
        int64_t vcpu, memory_mib;
        json_t *packages, *files;
};

#define S(n) { #n, JSON_FIELD_STRING, offsetof(struct params, n), true, JSON_NO_PRESENT, 0, 0 }
static const struct json_field f_bridge[] = { S(bridge) };
static const struct json_field f_tap_create[] = { S(tap), S(bridge) };
static const struct json_field f_tap[] = { S(tap) };
static const struct json_field f_name[] = { S(name) };
static const struct json_field f_nat_enable[] = { S(vm_id), S(ip) };
static const struct json_field f_vm_id[] = { S(vm_id) };
static const struct json_field f_guard_enable[] = {
        S(vm_id), S(tap), S(ip), S(mac),
        { "isolate", JSON_FIELD_BOOL, offsetof(struct params, isolate), true, JSON_NO_PRESENT, 0, 0 },
};
static const struct json_field f_listen[] = { S(listen) };
static const struct json_field f_dm_create[] = { S(vm_id), S(origin), S(cow) };
static const struct json_field f_jail_start[] = {
        S(vm_id), S(log), { "files", JSON_FIELD_JSON, offsetof(struct params, files), true, JSON_NO_PRESENT, 0, 0 },
        { "vcpu", JSON_FIELD_INT, offsetof(struct params, vcpu), true, JSON_NO_PRESENT, 1, 32 },
        { "memory_mib", JSON_FIELD_INT, offsetof(struct params, memory_mib), true, JSON_NO_PRESENT, 64, 1 << 20 },
};
static const struct json_field f_build[] = {
        S(suite), S(mirror), S(init_mode), S(out_dir),
        { "packages", JSON_FIELD_JSON, offsetof(struct params, packages), true, JSON_NO_PRESENT, 0, 0 },
};
#undef S

static void params_done(struct params *p) {
        char **strs[] = { &p->bridge, &p->tap, &p->name, &p->vm_id, &p->ip, &p->listen, &p->mac,
                          &p->suite, &p->mirror, &p->init_mode, &p->out_dir, &p->origin, &p->cow, &p->log };
        for (size_t i = 0; i < ELEMENTSOF(strs); i++)
                free(*strs[i]);
        json_decref(p->packages);
        json_decref(p->files);
        *p = (struct params) { 0 };
}

struct call {
        struct helper *h;
        int fd;
        struct params p;
        json_t *result; /* owned; NULL: {} */
        int pass_fd;    /* owned; sent with the answer (SCM_RIGHTS) when >= 0 */
};

static int m_bridge_ensure(struct call *c, struct op_error *e) {
        return hostop_bridge_ensure(&c->h->policy, c->p.bridge, e);
}

static int m_tap_create(struct call *c, struct op_error *e) {
        return hostop_tap_create(&c->h->policy, c->p.tap, c->p.bridge, e);
}

static int m_tap_delete(struct call *c, struct op_error *e) {
        return hostop_tap_delete(&c->h->policy, c->p.tap, e);
}

static int m_tap_open(struct call *c, struct op_error *e) {
        return hostop_tap_open(&c->h->policy, c->p.tap, &c->pass_fd, e);
}

static int m_link_exists(struct call *c, struct op_error *e) {
        /* only banger's own links are anybody's business */
        if (host_check_tap_name(c->p.name, NULL) < 0 && host_check_bridge(&c->h->policy, c->p.name, NULL) < 0)
                return op_fail_as(e, RPC_UNAUTHORIZED, -EPERM, "'%s' is neither a banger TAP nor the bridge",
                                  c->p.name);
        c->result = json_pack("{s:b}", "exists", hostop_link_exists(&c->h->policy, c->p.name));
        return 0;
}

static int m_nat_enable(struct call *c, struct op_error *e) {
        return hostop_nat_enable(&c->h->policy, c->p.vm_id, c->p.ip, e);
}

static int m_nat_disable(struct call *c, struct op_error *e) {
        return hostop_nat_disable(&c->h->policy, c->p.vm_id, e);
}

static int m_guard_enable(struct call *c, struct op_error *e) {
        return hostop_guard_enable(&c->h->policy, c->p.vm_id, c->p.tap, c->p.ip, c->p.mac, c->p.isolate, e);
}

static int m_guard_disable(struct call *c, struct op_error *e) {
        return hostop_guard_disable(&c->h->policy, c->p.vm_id, e);
}

static int m_ip_forward(struct call *c, struct op_error *e) {
        return hostop_ip_forward(&c->h->policy, e);
}

static int m_dns_route(struct call *c, struct op_error *e) {
        int r = hostop_dns_route(&c->h->policy, c->p.listen, e);
        if (r >= 0)
                c->result = json_pack("{s:b}", "routed", r == 0);
        return r < 0 ? r : 0;
}

static int m_dns_unroute(struct call *c, struct op_error *e) {
        hostop_dns_unroute(&c->h->policy);
        return 0;
}

static int m_dm_available(struct call *c, struct op_error *e) {
        c->result = json_pack("{s:b}", "available", hostop_dm_available(&c->h->policy));
        return 0;
}

static int m_dm_snapshot_create(struct call *c, struct op_error *e) {
        _cleanup_free_ char *dev = NULL;
        int r = hostop_dm_snapshot_create(&c->h->policy, c->p.vm_id, c->p.origin, c->p.cow, &dev, e);
        if (r == 0)
                c->result = json_pack("{s:s}", "device", dev);
        return r;
}

static int m_dm_snapshot_remove(struct call *c, struct op_error *e) {
        return hostop_dm_snapshot_remove(&c->h->policy, c->p.vm_id, e);
}

/* {"vm_ids": [...]} from a list of ids (r < 0: none). */
static int ids_result(struct call *c, int r, char **ids) {
        if (r < 0)
                return r;
        json_t *a = json_array();
        for (char **id = ids; id && *id; id++)
                json_array_append_new(a, json_string(*id));
        c->result = json_pack("{s:o}", "vm_ids", a);
        return 0;
}

static int m_dm_snapshot_list(struct call *c, struct op_error *e) {
        _cleanup_strv_free_ char **ids = NULL;
        int r = hostop_dm_snapshot_list(&c->h->policy, &ids, e);
        return ids_result(c, r, ids);
}

static int m_fc_jail_info(struct call *c, struct op_error *e) {
        const struct host_policy *p = &c->h->policy;
        c->result = json_pack("{s:s, s:s?, s:s?}", "mode", p->jail_on ? "on" : p->jail_refused ? "refused" : "off",
                              "exec_file", p->jail_on ? p->jail.exec_file : NULL, "reason", p->jail_why);
        return 0;
}

static int m_fc_jail_start(struct call *c, struct op_error *e) {
        if (!json_is_array(c->p.files) || json_array_size(c->p.files) > HOST_JAIL_MAX_FILES)
                return op_bad_request(e, "files: an array of at most %d paths", HOST_JAIL_MAX_FILES);
        size_t n = json_array_size(c->p.files);
        const char *files[HOST_JAIL_MAX_FILES];
        for (size_t i = 0; i < n; i++)
                if (!(files[i] = json_string_value(json_array_get(c->p.files, i))))
                        return op_bad_request(e, "files[%zu]: not a string", i);
        pid_t pid = 0;
        _cleanup_free_ char *root = NULL;
        int r = hostop_fc_jail_start(&c->h->policy, c->p.vm_id, files, n, c->p.log, (int) c->p.vcpu,
                                     (int) c->p.memory_mib, &pid, &root, e);
        if (r == 0)
                c->result = json_pack("{s:I, s:s}", "pid", (json_int_t) pid, "root", root);
        return r;
}

static int m_fc_jail_remove(struct call *c, struct op_error *e) {
        return hostop_fc_jail_remove(&c->h->policy, c->p.vm_id, e);
}

static int m_fc_jail_list(struct call *c, struct op_error *e) {
        _cleanup_strv_free_ char **ids = NULL;
        int r = hostop_fc_jail_list(&c->h->policy, &ids, e);
        return ids_result(c, r, ids);
}

atomic_bool helper_stopping;

/* The caller half-closed its end (it gave up on the build), or we are stopping. */
static bool peer_gone(void *ud) {
        if (atomic_load(&helper_stopping))
                return true;
        struct pollfd pfd = { .fd = *(int *) ud, .events = POLLRDHUP };
        return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

static int m_build_debian(struct call *c, struct op_error *e) {
        if (!json_is_array(c->p.packages) || json_array_size(c->p.packages) > MAX_PACKAGES)
                return op_bad_request(e, "packages: an array of at most %d names", MAX_PACKAGES);
        size_t n = json_array_size(c->p.packages);
        _cleanup_free_ const char **pk = xcalloc(n + 1, sizeof(char *));
        for (size_t i = 0; i < n; i++)
                if (!(pk[i] = json_string_value(json_array_get(c->p.packages, i))))
                        return op_bad_request(e, "packages[%zu]: not a string", i);
        struct hostop_debian_build q = { .suite = c->p.suite, .mirror = c->p.mirror, .packages = pk,
                                         .init_mode = c->p.init_mode, .out_dir = c->p.out_dir };
        uint64_t size = 0;
        int r = hostop_build_debian(&c->h->policy, &q, peer_gone, &c->fd, &size, e);
        if (r == 0)
                c->result = json_pack("{s:I}", "rootfs_size_bytes", (json_int_t) size);
        return r;
}

struct method {
        const char *name;
        int (*run)(struct call *c, struct op_error *e);
        const struct json_field *fields;
        size_t n_fields;
};

#define M(n, f) { "priv." #n, m_##n, f, ELEMENTSOF(f) }
#define M0(n) { "priv." #n, m_##n, NULL, 0 }
static const struct method methods[] = {
        M(bridge_ensure, f_bridge), M(tap_create, f_tap_create), M(tap_delete, f_tap), M(tap_open, f_tap), M(link_exists, f_name),
        M(nat_enable, f_nat_enable), M(nat_disable, f_vm_id), M(guard_enable, f_guard_enable),
        M(guard_disable, f_vm_id), M0(ip_forward), M(dns_route, f_listen), M0(dns_unroute),
        M(build_debian, f_build), M0(dm_available), M(dm_snapshot_create, f_dm_create),
        M(dm_snapshot_remove, f_vm_id), M0(dm_snapshot_list), M0(fc_jail_info), M(fc_jail_start, f_jail_start),
        M(fc_jail_remove, f_vm_id), M0(fc_jail_list),
};
#undef M
#undef M0

const char *const helper_methods[] = {
        "priv.bridge_ensure", "priv.tap_create", "priv.tap_delete", "priv.tap_open", "priv.link_exists", "priv.nat_enable",
        "priv.nat_disable", "priv.guard_enable", "priv.guard_disable", "priv.ip_forward", "priv.dns_route",
        "priv.dns_unroute", "priv.build_debian", "priv.dm_available", "priv.dm_snapshot_create",
        "priv.dm_snapshot_remove", "priv.dm_snapshot_list", "priv.fc_jail_info", "priv.fc_jail_start",
        "priv.fc_jail_remove", "priv.fc_jail_list", NULL,
};

static const struct method *find_method(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(methods); i++)
                if (strcmp(methods[i].name, name) == 0)
                        return &methods[i];
        return NULL;
}

/* Root, or the install's owner; anyone else is told no. */
static int check_peer(struct helper *h, int fd, struct ucred *cred, struct op_error *e) {
        socklen_t len = sizeof(*cred);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &len) < 0)
                return op_fail(e, -errno, "SO_PEERCRED: %s", strerror(errno));
        if (cred->uid != 0 && cred->uid != h->install.owner_uid)
                return op_fail_as(e, RPC_UNAUTHORIZED, -EPERM, "uid %u may not use the root helper (only root and %s)",
                                  (unsigned) cred->uid, h->install.owner_user);
        return 0;
}

/* The answer line; pass_fd (when >= 0) rides along with its first byte. */
static void answer(int fd, const struct rpc_request *req, int r, const struct op_error *e, json_t *result,
                   int pass_fd) {
        _cleanup_json_ json_t *empty = json_object();
        _cleanup_free_ char *line =
                r < 0 ? rpc_response_encode_error(req != NULL, req ? req->id : 0, e->code, op_error_message(e),
                                                  req ? req->op_id : NULL)
                      : rpc_response_encode_result(true, req->id, result ? result : empty);
        if (r < 0 || pass_fd < 0) {
                if (rpc_write_line(fd, line) < 0) {
                        /* the caller is gone; the log line says what happened */
                }
                return;
        }
        _cleanup_free_ char *full = xasprintf("%s\n", line);
        union {
                struct cmsghdr h;
                char space[CMSG_SPACE(sizeof(int))];
        } ctl = { 0 };
        struct iovec iov = { full, strlen(full) };
        struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.space,
                            .msg_controllen = sizeof(ctl.space) };
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
        if (sendmsg(fd, &m, MSG_NOSIGNAL) < 0) {
                /* the caller is gone */
        }
}

/* A peer that is still sending when we close would get a reset instead of
 * our answer: half-close, take what it still sends (bounded), then close. */
static void linger_close(int fd) {
        char buf[4096];
        shutdown(fd, SHUT_WR);
        for (int k = 0; k < 16; k++) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                if (poll(&p, 1, 100) <= 0 || read(fd, buf, sizeof(buf)) <= 0)
                        break;
        }
        close(fd);
}

/* Reads exactly one request: a second line (or bytes after the first) is a
 * protocol error, not a queue. */
static int read_request(struct rpc_line_reader *lr, struct rpc_request *req, struct op_error *e) {
        char *line;
        size_t len;
        int r = rpc_line_reader_next(lr, READ_TIMEOUT_MS, &line, &len);
        if (r <= 0)
                return op_bad_request(e, "no request: %s", r == 0 ? "connection closed" : strerror(-r));
        struct rpc_fault fault;
        if (rpc_request_decode(line, len, req, &fault) < 0)
                return op_fail_as(e, fault.code, -EINVAL, "%s", fault.msg);
        if (lr->buf.len > lr->consumed)
                return op_bad_request(e, "one request per connection");
        return 0;
}

static int run(struct call *c, const struct rpc_request *req, struct op_error *e) {
        const struct method *m = find_method(req->method);
        if (!m)
                return op_fail_as(e, RPC_UNKNOWN_METHOD, -EOPNOTSUPP, "the root helper has no method '%s'",
                                  req->method);
        _cleanup_free_ char *msg = NULL;
        if (json_decode_fields(req->params, m->fields, m->n_fields, &c->p, &msg) < 0)
                return op_bad_request(e, "%s: %s", req->method, msg);
        return m->run(c, e);
}

static void log_call(const struct ucred *cred, const struct rpc_request *req, int r, const struct op_error *e,
                     int64_t ms) {
        const char *method = req && req->method ? req->method : "(none)";
        if (r < 0)
                log_warn("uid %u pid %d %s: refused or failed (%s): %s [%" PRId64 " ms]", (unsigned) cred->uid,
                         (int) cred->pid, method, rpc_code_to_string(e->code), op_error_message(e), ms);
        else
                log_info("uid %u pid %d %s: ok [%" PRId64 " ms]", (unsigned) cred->uid, (int) cred->pid, method, ms);
}

void helper_serve_conn(struct helper *h, int fd) {
        _cleanup_op_error_ struct op_error e = OP_ERROR_INIT;
        struct call c = { .h = h, .fd = fd, .pass_fd = -1 };
        struct rpc_request req = { 0 };
        struct ucred cred = { 0 };
        struct rpc_line_reader lr;
        bool have_req = false;
        int64_t t0 = mono_ms_now();

        rpc_line_reader_init(&lr, fd, 64 * 1024);
        int r = check_peer(h, fd, &cred, &e);
        if (r == 0) {
                r = read_request(&lr, &req, &e);
                have_req = req.method != NULL;
        }
        if (have_req && rpc_op_id_valid(req.op_id))
                log_set_op_id(req.op_id); /* both logs tell one story */
        if (r == 0)
                r = run(&c, &req, &e);
        if (!have_req && lr.buf.len == 0 && r < 0 && e.code == RPC_BAD_REQUEST)
                log_debug("uid %u pid %d connected and closed (a liveness probe)", (unsigned) cred.uid, (int) cred.pid);
        else
                log_call(&cred, have_req ? &req : NULL, r, &e, mono_ms_now() - t0);
        answer(fd, have_req ? &req : NULL, r, &e, c.result, c.pass_fd);
        if (c.pass_fd >= 0)
                close(c.pass_fd);
        log_set_op_id(NULL);
        json_decref(c.result);
        params_done(&c.p);
        rpc_request_done(&req);
        rpc_line_reader_done(&lr);
        linger_close(fd);
}
