/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Inside the agent links (agent_link.c: the registry, making a link, calls
 * and execs for their users; agent_link_relay.c: the link thread that moves
 * and checks every frame). Locks: links.mu, then link.mu; lost_mu is a leaf.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "agent_link.h"
#include "frame.h"
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

static inline void bq_add(struct bq *q, const void *p, size_t n) {
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

static inline void bq_frame(struct bq *q, uint32_t chan, uint8_t type, uint8_t stream, const void *p, uint32_t len) {
        uint8_t h[FRAME_HDR];
        frame_header(h, chan, type, stream, len);
        bq_add(q, h, sizeof(h));
        if (len)
                bq_add(q, p, len);
}

static inline void bq_take(struct bq *q, size_t n) {
        memmove(q->buf, q->buf + n, q->len - n);
        q->len -= n;
}

static inline void bq_free(struct bq *q) {
        free(q->buf);
        *q = (struct bq) { 0 };
}

/* Sends what it can without blocking; -errno on a dead socket. */
static inline int bq_flush(struct bq *q, int fd) {
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

void link_set_lost(struct agent_links *L, const char *socket, const char *why);
void link_unref(struct link *k);
void link_wake(struct link *k);

/* agent_link_relay.c, with k->mu held: */
void chan_end(struct link *k, struct agent_exec *x, const char *error, bool close_guest);
void link_die(struct link *k, const char *why);
/* The link thread (one reference is its own). */
void *link_main(void *arg);
