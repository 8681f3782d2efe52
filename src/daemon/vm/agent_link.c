/* SPDX-License-Identifier: MIT */
#include "agent_link.h"

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

#define LINK_IDLE_MS 2000        /* a link without channels or calls closes after this */
#define LINK_UPGRADE_MS 5000
#define OUT_LIMIT (4u << 20)     /* stop reading clients while this much waits for the agent */
#define CLIENT_SLACK (64u << 10)
#define PING_EVERY_MS 5000      /* while execs run: a call the agent must answer... */
#define PING_DEAD_MS 15000      /* ...within this, or the link is dead (agent killed or restarted) */
#define PING_ID 0xffffffffu

/* A byte queue. */
struct bq {
        uint8_t *buf;
        size_t len, cap;
};

static void bq_add(struct bq *q, const void *p, size_t n) {
        if (q->len + n > q->cap) {
                size_t cap = q->cap ? q->cap : 4096;
                while (cap < q->len + n)
                        cap *= 2;
                q->buf = xrealloc(q->buf, cap);
                q->cap = cap;
        }
        memcpy(q->buf + q->len, p, n);
        q->len += n;
}

static void bq_frame(struct bq *q, uint32_t chan, uint8_t type, uint8_t stream, const void *p, uint32_t len) {
        uint8_t h[FRAME_HDR];
        frame_header(h, chan, type, stream, len);
        bq_add(q, h, sizeof(h));
        if (len)
                bq_add(q, p, len);
}

static void bq_take(struct bq *q, size_t n) {
        memmove(q->buf, q->buf + n, q->len - n);
        q->len -= n;
}

static void bq_free(struct bq *q) {
        free(q->buf);
        *q = (struct bq) { 0 };
}

/* Sends what it can without blocking; -errno on a dead socket. */
static int bq_flush(struct bq *q, int fd) {
        while (q->len) {
                ssize_t k = send(fd, q->buf, q->len, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (k > 0)
                        bq_take(q, (size_t) k);
                else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        return 0;
                else if (k < 0 && errno != EINTR)
                        return -errno;
        }
        return 0;
}

enum chan_state { CH_OPENING, CH_OPEN, CH_DONE };

struct agent_exec {
        struct link *link;
        struct agent_exec *next;
        uint32_t id;
        enum chan_state state;
        uint32_t pid;
        char *error;
        int cfd;         /* the client, once attached; -1 before */
        bool exited;     /* EXIT relayed to the client's queue */
        struct bq to_client;
        uint8_t *from_client;
        size_t from_len;
        uint32_t out_credit[3]; /* what the agent may still send on stdout/stderr */
        uint32_t in_credit;     /* what the client may still send on stdin */
        bool eof[3];            /* each stream ended (stdin: by the client) */
};

/* What may wait for a client beyond its credit window: control frames. A
 * peer that makes more is breaking the rules. */
#define TO_CLIENT_MAX (2 * FRAME_WINDOW + CLIENT_SLACK)

struct call {
        struct call *next;
        uint32_t id;
        char *line;      /* the answer */
        bool done;
};

struct link {
        struct agent_links *L;
        struct link *next;
        char *socket;
        int fd, wake;
        int refs;        /* registry, thread, users */
        bool closing;    /* no longer in the registry */
        bool stopping;   /* the daemon stops: close once every channel is done */
        bool dead;
        char *dead_why;
        pthread_mutex_t mu;
        pthread_cond_t cond;
        struct agent_exec *chans;
        struct call *calls;
        uint32_t next_id;
        uint8_t *in;
        size_t in_len;
        struct bq out;
        int64_t idle_since;
        int64_t ping_sent, last_heard; /* ping_sent 0: none outstanding */
};

struct lost {
        struct lost *next;
        char *socket, *why;
};

struct agent_links {
        pthread_mutex_t mu;
        pthread_mutex_t lost_mu; /* leaf: the "lost" notes (set under a link's lock) */
        pthread_cond_t cond; /* a link ended */
        struct link *links;
        int nthreads;
        bool stopping;
        struct lost *lost;
};

struct agent_links *agent_links_new(void) {
        struct agent_links *L = xcalloc(1, sizeof(*L));
        pthread_mutex_init(&L->mu, NULL);
        pthread_mutex_init(&L->lost_mu, NULL);
        pthread_cond_init(&L->cond, NULL);
        return L;
}

static void set_lost(struct agent_links *L, const char *socket, const char *why) {
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

static void link_unref(struct link *k) {
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

static void wake(struct link *k) {
        uint64_t one = 1;
        if (write(k->wake, &one, sizeof(one)) < 0) {
                /* saturated: it is awake anyway */
        }
}

/* ---- the link thread --------------------------------------------------------- */

static struct agent_exec *chan_find(struct link *k, uint32_t id) {
        for (struct agent_exec *x = k->chans; x; x = x->next)
                if (x->id == id)
                        return x;
        return NULL;
}

/* The channel is over for its client; the guest forgets it with CLOSE when
 * it did not end by itself. */
static void chan_end(struct link *k, struct agent_exec *x, const char *error, bool close_guest) {
        if (x->state == CH_DONE)
                return;
        if (error && !k->dead)
                log_warn("agent %s: exec channel %u ends: %s", k->socket, x->id, error);
        if (error && !x->error)
                x->error = xstrdup(error);
        if (error && x->cfd >= 0 && !x->exited) {
                bq_frame(&x->to_client, EXEC_CLIENT_CHAN, FRAME_ERROR, 0, error, (uint32_t) strlen(error));
                (void) bq_flush(&x->to_client, x->cfd);
        }
        if (close_guest && !k->dead)
                bq_frame(&k->out, x->id, FRAME_CLOSE, 0, NULL, 0);
        x->state = CH_DONE;
        pthread_cond_broadcast(&k->cond);
}

static void link_die(struct link *k, const char *why) {
        if (k->dead)
                return;
        k->dead = true;
        k->dead_why = xstrdup(why);
        _cleanup_free_ char *msg = xasprintf("the agent connection was lost: %s", why);
        bool busy = false;
        for (struct agent_exec *x = k->chans; x; x = x->next) {
                busy |= x->state != CH_DONE;
                chan_end(k, x, msg, false);
        }
        for (struct call *c = k->calls; c; c = c->next)
                c->done = true;
        if (busy) {
                log_warn("agent %s: %s", k->socket, msg);
                set_lost(k->L, k->socket, msg);
        }
        pthread_cond_broadcast(&k->cond);
}

/* A frame from the agent. */
static void from_agent(struct link *k, const struct frame *f) {
        k->last_heard = mono_ms_now();
        if (f->type == FRAME_REPLY && f->chan == PING_ID) {
                k->ping_sent = 0;
                return;
        }
        if (f->type == FRAME_REPLY) {
                for (struct call *c = k->calls; c; c = c->next)
                        if (c->id == f->chan && !c->done) {
                                c->line = xstrndup((const char *) f->payload, f->len);
                                c->done = true;
                                pthread_cond_broadcast(&k->cond);
                        }
                return;
        }
        if (f->chan == 0)
                return link_die(k, f->type == FRAME_ERROR ? "the agent reported a protocol error" : "unexpected frame");
        struct agent_exec *x = chan_find(k, f->chan);
        if (!x || x->state == CH_DONE)
                return; /* late frames of a closed channel */
        if (x->exited)
                return chan_end(k, x, "the agent sent frames after the exit", true);
        switch (f->type) {
        case FRAME_OPENED:
                x->pid = frame_u32(f->payload);
                x->state = CH_OPEN;
                pthread_cond_broadcast(&k->cond);
                return;
        case FRAME_ERROR: {
                /* the guest's words: no control bytes reach a log or a terminal */
                _cleanup_free_ char *m = xstrndup((const char *) f->payload, f->len > 512 ? 512 : f->len);
                for (char *c = m; *c; c++)
                        if ((unsigned char) *c < 0x20 || *c == 0x7f)
                                *c = ' ';
                return chan_end(k, x, m, false);
        }
        case FRAME_DATA:
                if (f->stream == FRAME_STDIN || x->eof[f->stream] || f->len > x->out_credit[f->stream])
                        return chan_end(k, x, "the agent sent output beyond its credit or after its end", true);
                if (f->len == 0)
                        return; /* nothing: not worth a frame to the client */
                x->out_credit[f->stream] -= f->len;
                break;
        case FRAME_CREDIT:
                if (f->stream != FRAME_STDIN)
                        return chan_end(k, x, "the agent sent credit for an output stream", true);
                if (frame_u32(f->payload) > FRAME_WINDOW - x->in_credit)
                        return chan_end(k, x, "the agent gave back more credit than it had", true);
                if (frame_u32(f->payload) == 0)
                        return;
                x->in_credit += frame_u32(f->payload);
                break;
        case FRAME_EOF:
                if (f->stream == FRAME_STDIN || x->eof[f->stream])
                        return chan_end(k, x, "the agent ended a stream twice", true);
                x->eof[f->stream] = true;
                break;
        case FRAME_EXIT:
                x->exited = true;
                break;
        default:
                return chan_end(k, x, "unexpected frame from the agent", true);
        }
        if (x->to_client.len + FRAME_HDR + f->len > TO_CLIENT_MAX)
                return chan_end(k, x, "the agent sent more than its client could take", true);
        bq_frame(&x->to_client, EXEC_CLIENT_CHAN, f->type, f->stream, f->payload, f->len);
}

/* A frame from a channel's client: checked, renumbered, passed on. */
static void from_client(struct link *k, struct agent_exec *x, const struct frame *f) {
        if (f->chan != EXEC_CLIENT_CHAN)
                return chan_end(k, x, "frame for another channel", true);
        switch (f->type) {
        case FRAME_DATA:
                if (f->stream != FRAME_STDIN || x->eof[FRAME_STDIN] || f->len > x->in_credit)
                        return chan_end(k, x, "stdin beyond its credit or after its end", true);
                if (f->len == 0)
                        return;
                x->in_credit -= f->len;
                break;
        case FRAME_CREDIT: {
                uint32_t add = frame_u32(f->payload);
                if (f->stream == FRAME_STDIN || add > FRAME_WINDOW - x->out_credit[f->stream])
                        return chan_end(k, x, "credit beyond the window", true);
                if (add == 0)
                        return;
                x->out_credit[f->stream] += add;
                break;
        }
        case FRAME_EOF:
                if (f->stream != FRAME_STDIN || x->eof[FRAME_STDIN])
                        return chan_end(k, x, "EOF of an output stream, or twice", true);
                x->eof[FRAME_STDIN] = true;
                break;
        case FRAME_SIGNAL:
        case FRAME_RESIZE:
                break;
        case FRAME_CLOSE:
                return chan_end(k, x, NULL, true);
        default:
                return chan_end(k, x, "unexpected frame from the client", true);
        }
        bq_frame(&k->out, x->id, f->type, f->stream, f->payload, f->len);
}

static void read_client(struct link *k, struct agent_exec *x) {
        if (!x->from_client)
                x->from_client = xmalloc(FRAME_HDR + FRAME_MAX_PAYLOAD);
        ssize_t n = recv(x->cfd, x->from_client + x->from_len, FRAME_HDR + FRAME_MAX_PAYLOAD - x->from_len,
                         MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                /* the client went away: the command goes with it */
                return chan_end(k, x, NULL, true);
        }
        if (n < 0)
                return;
        x->from_len += (size_t) n;
        size_t used = 0;
        while (x->state != CH_DONE) {
                struct frame f;
                int r = frame_parse(x->from_client + used, x->from_len - used, &f);
                if (r == 0)
                        break;
                if (r < 0)
                        return chan_end(k, x, "malformed frame from the client", true);
                used += (size_t) r;
                from_client(k, x, &f);
        }
        memmove(x->from_client, x->from_client + used, x->from_len - used);
        x->from_len -= used;
}

static void parse_agent(struct link *k);

static void read_agent(struct link *k) {
        ssize_t n = recv(k->fd, k->in + k->in_len, FRAME_HDR + FRAME_MAX_PAYLOAD - k->in_len, MSG_DONTWAIT);
        if (n == 0)
                return link_die(k, "the guest closed it (VM stopped or agent gone)");
        if (n < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        link_die(k, strerror(errno));
                return;
        }
        k->in_len += (size_t) n;
        parse_agent(k);
}

/* The whole frames in k->in, handled; a partial one stays. */
static void parse_agent(struct link *k) {
        size_t used = 0;
        while (!k->dead) {
                struct frame f;
                int r = frame_parse(k->in + used, k->in_len - used, &f);
                if (r == 0)
                        break;
                if (r < 0)
                        return link_die(k, "malformed frame from the agent");
                used += (size_t) r;
                from_agent(k, &f);
        }
        memmove(k->in, k->in + used, k->in_len - used);
        k->in_len -= used;
}

static bool link_idle(struct link *k) {
        return !k->chans && !k->calls;
}

static bool chan_present(struct link *k, struct agent_exec *x) {
        for (struct agent_exec *it = k->chans; it; it = it->next)
                if (it == x)
                        return true;
        return false;
}

static bool all_done(struct link *k) {
        for (struct agent_exec *x = k->chans; x; x = x->next)
                if (x->state != CH_DONE)
                        return false;
        return !k->calls;
}

/* Under both locks (registry first): out of the registry if still idle.
 * Called and returns with k->mu held. */
static bool close_if_idle(struct link *k) {
        pthread_mutex_unlock(&k->mu);
        pthread_mutex_lock(&k->L->mu);
        pthread_mutex_lock(&k->mu);
        /* refs 2: the registry's and ours; more: a user is about to queue work */
        if ((link_idle(k) && k->refs == 2) || k->stopping) {
                for (struct link **pp = &k->L->links; *pp; pp = &(*pp)->next)
                        if (*pp == k) {
                                *pp = k->next;
                                k->refs--;
                                break;
                        }
                k->closing = true;
        }
        pthread_mutex_unlock(&k->L->mu);
        return k->closing;
}

/* An agent killed in the guest leaves QEMU's socket open: only a question
 * it must answer tells. False once the link is dead. */
static bool ping(struct link *k, bool busy) {
        int64_t now = mono_ms_now();
        if (busy && !k->ping_sent && now - k->last_heard >= PING_EVERY_MS) {
                static const char q[] = "{\"v\":1,\"id\":1,\"method\":\"health\"}";
                bq_frame(&k->out, PING_ID, FRAME_CALL, 0, q, sizeof(q) - 1);
                k->ping_sent = now;
                (void) bq_flush(&k->out, k->fd);
        }
        if (k->ping_sent && now - k->ping_sent >= PING_DEAD_MS) {
                link_die(k, "the agent stopped answering (killed or restarted in the guest)");
                return false;
        }
        return true;
}

/* After a poll: what the agent and the clients sent, what can leave. */
static void after_poll(struct link *k, const struct pollfd *p, struct agent_exec **px, size_t n) {
        if (p[1].revents) {
                uint64_t v;
                if (read(k->wake, &v, sizeof(v)) < 0) {
                        /* spurious */
                }
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR))
                read_agent(k);
        for (size_t j = 2; j < n; j++) {
                struct agent_exec *x = px[j - 2];
                if (!chan_present(k, x) || x->cfd < 0)
                        continue; /* released or not attached while we polled */
                if ((p[j].revents & POLLOUT || x->to_client.len) && bq_flush(&x->to_client, x->cfd) < 0)
                        chan_end(k, x, NULL, true);
                if (x->state != CH_DONE && p[j].revents & (POLLIN | POLLHUP | POLLERR))
                        read_client(k, x);
        }
}

/* One round: poll (unlocked) and handle. False when the link is over. */
static bool link_round(struct link *k) {
        size_t nch = 0;
        for (struct agent_exec *x = k->chans; x; x = x->next)
                nch++;
        if (!ping(k, nch > 0 || k->calls))
                return false;
        _cleanup_free_ struct pollfd *p = xcalloc(nch + 2, sizeof(*p));
        _cleanup_free_ struct agent_exec **px = xcalloc(nch + 1, sizeof(*px));
        p[0] = (struct pollfd) { .fd = k->fd, .events = (short) (POLLIN | (k->out.len ? POLLOUT : 0)) };
        p[1] = (struct pollfd) { .fd = k->wake, .events = POLLIN };
        size_t i = 2;
        for (struct agent_exec *x = k->chans; x; x = x->next) {
                px[i - 2] = x;
                bool can_read = x->state != CH_DONE && k->out.len < OUT_LIMIT;
                p[i++] = (struct pollfd) { .fd = x->cfd,
                                           .events = (short) ((can_read ? POLLIN : 0) | (x->to_client.len ? POLLOUT : 0)) };
        }
        int64_t left = k->stopping ? 100 : link_idle(k) ? LINK_IDLE_MS - (mono_ms_now() - k->idle_since) : 1000;
        pthread_mutex_unlock(&k->mu);
        int r = poll(p, (nfds_t) i, left < 0 ? 0 : (int) left + 1);
        pthread_mutex_lock(&k->mu);
        if (r < 0 && errno != EINTR) {
                link_die(k, strerror(errno));
                return false;
        }
        if (r > 0)
                after_poll(k, p, px, i);
        /* what was queued to attached clients in this round */
        for (struct agent_exec *x = k->chans; x; x = x->next) {
                if (x->cfd >= 0 && x->to_client.len && bq_flush(&x->to_client, x->cfd) < 0)
                        chan_end(k, x, NULL, true);
                if (x->exited && !x->to_client.len && x->state != CH_DONE)
                        chan_end(k, x, NULL, false);
        }
        if (!k->dead && bq_flush(&k->out, k->fd) < 0)
                link_die(k, strerror(errno));
        if (!link_idle(k))
                k->idle_since = mono_ms_now();
        return !k->dead;
}

/* Out of the registry (if a death put it there still), users woken. */
static void link_end(struct link *k) {
        struct agent_links *L = k->L;
        pthread_mutex_lock(&L->mu);
        if (!k->closing) {
                for (struct link **pp = &L->links; *pp; pp = &(*pp)->next)
                        if (*pp == k) {
                                *pp = k->next;
                                k->refs--;
                                break;
                        }
                k->closing = true;
        }
        pthread_mutex_unlock(&L->mu);
        pthread_mutex_lock(&k->mu);
        pthread_cond_broadcast(&k->cond);
        pthread_mutex_unlock(&k->mu);
        link_unref(k); /* may free k */
        /* last: agent_links_free waits for this count, then frees L */
        pthread_mutex_lock(&L->mu);
        L->nthreads--;
        pthread_cond_broadcast(&L->cond);
        pthread_mutex_unlock(&L->mu);
}

static void *link_main(void *arg) {
        struct link *k = arg;
        pthread_mutex_lock(&k->mu);
        k->idle_since = k->last_heard = mono_ms_now();
        parse_agent(k); /* what came right after the upgrade's answer */
        for (;;) {
                if (k->dead)
                        break;
                if (((link_idle(k) && mono_ms_now() - k->idle_since >= LINK_IDLE_MS) || (k->stopping && all_done(k))) &&
                    close_if_idle(k))
                        break;
                if (!link_round(k))
                        break;
        }
        if (!k->dead) {
                /* idle: the agent goes back to lines; a short blocking goodbye */
                bq_frame(&k->out, 0, FRAME_BYE, 0, NULL, 0);
                for (int t = 0; t < 20 && k->out.len && bq_flush(&k->out, k->fd) == 0; t++)
                        if (k->out.len)
                                poll(&(struct pollfd) { .fd = k->fd, .events = POLLOUT }, 1, 10);
        }
        pthread_mutex_unlock(&k->mu);
        link_end(k);
        return NULL;
}

/* ---- making a link ------------------------------------------------------------- */

static int connect_once(const char *socket_path, int *ret_fd) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(socket_path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, socket_path, strlen(socket_path) + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int en = errno;
                close(fd);
                return -en;
        }
        *ret_fd = fd;
        return 0;
}

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
        int fd = -1, rc = connect_once(socket_path, &fd);
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
                set_lost(L, socket_path, NULL); /* a working link again */
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
        wake(k);
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
        wake(k);
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
        wake(k);
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
        wake(k);
        int64_t deadline = mono_ms_now() + timeout_ms;
        while (x->state == CH_OPENING && !k->dead && mono_ms_now() < deadline) {
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                ts.tv_nsec += 100 * 1000000L;
                ts.tv_sec += ts.tv_nsec / 1000000000L;
                ts.tv_nsec %= 1000000000L;
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
        wake(k);
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
                wake(k);
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
