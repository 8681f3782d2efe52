/* SPDX-License-Identifier: MIT */
/*
 * The Firecracker backend against Firecracker's published contract: the
 * backend drives tests/fc/fake_firecracker.py, which validates every
 * request against ../shared/reference/firecracker-api-v1.14.1.yaml and
 * answers as Firecracker does; the calls it recorded are asserted here, for
 * boot, pause/resume, stop, snapshot/restore, every refusal, the hybrid
 * vsock, the jailer's argv and chroot, and the raw root disk.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fsutil.h"
#include "jsonx.h"
#include "macro.h"
#include "op_error.h"
#include "proc_spawn.h"
#include "strbuf.h"
#include "vm/agent_client.h"
#include "vmm/vmm.h"
#include "jail.h"

static char dir[64], fake[PATH_MAX], record[PATH_MAX];
static char kernel[PATH_MAX], initrd[PATH_MAX], rootfs[PATH_MAX], work[PATH_MAX], api[PATH_MAX], vsock[PATH_MAX],
        console_log[PATH_MAX];

/* The record is appended to by every fake of a test (never truncated: a
 * fake keeps it open); the calls before `seen` were checked already. */
static size_t seen;

static void put_file(const char *path, const char *text) {
        assert_int_equal(write_file_atomic(path, text, strlen(text), 0600), 0);
}

/* tests/fc/fake_firecracker.py: beside this binary's build dir (build/tests/),
 * else from the working directory (scripts/test runs from the checkout). */
static void find_fake(void) {
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        assert_true(n > 0);
        exe[n] = '\0';
        snprintf(fake, sizeof(fake), "%s/../../tests/fc/fake_firecracker.py", dirname(exe));
        if (access(fake, X_OK) != 0)
                snprintf(fake, sizeof(fake), "%s/tests/fc/fake_firecracker.py", getcwd(exe, sizeof(exe)));
        assert_int_equal(access(fake, X_OK), 0);
}

static int setup(void **state) {
        (void) state;
        snprintf(dir, sizeof(dir), "/tmp/banger-fc.XXXXXX");
        assert_non_null(mkdtemp(dir));
        find_fake();
#define P(var, name) snprintf(var, sizeof(var), "%s/%s", dir, name)
        P(record, "record.jsonl");
        P(kernel, "vmlinux");
        P(initrd, "initrd.cpio");
        P(rootfs, "root.raw");
        P(work, "work.ext4");
        P(api, "api.sock");
        P(vsock, AGENT_VSOCK_NAME);
        P(console_log, "console.log");
#undef P
        put_file(kernel, "kernel");
        put_file(initrd, "initrd");
        put_file(rootfs, "rootfs");
        put_file(work, "work");
        seen = 0;
        setenv("FC_FAKE_RECORD", record, 1);
        unsetenv("FC_FAKE_FAIL");
        unsetenv("FC_FAKE_VSOCK_1024");
        return 0;
}

static int teardown(void **state) {
        (void) state;
        char *argv[] = { (char *) "rm", (char *) "-rf", dir, NULL };
        struct spawn_result r = { 0 };
        (void) spawn_run(argv, &(struct spawn_opts) { 0 }, &r);
        spawn_result_done(&r);
        return 0;
}

static struct vm_boot boot(void) {
        return (struct vm_boot) {
                .id = "0123abcd", .name = "dev", .vcpu = 2, .memory_mib = 256, .accel = "kvm", .tsc_khz = 2599998,
                .kernel = kernel, .initrd = initrd, .init_mode = "fast", .root_disk = rootfs, .work_disk = work,
                .net = VM_NET_TAP, .tap = "bg0123abcd", .mac = "02:00:ac:10:00:02", .ip_cidr = "172.16.0.2/24",
                .gateway = "172.16.0.1", .qmp_socket = api, .agent_socket = vsock, .console_log = console_log,
        };
}

/* The API calls the fake recorded ("METHOD PATH STATUS"), events left out. */
static json_t *calls(void) {
        json_t *out = json_array();
        _cleanup_free_ char *text = NULL;
        size_t len;
        if (read_file(record, 1u << 24, &text, &len) < 0)
                return out;
        for (char *l = text, *nl; l && *l; l = nl ? nl + 1 : NULL) {
                nl = strchr(l, '\n');
                if (nl)
                        *nl = '\0';
                json_t *j = json_loads(l, 0, NULL);
                if (j && json_object_get(j, "method"))
                        json_array_append_new(out, j);
                else
                        json_decref(j);
        }
        return out;
}


static size_t new_calls(void) {
        _cleanup_json_ json_t *got = calls();
        return json_array_size(got) - seen;
}

static void skip_calls(void) {
        seen += new_calls();
}

static void expect_calls(const char *const *want) {
        _cleanup_json_ json_t *got = calls();
        size_t i = 0;
        for (; want[i]; i++) {
                json_t *c = json_array_get(got, seen + i);
                char line[256];
                snprintf(line, sizeof(line), "%s %s %lld", json_string_value(json_object_get(c, "method")),
                         json_string_value(json_object_get(c, "path")),
                         (long long) json_integer_value(json_object_get(c, "status")));
                if (!c || strcmp(line, want[i]) != 0)
                        fail_msg("call %zu: got '%s', want '%s'", i, c ? line : "(none)", want[i]);
        }
        if (json_array_size(got) - seen != i)
                fail_msg("%zu calls, want %zu", json_array_size(got) - seen, i);
        seen += i;
}

static json_t *call_body(size_t i) {
        _cleanup_json_ json_t *got = calls();
        return json_incref(json_object_get(json_array_get(got, seen + i), "body"));
}

static void reap(struct vm_proc *p) {
        vmm_proc_kill(p, SIGKILL);
        (void) spawn_wait(p->pid);
        if (p->pidfd >= 0)
                close(p->pidfd);
}

static const char *const boot_calls[] = {
        "PUT /logger 204",         "PUT /metrics 204",     "PUT /machine-config 204", "PUT /boot-source 204", "PUT /drives/rootfs 204", "PUT /drives/work 204",
        "PUT /network-interfaces/net0 204", "PUT /vsock 204", "PUT /entropy 204", "PUT /serial 204",
        "PUT /actions 204", NULL,
};

static void test_boot_pause_stop(void **state) {
        struct vm_boot b = boot();
        struct vm_proc p;
        struct op_error err = OP_ERROR_INIT;
        (void) state;
        assert_int_equal(vmm_firecracker.start(&b, fake, &p, &err), 0);
        _cleanup_json_ json_t *lg = call_body(0), *bs = call_body(3), *rd = call_body(4), *act = call_body(10);
        /* Firecracker's own log beside the console (`vm logs --vmm`) */
        const char *lp = json_string_value(json_object_get(lg, "log_path"));
        assert_non_null(lp);
        assert_non_null(strstr(lp, "/firecracker.log"));
        assert_int_equal(access(lp, F_OK), 0);
        /* banger-init finds its disks by serial: the drive id is it */
        assert_string_equal(json_string_value(json_object_get(rd, "drive_id")), "rootfs");
        assert_false(json_boolean_value(json_object_get(rd, "is_root_device")));
        const char *args = json_string_value(json_object_get(bs, "boot_args"));
        assert_non_null(strstr(args, "banger.root=rootfs"));
        assert_non_null(strstr(args, "banger.work=work"));
        assert_non_null(strstr(args, "pci=off"));
        assert_string_equal(json_string_value(json_object_get(act, "action_type")), "InstanceStart");
        expect_calls(boot_calls);

        assert_true(vmm_firecracker.owns(p.pid, fake, "0123abcd"));
        assert_false(vmm_firecracker.owns(p.pid, fake, "0123abce"));
        assert_false(vmm_firecracker.owns(p.pid, "/usr/bin/qemu-system-x86_64", "0123abcd"));

        assert_int_equal(vmm_firecracker.pause(&b, &err), 0);
        assert_int_equal(vmm_firecracker.resume(&b, &err), 0);
        expect_calls((const char *const[]) { "PATCH /vm 204", "PATCH /vm 204", NULL });
        /* a guest still up: Ctrl-Alt-Del, and Firecracker exits */
        assert_int_equal(vmm_firecracker.stop(&b, &p, 5000, &err), 0);
        expect_calls((const char *const[]) { "PUT /actions 204", NULL });
        assert_int_equal(spawn_wait(p.pid), 0);
        close(p.pidfd);
        op_error_done(&err);
}

static bool tar_has(int fd, const char *a_name, const char *b_name) {
        struct archive *a = archive_read_new();
        struct archive_entry *en;
        bool got_a = false, got_b = false;
        archive_read_support_format_tar(a);
        lseek(fd, 0, SEEK_SET);
        if (archive_read_open_fd(a, fd, 1 << 16) == ARCHIVE_OK)
                while (archive_read_next_header(a, &en) == ARCHIVE_OK) {
                        got_a = got_a || strcmp(archive_entry_pathname(en), a_name) == 0;
                        got_b = got_b || strcmp(archive_entry_pathname(en), b_name) == 0;
                }
        archive_read_free(a);
        lseek(fd, 0, SEEK_SET);
        return got_a && got_b;
}

static void test_snapshot_restore(void **state) {
        struct vm_boot b = boot();
        struct vm_proc p;
        struct op_error err = OP_ERROR_INIT;
        _cleanup_free_ char *state_path = path_join(dir, "state");
        (void) state;
        assert_int_equal(vmm_firecracker.start(&b, fake, &p, &err), 0);
        skip_calls();
        _cleanup_close_ int fd = open(state_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(vmm_firecracker.snapshot(&b, fd, 10000, &err), 0);
        expect_calls((const char *const[]) { "PATCH /vm 204", "PUT /snapshot/create 204", NULL });
        assert_true(tar_has(fd, "vmstate", "memory"));
        /* the files Firecracker wrote went into the state */
        _cleanup_free_ char *left = path_join(dir, "save.mem");
        assert_int_equal(access(left, F_OK), -1);
        reap(&p);

        /* a VMM started to receive it: no configuration, then snapshot/load */
        b.incoming = true;
        assert_int_equal(vmm_firecracker.start(&b, fake, &p, &err), 0);
        expect_calls((const char *const[]) { NULL });
        assert_int_equal(vmm_firecracker.restore(&b, fd, 10000, &err), 0);
        _cleanup_json_ json_t *load = call_body(0);
        assert_string_equal(json_string_value(json_object_get(json_object_get(load, "mem_backend"), "backend_type")),
                            "File");
        assert_int_equal(vmm_firecracker.resume(&b, &err), 0);
        expect_calls((const char *const[]) { "PUT /snapshot/load 204", "PATCH /vm 204", NULL });
        reap(&p);

        /* a restore without a VMM waiting for it, and a damaged state */
        b.incoming = false;
        assert_true(vmm_firecracker.restore(&b, fd, 1000, &err) < 0);
        b.incoming = true;
        assert_int_equal(vmm_firecracker.start(&b, fake, &p, &err), 0);
        _cleanup_close_ int junk = open(kernel, O_RDONLY | O_CLOEXEC);
        assert_true(vmm_firecracker.restore(&b, junk, 1000, &err) < 0);
        expect_calls((const char *const[]) { NULL });
        reap(&p);
        op_error_done(&err);
}

/* Every call Firecracker can refuse: the error carries its fault_message,
 * and a refused boot leaves no VMM behind. */
static void test_refusals(void **state) {
        struct vm_boot b = boot();
        struct vm_proc p;
        (void) state;
        const char *paths[] = { "PUT /logger", "PUT /metrics", "PUT /machine-config", "PUT /boot-source", "PUT /drives/rootfs", "PUT /drives/work",
                                "PUT /network-interfaces/net0", "PUT /vsock", "PUT /entropy", "PUT /serial",
                                "PUT /actions" };
        for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
                struct op_error err = OP_ERROR_INIT;
                setenv("FC_FAKE_FAIL", paths[i], 1);
                assert_true(vmm_firecracker.start(&b, fake, &p, &err) < 0);
                if (!strstr(err.msg, "injected failure") || !strstr(err.msg, "HTTP 400"))
                        fail_msg("%s: %s", paths[i], err.msg);
                assert_int_equal(p.pid, 0);
                assert_int_equal(new_calls(), i + 1); /* up to the refused one */
                skip_calls();
                op_error_done(&err);
        }
        /* after boot: pause, snapshot, a load */
        const char *later[] = { "PATCH /vm", "PUT /snapshot/create" };
        for (size_t i = 0; i < ELEMENTSOF(later); i++) {
                struct op_error err = OP_ERROR_INIT;
                setenv("FC_FAKE_FAIL", later[i], 1);
                assert_int_equal(vmm_firecracker.start(&b, fake, &p, &err), 0);
                _cleanup_free_ char *sp = path_join(dir, "state2");
                _cleanup_close_ int fd = open(sp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                int rc = i == 0 ? vmm_firecracker.pause(&b, &err) : vmm_firecracker.snapshot(&b, fd, 5000, &err);
                assert_true(rc < 0);
                assert_non_null(strstr(err.msg, "injected failure"));
                reap(&p);
                op_error_done(&err);
        }
        unsetenv("FC_FAKE_FAIL");
}

static void test_bad_boots(void **state) {
        struct vm_boot b = boot();
        struct vm_proc p = { 0 };
        struct op_error err = OP_ERROR_INIT;
        (void) state;
        b.net = VM_NET_USER;
        b.hostfwd_port = 2222;
        assert_int_equal(vmm_firecracker.start(&b, fake, &p, &err), -EOPNOTSUPP);
        assert_non_null(strstr(err.msg, "user-mode"));
        b = boot();
        b.kernel = NULL;
        assert_int_equal(vmm_firecracker.start(&b, fake, &p, &err), -EINVAL);
        b = boot();
        b.id = "../x";
        assert_int_equal(vmm_firecracker.start(&b, fake, &p, &err), -EINVAL);
        /* a VMM that dies at once says why */
        b = boot();
        assert_int_equal(vmm_firecracker.start(&b, "/bin/false", &p, &err), -EIO);
        assert_non_null(strstr(err.msg, "firecracker exited at start"));
        /* a real Firecracker's refusal of the kernel file */
        unlink(kernel);
        assert_true(vmm_firecracker.start(&b, fake, &p, &err) < 0);
        put_file(kernel, "kernel");
        op_error_done(&err);
}

/* The guest's side of the hybrid vsock: one connection, echoing a line. */
static void *echo_once(void *arg) {
        int l = *(int *) arg, c = accept(l, NULL, NULL);
        char buf[64];
        ssize_t n = c >= 0 ? read(c, buf, sizeof(buf)) : -1;
        if (n > 0 && write(c, buf, (size_t) n) != n) {
        }
        if (c >= 0)
                close(c);
        return NULL;
}

static void test_hybrid_vsock(void **state) {
        struct vm_boot b = boot();
        struct vm_proc p;
        struct op_error err = OP_ERROR_INIT;
        int fd = -1;
        (void) state;
        /* nothing in the guest listens: refused (retried by the callers) */
        assert_int_equal(vmm_firecracker.start(&b, fake, &p, &err), 0);
        assert_int_equal(agent_socket_connect(vsock, &fd), -ECONNREFUSED);
        reap(&p);

        _cleanup_free_ char *guest = path_join(dir, "guest.sock");
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", guest);
        int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(bind(l, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(l, 1), 0);
        pthread_t t;
        pthread_create(&t, NULL, echo_once, &l);
        setenv("FC_FAKE_VSOCK_1024", guest, 1);
        assert_int_equal(vmm_firecracker.start(&b, fake, &p, &err), 0);
        assert_int_equal(agent_socket_connect(vsock, &fd), 0);
        fcntl(fd, F_SETFL, 0);
        assert_int_equal(write(fd, "ping\n", 5), 5);
        char buf[16] = { 0 };
        assert_int_equal(read(fd, buf, sizeof(buf)), 5);
        assert_string_equal(buf, "ping\n");
        close(fd);
        pthread_join(t, NULL);
        close(l);
        unsetenv("FC_FAKE_VSOCK_1024");
        reap(&p);
        op_error_done(&err);
}

static void test_jailer(void **state) {
        struct op_error err = OP_ERROR_INIT;
        _cleanup_free_ char *base = path_join(dir, "jail");
        struct host_jail j = { .jailer = (char *) "/usr/bin/jailer", .exec_file = (char *) "/opt/fc/firecracker",
                               .chroot_base = base, .uid = 12345, .gid = 23456 };
        (void) state;
        /* the jailer execs Firecracker with its own --id: none after "--" */
        _cleanup_strv_free_ char **argv = jail_argv(&j, "x", NULL);
        const char *want[] = { "/usr/bin/jailer", "--id", "banger-x", "--exec-file", "/opt/fc/firecracker", "--uid",
                               "12345", "--gid", "23456", "--chroot-base-dir", base, "--cgroup-version", "2", "--",
                               "--api-sock", "/api.sock", NULL };
        for (size_t i = 0; want[i]; i++)
                assert_string_equal(argv[i], want[i]);
        assert_null(argv[ELEMENTSOF(want) - 1]);
        /* cgroup limits only for the controllers the cgroup2 root offers */
        _cleanup_strv_free_ char **none = jail_cgroup_limits("", 2, 512), **nomem = jail_cgroup_limits("cpuset io pids", 2, 512);
        assert_null(none[0]);
        assert_null(nomem[0]);
        _cleanup_strv_free_ char **lim = jail_cgroup_limits("cpuset cpu io memory hugetlb pids\n", 2, 512);
        assert_string_equal(lim[0], "memory.max=671088640"); /* 512 + 128 MiB */
        assert_string_equal(lim[1], "cpu.max=200000 100000");
        assert_null(lim[2]);
        _cleanup_strv_free_ char **cg = jail_argv(&j, "x", lim);
        const char *want_cg[] = { "--cgroup-version", "2", "--cgroup", "memory.max=671088640", "--cgroup",
                                  "cpu.max=200000 100000", "--", "--api-sock", "/api.sock", NULL };
        for (size_t i = 0; want_cg[i]; i++)
                assert_string_equal(cg[11 + i], want_cg[i]);
        assert_null(cg[11 + ELEMENTSOF(want_cg) - 1]);
        _cleanup_free_ char *root = jail_root(&j, "x");
        _cleanup_free_ char *want_root = xasprintf("%s/firecracker/banger-x/root", base);
        assert_string_equal(root, want_root);

        /* the very files opened go in (hard links); the VM's own given to the
         * jail user, a shared one (a second link exists) left as it is */
        j.uid = getuid() == 0 ? 12345 : getuid();
        j.gid = getuid() == 0 ? 23456 : getgid();
        _cleanup_free_ char *shared2 = path_join(dir, "kernel-other-link");
        assert_int_equal(link(kernel, shared2), 0);
        const char *paths[] = { kernel, rootfs, work };
        const char *names[3];
        int fds[3];
        for (size_t i = 0; i < 3; i++) {
                names[i] = strrchr(paths[i], '/') + 1;
                assert_true((fds[i] = open(paths[i], O_PATH | O_NOFOLLOW | O_CLOEXEC)) >= 0);
        }
        assert_int_equal(jail_prepare(&j, root, fds, names, 3, &err), 0);
        struct stat a, c;
        _cleanup_free_ char *in_root = path_join(root, "root.raw"), *in_kernel = path_join(root, "vmlinux");
        assert_int_equal(stat(rootfs, &a), 0);
        assert_int_equal(stat(in_root, &c), 0);
        assert_int_equal(a.st_ino, c.st_ino);
        assert_int_equal(c.st_uid, j.uid);
        assert_int_equal(stat(in_kernel, &c), 0);
        assert_int_equal(c.st_uid, getuid());
        for (size_t i = 0; i < 3; i++)
                close(fds[i]);
        /* a block device (a device-mapper root) gets a node of its own, the jail user's */
        if (getuid() == 0) {
                _cleanup_free_ char *blk = path_join(dir, "root.dm"), *in_blk = path_join(root, "root.dm");
                assert_int_equal(mknod(blk, S_IFBLK | 0600, makedev(7, 0)), 0);
                int bfd = open(blk, O_PATH | O_CLOEXEC);
                const char *bn[] = { "root.dm" };
                assert_int_equal(jail_prepare(&j, root, &bfd, bn, 1, &err), 0);
                close(bfd);
                assert_int_equal(lstat(in_blk, &c), 0);
                assert_true(S_ISBLK(c.st_mode));
                assert_int_equal(c.st_rdev, makedev(7, 0));
                assert_int_equal(c.st_uid, j.uid);
                unlink(blk);
        }
        /* a symlink is never taken in, nor a name that is a path, nor the exec file's */
        _cleanup_free_ char *sl = path_join(dir, "sneaky");
        assert_int_equal(symlink("/etc/shadow", sl), 0);
        int sfd = open(sl, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        const char *sn[] = { "sneaky" }, *dots[] = { ".." }, *fcn[] = { "firecracker" };
        assert_int_equal(jail_prepare(&j, root, &sfd, sn, 1, &err), -EINVAL);
        close(sfd);
        int kfd = open(kernel, O_PATH | O_CLOEXEC);
        assert_int_equal(jail_prepare(&j, root, &kfd, dots, 1, &err), -EINVAL);
        assert_int_equal(jail_prepare(&j, root, &kfd, fcn, 1, &err), -EINVAL);
        close(kfd);

        /* started detached: not our child, its output in the log */
        _cleanup_free_ char *logp = path_join(dir, "jail.log");
        int lfd = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        char *sh[] = { (char *) "/bin/sh", (char *) "-c", (char *) "echo started; exec sleep 30", NULL };
        pid_t pid = 0;
        assert_int_equal(jail_spawn(sh, lfd, &pid, &err), 0);
        close(lfd);
        assert_true(pid > 0);
        assert_int_equal(waitpid(pid, NULL, WNOHANG), -1);
        assert_int_equal(errno, ECHILD);
        assert_true(getsid(pid) != getsid(0)); /* a session of its own */
        _cleanup_free_ char *said = NULL;
        size_t len = 0;
        for (int i = 0; i < 100 && (read_file(logp, 4096, &said, &len) < 0 || len == 0); i++) {
                free(said);
                said = NULL;
                usleep(20000);
        }
        assert_non_null(said);
        assert_non_null(strstr(said, "started"));
        kill(pid, SIGKILL);

        /* a chroot deeper than sun_path: its socket reached by a short link */
        struct strbuf deep = STRBUF_INIT;
        strbuf_addstr(&deep, base);
        while (deep.len < 200)
                strbuf_addstr(&deep, "/a-rather-long-directory-name");
        assert_int_equal(mkdir_p(deep.buf, 0700), 0);
        _cleanup_free_ char *cwd = getcwd(NULL, 0);
        assert_int_equal(chdir(deep.buf), 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX, .sun_path = "api.sock" };
        int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_int_equal(bind(l, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(l, 1), 0);
        assert_int_equal(chdir(cwd), 0);
        _cleanup_free_ char *target = path_join(deep.buf, "api.sock"), *shortl = path_join(dir, "s.sock");
        assert_true(strlen(target) >= sizeof(sa.sun_path));
        assert_int_equal(fc_jail_socket_link(target, shortl, &err), 0);
        int fd = -1;
        assert_int_equal(agent_socket_connect(shortl, &fd), 0);
        close(fd);
        close(l);
        strbuf_release(&deep);

        /* the VM's jails listed and removed, whatever the exec name; another VM's stay */
        struct host_jail j2 = j, j3 = j;
        j2.exec_file = (char *) "/opt/fc/firecracker-v1.14.1-x86_64";
        _cleanup_free_ char *other = jail_root(&j2, "x");
        _cleanup_free_ char *third = jail_root(&j3, "y");
        assert_int_equal(mkdir_p(other, 0700), 0);
        assert_int_equal(mkdir_p(third, 0700), 0);
        char **ids = NULL;
        assert_int_equal(jail_list(base, &ids), 3);
        strv_free(ids);
        _cleanup_free_ char *in_link = path_join(root, "escape");
        assert_int_equal(symlink(dir, in_link), 0); /* removed as a link, never followed */
        assert_int_equal(jail_remove(base, "x"), 2);
        assert_int_equal(access(kernel, F_OK), 0);
        assert_int_equal(access(rootfs, F_OK), 0);
        assert_int_equal(access(root, F_OK), -1);
        assert_int_equal(access(other, F_OK), -1);
        assert_int_equal(access(third, F_OK), 0);
        assert_int_equal(jail_list(base, &ids), 1);
        assert_string_equal(ids[0], "y");
        strv_free(ids);
        assert_int_equal(jail_remove(base, "x"), 0);
        op_error_done(&err);
}

static void test_root_disk(void **state) {
        struct op_error err = OP_ERROR_INIT;
        _cleanup_free_ char *src = path_join(dir, "image.ext4"), *dst = path_join(dir, "vm-root.raw");
        (void) state;
        _cleanup_close_ int fd = open(src, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(pwrite(fd, "head", 4, 0), 4);
        assert_int_equal(pwrite(fd, "tail", 4, 8 << 20), 4); /* a hole between */
        assert_int_equal(vmm_firecracker.root_disk_create(dst, src, 64 << 20, &err), 0);
        struct stat st;
        assert_int_equal(stat(dst, &st), 0);
        assert_int_equal(st.st_size, 64 << 20);
        assert_true(st.st_blocks * 512 < (8 << 20)); /* the hole stayed one */
        assert_int_equal(st.st_mode & 0777, 0600);
        _cleanup_close_ int in = open(dst, O_RDONLY | O_CLOEXEC);
        char buf[5] = { 0 };
        assert_int_equal(pread(in, buf, 4, 8 << 20), 4);
        assert_string_equal(buf, "tail");
        /* never over an existing file */
        assert_int_equal(vmm_firecracker.root_disk_create(dst, src, 64 << 20, &err), -EEXIST);
        op_error_done(&err);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_boot_pause_stop, setup, teardown),
                cmocka_unit_test_setup_teardown(test_snapshot_restore, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_boots, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hybrid_vsock, setup, teardown),
                cmocka_unit_test_setup_teardown(test_jailer, setup, teardown),
                cmocka_unit_test_setup_teardown(test_root_disk, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
