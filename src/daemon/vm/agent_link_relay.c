/* SPDX-License-Identifier: MIT */
/* The link thread: one poll loop per VM's agent connection that relays
 * every channel's frames between its client and the agent, checking credit,
 * ends of streams and exits both ways; pings; closes when idle. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

#include "agent_link_internal.h"
#include "clock.h"
#include "execclient.h"
#include "log.h"

static struct agent_exec *chan_find(struct link *k, uint32_t id) {
        for (struct agent_exec *x = k->chans; x; x = x->next)
                if (x->id == id)
                        return x;
        return NULL;
}

/* The channel is over for its client; the guest forgets it with CLOSE when
 * it did not end by itself. */
void chan_end(struct link *k, struct agent_exec *x, const char *error, bool close_guest) {
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

void link_die(struct link *k, const char *why) {
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
                link_set_lost(k->L, k->socket, msg);
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
                _cleanup_free_ char *m = str_defuse(xstrndup((const char *) f->payload, f->len > 512 ? 512 : f->len), ' ');
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
static bool agent_frame(void *ud, const struct frame *f) {
        struct link *k = ud;
        from_agent(k, f);
        return !k->dead;
}

static void parse_agent(struct link *k) {
        if (!k->dead && frame_consume(k->in, &k->in_len, agent_frame, k) < 0)
                link_die(k, "malformed frame from the agent");
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

void *link_main(void *arg) {
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

