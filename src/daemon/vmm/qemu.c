/* SPDX-License-Identifier: MIT */
/*
 * QEMU microvm backend. What the measurements in ENVIRONMENT.md say goes into
 * the argv: -M microvm with ACPI (the default), the default CPU model,
 * tb-size=128 under TCG, tsc_early_khz on the kernel command line,
 * virtio-rng, every disk with a serial, -no-reboot, the uncompressed kernel.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fsutil.h"
#include "jsonx.h"
#include "macro.h"
#include "proc_spawn.h"
#include "rpc.h"
#include "strbuf.h"
#include "vmm.h"

char *vm_kernel_cmdline(const struct vm_boot *b) {
        struct strbuf sb = STRBUF_INIT;

        strbuf_addf(&sb, "console=ttyS0 tsc_early_khz=%u cryptomgr.notests quiet panic=-1", b->tsc_khz);
        strbuf_addf(&sb, " banger.mode=%s banger.root=rootfs banger.hostname=%s", b->init_mode, b->name);
        if (b->modules_disk) /* no identity in it: a template's guest mounts it too */
                strbuf_addstr(&sb, " banger.modules=modules");
        if (b->generic) /* identity and /root come from `banger-agent --identify` after a restore */
                return strbuf_detach(&sb, NULL);
        if (b->work_disk)
                strbuf_addstr(&sb, " banger.work=work");
        if (b->work_disk && b->repo_disk)
                strbuf_addstr(&sb, " banger.repo=repo");
        if (b->ip_cidr)
                strbuf_addf(&sb, " banger.ip=%s", b->ip_cidr);
        if (b->gateway)
                strbuf_addf(&sb, " banger.gw=%s", b->gateway);
        return strbuf_detach(&sb, NULL);
}

/* QEMU option values are comma-separated: a comma in a path is written
 * twice. Our paths never have one, but escape rather than assume. */
static char *qopt_escape(const char *s) {
        struct strbuf sb = STRBUF_INIT;
        for (; *s; s++) {
                strbuf_addch(&sb, *s);
                if (*s == ',')
                        strbuf_addch(&sb, ',');
        }
        return strbuf_detach(&sb, NULL);
}

struct argv_builder {
        char **v;
        size_t n;
};

static void push(struct argv_builder *a, char *s) {
        a->v = xrealloc(a->v, (a->n + 2) * sizeof(char *));
        a->v[a->n++] = s;
        a->v[a->n] = NULL;
}

static void push2(struct argv_builder *a, const char *opt, char *val) {
        push(a, xstrdup(opt));
        push(a, val);
}

static bool name_ok(const char *s) {
        return s && *s && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == strlen(s);
}

#define QEMU_TAP_FD 3 /* where the VMM finds the TAP queue it was given */

static void push_net(struct argv_builder *a, const struct vm_boot *b) {
        if (b->net == VM_NET_TAP) {
                if (b->tap_fd > 2) /* the VMM needs no access to /dev/net/tun */
                        push2(a, "-netdev", xasprintf("tap,id=net0,fd=%d", QEMU_TAP_FD));
                else
                        push2(a, "-netdev", xasprintf("tap,id=net0,ifname=%s,script=no,downscript=no", b->tap));
                push2(a, "-device", xasprintf("virtio-net-device,netdev=net0,mac=%s", b->mac));
        } else if (b->net == VM_NET_USER) {
                push2(a, "-netdev", xasprintf("user,id=net0,net=" VM_USER_NET_GUEST "/%d,host=" VM_USER_NET_HOST
                                               ",dns=" VM_USER_NET_DNS ",ipv6=off,hostfwd=tcp:127.0.0.1:%u-:22",
                                               VM_USER_NET_PREFIX, b->hostfwd_port));
                push2(a, "-device", xstrdup("virtio-net-device,netdev=net0"));
        } else if (b->net == VM_NET_DETACHED) {
                push2(a, "-netdev", xstrdup("hubport,id=net0,hubid=0"));
                push2(a, "-device", xstrdup("virtio-net-device,netdev=net0"));
        }
}

static int qemu_build_argv(const struct vm_boot *b, const char *bin, char ***ret, struct op_error *e) {
        struct argv_builder a = { 0 };

        if (!name_ok(b->id) || !name_ok(b->name) || b->vcpu < 1 || b->memory_mib < 64 || !b->kernel || !b->initrd ||
            !b->root_disk || !b->qmp_socket || !b->console_log ||
            (strcmp(b->accel, "kvm") != 0 && strcmp(b->accel, "tcg") != 0) ||
            (b->net == VM_NET_TAP && (!b->tap || !name_ok(b->tap) || !b->mac)) ||
            (b->net == VM_NET_USER && (b->hostfwd_port == 0 || b->hostfwd_port > 65535)) ||
            (b->vsock_cid && (b->vsock_cid < 3 || b->vsock_cid == UINT32_MAX))) {
                return op_fail(e, -EINVAL, "incomplete or invalid VM boot description");
        }
        _cleanup_free_ char *root = qopt_escape(b->root_disk);
        _cleanup_free_ char *qmp = qopt_escape(b->qmp_socket), *console = qopt_escape(b->console_log);

        push(&a, xstrdup(bin));
        push2(&a, "-name", xasprintf("banger-%s,process=banger-%s", b->id, b->id)); /* identity for reconcile */
        /* RAM is always the backend "mem" (its name is in a saved state):
         * anonymous, or mapped from a template's file */
        push2(&a, "-M", xstrdup("microvm,memory-backend=mem"));
        if (b->ram_file) {
                _cleanup_free_ char *rf = qopt_escape(b->ram_file);
                push2(&a, "-object", xasprintf("memory-backend-file,id=mem,size=%dM,mem-path=%s,share=%s", b->memory_mib,
                                               rf, b->ram_file_shared ? "on" : "off"));
        } else
                push2(&a, "-object", xasprintf("memory-backend-ram,id=mem,size=%dM", b->memory_mib));
        push2(&a, "-accel", xstrdup(strcmp(b->accel, "kvm") == 0 ? "kvm" : "tcg,tb-size=128"));
        push2(&a, "-smp", xasprintf("%d", b->vcpu));
        push2(&a, "-m", xasprintf("%d", b->memory_mib));
        push(&a, xstrdup("-nodefaults"));
        push(&a, xstrdup("-no-user-config"));
        push(&a, xstrdup("-nographic"));
        push(&a, xstrdup("-no-reboot"));
        if (b->incoming) { /* paused, waiting for a state: qemu_restore, then resume */
                push(&a, xstrdup("-S"));
                push2(&a, "-incoming", xstrdup("defer"));
        }
        push2(&a, "-kernel", xstrdup(b->kernel));
        push2(&a, "-initrd", xstrdup(b->initrd));
        push2(&a, "-append", vm_kernel_cmdline(b));
        push2(&a, "-chardev", xasprintf("file,id=console,path=%s", console));
        push2(&a, "-serial", xstrdup("chardev:console"));
        push2(&a, "-qmp", xasprintf("unix:%s,server=on,wait=off", qmp));
        push2(&a, "-device", xstrdup("virtio-rng-device"));
        push2(&a, "-drive", xasprintf("id=root,file=%s,format=qcow2,if=none,discard=unmap", root));
        push2(&a, "-device", xstrdup("virtio-blk-device,drive=root,serial=rootfs"));
        if (b->work_disk) {
                _cleanup_free_ char *work = qopt_escape(b->work_disk);
                push2(&a, "-drive", xasprintf("id=work,file=%s,format=raw,if=none,discard=unmap", work));
                push2(&a, "-device", xstrdup("virtio-blk-device,drive=work,serial=work"));
        }
        if (b->work_disk && b->repo_disk) {
                _cleanup_free_ char *repo = qopt_escape(b->repo_disk);
                push2(&a, "-drive", xasprintf("id=repo,file=%s,format=raw,if=none,discard=unmap", repo));
                push2(&a, "-device", xstrdup("virtio-blk-device,drive=repo,serial=repo"));
        }
        push_net(&a, b);
        /* the agent's device takes the virtio-serial port's place (and slot) */
        if (b->vsock_cid)
                push2(&a, "-device", xasprintf("vhost-vsock-device,guest-cid=%u", b->vsock_cid));
        else if (b->agent_socket) {
                _cleanup_free_ char *agent = qopt_escape(b->agent_socket);
                push2(&a, "-device", xstrdup("virtio-serial-device"));
                push2(&a, "-chardev", xasprintf("socket,id=agent,path=%s,server=on,wait=off", agent));
                push2(&a, "-device", xstrdup("virtserialport,chardev=agent,name=org.banger.agent"));
        }
        /* last: the devices before it keep their virtio-mmio slots */
        if (b->modules_disk) {
                _cleanup_free_ char *mods = qopt_escape(b->modules_disk);
                push2(&a, "-drive", xasprintf("id=modules,file=%s,format=raw,if=none,readonly=on", mods));
                push2(&a, "-device", xstrdup("virtio-blk-device,drive=modules,serial=modules"));
        }
        *ret = a.v;
        return 0;
}

bool qemu_said_cid_in_use(const char *said) {
        /* vhost-vsock's realize: "vhost-vsock: unable to set guest cid: Address already in use" */
        return said && strstr(said, "guest cid") && strstr(said, "Address already in use");
}

static int qemu_start(const struct vm_boot *b, const char *bin, struct vm_proc *ret, struct op_error *e) {
        _cleanup_strv_free_ char **argv = NULL;
        int r = qemu_build_argv(b, bin, &argv, e);
        if (r < 0)
                return r;
        r = vmm_proc_spawn(argv, b->console_log, b->net == VM_NET_TAP ? b->tap_fd : -1, QEMU_TAP_FD, ret, e);
        /* Started means controllable: QMP accepts (a QEMU that exits early reports why, and is reaped) */
        if (r == 0 && (r = vmm_proc_wait_socket("qemu", ret, b->qmp_socket, b->console_log, 10000, e)) < 0)
                *ret = (struct vm_proc) { .pid = 0, .pidfd = -1 };
        /* another VM on this host (not necessarily ours) holds the CID: the caller picks another */
        if (r < 0 && b->vsock_cid && qemu_said_cid_in_use(op_error_message(e)))
                r = op_fail(e, -EADDRINUSE, "guest CID %u is in use on this host: %s", b->vsock_cid, op_error_message(e));
        return r;
}

static int qemu_stop(const struct vm_boot *b, const struct vm_proc *p, int timeout_ms, struct op_error *e) {
        _cleanup_free_ char *out = NULL;
        if (p->pid <= 0)
                return op_fail(e, -EINVAL, "invalid pid %d", (int) p->pid);
        if (qmp_command(b->qmp_socket, "quit", 2000, &out, NULL) < 0 && !vmm_proc_wait_exit(p, 0)) {
                /* QMP gone: fall through to signals */
        }
        if (vmm_proc_wait_exit(p, timeout_ms))
                return 0;
        vmm_proc_kill(p, SIGKILL);
        if (!vmm_proc_wait_exit(p, 2000))
                return op_fail(e, -ETIMEDOUT, "qemu (pid %d) did not exit", (int) p->pid);
        return 0;
}

static bool qemu_owns(pid_t pid, const char *bin, const char *id) {
        _cleanup_free_ char *want = xasprintf("banger-%s,process=banger-%s", id, id);
        return vmm_proc_argv_has(pid, bin, "-name", want);
}

static int qemu_pause(const struct vm_boot *b, struct op_error *e) {
        _cleanup_free_ char *out = NULL;
        return qmp_command(b->qmp_socket, "stop", 5000, &out, e);
}

static int qemu_resume(const struct vm_boot *b, struct op_error *e) {
        _cleanup_free_ char *out = NULL;
        return qmp_command(b->qmp_socket, "cont", 5000, &out, e);
}

static int qemu_snapshot(const struct vm_boot *b, int state_fd, int timeout_ms, struct op_error *e) {
        return qmp_save_state(b->qmp_socket, state_fd, b->ram_file && b->ram_file_shared, timeout_ms, e);
}

static int qemu_restore(const struct vm_boot *b, int state_fd, int timeout_ms, struct op_error *e) {
        if (!b->incoming)
                return op_fail(e, -EINVAL, "the VMM was not started to receive a state");
        return qmp_load_state(b->qmp_socket, state_fd, b->ram_file != NULL, timeout_ms, e);
}

/* HMP's hostfwd_add/remove on net0 (QMP has no command of its own for
 * them); what HMP answers says whether it worked. slirp's forwards are IPv4
 * only. */
static int qemu_hostfwd(const struct vm_boot *b, bool add, const struct port_spec *f, struct op_error *e) {
        if (port_spec_is_v6(f))
                return op_fail(e, -EAFNOSUPPORT, "user-mode networking forwards IPv4 host addresses only");
        _cleanup_free_ char *cmd = add ? xasprintf("hostfwd_add net0 %s:%s:%u-:%u", port_proto_name(f->proto), f->host_ip,
                                                   f->host_port, f->guest_port)
                                       : xasprintf("hostfwd_remove net0 %s:%s:%u", port_proto_name(f->proto), f->host_ip,
                                                   f->host_port);
        struct qmp q;
        _cleanup_json_ json_t *res = NULL, *args = json_pack("{s:s}", "command-line", cmd);
        int r = qmp_open(&q, b->qmp_socket, 5000, e);
        if (r < 0)
                return r;
        r = qmp_exec(&q, "human-monitor-command", args, -1, 5000, &res, e);
        qmp_close(&q);
        if (r < 0)
                return r;
        /* add: silent when it worked; remove: "host forwarding rule for ... removed" */
        const char *said = json_string_value(res);
        if (said && *said && !(!add && strstr(said, "removed"))) {
                _cleanup_free_ char *one = str_defuse(xstrndup(said, strcspn(said, "\r\n")), '?');
                return op_fail(e, add ? -EADDRINUSE : -ENOENT, "%s %s port %u on %s: %s", add ? "forwarding" : "unforwarding",
                               port_proto_name(f->proto), f->host_port, f->host_ip, one);
        }
        return 0;
}

/* Is f among the VMM's forwards? HMP `info usernet` lists each as a line
 * "TCP[HOST_FORWARD]  FD  SRC-ADDR SRC-PORT  DST-ADDR DST-PORT ...". */
static int qemu_hostfwd_has(const struct vm_boot *b, const struct port_spec *f, bool *ret, struct op_error *e) {
        struct qmp q;
        _cleanup_json_ json_t *res = NULL, *args = json_pack("{s:s}", "command-line", "info usernet");
        *ret = false;
        int r = qmp_open(&q, b->qmp_socket, 5000, e);
        if (r < 0)
                return r;
        r = qmp_exec(&q, "human-monitor-command", args, -1, 5000, &res, e);
        qmp_close(&q);
        const char *text = json_string_value(res);
        if (r < 0 || !text)
                return r < 0 ? r : op_fail(e, -EPROTO, "info usernet: no answer");
        const char *want = f->proto == PORT_UDP ? "UDP[HOST_FORWARD]" : "TCP[HOST_FORWARD]";
        for (const char *l = text; l && *l && !*ret; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
                char proto[32], addr[64];
                int fd;
                unsigned port;
                if (sscanf(l, " %31s %d %63s %u", proto, &fd, addr, &port) == 4 && strcmp(proto, want) == 0 &&
                    strcmp(addr, f->host_ip) == 0 && port == f->host_port)
                        *ret = true;
        }
        return 0;
}

const struct vmm_backend vmm_qemu = {
        .name = "qemu",
        .root_disk_create = vm_overlay_create,
        .warm_templates = true,
        .build_argv = qemu_build_argv,
        .start = qemu_start,
        .stop = qemu_stop,
        .kill = vmm_proc_kill,
        .owns = qemu_owns,
        .pause = qemu_pause,
        .resume = qemu_resume,
        .snapshot = qemu_snapshot,
        .restore = qemu_restore,
        .hostfwd = qemu_hostfwd,
        .hostfwd_has = qemu_hostfwd_has,
};

int vm_overlay_create(const char *overlay, const char *backing, uint64_t size_bytes, struct op_error *e) {
        _cleanup_free_ char *size = xasprintf("%llu", (unsigned long long) size_bytes);
        char *argv[] = { (char *) "qemu-img", (char *) "create", (char *) "-q", (char *) "-f", (char *) "qcow2",
                         (char *) "-F", (char *) "raw", (char *) "-b", (char *) backing, (char *) overlay, size, NULL };
        _cleanup_free_ char *msg = NULL;
        return op_take_msg(e, spawn_run_checked(argv, 60000, 0, "apt-get install qemu-utils", &msg), &msg);
}
