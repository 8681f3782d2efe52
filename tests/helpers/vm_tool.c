/* SPDX-License-Identifier: MIT */
/*
 * Test helper driving the QEMU backend the way the VM lifecycle will:
 *   vm_tool start DIR NAME ID PORT KERNEL INITRAMFS ROOTFS SEED   (prints the pid)
 *   vm_tool qmp SOCKET COMMAND                                    (prints the return)
 *   vm_tool owns PID ID                                           (exit 0 when ours)
 *   vm_tool stop DIR ID PID                                       (QMP quit, then signals)
 * DIR receives root.qcow2, work.ext4, initrd, sockets, console.log, keys.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <unistd.h>

#include "accel.h"
#include "fsutil.h"
#include "macro.h"
#include "op_error.h"
#include "strbuf.h"
#include "vm/guestcfg.h"
#include "disk/workdisk.h"
#include "vmm/vmm.h"

static int die(const char *what, const char *err) {
        fprintf(stderr, "vm_tool: %s: %s\n", what, err ? err : "failed");
        return 1;
}

static int concat(const char *a, const char *b, const char *out) {
        _cleanup_free_ char *x = NULL, *y = NULL, *z = NULL;
        size_t lx, ly;
        if (read_file(a, 1u << 28, &x, &lx) < 0 || read_file(b, 1u << 20, &y, &ly) < 0)
                return -EIO;
        z = xmalloc(lx + ly);
        memcpy(z, x, lx);
        memcpy(z + lx, y, ly);
        return write_file_atomic(out, z, lx + ly, 0600);
}

static int start(char **v) {
        const char *dir = v[0], *name = v[1], *id = v[2], *kernel = v[4], *base = v[5], *rootfs = v[6], *seed = v[7];
        unsigned port = (unsigned) atoi(v[3]);
        _cleanup_free_ char *ak = NULL, *pub = NULL;
        struct op_error err = OP_ERROR_INIT;
        size_t len;
        _cleanup_free_ char *userkey = xasprintf("%s/ssh/id_ed25519", dir), *userpub = xasprintf("%s.pub", userkey);
        _cleanup_free_ char *keydir = xasprintf("%s/hostkey", dir);
        _cleanup_free_ char *hostpub = xasprintf("%s/ssh_host_ed25519_key.pub", keydir);
        _cleanup_free_ char *kh = xasprintf("%s/ssh/known_hosts", dir), *pattern = xasprintf("[127.0.0.1]:%u", port);
        _cleanup_free_ char *cpio = xasprintf("%s/guest.cpio", dir), *initrd = xasprintf("%s/initrd", dir);
        _cleanup_free_ char *overlay = xasprintf("%s/root.qcow2", dir), *work = xasprintf("%s/work.ext4", dir);
        _cleanup_free_ char *qmp = xasprintf("%s/qmp.sock", dir), *agent = xasprintf("%s/agent.sock", dir);
        _cleanup_free_ char *console = xasprintf("%s/console.log", dir);

        if (ssh_user_key_ensure(userkey, &err) < 0 || ssh_host_key_ensure(keydir, name, &err) < 0)
                return die("keys", op_error_message(&err));
        if (read_file(userpub, 1 << 16, &ak, &len) < 0 || read_file(hostpub, 1 << 16, &pub, &len) < 0 ||
            known_hosts_set(kh, pattern, pub) < 0)
                return die("known_hosts", NULL);
        struct guestcfg g = { .hostname = name, .ip = "10.0.2.15", .dns = "10.0.2.3", .host_key_dir = keydir,
                              .authorized_keys = ak };
        if (guestcfg_write(&g, cpio, &err) < 0)
                return die("guest config", op_error_message(&err));
        if (concat(base, cpio, initrd) < 0)
                return die("initrd", NULL);
        if (vm_overlay_create(overlay, rootfs, 8ULL << 30, &err) < 0)
                return die("overlay", op_error_message(&err));
        if (workdisk_create(work, 2ULL << 30, seed, &err) < 0 ||
            workdisk_write_file(work, "/.ssh/authorized_keys", ak, strlen(ak), 0600, 0, 0, &err) < 0)
                return die("work disk", op_error_message(&err));
        struct vm_boot b = {
                .id = id, .name = name, .vcpu = 1, .memory_mib = 512, .accel = "tcg", .tsc_khz = host_tsc_khz(),
                .kernel = kernel, .initrd = initrd, .init_mode = "fast", .root_disk = overlay, .work_disk = work,
                .net = VM_NET_USER, .hostfwd_port = port, .ip_cidr = "10.0.2.15/24", .gateway = "10.0.2.2",
                .qmp_socket = qmp, .agent_socket = agent, .console_log = console,
        };
        struct vm_proc p;
        if (vmm_qemu.start(&b, "qemu-system-x86_64", &p, &err) < 0)
                return die("start", op_error_message(&err));
        printf("%d\n", (int) p.pid);
        fflush(stdout); /* before any exit handler (LeakSanitizer's _exit) */
        if (p.pidfd >= 0)
                close(p.pidfd);
        return 0;
}

int main(int argc, char **argv) {
        _cleanup_free_ char *out = NULL;
        struct op_error err = OP_ERROR_INIT;

        if (argc == 10 && strcmp(argv[1], "start") == 0)
                return start(argv + 2);
        if (argc == 4 && strcmp(argv[1], "qmp") == 0) {
                if (qmp_command(argv[2], argv[3], 5000, &out, &err) < 0)
                        return die("qmp", op_error_message(&err));
                printf("%s\n", out ? out : "{}");
                return 0;
        }
        if (argc == 4 && strcmp(argv[1], "owns") == 0)
                return vmm_qemu.owns(atoi(argv[2]), "qemu-system-x86_64", argv[3]) ? 0 : 1;
        if (argc == 5 && strcmp(argv[1], "stop") == 0) {
                pid_t pid = atoi(argv[4]);
                if (pid <= 0)
                        return die("stop", "invalid pid");
                _cleanup_free_ char *qmp = xasprintf("%s/qmp.sock", argv[2]);
                _cleanup_close_ int pidfd = (int) pidfd_open(pid, 0);
                struct vm_proc p = { .pid = pid, .pidfd = pidfd };
                struct vm_boot b = { .id = argv[3], .qmp_socket = qmp };
                if (vmm_qemu.stop(&b, &p, 5000, &err) < 0)
                        return die("stop", op_error_message(&err));
                return 0;
        }
        fprintf(stderr, "usage: see the comment at the top of tests/helpers/vm_tool.c\n");
        return 2;
}
