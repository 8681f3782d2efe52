/* SPDX-License-Identifier: MIT */
#include "gunzip.h"

#include <errno.h>
#include <isa-l/igzip_lib.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "strbuf.h"

#define IN_BYTES (1u << 20)
#define OUT_BYTES (4u << 20)

struct gz {
        struct inflate_state st;
        uint8_t *in; /* owned */
        bool eof;
        oci_read_fn read;
        void *ud;
};

static void gz_done(struct gz *g) {
        free(g->in);
}

static const char *isal_why(int r) {
        switch (r) {
        case ISAL_INVALID_BLOCK:
                return "an invalid deflate block";
        case ISAL_INVALID_SYMBOL:
                return "an invalid deflate symbol";
        case ISAL_INVALID_LOOKBACK:
                return "an invalid lookback distance";
        case ISAL_INVALID_WRAPPER:
                return "not a gzip header";
        case ISAL_UNSUPPORTED_METHOD:
                return "a compression method other than deflate";
        case ISAL_INCORRECT_CHECKSUM:
                return "the CRC32 or the size in the trailer does not match";
        default:
                return "cannot be decompressed";
        }
}

/* At least `want` bytes at next_in unless the file ends first: what is left
 * moves to the buffer's start, the rest is read. */
static int refill(struct gz *g, uint32_t want) {
        while (!g->eof && g->st.avail_in < want) {
                memmove(g->in, g->st.next_in, g->st.avail_in);
                g->st.next_in = g->in;
                ssize_t n = g->read(g->ud, g->in + g->st.avail_in, IN_BYTES - g->st.avail_in);
                if (n == -EINTR)
                        continue;
                if (n < 0)
                        return (int) n;
                g->eof = n == 0;
                g->st.avail_in += (uint32_t) n;
        }
        return 0;
}

/* After a member: 1 when another one follows (the state reset for it). */
static int next_member(struct gz *g) {
        int r = refill(g, 2);
        if (r < 0)
                return r;
        if (g->st.avail_in < 2 || g->st.next_in[0] != 0x1f || g->st.next_in[1] != 0x8b)
                return 0;
        uint8_t *next_in = g->st.next_in;
        uint32_t avail_in = g->st.avail_in;
        isal_inflate_reset(&g->st);
        g->st.crc_flag = ISAL_GZIP;
        g->st.next_in = next_in;
        g->st.avail_in = avail_in;
        return 1;
}

static int gunzip(struct gz *g, const struct oci_gunzip_sink *out, const _Atomic bool *stop, char **ret_why) {
        uint32_t want = 1; /* more than it has when a call made no progress: never a spin */
        for (;;) {
                int r = refill(g, want);
                if (r < 0)
                        return *ret_why = r == -ECANCELED ? xstrdup("cancelled")
                                                          : xasprintf("reading: %s", strerror(-r)), r;
                uint32_t had_in = g->st.avail_in;
                uint8_t *room = NULL;
                size_t cap = 0;
                if ((r = out->get(out->ud, &room, &cap)) < 0)
                        return *ret_why = r == -ECANCELED ? xstrdup("cancelled")
                                                          : xasprintf("writing: %s", strerror(-r)), r;
                g->st.next_out = room;
                g->st.avail_out = cap > UINT32_MAX ? UINT32_MAX : (uint32_t) cap;
                uint32_t had_out = g->st.avail_out;
                int ir = isal_inflate(&g->st);
                if (ir < 0)
                        return *ret_why = xasprintf("truncated or damaged: gzip: %s", isal_why(ir)), -EBADMSG;
                size_t n = had_out - g->st.avail_out;
                if ((r = out->put(out->ud, n)) < 0)
                        return *ret_why = r == -ECANCELED ? xstrdup("cancelled")
                                                          : xasprintf("writing: %s", strerror(-r)), r;
                if (*stop)
                        return *ret_why = xstrdup("cancelled"), -ECANCELED;
                if (g->st.block_state == ISAL_BLOCK_FINISH) { /* the trailer is checked */
                        if ((r = next_member(g)) < 0)
                                return *ret_why = xasprintf("reading: %s", strerror(-r)), r;
                        if (r == 0)
                                return 0;
                } else if (n == 0 && g->st.avail_in == had_in) {
                        if (g->eof || had_in >= IN_BYTES)
                                return *ret_why = xstrdup("truncated or damaged: truncated gzip input"), -EBADMSG;
                        want = had_in + 1;
                } else
                        want = 1;
        }
}

int oci_gunzip_into(oci_read_fn read_fn, void *ud, const struct oci_gunzip_sink *sink, const _Atomic bool *stop,
                    char **ret_why) {
        _cleanup_(gz_done) struct gz g = { .in = xmalloc(IN_BYTES), .read = read_fn, .ud = ud };
        isal_inflate_init(&g.st);
        g.st.crc_flag = ISAL_GZIP;
        g.st.next_in = g.in;
        return gunzip(&g, sink, stop, ret_why);
}

/* A sink into a file: its own buffer, written out at each put. */
struct fd_sink {
        int fd;
        uint8_t *buf; /* owned */
};

static int fd_get(void *ud, uint8_t **buf, size_t *cap) {
        struct fd_sink *s = ud;
        *buf = s->buf;
        *cap = OUT_BYTES;
        return 0;
}

static int fd_put(void *ud, size_t n) {
        struct fd_sink *s = ud;
        return n ? write_all(s->fd, s->buf, n) : 0;
}

static int gunzip_to_fd(oci_read_fn read_fn, void *ud, int out, const _Atomic bool *stop, char **ret_why) {
        struct fd_sink fs = { .fd = out, .buf = xmalloc(OUT_BYTES) };
        struct oci_gunzip_sink sink = { .get = fd_get, .put = fd_put, .ud = &fs };
        int r = oci_gunzip_into(read_fn, ud, &sink, stop, ret_why);
        free(fs.buf);
        return r;
}

static ssize_t fd_read(void *ud, void *buf, size_t len) {
        ssize_t n = read(*(const int *) ud, buf, len);
        return n < 0 ? -errno : n;
}

int oci_gunzip(int in, int out, const _Atomic bool *stop, char **ret_why) {
        return gunzip_to_fd(fd_read, &in, out, stop, ret_why);
}
