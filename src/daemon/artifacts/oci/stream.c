/* SPDX-License-Identifier: MIT */
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "gunzip.h"
#include "log.h"
#include "strbuf.h"

#define CHUNK_BYTES ((size_t) 1 << 20)

struct chunk {
        struct chunk *next;
        size_t len; /* data in it: grown by the thread, under the stream's mu once queued */
        uint8_t data[];
};

struct layer_pool {
        pthread_mutex_t mu;
        pthread_cond_t back; /* a chunk came back, a stream started being read or stopped */
        struct chunk *spare; /* to reuse */
        size_t out, cap;     /* chunks handed out and not back; the most out at once (but below) */
};

struct layer_pool *layer_pool_new(uint64_t cap_bytes) {
        struct layer_pool *p = xcalloc(1, sizeof(*p));
        pthread_mutex_init(&p->mu, NULL);
        pthread_cond_init(&p->back, NULL);
        p->cap = (size_t) ((cap_bytes + CHUNK_BYTES - 1) / CHUNK_BYTES);
        if (p->cap == 0)
                p->cap = 1;
        return p;
}

void layer_pool_free(struct layer_pool *p) {
        if (!p)
                return;
        while (p->spare) {
                struct chunk *c = p->spare;
                p->spare = c->next;
                free(c);
        }
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->back);
        free(p);
}

static void pool_wake(struct layer_pool *p) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->back);
        pthread_mutex_unlock(&p->mu);
}

static void pool_give(struct layer_pool *p, struct chunk *c) {
        pthread_mutex_lock(&p->mu);
        c->next = p->spare;
        p->spare = c;
        p->out--;
        pthread_cond_broadcast(&p->back);
        pthread_mutex_unlock(&p->mu);
}

bool layer_stream_supported(void) {
#ifdef HAVE_ISAL
        return true;
#else
        return false;
#endif
}

#ifdef HAVE_ISAL

struct layer_stream {
        struct layer_pool *pool;
        int in;           /* the writer's file (opened again), -1 until a try opens it and once the thread ended */
        pthread_t thread;
        pthread_mutex_t mu;
        pthread_cond_t cond;  /* the writer's news (avail, ended, stop) */
        pthread_cond_t grown; /* data came, or the thread ended (layer_stream_next) */
        uint64_t avail;       /* bytes in `in` */
        uint64_t pos;         /* read by the thread */
        uint64_t out_bytes;   /* inflated (the plain tar's size so far) */
        struct chunk *head, *tail; /* queued, oldest first; the reader is at rpos in head */
        size_t rpos;
        struct chunk *fill;   /* the thread's: the tail while it has room (NULL once full: the reader's then) */
        struct chunk *scratch; /* owned: where a discarding thread inflates when it had no chunk */
        _Atomic size_t held;  /* chunks from the pool in this stream */
        _Atomic bool reading, discard;
        bool opened;          /* a try opened its file (in was set) */
        bool ended, ok, finished, joined;
        _Atomic bool stop;
        int rc; /* the thread's */
};

/* Until the writer says its blob verified, the bytes may be anyone's (a pull
 * pinned by digest, through a hostile mirror or redirect), and a gzip bomb
 * must not be inflated from them: the stream inflates at most
 * UNVERIFIED_SLACK plus UNVERIFIED_RATIO times what it has read (layers
 * inflate 3 to 10 times), reading UNVERIFIED_READ at a time (deflate's
 * 1032:1 bound keeps the overshoot near 16 MiB), and past that waits for the
 * writer's word. A verified blob goes on, as the flatten's own
 * decompression does. */
#define UNVERIFIED_SLACK (UINT64_C(16) << 20)
#define UNVERIFIED_RATIO 32u
#define UNVERIFIED_READ ((size_t) 16 << 10)

/* oci_read_fn: what the writer has put in its file, waiting for more. */
static ssize_t follow(void *ud, void *buf, size_t len) {
        struct layer_stream *s = ud;
        bool verified, stop;
        pthread_mutex_lock(&s->mu);
        for (;;) {
                verified = s->ended && s->ok;
                stop = s->stop || (s->ended && !s->ok);
                bool held = !verified && s->out_bytes > UNVERIFIED_SLACK + UNVERIFIED_RATIO * s->pos;
                if (stop || (!held && (s->pos < s->avail || s->ended)))
                        break;
                pthread_cond_wait(&s->cond, &s->mu);
        }
        uint64_t avail = s->avail;
        int fd = s->in;
        pthread_mutex_unlock(&s->mu);
        if (stop)
                return -ECANCELED;
        if (s->pos >= avail)
                return 0; /* the writer is done and all of it is read */
        if (!verified && len > UNVERIFIED_READ)
                len = UNVERIFIED_READ;
        size_t n = avail - s->pos < len ? (size_t) (avail - s->pos) : len;
        ssize_t r = pread(fd, buf, n, (off_t) s->pos);
        if (r < 0)
                return -errno;
        if (r == 0)
                return -EIO; /* shorter than the writer said */
        s->pos += (uint64_t) r;
        return r;
}

/* A new chunk for the thread, waiting while the stream may not have one
 * (its own cap, or the pool's unless it is being read); NULL: stopped. */
static struct chunk *pool_take(struct layer_stream *s) {
        struct layer_pool *p = s->pool;
        struct chunk *c = NULL;
        pthread_mutex_lock(&p->mu);
        for (;;) {
                if (s->stop || s->discard) {
                        pthread_mutex_unlock(&p->mu);
                        return NULL;
                }
                if (s->held < p->cap && (s->reading || p->out < p->cap))
                        break;
                struct timespec ts = wall_deadline(100);
                pthread_cond_timedwait(&p->back, &p->mu, &ts);
        }
        p->out++;
        s->held++;
        if (p->spare) {
                c = p->spare;
                p->spare = c->next;
        }
        pthread_mutex_unlock(&p->mu);
        if (!c)
                c = xmalloc(sizeof(*c) + CHUNK_BYTES);
        c->next = NULL;
        c->len = 0;
        return c;
}

/* A chunk of the stream's back to the pool (its mu held). */
static void chunk_back(struct layer_stream *s, struct chunk *c) {
        s->held--;
        pool_give(s->pool, c);
}

/* oci_gunzip_sink: room at the end of the chunk being filled, a new one
 * when it is full. Once discarding, the same room again and again. */
static int sink_get(void *ud, uint8_t **buf, size_t *cap) {
        struct layer_stream *s = ud;
        if (!s->fill) {
                struct chunk *c = pool_take(s); /* NULL: stopped, or discarding */
                pthread_mutex_lock(&s->mu);
                if (c) { /* (discarding meanwhile: the join gives it back with the queue) */
                        if (s->tail)
                                s->tail->next = c;
                        else
                                s->head = c;
                        s->tail = c;
                } else if (s->discard) {
                        if (!s->scratch)
                                s->scratch = xmalloc(sizeof(*c) + CHUNK_BYTES);
                        c = s->scratch;
                }
                s->fill = c;
                pthread_mutex_unlock(&s->mu);
                if (!c)
                        return -ECANCELED;
        }
        size_t at = s->discard ? 0 : s->fill->len;
        *buf = s->fill->data + at;
        *cap = CHUNK_BYTES - at;
        return 0;
}

static int sink_put(void *ud, size_t n) {
        struct layer_stream *s = ud;
        pthread_mutex_lock(&s->mu);
        s->out_bytes += n;
        if (!s->discard) {
                s->fill->len += n;
                if (s->fill->len == CHUNK_BYTES)
                        s->fill = NULL; /* the reader's to give back once read */
                pthread_cond_broadcast(&s->grown);
        }
        pthread_mutex_unlock(&s->mu);
        return 0;
}

static void *run(void *arg) {
        struct layer_stream *s = arg;
        (void) setpriority(PRIO_PROCESS, 0, 5); /* this thread only: the downloads first */
        char *why = NULL;
        struct oci_gunzip_sink sink = { .get = sink_get, .put = sink_put, .ud = s };
        int rc = oci_gunzip_into(follow, s, &sink, &s->stop, &why);
        if (rc < 0 && rc != -ECANCELED)
                log_debug("a layer not decompressed while fetched (the flatten does it): %s", why);
        free(why);
        pthread_mutex_lock(&s->mu);
        s->rc = rc;
        s->finished = true;
        s->fill = NULL;
        if (s->in >= 0)
                close(s->in);
        s->in = -1;
        pthread_cond_broadcast(&s->cond);
        pthread_cond_broadcast(&s->grown);
        pthread_mutex_unlock(&s->mu);
        return NULL;
}

struct layer_stream *layer_stream_new(struct layer_pool *p) {
        struct layer_stream *s = xmalloc(sizeof(*s));
        *s = (struct layer_stream) { .pool = p, .in = -1 };
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->cond, NULL);
        pthread_cond_init(&s->grown, NULL);
        if (pthread_create(&s->thread, NULL, run, s) != 0) {
                pthread_mutex_destroy(&s->mu);
                pthread_cond_destroy(&s->cond);
                pthread_cond_destroy(&s->grown);
                free(s);
                return NULL;
        }
        return s;
}

void layer_stream_written(void *ud, int fd, uint64_t bytes) {
        struct layer_stream *s = ud;
        if (!s)
                return;
        pthread_mutex_lock(&s->mu);
        if (bytes == 0) { /* a try opens its file */
                if (s->avail > 0 || s->finished) {
                        s->stop = true; /* the thread may have read the earlier try's bytes */
                } else {
                        if (s->in >= 0) /* nothing was read from the earlier try's */
                                close(s->in);
                        char self[64]; /* the writer's is write-only: the same file opened again to read */
                        snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
                        s->in = open(self, O_RDONLY | O_CLOEXEC);
                        s->opened = s->in >= 0;
                        if (s->in < 0)
                                s->stop = true;
                }
        } else if (!s->stop && !s->finished && s->in >= 0 && bytes > s->avail) {
                s->avail = bytes;
        }
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->mu);
        if (s->stop)
                pool_wake(s->pool);
}

void layer_stream_end(struct layer_stream *s, bool ok) {
        if (!s)
                return;
        pthread_mutex_lock(&s->mu);
        if (!s->ended) {
                s->ended = true;
                s->ok = ok && s->opened; /* (the thread may have ended already: data after the gzip end) */
                if (!s->ok)
                        s->stop = true;
        }
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->mu);
        if (s->stop)
                pool_wake(s->pool);
}

bool layer_stream_finished(struct layer_stream *s) {
        if (!s)
                return true;
        pthread_mutex_lock(&s->mu);
        bool done = s->finished;
        pthread_mutex_unlock(&s->mu);
        if (done && !s->joined) /* (the callers are serialized: q->mu, or one thread) */
                pthread_join(s->thread, NULL);
        s->joined = s->joined || done;
        return done;
}

/* Under s->mu, once finished. */
static bool whole(const struct layer_stream *s) {
        return s->rc == 0 && s->ok && !s->stop;
}

int layer_stream_size(struct layer_stream *s, uint64_t *bytes) {
        pthread_mutex_lock(&s->mu);
        *bytes = s->out_bytes;
        int r = !s->finished ? 0 : whole(s) ? 1 : -EIO;
        pthread_mutex_unlock(&s->mu);
        return r;
}

ssize_t layer_stream_next(struct layer_stream *s, const void **buf, bool (*cancel)(void *ud), void *ud) {
        ssize_t r = -ECANCELED;
        bool first = !s->reading;
        s->reading = true;
        if (first) /* no longer held back by the pool's cap */
                pool_wake(s->pool);
        pthread_mutex_lock(&s->mu);
        for (;;) {
                struct chunk *c = s->head;
                if (c && s->rpos < c->len) {
                        *buf = c->data + s->rpos;
                        r = (ssize_t) (c->len - s->rpos);
                        s->rpos = c->len;
                        break;
                }
                if (c && s->rpos == CHUNK_BYTES) { /* read whole: the thread is past it */
                        s->head = c->next;
                        if (!s->head)
                                s->tail = NULL;
                        s->rpos = 0;
                        chunk_back(s, c);
                        continue;
                }
                if (s->finished) {
                        r = whole(s) ? 0 : s->rc < 0 && s->rc != -ECANCELED ? s->rc : -EIO;
                        break;
                }
                if (cancel && cancel(ud)) {
                        r = -ECANCELED;
                        break;
                }
                struct timespec ts = wall_deadline(100);
                pthread_cond_timedwait(&s->grown, &s->mu, &ts);
        }
        pthread_mutex_unlock(&s->mu);
        return r;
}

void layer_stream_discard(struct layer_stream *s) {
        if (!s || s->discard)
                return;
        pthread_mutex_lock(&s->mu);
        s->discard = true;
        struct chunk *keep = s->fill; /* the thread writes there still: its scratch from now on */
        for (struct chunk *c = s->head, *next; c; c = next) {
                next = c->next;
                if (c != keep)
                        chunk_back(s, c);
        }
        s->head = s->tail = keep;
        if (keep)
                keep->next = NULL;
        s->rpos = 0;
        pthread_mutex_unlock(&s->mu);
        pool_wake(s->pool); /* a thread waiting for a chunk: it takes none now */
}

bool layer_stream_join(struct layer_stream *s, bool (*cancel)(void *ud), void *ud) {
        if (!s)
                return false;
        layer_stream_end(s, false); /* a writer that never said it was done */
        layer_stream_discard(s);
        pthread_mutex_lock(&s->mu);
        while (!s->finished) {
                if (cancel && cancel(ud)) { /* before each wait: no inflating of what is dropped */
                        s->stop = true;
                        pthread_cond_broadcast(&s->cond);
                }
                struct timespec ts = wall_deadline(100);
                pthread_cond_timedwait(&s->cond, &s->mu, &ts);
        }
        pthread_mutex_unlock(&s->mu);
        (void) layer_stream_finished(s); /* joins the thread */
        bool ok = whole(s);
        for (struct chunk *c = s->head, *next; c; c = next) {
                next = c->next;
                chunk_back(s, c);
        }
        free(s->scratch);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cond);
        pthread_cond_destroy(&s->grown);
        free(s);
        return ok;
}

#else /* without ISA-L: never a stream */

struct layer_stream *layer_stream_new(struct layer_pool *p) {
        (void) p;
        (void) pool_give;
        (void) pool_wake;
        return NULL;
}
void layer_stream_written(void *ud, int fd, uint64_t bytes) {
        (void) ud, (void) fd, (void) bytes;
}
void layer_stream_end(struct layer_stream *s, bool ok) {
        (void) s, (void) ok;
}
bool layer_stream_finished(struct layer_stream *s) {
        (void) s;
        return true;
}
int layer_stream_size(struct layer_stream *s, uint64_t *bytes) {
        (void) s;
        *bytes = 0;
        return -ENOTSUP;
}
ssize_t layer_stream_next(struct layer_stream *s, const void **buf, bool (*cancel)(void *ud), void *ud) {
        (void) s, (void) buf, (void) cancel, (void) ud;
        return -ENOTSUP;
}
void layer_stream_discard(struct layer_stream *s) {
        (void) s;
}
bool layer_stream_join(struct layer_stream *s, bool (*cancel)(void *ud), void *ud) {
        (void) s, (void) cancel, (void) ud;
        return false;
}

#endif
