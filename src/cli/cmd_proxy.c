/* SPDX-License-Identifier: MIT */
/*
 * vm proxy VM PORT: standard input and output joined to a TCP port of a
 * running VM, for OpenSSH's ProxyCommand (ssh-config writes one for
 * `Host *.vm`), so `ssh NAME.vm` needs no host DNS for the `vm` zone.
 * Standard output is the data stream: nothing else is ever printed there.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"
#include "jsonx.h"
#include "macro.h"
#include "parse.h"
#include "rpc_methods.h"

#define PROXY_CONNECT_TIMEOUT_MS 10000

/* "dev.vm" (as ssh passes %h) is the VM "dev": names are DNS labels, no dots. */
static char *proxy_vm_ref(const char *arg) {
        size_t n = strlen(arg);
        if (n > 3 && strcasecmp(arg + n - 3, ".vm") == 0)
                return xstrndup(arg, n - 3);
        return xstrdup(arg);
}

/* A connected TCP socket to ip:port within the timeout, or -errno. */
static int proxy_connect(const char *ip, uint16_t port, int timeout_ms) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
        _cleanup_close_ int fd = -1;
        if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1)
                return -EINVAL;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 && errno != EINPROGRESS)
                return -errno;
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        int r = poll(&p, 1, timeout_ms);
        if (r == 0)
                return -ETIMEDOUT;
        if (r < 0)
                return -errno;
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                return -errno;
        if (err)
                return -err;
        int flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
                return -errno;
        return TAKE_FD(fd);
}

/* Copies what one side has to the other: 1 moved, 0 end of input, -errno. */
static int pump(int from, int to) {
        char buf[65536];
        ssize_t k = read(from, buf, sizeof(buf));
        if (k < 0)
                return errno == EINTR || errno == EAGAIN ? 1 : -errno;
        for (ssize_t off = 0; off < k;) {
                ssize_t w = write(to, buf + off, (size_t) (k - off));
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -errno;
                off += w;
        }
        return k > 0 ? 1 : 0;
}

/* stdin -> sock and sock -> stdout until the VM's side ends (or fails). */
static int proxy_splice(int sock) {
        bool in_open = true;
        for (;;) {
                struct pollfd p[2] = { { .fd = sock, .events = POLLIN }, { .fd = in_open ? STDIN_FILENO : -1, .events = POLLIN } };
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (p[0].revents) {
                        int r = pump(sock, STDOUT_FILENO);
                        if (r <= 0)
                                return r;
                }
                if (in_open && p[1].revents) {
                        int r = pump(STDIN_FILENO, sock);
                        if (r < 0)
                                return r;
                        if (r == 0) { /* the client is done sending: half-close */
                                in_open = false;
                                shutdown(sock, SHUT_WR);
                        }
                }
        }
}

int cmd_vm_proxy(struct cli_ctx *ctx, struct cli_args *a) {
        _cleanup_free_ char *ref = proxy_vm_ref(a->pos[0]);
        int64_t port;
        if (parse_int_range(a->pos[1], 1, 65535, &port) < 0)
                return cli_usage_error(a->cmd, "PORT: '%s' is not a port (1-65535)", a->pos[1]);
        _cleanup_json_ json_t *vm = NULL, *params = json_pack("{s:s}", "vm", ref), *t = NULL;
        int r = cli_call(ctx, CLI_AUTOSTART, RPC_METHOD_VM_SHOW, params, &vm);
        if (r)
                return r;
        const char *name = json_string_value(json_object_get(vm, "name"));
        const char *state = json_string_value(json_object_get(vm, "state"));
        const char *ip = json_string_value(json_object_get(vm, "ip"));
        if (!state || strcmp(state, "running") != 0)
                return cli_error(ctx, NULL, "vm %s is %s (start it with: banger vm start %s)", name ? name : ref,
                                 state ? state : "unknown", name ? name : ref);
        /* user-mode networking: the guest's sshd, and forwarded ports, on the host's loopback */
        if (json_is_string(json_object_get(vm, "net")) && strcmp(json_string_value(json_object_get(vm, "net")), "user") == 0) {
                json_t *ssh = json_object_get(vm, "ssh"), *f;
                int64_t mapped = port == 22 ? json_integer_value(json_object_get(ssh, "port")) : 0;
                ip = "127.0.0.1";
                size_t i;
                json_array_foreach(json_object_get(vm, "forwards"), i, f) {
                        const char *fip = json_string_value(json_object_get(f, "host_ip"));
                        if (!mapped && json_integer_value(json_object_get(f, "guest_port")) == port && fip &&
                            strcmp(json_string_value(json_object_get(f, "proto")), "tcp") == 0 && !strchr(fip, ':')) {
                                mapped = json_integer_value(json_object_get(f, "host_port"));
                                ip = strcmp(fip, "0.0.0.0") == 0 ? "127.0.0.1" : fip;
                        }
                }
                if (mapped <= 0 || mapped > 65535)
                        return cli_error(ctx, NULL,
                                         "vm %s uses user-mode networking: its port %lld is not forwarded (banger vm "
                                         "forward %s HOSTPORT:%lld)",
                                         name ? name : ref, (long long) port, name ? name : ref, (long long) port);
                port = mapped;
        }
        if (!ip || !*ip)
                return cli_error(ctx, NULL, "vm %s has no address", name ? name : ref);
        (void) cli_call(ctx, CLI_NO_AUTOSTART, RPC_METHOD_VM_TOUCH, params, &t); /* activity, best effort */
        cli_disconnect(ctx);
        _cleanup_close_ int sock = proxy_connect(ip, (uint16_t) port, PROXY_CONNECT_TIMEOUT_MS);
        if (sock < 0)
                return cli_fail(ctx, sock, "cannot connect to vm %s at %s:%lld: %s", name ? name : ref, ip,
                                (long long) port, strerror(-sock));
        signal(SIGPIPE, SIG_IGN); /* a closed stdout is an error return, not a death */
        r = proxy_splice(sock);
        if (r == -EPIPE || r == -ECONNRESET)
                return 0; /* either side went away: the session is over */
        return r < 0 ? cli_fail(ctx, r, "vm proxy %s:%lld: %s", name ? name : ref, (long long) port, strerror(-r)) : 0;
}
