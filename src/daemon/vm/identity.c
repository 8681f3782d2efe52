/* SPDX-License-Identifier: MIT */
/*
 * Re-identifying a guest that resumed from a saved state that is not its own
 * (a template shared by many VMs, another VM's snapshot), before anything
 * else can see it: `banger-agent --identify` through the agent's exec
 * channel (docs/GUEST.md, "Re-identification"). The hostname, MAC, address
 * and route go on its command line; the files (host key, /etc/hostname,
 * hosts, resolv.conf, machine-id) and host entropy on its stdin, never on a
 * command line. authorized_keys is on the work disk already.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <unistd.h>

#include "frame.h"
#include "fsutil.h"
#include "ipnet.h"
#include "jsonx.h"
#include "log.h"
#include "strbuf.h"
#include "vm/guestcfg.h"
#include "vms_internal.h"

#define GUEST_AGENT "/usr/local/bin/banger-agent"
#define IDENTIFY_TIMEOUT_MS 30000

struct spec {
        uint8_t b[FRAME_MAX_PAYLOAD];
        size_t n;
        bool full;
};

static void arg(struct spec *s, const char *a) {
        s->full |= !spec_put_str(s->b, sizeof(s->b), &s->n, SPEC_ARG, a);
}

static void arg2(struct spec *s, const char *a, const char *b) {
        arg(s, a);
        arg(s, b);
}

bool vms_agent_has(struct vms *v, const struct vm_paths *p, const char *feature) {
        _cleanup_json_ json_t *h = NULL;
        struct agent_wait w = { .abort_fd = -1 };
        return v->deps.agent_call(v->deps.agent_ud, p->agent, "health", 10000, &w, &h, NULL) == 0 &&
               json_is_true(json_object_get(h, feature));
}

int vms_agent_run(struct vms *v, const struct vm_paths *p, const char *const *argv, int in_fd, int out_fd,
                  int err_fd, int timeout_ms, int *ret_status, struct op_error *e) {
        struct spec s = { 0 };
        for (const char *const *a = argv; *a; a++)
                arg(&s, *a);
        if (s.full)
                return op_fail(e, -E2BIG, "the command does not fit in one request");
        if (!v->deps.agent_exec)
                return op_fail(e, -EOPNOTSUPP, "no exec channel to the guest agent");
        struct agent_wait w = { .abort_fd = -1, .timeout_ms = timeout_ms };
        return v->deps.agent_exec->fds(v->deps.agent_ud, p->agent, s.b, s.n, in_fd, out_fd, err_fd, &w, ret_status, e);
}

/* The records on stdin: entropy, and for a new identity the guest files. */
static int build_input(struct vms *v, const struct vm_row *r, const struct vm_paths *p, bool full, struct strbuf *in,
                       struct op_error *e) {
        uint8_t seed[64], mid[16];
        char mid_hex[33];
        if (getrandom(seed, sizeof(seed), 0) != (ssize_t) sizeof(seed) || getrandom(mid, sizeof(mid), 0) != (ssize_t) sizeof(mid))
                return op_fail(e, -EIO, "no host entropy for the guest");
        if (!full) {
                strbuf_addf(in, "entropy %zu\n", sizeof(seed));
                strbuf_add(in, seed, sizeof(seed));
                return 0;
        }
        for (size_t i = 0; i < sizeof(mid); i++)
                snprintf(mid_hex + 2 * i, 3, "%02x", mid[i]);
        const struct config *c = config_live_get(v->deps.config);
        struct guestcfg g = { .hostname = r->name, .ip = r->guest_ip, .dns = c->default_dns, .host_key_dir = p->hostkey,
                              .machine_id = mid_hex };
        return guestcfg_records(&g, seed, sizeof(seed), in, e);
}

static int build_spec(struct vms *v, const struct vm_row *r, const struct vm_identify *q, struct spec *s,
                      struct op_error *e) {
        const struct config *c = config_live_get(v->deps.config);
        struct ipv4_subnet net;
        _cleanup_free_ char *msg = NULL;
        int64_t now = v->deps.wall_ms();
        _cleanup_free_ char *t = xasprintf("%lld.%03d", (long long) (now / 1000), (int) (now % 1000));
        arg2(s, GUEST_AGENT, "--identify");
        arg2(s, "--time", t);
        if (q->full) {
                if (ipv4_subnet_init(&net, c->bridge_ip, (int) c->cidr, &msg) < 0)
                        return op_fail(e, -EINVAL, "%s", msg);
                _cleanup_free_ char *ip = xasprintf("%s/%d", r->guest_ip, net.prefix);
                _cleanup_free_ char *old = q->old_ip ? xasprintf("%s/%d", q->old_ip, net.prefix) : NULL;
                arg2(s, "--hostname", r->name);
                arg2(s, "--iface", "eth0");
                arg2(s, "--mac", r->mac);
                arg2(s, "--ip", ip);
                arg2(s, "--gw", c->bridge_ip);
                if (old)
                        arg2(s, "--old-ip", old);
                if (q->mount_work) {
                        arg2(s, "--work", "work");
                        arg2(s, "--repo", "repo");
                }
                arg(s, "--sshd");
        }
        return s->full ? op_fail(e, -E2BIG, "the identity does not fit in one request") : 0;
}

/* What the guest said on stderr: its last line, made harmless. */
static char *said(int fd) {
        char buf[512];
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        if (n <= 0)
                return NULL;
        buf[n] = '\0';
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
                buf[--n] = '\0';
        char *last = strrchr(buf, '\n');
        return str_defuse(xstrdup(last ? last + 1 : buf), '?');
}

int vms_identify(struct vms *v, const struct vm_row *r, const struct vm_paths *p, const struct vm_identify *q,
                 struct op_error *e) {
        struct spec s = { 0 };
        struct strbuf in = STRBUF_INIT;
        int pfd[2] = { -1, -1 }, status = 0;
        if (!v->deps.agent_exec)
                return op_fail(e, -EOPNOTSUPP, "no exec channel to the guest agent");
        int rc = build_spec(v, r, q, &s, e);
        if (rc == 0)
                rc = build_input(v, r, p, q->full, &in, e);
        _cleanup_close_ int errfd = rc == 0 ? memfd_create("banger-identify-err", MFD_CLOEXEC) : -1;
        if (rc == 0 && (errfd < 0 || in.len > 60000 || pipe2(pfd, O_CLOEXEC) < 0))
                rc = op_fail(e, -EIO, "cannot pass the identity to the guest");
        if (rc == 0) { /* a few KiB: the pipe holds them all */
                int wr = write_all(pfd[1], in.buf, in.len);
                close(pfd[1]);
                struct agent_wait w = { .abort_fd = -1, .timeout_ms = IDENTIFY_TIMEOUT_MS };
                rc = wr < 0 ? op_fail(e, wr, "passing the identity: %s", strerror(-wr))
                            : v->deps.agent_exec->fds(v->deps.agent_ud, p->agent, s.b, s.n, pfd[0], -1, errfd, &w,
                                                      &status, e);
                close(pfd[0]);
        }
        explicit_bzero(in.buf, in.len); /* a host key and entropy */
        strbuf_release(&in);
        if (rc == 0 && status != 0) {
                _cleanup_free_ char *why = said(errfd);
                rc = op_fail(e, -EIO, "the guest refused its identity (status %d)%s%s", status, why ? ": " : "",
                             strempty(why));
        }
        return rc;
}
