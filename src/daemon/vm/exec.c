/* SPDX-License-Identifier: MIT */
/*
 * Commands through the guest agent (protocol version 2): the exec spec built
 * from a request, checked here (the agent checks it again), and handed to
 * the VM's agent link. vm.exec (rpc_vms.c) then gives the link the client's
 * connection; the daemon's own execs (workspaces) use agent_exec_fds.
 */
#include <errno.h>
#include <string.h>

#include "frame.h"
#include "jsonx.h"
#include "vms_internal.h"

#define EXEC_OPEN_TIMEOUT_MS 15000

struct spec_buf {
        uint8_t b[FRAME_MAX_PAYLOAD];
        size_t n;
        bool full;
};

static void put_str(struct spec_buf *s, uint8_t tag, const char *v) {
        s->full |= !spec_put_str(s->b, sizeof(s->b), &s->n, tag, v);
}

static int build_spec(const struct vm_exec_req *q, struct spec_buf *s, struct op_error *e) {
        size_t i;
        json_t *it;
        if (!json_is_array(q->argv) || json_array_size(q->argv) == 0)
                return op_bad_request(e, "argv must be a non-empty array of strings");
        if (json_array_size(q->argv) > FRAME_MAX_ARGS)
                return op_bad_request(e, "more than %d arguments", FRAME_MAX_ARGS);
        json_array_foreach(q->argv, i, it) {
                if (!json_is_string(it) || strlen(json_string_value(it)) != json_string_length(it))
                        return op_bad_request(e, "argv[%zu] must be a string without NUL bytes", i);
                put_str(s, SPEC_ARG, json_string_value(it));
        }
        if (q->env && !json_is_array(q->env))
                return op_bad_request(e, "env must be an array of NAME=value strings");
        json_array_foreach(q->env, i, it) {
                const char *v = json_string_value(it);
                const char *eq = v ? strchr(v, '=') : NULL;
                if (!v || !eq || eq == v || strlen(v) != json_string_length(it) || strcspn(v, "=") != strspn(v,
                        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") || (v[0] >= '0' && v[0] <= '9'))
                        return op_bad_request(e, "env[%zu] is not NAME=value", i);
                put_str(s, SPEC_ENV, v);
        }
        if (q->cwd) {
                if (q->cwd[0] != '/')
                        return op_bad_request(e, "cwd must be an absolute path");
                put_str(s, SPEC_CWD, q->cwd);
        }
        if (q->uid || q->gid) {
                uint8_t u[4], g[4];
                frame_put_u32(u, q->uid);
                frame_put_u32(g, q->gid);
                s->full |= !spec_put(s->b, sizeof(s->b), &s->n, SPEC_UID, u, 4);
                s->full |= !spec_put(s->b, sizeof(s->b), &s->n, SPEC_GID, g, 4);
        }
        if (q->pty) {
                if (q->rows < 0 || q->rows > 65535 || q->cols < 0 || q->cols > 65535)
                        return op_bad_request(e, "rows and cols must be 0..65535");
                uint8_t ws[4] = { (uint8_t) q->rows, (uint8_t) (q->rows >> 8), (uint8_t) q->cols,
                                  (uint8_t) (q->cols >> 8) };
                s->full |= !spec_put(s->b, sizeof(s->b), &s->n, SPEC_PTY, ws, 4);
        }
        if (s->full)
                return op_bad_request(e, "the command and its environment exceed %d bytes", FRAME_MAX_PAYLOAD);
        return 0;
}

struct exec_open {
        const struct spec_buf *s;
        struct agent_exec **ret;
        uint32_t *ret_pid;
};

static int open_on(struct vms *v, const struct vm_row *r, const struct vm_paths *p, void *ud, struct op_error *e) {
        struct exec_open *o = ud;
        if (strcmp(r->state, "running") != 0) /* still starting, or stopping */
                return op_fail_as(e, RPC_BAD_REQUEST, -ESRCH, "vm %s is %s", r->name, r->state);
        int rc = v->deps.agent_exec->open(v->deps.agent_ud, p->agent, o->s->b, o->s->n, EXEC_OPEN_TIMEOUT_MS, o->ret,
                                          o->ret_pid, e);
        if (rc == -EPROTONOSUPPORT)
                op_recode(e, RPC_BAD_VERSION);
        return rc;
}

int vm_exec_open(struct vms *v, const char *ref, const struct vm_exec_req *q, struct agent_exec **ret,
                 uint32_t *ret_pid, struct op_error *e) {
        _cleanup_free_ struct spec_buf *s = xcalloc(1, sizeof(*s));
        int rc = build_spec(q, s, e);
        if (rc < 0)
                return rc;
        if (!v->deps.agent_exec)
                return op_fail(e, -ENOTSUP, "execs through the agent are not available");
        return vms_with_running(v, ref, open_on, &(struct exec_open) { s, ret, ret_pid }, e);
}

void vm_exec_attach(struct vms *v, struct agent_exec *x, int client_fd) {
        v->deps.agent_exec->attach(x, client_fd);
}

void vm_exec_finish(struct vms *v, struct agent_exec *x) {
        v->deps.agent_exec->finish(x);
}
