/* SPDX-License-Identifier: MIT */
/* The VMM/accelerator chooser: "auto" never picks a backend this build cannot
 * drive, whatever is installed; an explicit choice is kept (and refused
 * later, before any VM row, by the daemon when it cannot run). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fcntl.h>

#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "accel.h"
#include "config.h"
#include "fsutil.h"
#include "hostinfo.h"
#include "procscan.h"

static struct config *cfg(const char *text) {
        static const struct config_host host = { .state_dir = "/s", .home = "/h", .ncpus = 8, .mem_bytes = 16ULL << 30 };
        struct config *c = NULL;
        struct config_error err;
        assert_int_equal(config_load(text, strlen(text), &host, &c, &err), 0);
        return c;
}

static const char *fc_version = "Firecracker v1.14.1";

static void choose(const char *text, bool fc_installed, bool kvm_works, int probe, struct vmm_choice *ret) {
        struct config *c = cfg(text);
        struct tool_info q = { .path = (char *) "/usr/bin/qemu-system-x86_64" };
        struct tool_info f = { .path = fc_installed ? (char *) "/usr/bin/firecracker" : NULL,
                               .version = (char *) fc_version };
        struct kvm_state k = { .present = kvm_works, .openable = kvm_works, .create_vm = kvm_works };
        hostinfo_choose_vmm(c, &q, &f, &k, probe, "probe", ret);
        config_free(c);
}

static void test_auto_never_unbootable(void **state) {
        (void) state;
        struct vmm_choice v;
        assert_true(hostinfo_vmm_implemented("firecracker"));
        assert_true(hostinfo_vmm_implemented("qemu"));
        /* firecracker installed, in the window, KVM proven by a boot: firecracker */
        choose("vmm = \"auto\"\n", true, true, 1, &v);
        assert_string_equal(v.vmm, "firecracker");
        assert_string_equal(v.accel, "kvm");
        vmm_choice_done(&v);
        /* KVM not proven (opens, no probe yet): QEMU, and why */
        choose("vmm = \"auto\"\n", true, true, -1, &v);
        assert_string_equal(v.vmm, "qemu");
        assert_non_null(strstr(v.vmm_reason, "needs KVM"));
        vmm_choice_done(&v);
        /* a version outside the window: QEMU, and why */
        const char *versions[] = { "Firecracker v1.4.1", "Firecracker v1.15.0", "Firecracker v2.0.0", "garbage", NULL };
        const char *says[] = { "older than 1.5", "newer than 1.14.x", "newer than 1.14.x", "not one banger can read" };
        for (size_t i = 0; i < 4; i++) {
                fc_version = versions[i];
                choose("", true, true, 1, &v);
                assert_string_equal(v.vmm, "qemu");
                assert_non_null(strstr(v.vmm_reason, says[i]));
                vmm_choice_done(&v);
        }
        fc_version = "Firecracker v1.14.1";
        choose("", false, false, -1, &v);
        assert_string_equal(v.vmm, "qemu");
        assert_string_equal(v.accel, "tcg");
        vmm_choice_done(&v);
}

static void test_fc_version_window(void **state) {
        (void) state;
        char *why = NULL;
        assert_int_equal(hostinfo_fc_version("Firecracker v1.5.0", &why), 0);
        free(why);
        assert_int_equal(hostinfo_fc_version("Firecracker v1.14.1\n", NULL), 0);
        assert_int_equal(hostinfo_fc_version("Firecracker v1.15.0", NULL), 1);
        assert_int_equal(hostinfo_fc_version("Firecracker v1.4.9", NULL), -1);
        assert_int_equal(hostinfo_fc_version("Firecracker v0.25.2", NULL), -1);
        assert_int_equal(hostinfo_fc_version(NULL, NULL), -1);
        assert_int_equal(hostinfo_fc_version("firecracker 1.14", NULL), -1);
}

static void test_explicit_kept(void **state) {
        (void) state;
        struct vmm_choice v;
        choose("vmm = \"firecracker\"\n", true, true, 1, &v);
        assert_string_equal(v.vmm, "firecracker"); /* the daemon refuses it at vm create */
        vmm_choice_done(&v);
        choose("vmm = \"qemu\"\naccel = \"tcg\"\n", true, true, 1, &v);
        assert_string_equal(v.vmm, "qemu");
        assert_string_equal(v.accel, "tcg");
        vmm_choice_done(&v);
        /* KVM that opens but no boot proved it: TCG */
        choose("", false, true, 0, &v);
        assert_string_equal(v.accel, "tcg");
        vmm_choice_done(&v);
}

/* A process whose argv carries the probe's mark, in its own pid file. */
static pid_t fake_probe(const char *dir) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                /* its own group (the test kills it whole) and no stdio of ours:
                 * an orphaned sleep would hold a test runner's pipe for 60 s */
                setpgid(0, 0);
                int nul = open("/dev/null", O_RDWR);
                dup2(nul, 1);
                dup2(nul, 2);
                execl("/bin/sh", "sh", "-c", "sleep 60; :", "banger.root=banger-kvm-probe", (char *) NULL);
                _exit(127);
        }
        usleep(100000); /* exec'd */
        char text[32], *pidf = path_join(dir, "accel-probe.pid");
        snprintf(text, sizeof(text), "%d\n", (int) pid);
        assert_int_equal(write_file_atomic(pidf, text, strlen(text), 0600), 0);
        free(pidf);
        return pid;
}

/* A probe a dead daemon left is killed from its pid file; a pid file naming
 * another process (a reused pid) or garbage kills nothing; the file goes. */
static void test_stale_probe(void **state) {
        (void) state;
        char dir[] = "/tmp/banger-probe-XXXXXX";
        assert_non_null(mkdtemp(dir));
        char *pidf = path_join(dir, "accel-probe.pid");
        assert_false(accel_kill_stale_probe(dir)); /* none */
        pid_t probe = fake_probe(dir);
        assert_true(accel_kill_stale_probe(dir));
        assert_int_equal(waitpid(probe, NULL, 0), probe);
        kill(-probe, SIGKILL); /* its sleep */
        assert_int_equal(access(pidf, F_OK), -1);
        pid_t other = fork(); /* not a probe */
        if (other == 0) {
                int nul = open("/dev/null", O_RDWR);
                dup2(nul, 1);
                dup2(nul, 2);
                execl("/bin/sleep", "sleep", "60", (char *) NULL);
                _exit(127);
        }
        usleep(100000);
        char text[32];
        snprintf(text, sizeof(text), "%d\n", (int) other);
        assert_int_equal(write_file_atomic(pidf, text, strlen(text), 0600), 0);
        assert_false(accel_kill_stale_probe(dir));
        assert_true(proc_alive(other));
        kill(other, SIGKILL);
        waitpid(other, NULL, 0);
        assert_int_equal(write_file_atomic(pidf, "garbage", 7, 0600), 0);
        assert_false(accel_kill_stale_probe(dir));
        assert_int_equal(access(pidf, F_OK), -1);
        free(pidf);
        assert_int_equal(rm_rf(dir), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_auto_never_unbootable),
                cmocka_unit_test(test_fc_version_window),
                cmocka_unit_test(test_explicit_kept),
                cmocka_unit_test(test_stale_probe),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
