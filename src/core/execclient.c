/* SPDX-License-Identifier: MIT */
#include "execclient.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "clock.h"
#include "frame.h"
#include "macro.h"
#include "strbuf.h"

struct client {
        int fd;
        const struct exec_client_opts *o;
        struct exec_client_result *r;
        struct strbuf out; /* frames to send */
        uint8_t *in;       /* frames received, not yet whole */
        size_t in_len;
        uint32_t stdin_credit;
        bool stdin_done, done;
        bool cant_send; /* the peer shut its side: what it sent before (the EXIT) is still read */
        bool eof[3];
};

static void consume(struct strbuf *sb, size_t n) {
        memmove(sb->buf, sb->buf + n, sb->len - n);
        strbuf_setlen(sb, sb->len - n);
}

static void put(struct client *c, uint8_t type, uint8_t stream, const void *p, uint32_t len) {
        uint8_t h[FRAME_HDR];
        if (c->cant_send)
                return;
        frame_header(h, EXEC_CLIENT_CHAN, type, stream, len);
        strbuf_add(&c->out, h, sizeof(h));
        if (len)
                strbuf_add(&c->out, p, len);
}

static void put_u32(struct client *c, uint8_t type, uint8_t stream, uint32_t v) {
        uint8_t p[4];
        frame_put_u32(p, v);
        put(c, type, stream, p, 4);
}

static void fail(struct client *c, const char *msg) {
        if (!c->r->error)
                c->r->error = xstrdup(msg);
        c->done = true;
}

/* All of it, waiting on a non-blocking fd; -errno on failure. */
static int write_all(int fd, const uint8_t *p, size_t n) {
        while (n) {
                ssize_t k = write(fd, p, n);
                if (k > 0) {
                        p += k;
                        n -= (size_t) k;
                } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        poll(&(struct pollfd) { .fd = fd, .events = POLLOUT }, 1, -1);
                else if (k < 0 && errno != EINTR)
                        return -errno;
        }
        return 0;
}

static void winsize(struct client *c) {
        struct winsize ws;
        if (c->o->tty_fd < 0 || ioctl(c->o->tty_fd, TIOCGWINSZ, &ws) < 0)
                return;
        uint8_t p[4] = { (uint8_t) ws.ws_row, (uint8_t) (ws.ws_row >> 8), (uint8_t) ws.ws_col,
                         (uint8_t) (ws.ws_col >> 8) };
        put(c, FRAME_RESIZE, 0, p, 4);
}

static void on_frame(struct client *c, const struct frame *f) {
        switch (f->type) {
        case FRAME_DATA: {
                if (f->stream == FRAME_STDIN)
                        return fail(c, "the peer sent stdin data");
                int fd = f->stream == FRAME_STDOUT ? c->o->out_fd : c->o->err_fd;
                int w = fd >= 0 ? write_all(fd, f->payload, f->len) : 0;
                if (w == -EPIPE) {
                        /* our reader went away: so does the command, as over ssh */
                        put(c, FRAME_CLOSE, 0, NULL, 0);
                        c->r->cancelled = true;
                        c->r->code = 128 + SIGPIPE;
                        c->done = true;
                        return;
                }
                put_u32(c, FRAME_CREDIT, f->stream, f->len);
                return;
        }
        case FRAME_EOF:
                if (f->stream != FRAME_STDIN)
                        c->eof[f->stream] = true;
                return;
        case FRAME_CREDIT:
                if (f->stream == FRAME_STDIN) {
                        uint32_t add = frame_u32(f->payload);
                        if (add > FRAME_WINDOW - c->stdin_credit)
                                return fail(c, "the peer gave back more credit than it had");
                        c->stdin_credit += add;
                }
                return;
        case FRAME_EXIT: {
                int32_t code = (int32_t) frame_u32(f->payload), sig = (int32_t) frame_u32(f->payload + 4);
                c->r->exited = true;
                c->r->signal = sig;
                c->r->code = sig ? 128 + sig : code;
                c->done = true;
                return;
        }
        case FRAME_ERROR: {
                /* never let a peer's text drive the terminal */
                _cleanup_free_ char *m = str_defuse(xstrndup((const char *) f->payload, f->len), ' ');
                return fail(c, m);
        }
        default:
                return fail(c, "unexpected frame from the peer");
        }
}

static bool peer_frame(void *ud, const struct frame *f) {
        struct client *c = ud;
        if (f->chan != EXEC_CLIENT_CHAN) {
                fail(c, "malformed frame from the peer");
                return false;
        }
        on_frame(c, f);
        return !c->done;
}

static void read_frames(struct client *c, bool pre_only) {
        if (!pre_only) {
                ssize_t k = recv(c->fd, c->in + c->in_len, FRAME_HDR + FRAME_MAX_PAYLOAD - c->in_len, MSG_DONTWAIT);
                if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
                        return fail(c, k == 0 ? "the connection ended before the command did" : strerror(errno));
                if (k < 0)
                        return;
                c->in_len += (size_t) k;
        }
        if (!c->done && frame_consume(c->in, &c->in_len, peer_frame, c) < 0)
                fail(c, "malformed frame from the peer");
}

static void read_stdin(struct client *c) {
        uint8_t buf[FRAME_DATA_CHUNK];
        size_t want = c->stdin_credit < sizeof(buf) ? c->stdin_credit : sizeof(buf);
        ssize_t k = read(c->o->in_fd, buf, want);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
                return;
        if (k <= 0) {
                put(c, FRAME_EOF, FRAME_STDIN, NULL, 0);
                c->stdin_done = true;
                return;
        }
        put(c, FRAME_DATA, FRAME_STDIN, buf, (uint32_t) k);
        c->stdin_credit -= (uint32_t) k;
}

static void read_signals(struct client *c) {
        struct signalfd_siginfo si;
        while (read(c->o->signal_fd, &si, sizeof(si)) == (ssize_t) sizeof(si)) {
                if (si.ssi_signo == SIGWINCH)
                        winsize(c);
                else
                        put_u32(c, FRAME_SIGNAL, 0, si.ssi_signo);
        }
}

int exec_client_run(int fd, const struct exec_client_opts *o, struct exec_client_result *r) {
        struct client c = { .fd = fd, .o = o, .r = r, .out = STRBUF_INIT, .stdin_credit = FRAME_WINDOW };
        *r = (struct exec_client_result) { .code = 255 };
        c.in = xmalloc(FRAME_HDR + FRAME_MAX_PAYLOAD);
        /* frames that came with the answer (a fast command's output: maybe
         * more than one frame), a buffer at a time */
        for (size_t at = 0; at < o->pre_len && !c.done;) {
                size_t n = o->pre_len - at < FRAME_HDR + FRAME_MAX_PAYLOAD - c.in_len
                                   ? o->pre_len - at
                                   : FRAME_HDR + FRAME_MAX_PAYLOAD - c.in_len;
                memcpy(c.in + c.in_len, o->pre + at, n);
                c.in_len += n;
                at += n;
                read_frames(&c, true);
        }
        if (o->in_fd < 0) {
                put(&c, FRAME_EOF, FRAME_STDIN, NULL, 0);
                c.stdin_done = true;
        }
        winsize(&c);
        int64_t deadline = o->timeout_ms > 0 ? mono_ms_now() + o->timeout_ms : 0;
        while (!c.done) {
                struct pollfd p[4] = {
                        { .fd = fd, .events = (short) (POLLIN | (c.out.len && !c.cant_send ? POLLOUT : 0)) },
                        { .fd = !c.stdin_done && c.stdin_credit && c.out.len < FRAME_WINDOW ? o->in_fd : -1,
                          .events = POLLIN },
                        { .fd = o->signal_fd, .events = POLLIN },
                        { .fd = o->cancel_fd, .events = POLLIN },
                };
                int wait = -1;
                if (deadline) {
                        int64_t left = deadline - mono_ms_now();
                        if (left <= 0) {
                                put(&c, FRAME_CLOSE, 0, NULL, 0);
                                r->cancelled = true;
                                fail(&c, "timed out");
                                break;
                        }
                        wait = (int) left;
                }
                if (poll(p, 4, wait) < 0) {
                        if (errno == EINTR)
                                continue;
                        fail(&c, strerror(errno));
                        break;
                }
                if (p[3].revents) {
                        put(&c, FRAME_CLOSE, 0, NULL, 0);
                        r->cancelled = true;
                        fail(&c, "cancelled");
                }
                if (p[2].revents)
                        read_signals(&c);
                if (p[1].revents)
                        read_stdin(&c);
                if (p[0].revents & POLLOUT && !c.cant_send) {
                        ssize_t k = send(fd, c.out.buf, c.out.len, MSG_DONTWAIT | MSG_NOSIGNAL);
                        if (k > 0)
                                consume(&c.out, (size_t) k);
                        else if (k < 0 && (errno == EPIPE || errno == ECONNRESET)) {
                                /* the exec ended while we were behind: its last output
                                 * and its EXIT wait in our socket; read them */
                                c.cant_send = c.stdin_done = true;
                                strbuf_setlen(&c.out, 0);
                        } else if (k < 0 && errno != EAGAIN && errno != EINTR)
                                fail(&c, strerror(errno));
                }
                if (!c.done && (p[0].revents & (POLLIN | POLLHUP | POLLERR)))
                        read_frames(&c, false);
        }
        /* a last CLOSE (cancel, EPIPE) leaves if it can */
        if (c.out.len)
                (void) send(fd, c.out.buf, c.out.len, MSG_DONTWAIT | MSG_NOSIGNAL);
        strbuf_release(&c.out);
        free(c.in);
        return r->exited ? 0 : -EIO;
}

void exec_client_result_done(struct exec_client_result *r) {
        free(r->error);
        r->error = NULL;
}
