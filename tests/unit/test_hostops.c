/* SPDX-License-Identifier: MIT */
/* The rules every privileged operation checks for itself (src/host/hostops.c):
 * each refusal names the rule, and nothing is touched. Unprivileged: every
 * case here is refused before any host call. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "dmsnap.h"
#include "fsutil.h"
#include "hostops.h"
#include "strbuf.h"

static char root[64], other[64];
static struct host_policy pol;

static int setup(void **state) {
        struct op_error e = OP_ERROR_INIT;
        (void) state;
        snprintf(root, sizeof(root), "/tmp/banger-hostops-XXXXXX");
        snprintf(other, sizeof(other), "/tmp/banger-hostops-o-XXXXXX");
        assert_non_null(mkdtemp(root));
        assert_non_null(mkdtemp(other));
        const char *roots[] = { root, NULL };
        assert_int_equal(host_policy_init(&pol, "br-fc", "172.16.0.1", 24, roots, &e), 0);
        pol.agent_bin = strdup("/bin/true"); /* builds are refused before it is read */
        return 0;
}

static int teardown(void **state) {
        (void) state;
        host_policy_done(&pol);
        rm_rf(root);
        rm_rf(other);
        return 0;
}

/* r is a refusal (-EPERM, unauthorized) whose message contains needle. */
static void refused(int r, struct op_error *e, const char *needle) {
        if (r != -EPERM || e->code != RPC_UNAUTHORIZED || !strstr(op_error_message(e), needle))
                fail_msg("expected a refusal mentioning '%s', got %d: %s", needle, r, op_error_message(e));
        op_error_done(e);
}

static void test_names(void **state) {
        struct op_error e = OP_ERROR_INIT;
        (void) state;
        assert_int_equal(host_check_bridge(&pol, "br-fc", &e), 0);
        refused(host_check_bridge(&pol, "br-fc-x", &e), &e, "not the configured bridge");
        refused(host_check_bridge(&pol, "eth0", &e), &e, "not banger's");
        refused(host_check_bridge(&pol, "br-fc-0123456789", &e), &e, "not banger's");

        const char *good[] = { "bg0123456789ab", "tap-pool-0", "tap-pool-9", "tap-pool-255" };
        const char *bad[] = { "lo", "br-fc", "eth0", "bg0123", "bg0123456789AB", "bg0123456789abc", "tap-pool-256",
                              "tap-pool-01", "tap-pool-", "tap-pool-1x", "../bg0123456789", "" };
        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                assert_int_equal(host_check_tap_name(good[i], &e), 0);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                refused(host_check_tap_name(bad[i], &e), &e, "not a banger TAP name");
        refused(host_check_tap_name(NULL, &e), &e, "not a banger TAP name");

        assert_int_equal(host_check_vm_id("0123456789abcdef", &e), 0);
        refused(host_check_vm_id("0123456789abcde", &e), &e, "not a VM id");
        refused(host_check_vm_id("0123456789abcdeg", &e), &e, "not a VM id");
        refused(host_check_vm_id("0123456789abcdef; drop", &e), &e, "not a VM id");
}

static void test_addresses(void **state) {
        struct op_error e = OP_ERROR_INIT;
        (void) state;
        assert_int_equal(host_check_guest_ip(&pol, "172.16.0.2", &e), 0);
        assert_int_equal(host_check_guest_ip(&pol, "172.16.0.254", &e), 0);
        refused(host_check_guest_ip(&pol, "172.16.0.1", &e), &e, "not a guest address");   /* the bridge */
        refused(host_check_guest_ip(&pol, "172.16.0.0", &e), &e, "not a guest address");   /* network */
        refused(host_check_guest_ip(&pol, "172.16.0.255", &e), &e, "not a guest address"); /* broadcast */
        refused(host_check_guest_ip(&pol, "10.0.0.2", &e), &e, "not a guest address");
        assert_int_equal(host_check_guest_ip(&pol, "172.16.0.2/24", &e), -EINVAL);
        assert_int_equal(e.code, RPC_BAD_REQUEST);
        op_error_done(&e);
}

/* The guard's MAC: exactly six lowercase hex pairs, unicast, not zero. */
static void test_macs(void **state) {
        struct op_error e = OP_ERROR_INIT;
        (void) state;
        const char *good[] = { "52:54:ac:10:00:02", "02:00:00:00:00:01", "fe:ff:ff:ff:ff:ff", "00:00:00:00:00:01" };
        const char *malformed[] = { "52:54:AC:10:00:02", "52:54:ac:10:00",     "52:54:ac:10:00:02:03", "5254ac100002",
                                    "52-54-ac-10-00-02", "52:54:ac:10:0:002",  "52:54:ac:10:00:0g",    "52:54:ac:10:00:02\n",
                                    " 52:54:ac:10:00:02", "52:54:ac:10:00:2",  "52::54:ac:10:00:02",   "" };
        const char *group[] = { "01:00:5e:00:00:01", "33:33:00:00:00:01", "ff:ff:ff:ff:ff:ff", "53:54:ac:10:00:02" };
        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                assert_int_equal(host_check_mac(good[i], &e), 0);
        for (size_t i = 0; i < ELEMENTSOF(malformed); i++)
                refused(host_check_mac(malformed[i], &e), &e, "not a MAC address");
        refused(host_check_mac(NULL, &e), &e, "not a MAC address");
        for (size_t i = 0; i < ELEMENTSOF(group); i++)
                refused(host_check_mac(group[i], &e), &e, "group (multicast) MAC");
        refused(host_check_mac("00:00:00:00:00:00", &e), &e, "all-zero MAC");
}

static void test_paths(void **state) {
        struct op_error e = OP_ERROR_INIT;
        (void) state;
        _cleanup_free_ char *dir = path_join(root, "images"), *file = path_join(dir, "rootfs.ext4");
        _cleanup_free_ char *link = path_join(root, "link"), *through = path_join(link, "rootfs.ext4");
        _cleanup_free_ char *missing = path_join(root, "no/such/file"), *dots = xasprintf("%s/images/../x", root);
        assert_int_equal(mkdir(dir, 0700), 0);
        assert_int_equal(write_file_atomic(file, "x", 1, 0600), 0);
        assert_int_equal(symlink(other, link), 0);

        assert_int_equal(host_check_path(&pol, file, true, &e), 0);
        assert_int_equal(host_check_path(&pol, missing, false, &e), 0);
        assert_int_equal(host_check_path(&pol, missing, true, &e), -ENOENT);
        op_error_done(&e);
        refused(host_check_path(&pol, through, false, &e), &e, "symlink component");
        refused(host_check_path(&pol, link, false, &e), &e, "symlink component");
        refused(host_check_path(&pol, other, false, &e), &e, "outside banger's directories");
        refused(host_check_path(&pol, root, false, &e), &e, "outside banger's directories"); /* the root itself */
        refused(host_check_path(&pol, "/etc/passwd", true, &e), &e, "outside banger's directories");
        refused(host_check_path(&pol, dots, false, &e), &e, "normalised");
        refused(host_check_path(&pol, "relative/path", false, &e), &e, "normalised");
        _cleanup_free_ char *prefix = xasprintf("%sX/file", root); /* a sibling sharing the prefix */
        refused(host_check_path(&pol, prefix, false, &e), &e, "outside banger's directories");
}

/* Whole operations refuse before they act: nothing is created, nothing deleted. */
static void test_operations(void **state) {
        struct op_error e = OP_ERROR_INIT;
        (void) state;
        _cleanup_free_ char *out = path_join(root, "build"), *rootfs = path_join(root, "build/rootfs.ext4");
        _cleanup_free_ char *slink = path_join(root, "build-link"), *victim = path_join(other, "victim");
        _cleanup_free_ char *file = path_join(root, "a-file");
        assert_int_equal(mkdir(out, 0700), 0);
        assert_int_equal(write_file_atomic(victim, "keep", 4, 0600), 0);
        assert_int_equal(write_file_atomic(file, "x", 1, 0600), 0);
        assert_int_equal(symlink(other, slink), 0);

        const char *pk[] = { "openssh-server", NULL }, *evil[] = { "--option=x", NULL };
        struct hostop_debian_build q = { "bookworm", "http://deb.debian.org/debian", pk, "fast", out };
        struct hostop_debian_build bad = q;
        bad.suite = "bookworm; rm -rf /";
        refused(hostop_build_debian(&pol, &bad, NULL, NULL, NULL, &e), &e, "suite");
        bad = q;
        bad.mirror = "file:///etc";
        refused(hostop_build_debian(&pol, &bad, NULL, NULL, NULL, &e), &e, "mirror");
        bad = q;
        bad.packages = evil;
        refused(hostop_build_debian(&pol, &bad, NULL, NULL, NULL, &e), &e, "package");
        bad = q;
        bad.init_mode = "sysvinit";
        refused(hostop_build_debian(&pol, &bad, NULL, NULL, NULL, &e), &e, "init mode");
        bad = q;
        bad.out_dir = other;
        refused(hostop_build_debian(&pol, &bad, NULL, NULL, NULL, &e), &e, "outside");
        bad.out_dir = slink;
        refused(hostop_build_debian(&pol, &bad, NULL, NULL, NULL, &e), &e, "symlink");
        _cleanup_free_ char *below_link = path_join(slink, "sub"); /* the symlink is not the last component */
        bad.out_dir = below_link;
        refused(hostop_build_debian(&pol, &bad, NULL, NULL, NULL, &e), &e, "symlink");
        bad.out_dir = file;
        refused(hostop_build_debian(&pol, &bad, NULL, NULL, NULL, &e), &e, "not a directory");
        _cleanup_free_ char *kept = NULL;
        size_t len;
        assert_int_equal(read_file(victim, 64, &kept, &len), 0);
        assert_string_equal(kept, "keep");

        /* Outputs are made new: one already there (a hard link to a victim,
         * say) is refused before anything runs, and stays as it was. */
        assert_int_equal(link(victim, rootfs) == 0 || write_file_atomic(rootfs, "keep", 4, 0600) == 0, 1);
        _cleanup_free_ char *blog = path_join(out, "build.log");
        refused(hostop_build_debian(&pol, &q, NULL, NULL, NULL, &e), &e, "already has");
        assert_int_equal(access(blog, F_OK), -1); /* the log it made first is gone again */

        refused(hostop_tap_delete(&pol, "lo", &e), &e, "not a banger TAP name");
        refused(hostop_tap_delete(&pol, "br-fc", &e), &e, "not a banger TAP name");
        refused(hostop_tap_create(&pol, "bg0123456789ab", "eth0", &e), &e, "not banger's");
        refused(hostop_bridge_ensure(&pol, "br-fc-other", &e), &e, "not the configured bridge");
        refused(hostop_nat_enable(&pol, "0123456789abcdef", "8.8.8.8", &e), &e, "not a guest address");
        refused(hostop_nat_disable(&pol, "*", &e), &e, "not a VM id");
        const char *id = "0123456789abcdef", *mac = "52:54:ac:10:00:02";
        refused(hostop_guard_enable(&pol, id, "eth0", "172.16.0.2", mac, false, &e), &e, "TAP name");
        refused(hostop_guard_enable(&pol, "*", "bg0123456789ab", "172.16.0.2", mac, false, &e), &e, "not a VM id");
        refused(hostop_guard_enable(&pol, id, "bg0123456789ab", "172.16.0.1", mac, true, &e), &e, "not a guest address");
        refused(hostop_guard_enable(&pol, id, "bg0123456789ab", "172.16.0.2", "ff:ff:ff:ff:ff:ff", true, &e), &e,
                "group (multicast) MAC");
        refused(hostop_guard_enable(&pol, id, "bg0123456789ab", "172.16.0.2", "00:00:00:00:00:00", false, &e), &e,
                "all-zero MAC");
        refused(hostop_guard_enable(&pol, id, "bg0123456789ab", "172.16.0.2", "52:54:AC:10:00:02", false, &e), &e,
                "not a MAC address");
        refused(hostop_guard_enable(&pol, id, "bg0123456789ab", "172.16.0.2", NULL, false, &e), &e, "not a MAC address");
        refused(hostop_dns_route(&pol, "0.0.0.0:53", &e), &e, "loopback");
}

/* The snapshot's pure pieces: its name, the name back to a VM id, the table. */
static void test_dm_pure(void **state) {
        (void) state;
        _cleanup_free_ char *n = dmsnap_name("0123456789abcdef");
        assert_string_equal(n, "banger-0123456789abcdef");
        assert_string_equal(dmsnap_name_vm_id(n), "0123456789abcdef");
        const char *not_ours[] = { "banger-0123", "banger-0123456789ABCDEF", "banger-0123456789abcdef0",
                                   "other-0123456789abcdef", "banger-", "", "banger-0123456789abcdeg" };
        for (size_t i = 0; i < ELEMENTSOF(not_ours); i++)
                if (dmsnap_name_vm_id(not_ours[i]))
                        fail_msg("'%s' taken for a banger snapshot", not_ours[i]);
        assert_null(dmsnap_name_vm_id(NULL));
        _cleanup_free_ char *t = dmsnap_table(2048, "7:0", "7:1");
        assert_string_equal(t, "7:0 7:1 P 8");
        assert_null(dmsnap_table(0, "7:0", "7:1"));          /* no sectors */
        assert_null(dmsnap_table(2048, "7:0", "7:0"));       /* one device for both */
        assert_null(dmsnap_table(2048, "/dev/loop0", "7:1")); /* never a path */
        assert_null(dmsnap_table(2048, "7:0 7:9", "7:1"));
        assert_null(dmsnap_table(2048, "7:", "7:1"));
        assert_null(dmsnap_table(2048, "7:0", NULL));
}

static void make_sized(const char *path, off_t size) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0 && ftruncate(fd, size) == 0);
}

/* Every rule on the two files, refused before any device is touched; here
 * (no /dev/mapper/control) device-mapper says it is unusable, and a remove
 * finds nothing to remove. */
static void test_dm_rules(void **state) {
        struct op_error e = OP_ERROR_INIT;
        char *dev = NULL;
        (void) state;
        _cleanup_free_ char *origin = path_join(root, "rootfs.ext4"), *cow = path_join(root, "root.cow");
        _cleanup_free_ char *small = path_join(root, "small.cow"), *odd = path_join(root, "odd.ext4");
        _cleanup_free_ char *outside = path_join(other, "rootfs.ext4"), *slink = path_join(root, "link.cow");
        _cleanup_free_ char *dir = path_join(root, "dir"), *sub = path_join(root, "sub"), *via = path_join(root, "via");
        _cleanup_free_ char *via_cow = path_join(via, "root.cow"), *sub_cow = path_join(sub, "root.cow");
        make_sized(origin, 4 << 20);
        make_sized(cow, 8 << 20);
        make_sized(small, 1 << 20);
        make_sized(odd, (4 << 20) + 100);
        make_sized(outside, 4 << 20);
        assert_int_equal(symlink(cow, slink), 0);
        assert_int_equal(mkdir(dir, 0700), 0);
        assert_int_equal(mkdir(sub, 0700), 0);
        make_sized(sub_cow, 8 << 20);
        assert_int_equal(symlink(sub, via), 0);
        const char *id = "0123456789abcdef";

        refused(hostop_dm_snapshot_create(&pol, "*", origin, cow, &dev, &e), &e, "not a VM id");
        refused(hostop_dm_snapshot_create(&pol, id, outside, cow, &dev, &e), &e, "outside");
        refused(hostop_dm_snapshot_create(&pol, id, origin, slink, &dev, &e), &e, "symlink");
        refused(hostop_dm_snapshot_create(&pol, id, origin, via_cow, &dev, &e), &e, "symlink");
        refused(hostop_dm_snapshot_create(&pol, id, origin, small, &dev, &e), &e, "not between the origin's size");
        refused(hostop_dm_snapshot_create(&pol, id, odd, cow, &dev, &e), &e, "512-byte sectors");
        refused(hostop_dm_snapshot_create(&pol, id, origin, origin, &dev, &e), &e, "not one");
        refused(hostop_dm_snapshot_create(&pol, id, dir, cow, &dev, &e), &e, "regular files");
        refused(hostop_dm_snapshot_create(&pol, id, origin, "/etc/../etc/passwd", &dev, &e), &e, "normalised");
        if (getuid() == 0) { /* (scripts/test also runs this as nobody, who cannot give a file away) */
                assert_int_equal(chown(cow, 4321, 4321), 0);
                refused(hostop_dm_snapshot_create(&pol, id, origin, cow, &dev, &e), &e, "not to banger's owner");
                assert_int_equal(chown(cow, getuid(), getgid()), 0);
        }
        refused(hostop_dm_snapshot_remove(&pol, "banger-x", &e), &e, "not a VM id");
        assert_null(dev);

        struct stat so, sc;
        assert_int_equal(stat(origin, &so), 0);
        assert_int_equal(stat(cow, &sc), 0);
        assert_int_equal(host_check_dm_files(&pol, &so, &sc, &e), 0);
        sc.st_size = (off_t) HOST_DM_COW_MAX + 512;
        refused(host_check_dm_files(&pol, &so, &sc, &e), &e, "1 TiB");

        if (access("/dev/mapper/control", F_OK) == 0) /* a host with device-mapper: not this test's business */
                return;
        assert_false(hostop_dm_available(&pol));
        assert_int_equal(hostop_dm_snapshot_create(&pol, id, origin, sub_cow, &dev, &e), -EOPNOTSUPP);
        assert_non_null(strstr(op_error_message(&e), "/dev/mapper/control"));
        op_error_done(&e);
        assert_int_equal(hostop_dm_snapshot_remove(&pol, id, &e), 0);
        char **ids = NULL;
        assert_int_equal(hostop_dm_snapshot_list(&pol, &ids, &e), -EOPNOTSUPP);
        op_error_done(&e);
        assert_int_equal(access("/dev/mapper/control", F_OK), -1); /* nothing made it */
}

/* Firecracker's jail: every argument checked before anything is made. */
static void test_jail_rules(void **state) {
        struct op_error e = OP_ERROR_INIT;
        pid_t pid = 0;
        char *jroot = NULL;
        (void) state;
        _cleanup_free_ char *kernel = path_join(root, "vmlinux"), *disk = path_join(root, "root.raw");
        _cleanup_free_ char *logp = path_join(root, "vmm.log"), *outside = path_join(other, "outside.img");
        _cleanup_free_ char *slink = path_join(root, "link.raw"), *sub = path_join(root, "sub");
        _cleanup_free_ char *via = path_join(root, "via"), *via_disk = path_join(via, "root.raw");
        _cleanup_free_ char *sub_disk = path_join(sub, "root.raw"), *base = path_join(root, "jail");
        make_sized(kernel, 4096);
        make_sized(disk, 1 << 20);
        make_sized(logp, 0);
        make_sized(outside, 4096);
        assert_int_equal(symlink(disk, slink), 0);
        assert_int_equal(mkdir(sub, 0700), 0);
        make_sized(sub_disk, 4096);
        assert_int_equal(symlink(sub, via), 0);
        const char *id = "0123456789abcdef";
        const char *ok[] = { kernel, disk };

        /* off: says why */
        pol.jail_why = strdup("no jailer here");
        assert_int_equal(hostop_fc_jail_start(&pol, id, ok, 2, logp, 1, 256, &pid, &jroot, &e), -EOPNOTSUPP);
        assert_non_null(strstr(op_error_message(&e), "no jailer here"));
        op_error_done(&e);

        pol.jail_on = true;
        pol.jail_base = strdup(base);
        pol.jail = (struct host_jail) { .jailer = strdup("/bin/true"), .exec_file = strdup("/opt/fc/firecracker"),
                                        .chroot_base = strdup(base), .uid = getuid(), .gid = getgid() };
        const char *out[] = { kernel, outside }, *sl[] = { kernel, slink }, *vi[] = { via_disk };
        const char *dup[] = { disk, sub_disk }, *many[HOST_JAIL_MAX_FILES + 1];
        for (size_t i = 0; i < ELEMENTSOF(many); i++)
                many[i] = kernel;
        refused(hostop_fc_jail_start(&pol, "../x", ok, 2, logp, 1, 256, &pid, &jroot, &e), &e, "not a VM id");
        refused(hostop_fc_jail_start(&pol, id, out, 2, logp, 1, 256, &pid, &jroot, &e), &e, "outside");
        refused(hostop_fc_jail_start(&pol, id, sl, 2, logp, 1, 256, &pid, &jroot, &e), &e, "symlink");
        refused(hostop_fc_jail_start(&pol, id, vi, 1, logp, 1, 256, &pid, &jroot, &e), &e, "symlink");
        refused(hostop_fc_jail_start(&pol, id, dup, 2, logp, 1, 256, &pid, &jroot, &e), &e, "two files named");
        refused(hostop_fc_jail_start(&pol, id, many, ELEMENTSOF(many), logp, 1, 256, &pid, &jroot, &e), &e, "files for a jail");
        refused(hostop_fc_jail_start(&pol, id, ok, 2, outside, 1, 256, &pid, &jroot, &e), &e, "outside");
        refused(hostop_fc_jail_start(&pol, id, ok, 2, logp, 33, 256, &pid, &jroot, &e), &e, "not a VM's");
        refused(hostop_fc_jail_start(&pol, id, ok, 2, logp, 1, 32, &pid, &jroot, &e), &e, "not a VM's");
        /* nothing was made for any of them */
        assert_int_equal(access(base, F_OK), -1);

        /* a start: the chroot with the files in it, the jailer detached */
        assert_int_equal(hostop_fc_jail_start(&pol, id, ok, 2, logp, 1, 256, &pid, &jroot, &e), 0);
        assert_true(pid > 0);
        _cleanup_free_ char *want = xasprintf("%s/firecracker/banger-%s/root", base, id);
        assert_string_equal(jroot, want);
        _cleanup_free_ char *in = path_join(jroot, "root.raw");
        struct stat a, b;
        assert_int_equal(stat(disk, &a), 0);
        assert_int_equal(stat(in, &b), 0);
        assert_int_equal(a.st_ino, b.st_ino);
        char **ids = NULL;
        assert_int_equal(hostop_fc_jail_list(&pol, &ids, &e), 0);
        assert_non_null(ids[0]);
        assert_string_equal(ids[0], id);
        strv_free(ids);
        assert_int_equal(hostop_fc_jail_remove(&pol, id, &e), 0);
        assert_int_equal(access(jroot, F_OK), -1);
        assert_int_equal(access(disk, F_OK), 0);
        refused(hostop_fc_jail_remove(&pol, "*", &e), &e, "not a VM id");
        free(jroot);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_names, setup, teardown),
                cmocka_unit_test_setup_teardown(test_addresses, setup, teardown),
                cmocka_unit_test_setup_teardown(test_macs, setup, teardown),
                cmocka_unit_test_setup_teardown(test_paths, setup, teardown),
                cmocka_unit_test_setup_teardown(test_operations, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dm_pure, setup, teardown),
                cmocka_unit_test_setup_teardown(test_dm_rules, setup, teardown),
                cmocka_unit_test_setup_teardown(test_jail_rules, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
