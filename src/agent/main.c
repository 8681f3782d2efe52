/* SPDX-License-Identifier: MIT */
/*
 * banger-agent: answers the host over the virtio-serial port
 * "org.banger.agent", or, in a guest with a vsock device and no such port
 * (Firecracker), on vsock port 1024, one host connection at a time
 * (docs/GUEST.md). Static, libc only.
 *
 *   banger-agent            find the port (or vsock) and serve (runs forever)
 *   banger-agent --port P   serve on the given device
 *   banger-agent --stdio    serve stdin/stdout (for tests on the host)
 *   banger-agent --protocol 1 ...   refuse the upgrade, as an agent of version 1 (tests)
 *   banger-agent --identify ...     give a restored guest its identity (identity.c; run by the host)
 *   banger-agent --freeze           filesystems frozen until stdin ends (freeze.c; a snapshot)
 *
 * The port is non-blocking: a write while no host is connected would block,
 * and output for a host that went away is dropped. While no host is
 * connected the port reports POLLHUP at once (polling it would spin);
 * virtio_console raises SIGIO when that changes, and a look every 50 ms
 * catches the reconnects SIGIO alone missed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/vm_sockets.h>
#include <sys/ioctl.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/signalfd.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "../shared/frame.h"
#include "../shared/vdisk.h"
#include "identity.h"
#include "proto.h"
#include "repodisk.h"
#include "session.h"
#include "sysinfo.h"

#define PORT_NAME "org.banger.agent"
#define VSOCK_PORT 1024 /* the host's AGENT_VSOCK_PORT */
#define IN_CAP (FRAME_HDR + FRAME_MAX_PAYLOAD + AGENT_MAX_LINE)
#define HOST_GONE_POLL_MS 50

static uint8_t *out;
static size_t out_len, out_cap;
static bool poweroff_pending, frames, upgrade_pending;
static uint32_t call_chan; /* nonzero while answering a FRAME_CALL */
static bool v1_only;       /* --protocol 1: "upgrade" is an unknown method */
static bool out_has_frames; /* out holds frames (not only lines) since it was last empty */

void out_add(const void *p, size_t n) {
        if (out_len + n > out_cap) {
                size_t cap = out_cap ? out_cap : 1 << 16;
                while (cap < out_len + n)
                        cap *= 2;
                uint8_t *nb = realloc(out, cap);
                if (!nb)
                        return; /* dropped: the host sees a broken stream and resets */
                out = nb;
                out_cap = cap;
        }
        memcpy(out + out_len, p, n);
        out_len += n;
}

void out_frame(uint32_t chan, uint8_t type, uint8_t stream, const void *payload, uint32_t len) {
        uint8_t h[FRAME_HDR];
        out_has_frames = true;
        frame_header(h, chan, type, stream, len);
        out_add(h, sizeof(h));
        if (len)
                out_add(payload, len);
}

size_t out_pending(void) {
        return out_len;
}

static int find_port(char *dev, size_t n) {
        return sysfs_find_dev("/sys/class/virtio-ports", "", "name", PORT_NAME, dev, n);
}

static void reply(const struct agent_request *req, bool id_known, const char *code, const char *msg,
                  bool (*result)(char *, size_t, size_t *)) {
        char line[1 << 16];
        size_t pos = 0;
        char head[64];

        if (id_known)
                snprintf(head, sizeof(head), "{\"v\":%d,\"id\":%lld,", AGENT_PROTOCOL, req->id);
        else
                snprintf(head, sizeof(head), "{\"v\":%d,\"id\":null,", AGENT_PROTOCOL);
        bool ok = json_put_raw(line, sizeof(line), &pos, head);
        if (code)
                ok = ok && json_put_raw(line, sizeof(line), &pos, "\"error\":{\"code\":") &&
                     json_put_string(line, sizeof(line), &pos, code) &&
                     json_put_raw(line, sizeof(line), &pos, ",\"message\":") &&
                     json_put_string(line, sizeof(line), &pos, msg) && json_put_raw(line, sizeof(line), &pos, "}}\n");
        else
                ok = ok && json_put_raw(line, sizeof(line), &pos, "\"result\":") && result(line, sizeof(line), &pos) &&
                     json_put_raw(line, sizeof(line), &pos, "}\n");
        if (!ok) {
                pos = 0;
                snprintf(line, sizeof(line), "{\"v\":%d,\"id\":%lld,\"error\":{\"code\":\"too_large\",\"message\":"
                                             "\"result does not fit in a line\"}}\n",
                         AGENT_PROTOCOL, id_known ? req->id : -1);
                pos = strlen(line);
        }
        if (call_chan)
                out_frame(call_chan, FRAME_REPLY, 0, line, (uint32_t) pos);
        else
                out_add(line, pos);
}

static bool r_synced(char *b, size_t n, size_t *pos) {
        sync();
        return json_put_raw(b, n, pos, "{\"synced\":true}");
}

static bool r_poweroff(char *b, size_t n, size_t *pos) {
        poweroff_pending = true;
        return json_put_raw(b, n, pos, "{\"powering_off\":true}");
}

/* Version 2: after this answer the stream carries frames (frame.h). */
static bool r_upgrade(char *b, size_t n, size_t *pos) {
        char s[96];
        if (call_chan)
                return false; /* already upgraded */
        upgrade_pending = true;
        snprintf(s, sizeof(s), "{\"protocol\":2,\"window\":%u,\"frame_max\":%u}", FRAME_WINDOW, FRAME_MAX_PAYLOAD);
        return json_put_raw(b, n, pos, s);
}

static const struct {
        const char *name;
        bool (*fn)(char *, size_t, size_t *);
} methods[] = {
        { "upgrade", r_upgrade },
        { "health", agent_health },
        { "stats", agent_stats },
        { "ports", agent_ports },
        { "sync", r_synced },
        { "poweroff", r_poweroff },
        { "repo_detach", agent_repo_detach },
        { "repo_attach", agent_repo_attach },
};

static void handle_line(const char *line, size_t len) {
        struct agent_request req;
        bool id_known;
        enum agent_parse_error e = agent_request_parse(line, len, &req, &id_known);

        if (e != AGENT_OK) {
                reply(&req, id_known, agent_parse_error_to_string(e),
                      e == AGENT_ERR_VERSION ? "this agent speaks protocol version 1" : "malformed request", NULL);
                return;
        }
        for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
                if (strcmp(methods[i].name, req.method) == 0 && !(v1_only && methods[i].fn == r_upgrade)) {
                        reply(&req, true, NULL, NULL, methods[i].fn);
                        return;
                }
        reply(&req, true, "unknown_method", req.method, NULL);
}

static void flush_out(int fd) {
        size_t done = 0;
        while (done < out_len) {
                ssize_t k = write(fd, out + done, out_len - done);
                if (k <= 0)
                        break; /* EAGAIN: wait for POLLOUT */
                done += (size_t) k;
        }
        memmove(out, out + done, out_len - done);
        out_len -= done;
        if (!out_len)
                out_has_frames = false;
}

/* Only in a guest (the virtio port), never in --stdio mode on a host. The
 * guest's init does an orderly poweroff: banger-init (fast mode) on SIGUSR2,
 * systemd on SIGRTMIN+4 (poweroff.target); the host forces it if that hangs. */
static void do_poweroff(int fd, bool in_guest) {
        char comm[32] = "";
        for (int i = 0; i < 20 && out_len; i++) { /* give the answer 200 ms to leave */
                flush_out(fd);
                if (out_len)
                        poll(&(struct pollfd) { .fd = fd, .events = POLLOUT }, 1, 10);
        }
        sync();
        if (!in_guest || getpid() == 1 || geteuid() != 0)
                return;
        int cfd = open("/proc/1/comm", O_RDONLY | O_CLOEXEC);
        if (cfd >= 0) {
                ssize_t n = read(cfd, comm, sizeof(comm) - 1);
                comm[n > 0 ? n : 0] = '\0';
                close(cfd);
        }
        if (kill(1, strncmp(comm, "systemd", 7) == 0 ? SIGRTMIN + 4 : SIGUSR2) == 0)
                return;
        reboot(RB_POWER_OFF);
}

/* Frames in buf[0..*len): handled and consumed; false on a protocol error. */
static bool host_frame(void *ud, const struct frame *f) {
        bool *ok = ud;
        if (f->type == FRAME_CALL) {
                call_chan = f->chan ? f->chan : 1;
                handle_line((const char *) f->payload, f->len);
                call_chan = 0;
        } else if (f->type == FRAME_BYE) {
                sess_reset();
                frames = false; /* what follows is lines again */
        } else
                *ok = sess_on_frame(f);
        return *ok && frames;
}

/* Frames in buf[0..*len) until a BYE; false at bytes that are not one. */
static bool take_frames(uint8_t *buf, size_t *len) {
        bool ok = true;
        if (frame_consume(buf, len, host_frame, &ok) < 0)
                ok = false;
        return ok;
}

/* Lines in buf[0..*len) until an upgrade switches to frames. */
static void take_lines(uint8_t *buf, size_t *len, bool *discarding) {
        uint8_t *nl;
        while (!frames && (nl = memchr(buf, '\n', *len))) {
                size_t line_len = (size_t) (nl - buf);
                if (!*discarding)
                        handle_line((const char *) buf, line_len);
                *discarding = false;
                memmove(buf, nl + 1, *len - line_len - 1);
                *len -= line_len + 1;
                if (upgrade_pending) {
                        upgrade_pending = false;
                        frames = true;
                }
        }
        if (!frames && *len >= AGENT_MAX_LINE) { /* a line longer than the limit */
                struct agent_request none = { 0 };
                reply(&none, false, "bad_request", "line exceeds 4096 bytes", NULL);
                *len = 0;
                *discarding = true;
        }
}

/* Answers in lines stay for the next host (clients skip answers that are
 * not theirs): one written while the port flapped is not lost. Frames of a
 * session that is gone are dropped. */
static void host_left(size_t *len) {
        sess_reset();
        frames = upgrade_pending = false;
        if (out_has_frames)
                out_len = 0;
        *len = 0;
}

static int64_t now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The port's "no host" lags behind the host's data: a new client's request
 * can arrive while the guest still sees the old one gone, and an answer
 * written then waits until the guest sees the new one. So a host that went
 * away is forgotten (its execs killed, its output dropped, lines again) only
 * after HOST_GONE_RESET_MS without a host, not at the first POLLHUP. */
#define HOST_GONE_RESET_MS 3000

static int serve(int in_fd, int out_fd, bool is_port) {
        static uint8_t buf[IN_CAP];
        size_t len = 0;
        bool discarding = false, host_gone = false, in_eof = false;
        int64_t gone_since = 0;
        sigset_t mask;
        static int sfd = -1; /* one for the agent's life: vsock serves connection after connection */
        enum { MAXP = 3 + 3 * FRAME_MAX_CHANNELS };
        struct pollfd p[MAXP];

        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        if (is_port)
                sigaddset(&mask, SIGIO);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        if (sfd < 0)
                sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (is_port) {
                fcntl(in_fd, F_SETOWN, getpid());
                fcntl(in_fd, F_SETFL, fcntl(in_fd, F_GETFL) | O_ASYNC | O_NONBLOCK);
        } else {
                fcntl(in_fd, F_SETFL, fcntl(in_fd, F_GETFL) | O_NONBLOCK);
                fcntl(out_fd, F_SETFL, fcntl(out_fd, F_GETFL) | O_NONBLOCK);
        }
        for (;;) {
                if (is_port && gone_since && now_ms() - gone_since >= HOST_GONE_RESET_MS &&
                    (frames || sess_count() || out_len || len))
                        host_left(&len);
                /* stop reading the host while our answers pile up (it reads them
                 * again soon, or goes away) */
                bool want_in = !in_eof && out_len < (4u << 20) && len < sizeof(buf);
                p[0] = (struct pollfd) { .fd = host_gone ? -1 : in_fd,
                                         .events = (short) ((want_in ? POLLIN : 0) | (out_len ? POLLOUT : 0)) };
                p[1] = (struct pollfd) { .fd = out_fd != in_fd ? out_fd : -1, .events = out_len ? POLLOUT : 0 };
                p[2] = (struct pollfd) { .fd = sfd, .events = POLLIN };
                if (out_fd != in_fd)
                        p[0].events &= (short) ~POLLOUT;
                int ns = sess_pollfds(p + 3, MAXP - 3);
                /* without a host the port reports POLLHUP at once (polling it would
                 * spin: the agent before protocol 2 kept QEMU at 48% of a core while
                 * idle): SIGIO, or a look every 50 ms, as SIGIO alone missed
                 * reconnects (a client 80 ms after the last one waited > 20 s). No
                 * CPU that shows: 13 ticks of QEMU in 5 s idle, as with SIGIO alone. */
                int r = poll(p, (nfds_t) (3 + ns), host_gone ? HOST_GONE_POLL_MS : -1);
                if (r < 0 && errno != EINTR)
                        return 1;
                if (r < 0)
                        continue;
                sess_after_poll(p + 3, ns);
                if (p[2].revents & POLLIN) {
                        struct signalfd_siginfo si;
                        while (read(sfd, &si, sizeof(si)) > 0)
                                ;
                        sess_reap();
                }
                if (host_gone) { /* SIGIO or the timeout: one look at the port */
                        struct pollfd q = { .fd = in_fd, .events = p[0].events };
                        if (poll(&q, 1, 0) < 0)
                                continue;
                        p[0].revents = q.revents;
                        if (!(q.revents & POLLHUP))
                                host_gone = false, gone_since = 0;
                }
                if ((p[0].revents | p[1].revents) & POLLOUT)
                        flush_out(out_fd);
                bool eof = p[0].revents & POLLHUP && !(p[0].revents & POLLIN);
                if (!eof && p[0].revents & POLLIN) {
                        ssize_t k = read(in_fd, buf + len, sizeof(buf) - len);
                        eof = k == 0;
                        if (k > 0) {
                                len += (size_t) k;
                                host_gone = false, gone_since = 0; /* a host is there, whatever the port says */
                        }
                }
                if (eof && !is_port) {
                        in_eof = true;
                        host_left(&len);
                        if (!sess_count())
                                return 0;
                        continue;
                }
                if (eof) {
                        if (!host_gone && !gone_since)
                                gone_since = now_ms();
                        host_gone = true;
                }
                for (;;) { /* an upgrade or a BYE switches mode in the middle of buf */
                        bool was = frames;
                        if (!frames)
                                take_lines(buf, &len, &discarding);
                        if (frames && !take_frames(buf, &len)) {
                                if (len > 0 && buf[0] == '{') {
                                        /* a line: a new host that never saw our frames
                                         * (the old one went away): it gets lines */
                                        sess_reset();
                                        frames = false;
                                        out_len = 0;
                                } else {
                                        /* not a frame: the host is confused; everything is reset */
                                        out_frame(0, FRAME_ERROR, 0, "protocol error", 14);
                                        sess_reset();
                                        frames = false;
                                        len = 0;
                                }
                        }
                        if (frames == was)
                                break;
                }
                if (!host_gone)
                        flush_out(out_fd);
                if (poweroff_pending) {
                        do_poweroff(out_fd, is_port);
                        poweroff_pending = false;
                }
                if (!is_port && in_eof && !sess_count() && !out_len)
                        return 0;
        }
}

/* A listening vsock socket when the guest has a vsock transport (its own
 * CID is known), else -1. */
static int vsock_listen(void) {
        unsigned cid = VMADDR_CID_ANY;
        int dev = open("/dev/vsock", O_RDONLY | O_CLOEXEC);
        if (dev < 0)
                return -1;
        int r = ioctl(dev, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid);
        close(dev);
        if (r < 0 || cid == VMADDR_CID_ANY || cid <= VMADDR_CID_HOST)
                return -1;
        int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = VSOCK_PORT };
        if (fd >= 0 && (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(fd, 4) < 0)) {
                close(fd);
                fd = -1;
        }
        return fd;
}

/* Each connection is a host: served until it leaves and its sessions end
 * (a host that comes back is a new connection, as after the port's reset). */
static _Noreturn void serve_vsock(int lfd) {
        for (;;) {
                int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0) {
                        if (errno != EINTR && errno != ECONNABORTED)
                                sleep(1);
                        continue;
                }
                serve(c, c, false);
                close(c);
                out_len = 0;
                out_has_frames = false;
        }
}

int main(int argc, char **argv) {
        char dev[300];

        signal(SIGPIPE, SIG_IGN);
        if (argc > 1 && strcmp(argv[1], "--version") == 0) {
                printf("banger-agent %s (protocols 1 and 2)\n", BANGER_AGENT_VERSION);
                return 0;
        }
        if (argc > 1 && strcmp(argv[1], "--identify") == 0)
                return agent_identify_main(argc, argv);
        if (argc > 1 && strcmp(argv[1], "--freeze") == 0)
                return agent_freeze_main(argc, argv);
        if (argc > 2 && strcmp(argv[1], "--protocol") == 0 && strcmp(argv[2], "1") == 0) {
                /* behave as an agent of version 1 (tests of the host's fallback) */
                v1_only = true;
                argc -= 2;
                argv += 2;
        }
        if (argc > 1 && strcmp(argv[1], "--stdio") == 0)
                return serve(STDIN_FILENO, STDOUT_FILENO, false);
        if (argc > 2 && strcmp(argv[1], "--port") == 0)
                snprintf(dev, sizeof(dev), "%s", argv[2]);
        else {
                /* the port appears once virtio_console has probed it; a guest
                 * with vsock and no port (Firecracker) is served on vsock */
                for (int i = 0; find_port(dev, sizeof(dev)) < 0; i++) {
                        int lfd = vsock_listen();
                        if (lfd >= 0)
                                serve_vsock(lfd);
                        if (i == 0)
                                fprintf(stderr, "banger-agent: waiting for the %s port\n", PORT_NAME);
                        sleep(1);
                }
        }
        int fd = open(dev, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                fprintf(stderr, "banger-agent: cannot open %s: %s\n", dev, strerror(errno));
                return 1;
        }
        return serve(fd, fd, true);
}
