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

#ifdef HAVE_ISAL

struct layer_stream {
        char *path;
        int out;          /* the plain tar */
        int in;           /* the writer's file (opened again), -1 until a try opens it */
        pthread_t thread;
        pthread_mutex_t mu;
        pthread_cond_t cond;
        pthread_cond_t grown; /* out_bytes grew, or the thread ended (layer_stream_wait) */
        uint64_t avail;   /* bytes in `in` */
        uint64_t out_bytes; /* in the plain tar, as the thread last said */
        uint64_t pos;     /* read by the thread */
        bool ended, ok, finished;
        _Atomic bool stop;
        int rc;           /* the thread's */
};

/* Until the writer says its blob verified, the bytes may be anyone's (a pull
 * pinned by digest, through a hostile mirror or redirect), and a gzip bomb
 * must not fill the disk with them: the stream writes at most
 * UNVERIFIED_SLACK plus UNVERIFIED_RATIO times what it has read (layers
 * inflate 3 to 10 times), reading UNVERIFIED_READ at a time (deflate's
 * 1032:1 bound keeps the overshoot near 16 MiB), and past that waits for the
 * writer's word. A verified blob goes on unbounded, as the flatten's own
 * decompression does. */
#define UNVERIFIED_SLACK (UINT64_C(16) << 20)
#define UNVERIFIED_RATIO 32u
#define UNVERIFIED_READ ((size_t) 16 << 10)

/* oci_read_fn: what the writer has put in its file, waiting for more. */
static ssize_t follow(void *ud, void *buf, size_t len) {
        struct layer_stream *s = ud;
        off_t out = lseek(s->out, 0, SEEK_CUR); /* what the thread wrote: its own fd, written in order */
        bool verified, stop;
        pthread_mutex_lock(&s->mu);
        if (out > 0 && (uint64_t) out > s->out_bytes) {
                s->out_bytes = (uint64_t) out;
                pthread_cond_broadcast(&s->grown);
        }
        for (;;) {
                verified = s->ended && s->ok;
                stop = s->stop || (s->ended && !s->ok);
                bool held = !verified && (out < 0 || (uint64_t) out > UNVERIFIED_SLACK + UNVERIFIED_RATIO * s->pos);
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

static void *run(void *arg) {
        struct layer_stream *s = arg;
        (void) setpriority(PRIO_PROCESS, 0, 5); /* this thread only: the downloads first */
        char *why = NULL;
        int rc = oci_gunzip_from(follow, s, s->out, &s->stop, &why);
        if (rc < 0 && rc != -ECANCELED)
                log_debug("%s: not decompressed while fetched (the flatten does it): %s", s->path, why);
        free(why);
        off_t out = lseek(s->out, 0, SEEK_CUR);
        pthread_mutex_lock(&s->mu);
        s->rc = rc;
        if (out > 0)
                s->out_bytes = (uint64_t) out;
        s->finished = true;
        pthread_cond_broadcast(&s->cond);
        pthread_cond_broadcast(&s->grown);
        pthread_mutex_unlock(&s->mu);
        return NULL;
}

struct layer_stream *layer_stream_new(const char *plain_path) {
        struct layer_stream *s = xmalloc(sizeof(*s));
        *s = (struct layer_stream) { .in = -1 };
        s->out = open(plain_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (s->out < 0) {
                free(s);
                return NULL;
        }
        s->path = xstrdup(plain_path);
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->cond, NULL);
        pthread_cond_init(&s->grown, NULL);
        if (pthread_create(&s->thread, NULL, run, s) != 0) {
                close(s->out);
                unlink(s->path);
                pthread_mutex_destroy(&s->mu);
                pthread_cond_destroy(&s->cond);
                pthread_cond_destroy(&s->grown);
                free(s->path);
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
                if (s->avail > 0) {
                        s->stop = true; /* the thread may have read the earlier try's bytes */
                } else {
                        if (s->in >= 0) /* nothing was read from the earlier try's */
                                close(s->in);
                        char self[64]; /* the writer's is write-only: the same file opened again to read */
                        snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
                        s->in = open(self, O_RDONLY | O_CLOEXEC);
                        if (s->in < 0)
                                s->stop = true;
                }
        } else if (!s->stop && s->in >= 0 && bytes > s->avail) {
                s->avail = bytes;
        }
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->mu);
}

void layer_stream_end(struct layer_stream *s, bool ok) {
        if (!s)
                return;
        pthread_mutex_lock(&s->mu);
        if (!s->ended) {
                s->ended = true;
                s->ok = ok && s->in >= 0;
                if (!s->ok)
                        s->stop = true;
        }
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->mu);
}

bool layer_stream_finished(struct layer_stream *s) {
        if (!s)
                return true;
        pthread_mutex_lock(&s->mu);
        bool done = s->finished;
        pthread_mutex_unlock(&s->mu);
        return done;
}

int layer_stream_wait(struct layer_stream *s, uint64_t pos, bool (*cancel)(void *ud), void *ud) {
        int r = -ECANCELED;
        pthread_mutex_lock(&s->mu);
        for (;;) {
                if (s->out_bytes > pos) {
                        r = 1;
                        break;
                }
                if (s->finished) {
                        r = s->rc == 0 && s->ok && !s->stop ? 0 : s->rc < 0 && s->rc != -ECANCELED ? s->rc : -EIO;
                        break;
                }
                if (cancel && cancel(ud))
                        break;
                struct timespec ts = wall_deadline(100);
                pthread_cond_timedwait(&s->grown, &s->mu, &ts);
        }
        pthread_mutex_unlock(&s->mu);
        return r;
}

bool layer_stream_join(struct layer_stream *s, bool (*cancel)(void *ud), void *ud) {
        if (!s)
                return false;
        layer_stream_end(s, false); /* a writer that never said it was done */
        pthread_mutex_lock(&s->mu);
        while (!s->finished) {
                struct timespec ts = wall_deadline(100);
                pthread_cond_timedwait(&s->cond, &s->mu, &ts);
                if (!s->finished && cancel && cancel(ud)) {
                        s->stop = true;
                        pthread_cond_broadcast(&s->cond);
                }
        }
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
        bool whole = s->rc == 0 && s->ok && !s->stop;
        if (s->in >= 0)
                close(s->in);
        if (close(s->out) < 0)
                whole = false;
        if (!whole)
                unlink(s->path);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cond);
        pthread_cond_destroy(&s->grown);
        free(s->path);
        free(s);
        return whole;
}

#else /* without ISA-L: never a stream */

struct layer_stream *layer_stream_new(const char *plain_path) {
        (void) plain_path;
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
int layer_stream_wait(struct layer_stream *s, uint64_t pos, bool (*cancel)(void *ud), void *ud) {
        (void) s, (void) pos, (void) cancel, (void) ud;
        return -ENOTSUP;
}
bool layer_stream_join(struct layer_stream *s, bool (*cancel)(void *ud), void *ud) {
        (void) s, (void) cancel, (void) ud;
        return false;
}

#endif
