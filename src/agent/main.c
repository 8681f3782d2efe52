/* SPDX-License-Identifier: MIT */
/*
 * banger-agent: answers the host over the virtio-serial port
 * "org.banger.agent" (docs/GUEST.md). Static, libc only.
 *
 *   banger-agent            find the port and serve (runs forever)
 *   banger-agent --port P   serve on the given device
 *   banger-agent --stdio    serve stdin/stdout (for tests on the host)
 *
 * The port is non-blocking: a write while no host is connected would block,
 * and output for a host that went away is dropped. While no host is
 * connected the port reports POLLHUP; virtio_console raises SIGIO when that
 * changes, which wakes us instead of a sleep-poll.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "proto.h"
#include "sysinfo.h"

#define PORT_NAME "org.banger.agent"

static char out[1 << 17];
static size_t out_len;
static bool poweroff_pending;

static int find_port(char *dev, size_t n) {
        DIR *d = opendir("/sys/class/virtio-ports");
        struct dirent *de;
        int r = -1;

        if (!d)
                return -1;
        while ((de = readdir(d))) {
                char path[300], name[64] = "";
                if (de->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name", de->d_name);
                FILE *f = fopen(path, "re");
                if (!f)
                        continue;
                if (fgets(name, sizeof(name), f))
                        name[strcspn(name, "\n")] = '\0';
                fclose(f);
                if (strcmp(name, PORT_NAME) == 0) {
                        snprintf(dev, n, "/dev/%s", de->d_name);
                        r = 0;
                        break;
                }
        }
        closedir(d);
        return r;
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
        if (out_len + pos <= sizeof(out)) {
                memcpy(out + out_len, line, pos);
                out_len += pos;
        }
}

static bool r_synced(char *b, size_t n, size_t *pos) {
        sync();
        return json_put_raw(b, n, pos, "{\"synced\":true}");
}

static bool r_poweroff(char *b, size_t n, size_t *pos) {
        poweroff_pending = true;
        return json_put_raw(b, n, pos, "{\"powering_off\":true}");
}

static const struct {
        const char *name;
        bool (*fn)(char *, size_t, size_t *);
} methods[] = {
        { "health", agent_health },
        { "stats", agent_stats },
        { "ports", agent_ports },
        { "sync", r_synced },
        { "poweroff", r_poweroff },
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
                if (strcmp(methods[i].name, req.method) == 0) {
                        reply(&req, true, NULL, NULL, methods[i].fn);
                        return;
                }
        reply(&req, true, "unknown_method", req.method, NULL);
}

static void flush_out(int fd) {
        while (out_len) {
                ssize_t k = write(fd, out, out_len);
                if (k <= 0)
                        return; /* EAGAIN: wait for POLLOUT */
                memmove(out, out + k, out_len - (size_t) k);
                out_len -= (size_t) k;
        }
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

static int serve(int in_fd, int out_fd, bool is_port) {
        static char buf[AGENT_MAX_LINE + 1];
        size_t len = 0;
        bool discarding = false, host_gone = false;
        sigset_t mask;
        int sfd = -1;

        if (is_port) {
                sigemptyset(&mask);
                sigaddset(&mask, SIGIO);
                sigprocmask(SIG_BLOCK, &mask, NULL);
                sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
                fcntl(in_fd, F_SETOWN, getpid());
                fcntl(in_fd, F_SETFL, fcntl(in_fd, F_GETFL) | O_ASYNC | O_NONBLOCK);
        }
        for (;;) {
                struct pollfd p[2] = {
                        { .fd = in_fd, .events = (short) (host_gone ? 0 : POLLIN | (out_len ? POLLOUT : 0)) },
                        { .fd = sfd, .events = POLLIN },
                };
                /* without a host, wait for SIGIO (the bounded timeout only guards
                 * kernels that do not send it) */
                int r = poll(p, sfd >= 0 ? 2 : 1, host_gone ? 5000 : -1);
                if (r < 0 && errno != EINTR)
                        return 1;
                if (sfd >= 0 && (p[1].revents & POLLIN)) {
                        struct signalfd_siginfo si;
                        while (read(sfd, &si, sizeof(si)) > 0)
                                ;
                        host_gone = false;
                        continue;
                }
                if (host_gone) {
                        host_gone = false; /* timeout: look again */
                        continue;
                }
                if (p[0].revents & POLLOUT)
                        flush_out(out_fd);
                if (p[0].revents & POLLHUP && !(p[0].revents & POLLIN)) {
                        if (!is_port)
                                return 0;
                        host_gone = true;
                        out_len = 0; /* nobody to read it */
                        len = 0;
                        continue;
                }
                if (!(p[0].revents & POLLIN))
                        continue;
                ssize_t k = read(in_fd, buf + len, sizeof(buf) - 1 - len);
                if (k == 0) {
                        if (!is_port)
                                return 0;
                        host_gone = true;
                        continue;
                }
                if (k < 0)
                        continue;
                len += (size_t) k;
                char *nl;
                while ((nl = memchr(buf, '\n', len))) {
                        size_t line_len = (size_t) (nl - buf);
                        if (!discarding)
                                handle_line(buf, line_len);
                        discarding = false;
                        memmove(buf, nl + 1, len - line_len - 1);
                        len -= line_len + 1;
                }
                if (len == sizeof(buf) - 1) { /* a line longer than the limit */
                        struct agent_request none = { 0 };
                        reply(&none, false, "bad_request", "line exceeds 4096 bytes", NULL);
                        len = 0;
                        discarding = true;
                }
                flush_out(out_fd);
                if (poweroff_pending) {
                        do_poweroff(out_fd, is_port);
                        poweroff_pending = false;
                }
        }
}

int main(int argc, char **argv) {
        char dev[300];

        signal(SIGPIPE, SIG_IGN);
        if (argc > 1 && strcmp(argv[1], "--version") == 0) {
                printf("banger-agent %s (protocol %d)\n", BANGER_AGENT_VERSION, AGENT_PROTOCOL);
                return 0;
        }
        if (argc > 1 && strcmp(argv[1], "--stdio") == 0)
                return serve(STDIN_FILENO, STDOUT_FILENO, false);
        if (argc > 2 && strcmp(argv[1], "--port") == 0)
                snprintf(dev, sizeof(dev), "%s", argv[2]);
        else {
                /* the port appears once virtio_console has probed it */
                for (int i = 0; find_port(dev, sizeof(dev)) < 0; i++) {
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
