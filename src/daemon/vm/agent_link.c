/* SPDX-License-Identifier: MIT */
#include "agent_link_internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "frame.h"
#include "clock.h"
#include "execclient.h"
#include "jsonx.h"
#include "log.h"
#include "strbuf.h"

struct agent_links *agent_links_new(void) {
        struct agent_links *L = xcalloc(1, sizeof(*L));
        pthread_mutex_init(&L->mu, NULL);
        pthread_mutex_init(&L->lost_mu, NULL);
        pthread_cond_init(&L->cond, NULL);
        return L;
}

void link_set_lost(struct agent_links *L, const char *socket, const char *why) {
        pthread_mutex_lock(&L->lost_mu);
        struct lost **pp = &L->lost;
        while (*pp && strcmp((*pp)->socket, socket) != 0)
                pp = &(*pp)->next;
        if (why && !*pp) {
                *pp = xcalloc(1, sizeof(**pp));
                (*pp)->socket = xstrdup(socket);
        }
        if (why) {
                free((*pp)->why);
                (*pp)->why = xstrdup(why);
        } else if (*pp) {
                struct lost *l = *pp;
                *pp = l->next;
                free(l->socket);
                free(l->why);
                free(l);
        }
        pthread_mutex_unlock(&L->lost_mu);
}

char *agent_links_lost(struct agent_links *L, const char *socket_path) {
        char *r = NULL;
        pthread_mutex_lock(&L->lost_mu);
        for (struct lost *l = L->lost; l; l = l->next)
                if (strcmp(l->socket, socket_path) == 0)
                        r = xstrdup(l->why);
        pthread_mutex_unlock(&L->lost_mu);
        return r;
}

void link_unref(struct link *k) {
        pthread_mutex_lock(&k->L->mu);
        bool last = --k->refs == 0;
        pthread_mutex_unlock(&k->L->mu);
        if (!last)
                return;
        if (k->fd >= 0)
                close(k->fd);
        if (k->wake >= 0)
                close(k->wake);
        pthread_mutex_destroy(&k->mu);
        pthread_cond_destroy(&k->cond);
        free(k->socket);
        free(k->dead_why);
        free(k->in);
        bq_free(&k->out);
        free(k);
}

void link_wake(struct link *k) {
        uint64_t one = 1;
        if (write(k->wake, &one, sizeof(one)) < 0) {
                /* saturated: it is awake anyway */
        }
}

/* ---- making a link ------------------------------------------------------------- */


/* The version 1 "upgrade" request; 0 once the stream carries frames, with
 * any bytes that came after the answer in k->in. */
static int upgrade(struct link *k, struct op_error *e) {
        /* an id no direct call uses: a stale answer meant for a previous client
         * (the agent keeps answers for a host that seems gone) is skipped */
        const char req[] = "{\"v\":1,\"id\":2147480001,\"method\":\"upgrade\"}\n";
        size_t sent = 0;
        struct strbuf in = STRBUF_INIT;
        int64_t deadline = mono_ms_now() + LINK_UPGRADE_MS;
        int rc = 0;
        k->in = xmalloc(FRAME_HDR + FRAME_MAX_PAYLOAD);
        for (;;) {
                int64_t left = deadline - mono_ms_now();
                if (left <= 0) {
                        rc = op_fail(e, -ETIMEDOUT, "the agent did not answer the upgrade within %d ms",
                                     LINK_UPGRADE_MS);
                        break;
                }
                struct pollfd p = { .fd = k->fd, .events = (short) (POLLIN | (sent < sizeof(req) - 1 ? POLLOUT : 0)) };
                if (poll(&p, 1, (int) left) <= 0)
                        continue;
                if (p.revents & POLLOUT && sent < sizeof(req) - 1) {
                        ssize_t n = send(k->fd, req + sent, sizeof(req) - 1 - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
                        if (n > 0)
                                sent += (size_t) n;
                }
                if (!(p.revents & (POLLIN | POLLHUP | POLLERR)))
                        continue;
                char buf[4096];
                ssize_t n = recv(k->fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n == 0 || (n < 0 && errno != EAGAIN)) {
                        rc = op_fail(e, -ECONNRESET, "the agent connection closed during the upgrade");
                        break;
                }
                if (n < 0)
                        continue;
                strbuf_add(&in, buf, (size_t) n);
                char *nl;
                while ((nl = memchr(in.buf, '\n', in.len))) {
                        _cleanup_json_ json_t *stale = json_loadb(in.buf, (size_t) (nl - in.buf), 0, NULL);
                        if (json_integer_value(json_object_get(stale, "id")) == 2147480001)
                                break;
                        size_t used = (size_t) (nl + 1 - in.buf); /* not ours */
                        memmove(in.buf, in.buf + used, in.len - used);
                        strbuf_setlen(&in, in.len - used);
                }
                if (!nl) {
                        if (in.len > 65536) {
                                rc = op_fail(e, -EPROTO, "the agent's answer to the upgrade is too long");
                                break;
                        }
                        continue;
                }
                _cleanup_json_ json_t *j = json_loadb(in.buf, (size_t) (nl - in.buf), 0, NULL);
                json_t *res = json_object_get(j, "result");
                if (!json_is_object(res)) {
                        /* an agent of protocol version 1: unknown_method */
                        rc = op_fail(e, -EPROTONOSUPPORT, "the guest agent speaks only protocol version 1");
                        break;
                }
                if (json_integer_value(json_object_get(res, "protocol")) != 2 ||
                    json_integer_value(json_object_get(res, "window")) != FRAME_WINDOW) {
                        rc = op_fail(e, -EPROTONOSUPPORT, "the guest agent offers an unknown protocol");
                        break;
                }
                size_t rest = in.len - (size_t) (nl + 1 - in.buf);
                if (rest > FRAME_HDR + FRAME_MAX_PAYLOAD) {
                        rc = op_fail(e, -EPROTO, "the agent sent too much after the upgrade");
                        break;
                }
                memcpy(k->in, nl + 1, rest);
                k->in_len = rest;
                break;
        }
        strbuf_release(&in);
        return rc;
}

/* The VM's link, made (connected and upgraded) when it has none; a reference
 * for the caller. */
static int link_get(struct agent_links *L, const char *socket_path, struct link **ret, struct op_error *e) {
        pthread_mutex_lock(&L->mu);
        if (L->stopping) {
                pthread_mutex_unlock(&L->mu);
                return op_fail(e, -ESHUTDOWN, "the daemon is shutting down");
        }
        for (struct link *k = L->links; k; k = k->next)
                if (strcmp(k->socket, socket_path) == 0 && !k->closing) {
                        k->refs++;
                        pthread_mutex_unlock(&L->mu);
                        *ret = k;
                        return 0;
                }
        /* connected under the registry lock: a direct call queued behind us
         * at QEMU is impossible, it would have found this link */
        int fd = -1, rc = agent_socket_connect(socket_path, &fd);
        if (rc < 0) {
                pthread_mutex_unlock(&L->mu);
                return op_fail(e, rc, "cannot reach the agent at %s: %s", socket_path, strerror(-rc));
        }
        struct link *k = xcalloc(1, sizeof(*k));
        *k = (struct link) { .L = L, .socket = xstrdup(socket_path), .fd = fd, .wake = -1, .refs = 3, .next = L->links,
                             .next_id = 1 };
        k->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); /* before anyone can find the link */
        pthread_mutex_init(&k->mu, NULL);
        pthread_cond_init(&k->cond, NULL);
        L->links = k;
        pthread_mutex_unlock(&L->mu);

        rc = k->wake < 0 ? op_fail(e, -errno, "eventfd: %s", strerror(errno)) : upgrade(k, e);
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (rc == 0) {
                pthread_mutex_lock(&L->mu);
                L->nthreads++;
                pthread_mutex_unlock(&L->mu);
                if (pthread_create(&t, &at, link_main, k) != 0) {
                        pthread_mutex_lock(&L->mu);
                        L->nthreads--;
                        pthread_mutex_unlock(&L->mu);
                        rc = op_fail(e, -EAGAIN, "cannot start the agent link thread");
                }
        }
        pthread_attr_destroy(&at);
        if (rc == 0)
                link_set_lost(L, socket_path, NULL); /* a working link again */
        if (rc < 0) {
                pthread_mutex_lock(&L->mu);
                for (struct link **pp = &L->links; *pp; pp = &(*pp)->next)
                        if (*pp == k) {
                                *pp = k->next;
                                break;
                        }
                k->closing = true;
                k->refs -= 2; /* the registry's and the thread's that never ran */
                pthread_mutex_unlock(&L->mu);
                /* a call that found the link meanwhile ends now */
                pthread_mutex_lock(&k->mu);
                k->dead = true;
                pthread_cond_broadcast(&k->cond);
                pthread_mutex_unlock(&k->mu);
                link_unref(k);
                return rc;
        }
        *ret = k;
        return 0;
}

/* ---- calls --------------------------------------------------------------------- */

int agent_links_call(struct agent_links *L, const char *socket_path, const char *method, int timeout_ms,
                     const struct agent_wait *w, json_t **ret_result, struct op_error *e) {
        struct link *k = NULL;
        pthread_mutex_lock(&L->mu);
        for (struct link *it = L->links; it; it = it->next)
                if (strcmp(it->socket, socket_path) == 0 && !it->closing) {
                        k = it;
                        k->refs++;
                }
        pthread_mutex_unlock(&L->mu);
        if (!k)
                return agent_call(socket_path, method, timeout_ms, w, ret_result, e);
        pthread_mutex_lock(&k->mu);
        if (k->closing || k->dead) { /* going away: a connection of our own */
                pthread_mutex_unlock(&k->mu);
                link_unref(k);
                return agent_call(socket_path, method, timeout_ms, w, ret_result, e);
        }
        struct call c = { .id = 0x80000000u | k->next_id++, .next = k->calls };
        k->calls = &c;
        _cleanup_json_ json_t *req = json_pack("{s:i, s:i, s:s}", "v", 1, "id", 1, "method", method);
        _cleanup_free_ char *line = json_dump_compact(req);
        bq_frame(&k->out, c.id, FRAME_CALL, 0, line, (uint32_t) strlen(line));
        link_wake(k);
        int64_t deadline = mono_ms_now() + timeout_ms;
        int rc = 0;
        while (!c.done && !k->dead) {
                int64_t left = deadline - mono_ms_now();
                if (left <= 0 || (w && w->cancelled && w->cancelled(w->ud)) ||
                    (w && w->abort_fd >= 0 && poll(&(struct pollfd) { .fd = w->abort_fd, .events = POLLIN }, 1, 0) > 0)) {
                        rc = left <= 0 ? -ETIMEDOUT : -ECANCELED;
                        break;
                }
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                int64_t step = left < 100 ? left : 100;
                ts.tv_nsec += (long) (step % 1000) * 1000000L;
                ts.tv_sec += (time_t) (step / 1000) + ts.tv_nsec / 1000000000L;
                ts.tv_nsec %= 1000000000L;
                pthread_cond_timedwait(&k->cond, &k->mu, &ts);
        }
        for (struct call **pp = &k->calls; *pp; pp = &(*pp)->next)
                if (*pp == &c) {
                        *pp = c.next;
                        break;
                }
        if (rc == -ETIMEDOUT && !c.done)
                /* a link whose agent does not answer is no link: the next call
                 * gets a connection of its own (an agent replaced in the guest
                 * reads lines, and would never answer frames) */
                link_die(k, "the agent did not answer a call in time");
        if (!k->calls && !k->chans)
                k->idle_since = mono_ms_now();
        bool dead = k->dead;
        pthread_mutex_unlock(&k->mu);
        link_wake(k);
        link_unref(k);
        _cleanup_free_ char *answer = c.line;
        if (rc == -ETIMEDOUT)
                return op_fail(e, rc, "the agent did not answer '%s' within %d ms", method, timeout_ms);
        if (rc == -ECANCELED)
                return op_fail(e, rc, "agent '%s' call abandoned", method);
        if (!answer)
                return op_fail(e, dead ? -ECONNRESET : -EPROTO, "agent '%s': %s", method,
                               dead ? "the agent connection was lost" : "no answer");
        _cleanup_json_ json_t *j = json_loads(answer, 0, NULL);
        json_t *res = json_object_get(j, "result");
        if (json_is_object(res)) {
                *ret_result = json_incref(res);
                return 0;
        }
        json_t *err = json_object_get(j, "error");
        return op_fail(e, -EPROTO, "agent %s: %s", method,
                       err ? strempty(json_string_value(json_object_get(err, "message"))) : "malformed answer");
}

/* ---- execs --------------------------------------------------------------------- */

static void chan_release(struct agent_exec *x) {
        struct link *k = x->link;
        pthread_mutex_lock(&k->mu);
        if (x->state != CH_DONE)
                chan_end(k, x, NULL, true);
        for (struct agent_exec **pp = &k->chans; *pp; pp = &(*pp)->next)
                if (*pp == x) {
                        *pp = x->next;
                        break;
                }
        if (!k->calls && !k->chans)
                k->idle_since = mono_ms_now();
        link_wake(k);
        pthread_mutex_unlock(&k->mu);
        free(x->error);
        free(x->from_client);
        bq_free(&x->to_client);
        free(x);
        link_unref(k);
}

int agent_exec_open(struct agent_links *L, const char *socket_path, const uint8_t *spec, size_t spec_len,
                    int timeout_ms, struct agent_exec **ret, uint32_t *ret_pid, struct op_error *e) {
        struct link *k = NULL;
        if (spec_len > FRAME_MAX_PAYLOAD)
                return op_bad_request(e, "the command and its environment exceed %d bytes", FRAME_MAX_PAYLOAD);
        int rc = link_get(L, socket_path, &k, e);
        if (rc < 0 || !k)
                return rc < 0 ? rc : -EIO;
        pthread_mutex_lock(&k->mu);
        for (int tries = 0; k->closing && !k->stopping && tries < 3; tries++) {
                /* it closed for idleness as we found it: a new one */
                pthread_mutex_unlock(&k->mu);
                link_unref(k);
                k = NULL;
                if ((rc = link_get(L, socket_path, &k, e)) < 0 || !k)
                        return rc < 0 ? rc : -EIO;
                pthread_mutex_lock(&k->mu);
        }
        size_t n = 0;
        for (struct agent_exec *it = k->chans; it; it = it->next)
                n++;
        if (n >= FRAME_MAX_CHANNELS || k->dead || k->stopping) {
                bool dead = k->dead || k->stopping;
                pthread_mutex_unlock(&k->mu);
                link_unref(k);
                return dead ? op_fail(e, -ECONNRESET, "the agent connection was lost")
                            : op_fail(e, -EBUSY, "%d commands already run on this VM", FRAME_MAX_CHANNELS);
        }
        struct agent_exec *x = xcalloc(1, sizeof(*x));
        *x = (struct agent_exec) { .link = k, .id = k->next_id++ & 0x7fffffffu, .cfd = -1, .next = k->chans,
                                   .out_credit = { 0, FRAME_WINDOW, FRAME_WINDOW }, .in_credit = FRAME_WINDOW };
        if (x->id == 0)
                x->id = k->next_id++;
        k->chans = x;
        bq_frame(&k->out, x->id, FRAME_OPEN, 0, spec, (uint32_t) spec_len);
        link_wake(k);
        int64_t deadline = mono_ms_now() + timeout_ms;
        while (x->state == CH_OPENING && !k->dead && mono_ms_now() < deadline) {
                struct timespec ts = wall_deadline(100);
                pthread_cond_timedwait(&k->cond, &k->mu, &ts);
        }
        enum chan_state st = x->state;
        _cleanup_free_ char *why = x->error ? xstrdup(x->error) : NULL;
        *ret_pid = x->pid;
        pthread_mutex_unlock(&k->mu);
        if (st == CH_OPEN) {
                *ret = x;
                return 0;
        }
        chan_release(x);
        if (why)
                return op_fail(e, -ENOEXEC, "%s", why);
        return op_fail(e, -ETIMEDOUT, "the agent did not start the command within %d ms", timeout_ms);
}

void agent_exec_attach(struct agent_exec *x, int client_fd) {
        struct link *k = x->link;
        pthread_mutex_lock(&k->mu);
        x->cfd = client_fd;
        link_wake(k);
        pthread_mutex_unlock(&k->mu);
}

void agent_exec_finish(struct agent_exec *x) {
        struct link *k = x->link;
        pthread_mutex_lock(&k->mu);
        while (x->cfd >= 0 && x->state != CH_DONE)
                pthread_cond_wait(&k->cond, &k->mu);
        if (x->cfd >= 0 && x->error && !x->exited && !x->to_client.len) /* failed before it was attached */
                bq_frame(&x->to_client, EXEC_CLIENT_CHAN, FRAME_ERROR, 0, x->error, (uint32_t) strlen(x->error));
        /* what is left for the client, with a bound, without the link's lock */
        struct bq rest = x->to_client;
        x->to_client = (struct bq) { 0 };
        int cfd = x->cfd;
        pthread_mutex_unlock(&k->mu);
        for (int t = 0; cfd >= 0 && rest.len && t < 500; t++)
                if (bq_flush(&rest, cfd) < 0 ||
                    (rest.len && poll(&(struct pollfd) { .fd = cfd, .events = POLLOUT }, 1, 10) < 0))
                        break;
        bq_free(&rest);
        chan_release(x);
}

int agent_exec_fds(struct agent_links *L, const char *socket_path, const uint8_t *spec, size_t spec_len, int in_fd,
                   int out_fd, int err_fd, const struct agent_wait *w, int *ret_status, struct op_error *e) {
        struct agent_exec *x;
        uint32_t pid;
        int sv[2];
        int rc = agent_exec_open(L, socket_path, spec, spec_len, 10000, &x, &pid, e);
        if (rc < 0)
                return rc;
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
                rc = op_fail(e, -errno, "socketpair: %s", strerror(errno));
                agent_exec_finish(x);
                return rc;
        }
        agent_exec_attach(x, sv[0]);
        struct exec_client_opts o = { .in_fd = in_fd, .out_fd = out_fd, .err_fd = err_fd, .signal_fd = -1,
                                      .tty_fd = -1, .cancel_fd = w ? w->abort_fd : -1,
                                      .timeout_ms = w ? w->timeout_ms : 0 };
        struct exec_client_result res;
        rc = exec_client_run(sv[1], &o, &res);
        close(sv[1]); /* the link sees the end of a client that did not finish */
        agent_exec_finish(x);
        close(sv[0]);
        if (rc == 0)
                *ret_status = res.code;
        else
                rc = op_fail(e, res.cancelled ? -ECANCELED : -EIO, "%s", res.error ? res.error : "the exec failed");
        exec_client_result_done(&res);
        return rc;
}

void agent_links_stop(struct agent_links *L) {
        pthread_mutex_lock(&L->mu);
        L->stopping = true;
        for (struct link *k = L->links; k; k = k->next) {
                pthread_mutex_lock(&k->mu);
                /* every channel ends (its client gets the reason) */
                for (struct agent_exec *x = k->chans; x; x = x->next)
                        chan_end(k, x, "the daemon is shutting down", true);
                k->stopping = true;
                link_wake(k);
                pthread_mutex_unlock(&k->mu);
        }
        pthread_mutex_unlock(&L->mu);
}

void agent_links_free(struct agent_links *L) {
        if (!L)
                return;
        agent_links_stop(L);
        pthread_mutex_lock(&L->mu);
        while (L->nthreads > 0)
                pthread_cond_wait(&L->cond, &L->mu);
        pthread_mutex_unlock(&L->mu);
        while (L->lost) {
                struct lost *l = L->lost;
                L->lost = l->next;
                free(l->socket);
                free(l->why);
                free(l);
        }
        pthread_mutex_destroy(&L->mu);
        pthread_mutex_destroy(&L->lost_mu);
        pthread_cond_destroy(&L->cond);
        free(L);
}
