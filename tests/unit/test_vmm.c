/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"
#include "op_error.h"
#include "proc_spawn.h"
#include "vmm/vmm.h"

static const struct vm_boot base = {
        .id = "0123abcd", .name = "dev", .vcpu = 2, .memory_mib = 1024, .accel = "tcg", .tsc_khz = 2599998,
        .kernel = "/k/vmlinux", .initrd = "/v/initrd", .init_mode = "fast", .root_disk = "/v/root.qcow2",
        .work_disk = "/v/work,odd.ext4", .net = VM_NET_TAP, .tap = "tap-dev", .mac = "02:00:ac:10:00:02",
        .ip_cidr = "172.16.0.2/24", .gateway = "172.16.0.1", .qmp_socket = "/v/qmp.sock",
        .agent_socket = "/v/agent.sock", .console_log = "/v/console.log",
};

static bool has(char **argv, const char *opt, const char *val) {
        for (char **a = argv; *a; a++)
                if (strcmp(a[0], opt) == 0 && a[1] && strcmp(a[1], val) == 0)
                        return true;
        return false;
}

static void test_argv(void **state) {
        char **argv = NULL;
        struct op_error err = OP_ERROR_INIT;
        (void) state;
        assert_int_equal(vmm_qemu.build_argv(&base, "/usr/bin/qemu-system-x86_64", &argv, &err), 0);
        assert_string_equal(argv[0], "/usr/bin/qemu-system-x86_64");
        assert_true(has(argv, "-M", "microvm,memory-backend=mem"));
        assert_true(has(argv, "-object", "memory-backend-ram,id=mem,size=1024M"));
        assert_true(has(argv, "-accel", "tcg,tb-size=128"));
        assert_true(has(argv, "-name", "banger-0123abcd,process=banger-0123abcd"));
        assert_true(has(argv, "-smp", "2") && has(argv, "-m", "1024"));
        assert_true(has(argv, "-kernel", "/k/vmlinux") && has(argv, "-initrd", "/v/initrd"));
        assert_true(has(argv, "-device", "virtio-rng-device"));
        assert_true(has(argv, "-device", "virtio-blk-device,drive=root,serial=rootfs"));
        assert_true(has(argv, "-device", "virtio-blk-device,drive=work,serial=work"));
        /* a comma in a path is doubled for QEMU's option parser */
        assert_true(has(argv, "-drive", "id=work,file=/v/work,,odd.ext4,format=raw,if=none,discard=unmap"));
        assert_true(has(argv, "-netdev", "tap,id=net0,ifname=tap-dev,script=no,downscript=no"));
        assert_true(has(argv, "-device", "virtio-net-device,netdev=net0,mac=02:00:ac:10:00:02"));
        assert_true(has(argv, "-qmp", "unix:/v/qmp.sock,server=on,wait=off"));
        assert_true(has(argv, "-device", "virtserialport,chardev=agent,name=org.banger.agent"));
        bool noreboot = false;
        for (char **a = argv; *a; a++) {
                noreboot |= strcmp(*a, "-no-reboot") == 0;
                if (strcmp(*a, "-append") == 0) {
                        const char *c = a[1];
                        assert_non_null(strstr(c, "tsc_early_khz=2599998"));
                        assert_non_null(strstr(c, "banger.mode=fast banger.root=rootfs banger.hostname=dev"));
                        assert_non_null(strstr(c, "banger.work=work banger.ip=172.16.0.2/24 banger.gw=172.16.0.1"));
                }
        }
        assert_true(noreboot);
        /* no repo or modules disk unless one is given */
        for (char **a = argv; *a; a++)
                assert_null(strstr(*a, "repo"));
        for (char **a = argv; *a; a++)
                assert_null(strstr(*a, "modules"));
        strv_free(argv);

        struct vm_boot repo = base;
        repo.repo_disk = "/v/repo.ext4";
        assert_int_equal(vmm_qemu.build_argv(&repo, "qemu-system-x86_64", &argv, &err), 0);
        assert_true(has(argv, "-drive", "id=repo,file=/v/repo.ext4,format=raw,if=none,discard=unmap"));
        assert_true(has(argv, "-device", "virtio-blk-device,drive=repo,serial=repo"));
        bool key = false;
        for (char **a = argv; *a; a++)
                if (strcmp(*a, "-append") == 0)
                        key = strstr(a[1], " banger.repo=repo") != NULL;
        assert_true(key);
        strv_free(argv);

        /* the kernel's modules disk: read-only, the last device (the others
         * keep their slots), named on the command line (templates too) */
        struct vm_boot mods = base;
        mods.modules_disk = "/k/modules.ext4";
        assert_int_equal(vmm_qemu.build_argv(&mods, "qemu-system-x86_64", &argv, &err), 0);
        assert_true(has(argv, "-drive", "id=modules,file=/k/modules.ext4,format=raw,if=none,readonly=on"));
        size_t last = 0;
        while (argv[last + 1])
                last++;
        assert_string_equal(argv[last], "virtio-blk-device,drive=modules,serial=modules");
        for (char **a = argv; *a; a++)
                if (strcmp(*a, "-append") == 0)
                        assert_non_null(strstr(a[1], " banger.modules=modules"));
        strv_free(argv);
        mods.generic = true;
        assert_int_equal(vmm_qemu.build_argv(&mods, "qemu-system-x86_64", &argv, &err), 0);
        for (char **a = argv; *a; a++)
                if (strcmp(*a, "-append") == 0)
                        assert_non_null(strstr(a[1], " banger.modules=modules"));
        strv_free(argv);

        struct vm_boot kvm = base;
        kvm.accel = "kvm";
        kvm.net = VM_NET_USER;
        kvm.hostfwd_port = 2222;
        assert_int_equal(vmm_qemu.build_argv(&kvm, "qemu-system-x86_64", &argv, &err), 0);
        assert_true(has(argv, "-accel", "kvm"));
        assert_true(has(argv, "-netdev", "user,id=net0,net=10.0.2.15/24,host=10.0.2.2,dns=10.0.2.3,ipv6=off,"
                                          "hostfwd=tcp:127.0.0.1:2222-:22"));
        strv_free(argv);

        /* a TAP handed over as an fd: QEMU finds it as fd 3 and never opens /dev/net/tun */
        struct vm_boot byfd = base;
        byfd.tap_fd = 7;
        assert_int_equal(vmm_qemu.build_argv(&byfd, "qemu-system-x86_64", &argv, &err), 0);
        assert_true(has(argv, "-netdev", "tap,id=net0,fd=3"));
        strv_free(argv);

        /* a template's boot: no identity on the command line, RAM in a shared
         * file, a NIC on a hub; a VM resumed from it: paused, incoming, the
         * file mapped privately */
        struct vm_boot tpl = base;
        tpl.generic = true;
        tpl.net = VM_NET_DETACHED;
        tpl.ram_file = "/t/ram";
        tpl.ram_file_shared = true;
        tpl.repo_disk = "/t/repo.img";
        assert_int_equal(vmm_qemu.build_argv(&tpl, "qemu-system-x86_64", &argv, &err), 0);
        assert_true(has(argv, "-object", "memory-backend-file,id=mem,size=1024M,mem-path=/t/ram,share=on"));
        assert_true(has(argv, "-netdev", "hubport,id=net0,hubid=0"));
        assert_true(has(argv, "-device", "virtio-net-device,netdev=net0"));
        assert_true(has(argv, "-device", "virtio-blk-device,drive=work,serial=work"));
        assert_true(has(argv, "-device", "virtio-blk-device,drive=repo,serial=repo"));
        for (char **a = argv; *a; a++) {
                assert_string_not_equal(*a, "-incoming");
                if (strcmp(*a, "-append") == 0) {
                        assert_non_null(strstr(a[1], "banger.hostname=dev"));
                        assert_null(strstr(a[1], "banger.work"));
                        assert_null(strstr(a[1], "banger.repo"));
                        assert_null(strstr(a[1], "banger.ip"));
                }
        }
        strv_free(argv);
        struct vm_boot warm = base;
        warm.incoming = true;
        warm.ram_file = "/t/ram";
        assert_int_equal(vmm_qemu.build_argv(&warm, "qemu-system-x86_64", &argv, &err), 0);
        assert_true(has(argv, "-object", "memory-backend-file,id=mem,size=1024M,mem-path=/t/ram,share=off"));
        assert_true(has(argv, "-incoming", "defer"));
        bool paused = false;
        for (char **a = argv; *a; a++)
                paused |= strcmp(*a, "-S") == 0;
        assert_true(paused);
        strv_free(argv);
        /* restoring needs a VMM started for it */
        assert_int_equal(vmm_qemu.restore(&base, 0, 1000, &err), -EINVAL);
        op_error_done(&err);

        struct vm_boot bad[] = { base, base, base, base };
        bad[0].vcpu = 0;
        bad[1].accel = "hvf";
        bad[2].tap = "tap0;rm -rf /";
        bad[3].name = "Dev Box";
        for (size_t i = 0; i < 4; i++) {
                assert_int_equal(vmm_qemu.build_argv(&bad[i], "q", &argv, &err), -EINVAL);
                op_error_done(&err);
        }
}

/* The agent's two transports: the virtio-serial port, or a vhost-vsock
 * device (virtio-mmio under microvm) with the guest CID and no port. */
static bool has_prefix(char **argv, const char *opt, const char *prefix) {
        for (char **a = argv; *a; a++)
                if (strcmp(a[0], opt) == 0 && a[1] && strncmp(a[1], prefix, strlen(prefix)) == 0)
                        return true;
        return false;
}

static void test_argv_agent_transport(void **state) {
        char **serial = NULL, **vsock = NULL, **bad = NULL;
        struct op_error err = OP_ERROR_INIT;
        (void) state;
        assert_int_equal(vmm_qemu.build_argv(&base, "qemu", &serial, &err), 0);
        assert_true(has(serial, "-device", "virtio-serial-device"));
        assert_true(has(serial, "-chardev", "socket,id=agent,path=/v/agent.sock,server=on,wait=off"));
        assert_false(has_prefix(serial, "-device", "vhost-vsock"));

        struct vm_boot b = base;
        b.vsock_cid = 7;
        assert_int_equal(vmm_qemu.build_argv(&b, "qemu", &vsock, &err), 0);
        assert_true(has(vsock, "-device", "vhost-vsock-device,guest-cid=7"));
        assert_false(has(vsock, "-device", "virtio-serial-device"));
        assert_false(has_prefix(vsock, "-chardev", "socket,id=agent"));
        assert_false(has_prefix(vsock, "-device", "virtserialport"));
        /* the same device count in the same order: the vsock takes the port's slot */
        size_t ns = 0, nv = 0;
        for (char **a = serial; *a; a++)
                ns += strcmp(*a, "-device") == 0;
        for (char **a = vsock; *a; a++)
                nv += strcmp(*a, "-device") == 0;
        assert_int_equal(nv, ns - 1); /* serial: the bus and the port; vsock: one device */

        b.vsock_cid = 2; /* the host's CID */
        assert_int_equal(vmm_qemu.build_argv(&b, "qemu", &bad, &err), -EINVAL);
        assert_null(bad);
        op_error_done(&err);
        strv_free(serial);
        strv_free(vsock);
}

static void test_cid_in_use(void **state) {
        (void) state;
        assert_true(qemu_said_cid_in_use("qemu exited at start (status 1): qemu-system-x86_64: -device "
                                         "vhost-vsock-device,guest-cid=3: vhost-vsock: unable to set guest cid: "
                                         "Address already in use"));
        assert_false(qemu_said_cid_in_use("qemu-system-x86_64: -device vhost-vsock-device,guest-cid=3: "
                                          "vhost-vsock: failed to open vhost device: No such file or directory"));
        assert_false(qemu_said_cid_in_use(NULL));
}

static void test_owns(void **state) {
        pid_t pid;
        (void) state;
        char *argv[] = { (char *) "sh", (char *) "-c", (char *) "sleep 5", (char *) "-name",
                         (char *) "banger-t1,process=banger-t1", NULL };
        assert_int_equal(spawn_start(argv, NULL, &pid), 0);
        usleep(100000);
        assert_true(vmm_qemu.owns(pid, "/bin/sh", "t1"));
        assert_false(vmm_qemu.owns(pid, "/bin/sh", "t2"));
        assert_false(vmm_qemu.owns(pid, "qemu-system-x86_64", "t1"));
        kill(pid, SIGKILL);
        spawn_wait(pid);
        assert_false(vmm_qemu.owns(pid, "/bin/sh", "t1")); /* gone */
        assert_false(vmm_qemu.owns(0, "/bin/sh", "t1"));
        /* never signal pid 0 or -1 (our process group, or everyone) */
        struct vm_proc zero = { .pid = 0, .pidfd = -1 }, minus = { .pid = -1, .pidfd = -1 };
        assert_int_equal(vmm_qemu.kill(&zero, 0), -EINVAL);
        assert_int_equal(vmm_qemu.kill(&minus, 0), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_argv),
                cmocka_unit_test(test_owns),
                cmocka_unit_test(test_argv_agent_transport),
                cmocka_unit_test(test_cid_in_use),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
