/* SPDX-License-Identifier: MIT */
/* The two passes' decompression: every compressed layer once, into a plain
 * tar beside the image, before the tree is built. */
#include <archive.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "flatten_internal.h"
#include "gunzip.h"
#include "fsutil.h"
#include "macro.h"

/* Every compressed layer is decompressed once, into a plain tar beside the
 * image (both passes then read that: the first skips data with lseek, the
 * second reads it), by up to one thread per CPU. Only the main thread talks
 * to the caller (progress, cancel); workers stop on `stop`. */
struct unpack {
        struct flat *f;
        const char *out_path;
        char **paths;        /* per layer: the plain tar to read (a temp file or the layer itself) */
        bool *temp;          /* paths[i] is ours to remove */
        int *rc;             /* per layer */
        char **why;          /* per layer: the failure */
        size_t next, running;
        _Atomic bool stop;
        pthread_mutex_t mu;
        pthread_cond_t cond;
};

/* The temp file of layer i, for its plain tar. */
static int unpack_out(struct unpack *u, size_t i, int *ret_fd, char **why) {
        u->paths[i] = xasprintf("%s.layer-%zu.tar", u->out_path, i + 1);
        u->temp[i] = true;
        *ret_fd = open(u->paths[i], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (*ret_fd < 0)
                return *why = xasprintf("cannot create %s: %s", u->paths[i], strerror(errno)), -errno;
        return 0;
}

#ifdef HAVE_ISAL
/* gzip (the usual layer) through igzip; the rest through libarchive. */
static bool is_gzip(int fd) {
        unsigned char magic[2];
        return pread(fd, magic, sizeof(magic), 0) == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
}

static int unpack_gzip(struct unpack *u, size_t i, int in, char **why) {
        _cleanup_close_ int out = -1;
        int rc = unpack_out(u, i, &out, why);
        return rc < 0 ? rc : oci_gunzip(in, out, &u->stop, why);
}
#endif

static int unpack_one(struct unpack *u, size_t i, char **why) {
        const char *src = u->f->layers[i];
        _cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (in < 0)
                return *why = xasprintf("cannot open: %s", strerror(errno)), -errno;
#ifdef HAVE_ISAL
        if (is_gzip(in))
                return unpack_gzip(u, i, in, why);
#endif
        struct archive *a = archive_read_new();
        archive_read_support_filter_gzip(a);
        archive_read_support_filter_zstd(a);
        archive_read_support_format_raw(a);
        archive_read_support_format_empty(a); /* gzip of nothing: a layer without entries */
        struct archive_entry *ent;
        int rc = 0, hr = ARCHIVE_FATAL;
        if (archive_read_open_fd(a, in, 1 << 20) != ARCHIVE_OK ||
            ((hr = archive_read_next_header(a, &ent)) != ARCHIVE_OK && hr != ARCHIVE_EOF))
                rc = -EBADMSG, *why = xasprintf("not a tar layer: %s", archive_error_string(a));
        else if (archive_filter_code(a, 0) == ARCHIVE_FILTER_NONE)
                u->paths[i] = xstrdup(src); /* plain already */
        else {
                _cleanup_close_ int out = -1;
                char buf[1 << 17];
                la_ssize_t n = 0;
                rc = unpack_out(u, i, &out, why);
                while (rc == 0 && hr == ARCHIVE_OK && !u->stop && (n = archive_read_data(a, buf, sizeof(buf))) > 0)
                        if ((rc = write_all(out, buf, (size_t) n)) < 0)
                                *why = xasprintf("writing %s: %s", u->paths[i], strerror(-rc));
                if (rc == 0 && (u->stop || n < 0))
                        rc = u->stop ? -ECANCELED : -EBADMSG,
                        *why = u->stop ? xstrdup("cancelled") : xasprintf("truncated or damaged: %s", archive_error_string(a));
        }
        archive_read_free(a);
        return rc;
}

static void *unpack_worker(void *arg) {
        struct unpack *u = arg;
        pthread_mutex_lock(&u->mu);
        while (u->next < u->f->n_layers && !u->stop) {
                size_t i = u->next++;
                pthread_mutex_unlock(&u->mu);
                char *why = NULL;
                int rc = unpack_one(u, i, &why);
                pthread_mutex_lock(&u->mu);
                u->rc[i] = rc, u->why[i] = why;
                if (rc < 0)
                        u->stop = true;
        }
        u->running--;
        pthread_cond_broadcast(&u->cond);
        pthread_mutex_unlock(&u->mu);
        return NULL;
}

/* Runs the workers; the first failing layer's error (in layer order). */
static int unpack_layers(struct unpack *u) {
        struct flat *f = u->f;
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        size_t want = f->n_layers < (size_t) (ncpu > 0 ? ncpu : 1) ? f->n_layers : (size_t) (ncpu > 0 ? ncpu : 1);
        pthread_mutex_lock(&u->mu);
        for (size_t k = 0; k < want; k++) {
                pthread_t t;
                if (pthread_create(&t, NULL, unpack_worker, u) != 0)
                        break;
                pthread_detach(t);
                u->running++;
        }
        while (u->running > 0) {
                struct timespec ts = wall_deadline(100);
                pthread_cond_timedwait(&u->cond, &u->mu, &ts);
                if (!u->stop && flat_cancelled(f))
                        u->stop = true;
        }
        bool none = want > 0 && u->next == 0;
        pthread_mutex_unlock(&u->mu);
        if (none)
                return op_fail(f->e, -EAGAIN, "cannot start a thread to decompress the layers");
        for (size_t i = 0; i < f->n_layers; i++)
                if (u->rc[i] < 0 && u->rc[i] != -ECANCELED) {
                        f->layer = i + 1;
                        f->path[0] = '\0';
                        return flat_fail(f, u->rc[i], "%s", u->why[i]);
                }
        return u->stop ? op_fail(f->e, -ECANCELED, "flattening cancelled") : 0;
}

void flat_unpack_done(struct unpack *u) {
        if (!u)
                return;
        for (size_t i = 0; u->paths && i < u->f->n_layers; i++) {
                if (u->temp[i])
                        unlink(u->paths[i]);
                free(u->paths[i]);
                free(u->why[i]);
        }
        free(u->paths);
        free(u->temp);
        free(u->rc);
        free(u->why);
        pthread_mutex_destroy(&u->mu);
        pthread_cond_destroy(&u->cond);
        free(u);
}

int flat_unpack(struct flat *f, const char *out_path, struct unpack **ret, const char *const **ret_paths) {
        size_t n = f->n_layers;
        struct unpack *u = xmalloc(sizeof(*u));
        *u = (struct unpack) { .f = f, .out_path = out_path, .paths = xcalloc(n, sizeof(char *)),
                               .temp = xcalloc(n, sizeof(bool)), .rc = xcalloc(n, sizeof(int)),
                               .why = xcalloc(n, sizeof(char *)) };
        pthread_mutex_init(&u->mu, NULL);
        pthread_cond_init(&u->cond, NULL);
        *ret = u;
        *ret_paths = (const char *const *) u->paths;
        return unpack_layers(u);
}
