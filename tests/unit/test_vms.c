/* SPDX-License-Identifier: MIT */
/*
 * The VM service with fake priv ops, a fake VMM (real sleep processes) and a
 * fake agent (tests/unit/fakes.c): create -> start -> stop -> delete, a
 * failure injected at every start step (the ledger must end empty), cancel
 * during create, reconcile of dead / live / handle-less / corrupt / hostile
 * VMs, and the exit watcher. Real SQLite, real disks (qemu-img, mkfs.ext4,
 * libext2fs, ssh-keygen), no root, no QEMU.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/sysinfo.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "clock.h"
#include "fakes.h"
#include "fsutil.h"
#include "hostinfo.h"
#include "jsonx.h"
#include "log.h"
#include "store/store_artifacts.h"
#include "store/store_vms.h"
#include "strbuf.h"
#include "vms_fixture.h"

static void test_lifecycle(void **state) {
        _cleanup_free_ char *id = NULL;
        struct op_error e = OP_ERROR_INIT;
        json_t *res = NULL;
        (void) state;
        assert_int_equal(create_vm("alpha", true, false, &id), 0);
        assert_true(is_state(id, "running"));
        assert_int_equal(fake_live_taps(), 1);
        assert_int_equal(fake_live_nat(), 1);
        assert_int_equal(fake_live_guards(), 1);
        assert_int_equal(fake_live_vmms(), 1);
        assert_int_equal(fake_calls("ip_forward"), 1);
        assert_int_equal(vm_show(&vms, "alpha", &res, &e), 0);
        assert_true(json_integer_value(json_object_get(res, "pid")) > 0);
        assert_string_equal(json_string_value(json_object_get(res, "vmm")), "fake");
        json_decref(res);
        res = NULL;

        assert_int_equal(vm_start(&vms, "alpha", NULL, &res, &e), -EALREADY);
        assert_int_equal(e.code, RPC_BAD_REQUEST);
        op_error_done(&e);

        assert_int_equal(vm_stop(&vms, "alpha", NULL, &res, &e), 0);
        json_decref(res);
        assert_true(is_state(id, "stopped"));
        assert_int_equal(fake_calls("agent_poweroff"), 1);
        assert_host_clean();
        assert_no_runtime_files(id);

        assert_int_equal(vm_start(&vms, "alpha", NULL, &res, &e), 0);
        json_decref(res);
        assert_int_equal(fake_live_vmms(), 1);
        assert_int_equal(vm_delete(&vms, "alpha", NULL, &res, &e), 0);
        json_decref(res);
        assert_host_clean();
        assert_true(is_state(id, "(none)"));
        _cleanup_free_ char *dir = path_join(layout.vms_dir, id);
        assert_int_equal(access(dir, F_OK), -1);
}

/* The guard was given the VM's own MAC (the row's) and `isolate` ("0"/"1"). */
static bool guarded_as(const char *id, const char *isolate) {
        struct vm_row r;
        if (store_vm_get(store, id, &r) < 0)
                return false;
        _cleanup_free_ char *line = xasprintf("guard_enable %s mac=%s isolate=%s\n", id, r.mac, isolate);
        vm_row_done(&r);
        return strstr(fake_log(), line) != NULL;
}

/* Without --nat: no forwarding, no NAT rules; the guard always. */
static void test_no_nat(void **state) {
        _cleanup_free_ char *id = NULL;
        (void) state;
        assert_int_equal(create_vm("beta", false, false, &id), 0);
        assert_int_equal(fake_live_nat(), 0);
        assert_int_equal(fake_live_guards(), 1);
        assert_int_equal(fake_calls("ip_forward"), 0);
        if (!guarded_as(id, "0"))
                fail_msg("the guard did not get the VM's MAC and isolate=0:\n%s", fake_log());
}

/* --isolate reaches the guard; vm set changes it for the next start, on a stopped VM only. */
static void test_isolate(void **state) {
        struct op_error e = OP_ERROR_INIT;
        struct vm_create_req q = { .name = "iso", .image = "test-img", .isolate = true };
        struct vm_set_req off = { .nat = -1, .isolate = 0 };
        json_t *res = NULL;
        char op_id[RPC_OP_ID_SIZE];
        (void) state;
        rpc_op_id_new(op_id);
        assert_int_equal(vm_create_begin(&vms, op_id, &q, &res, &e), 0);
        _cleanup_free_ char *id = xstrdup(json_string_value(json_object_get(res, "id")));
        json_decref(res);
        vm_create_wait(&vms, op_id);
        assert_true(is_state(id, "running"));
        if (!guarded_as(id, "1"))
                fail_msg("the guard did not get isolate=1:\n%s", fake_log());
        assert_int_equal(vm_show(&vms, "iso", &res, &e), 0);
        assert_true(json_is_true(json_object_get(res, "isolate")));
        json_decref(res);
        res = NULL;
        assert_int_equal(vm_set(&vms, "iso", &off, &res, &e), -EBUSY);
        assert_int_equal(e.code, RPC_BAD_REQUEST);
        op_error_done(&e);
        assert_int_equal(vm_stop(&vms, "iso", NULL, &res, &e), 0);
        json_decref(res);
        assert_int_equal(vm_set(&vms, "iso", &off, &res, &e), 0);
        assert_false(json_is_true(json_object_get(res, "isolate")));
        json_decref(res);
        fake_reset_calls();
        assert_int_equal(vm_start(&vms, "iso", NULL, &res, &e), 0);
        json_decref(res);
        if (!guarded_as(id, "0"))
                fail_msg("the guard did not get isolate=0 after vm set:\n%s", fake_log());
        assert_int_equal(fake_violations(), 0);
}

/* ---- a failure at every start step undoes exactly what was done ---------------------- */

static void test_start_failures(void **state) {
        static const char *const steps[] = { "bridge_ensure", "tap_create", "guard_enable", "ip_forward",
                                             "nat_enable",    "vmm_start",  "agent_health" };
        struct op_error e = OP_ERROR_INIT;
        _cleanup_free_ char *id = NULL;
        json_t *res = NULL;
        (void) state;
        assert_int_equal(create_vm("gamma", true, true, &id), 0);
        assert_true(is_state(id, "created"));
        fake_reset_calls();
        for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
                fake_fail_at(steps[i]);
                int rc = vm_start(&vms, "gamma", NULL, &res, &e);
                fake_fail_at(NULL);
                if (rc >= 0)
                        fail_msg("start succeeded despite a failing %s", steps[i]);
                if (!strstr(op_error_message(&e), steps[i]))
                        fail_msg("%s: the error does not say what failed: %s", steps[i], op_error_message(&e));
                op_error_done(&e);
                assert_true(is_state(id, "error"));
                assert_host_clean();
                assert_no_runtime_files(id);
                /* exactly what was done is undone: a hook's cleanup runs
                 * only when its prepare ran, the VMM is killed only when it
                 * was started */
                size_t want_guard = i >= 2, want_nat = i >= 3, want_kill = i >= 6;
                if (fake_calls("guard_disable") != want_guard || fake_calls("nat_disable") != want_nat ||
                    fake_calls("vmm_kill") != want_kill || fake_calls("tap_create") != (i >= 1))
                        fail_msg("failure at %s undid the wrong things:\n%s", steps[i], fake_log());
                fake_reset_calls();
        }
        /* and then it starts */
        assert_int_equal(vm_start(&vms, "gamma", NULL, &res, &e), 0);
        json_decref(res);
        assert_true(is_state(id, "running"));
}

/* sshd never listening and a VMM dying during boot are failures too. */
static void test_boot_failures(void **state) {
        struct op_error e = OP_ERROR_INIT;
        json_t *res = NULL;
        _cleanup_free_ char *id = NULL;
        (void) state;
        assert_int_equal(create_vm("delta", true, true, &id), 0);
        fake_health_mode(HEALTH_FAIL);
        assert_true(vm_start(&vms, "delta", NULL, &res, &e) < 0);
        op_error_done(&e);
        assert_host_clean();
        fake_health_mode(HEALTH_NO_SSHD);
        assert_true(vm_start(&vms, "delta", NULL, &res, &e) < 0);
        assert_non_null(strstr(op_error_message(&e), "sshd"));
        op_error_done(&e);
        fake_health_mode(HEALTH_OK);
        assert_host_clean();
        assert_no_runtime_files(id);
}

/* A create whose boot fails keeps the VM (error) for `vm logs`; one failing
 * before the boot leaves nothing. */
static void test_create_failures(void **state) {
        _cleanup_free_ char *id = NULL, *id2 = NULL;
        (void) state;
        fake_fail_at("vmm_start");
        assert_int_equal(create_vm("eps", false, false, &id), -EIO);
        fake_fail_at(NULL);
        assert_true(is_state(id, "error"));
        assert_host_clean();
        fake_fail_at("bridge_ensure");
        assert_int_equal(create_vm("zeta", false, false, &id2), -EIO);
        fake_fail_at(NULL);
        assert_host_clean();
}

static bool op_running(void *ud) {
        return fake_calls("agent_health") > 0;
}

/* Ctrl-C during create: everything goes, row included. */
static void test_cancel_create(void **state) {
        struct op_error e = OP_ERROR_INIT;
        struct vm_create_req q = { .name = "eta", .image = "test-img", .nat = true };
        json_t *res = NULL;
        char op_id[RPC_OP_ID_SIZE];
        (void) state;
        fake_health_mode(HEALTH_BLOCK);
        rpc_op_id_new(op_id);
        assert_int_equal(vm_create_begin(&vms, op_id, &q, &res, &e), 0);
        _cleanup_free_ char *id = xstrdup(json_string_value(json_object_get(res, "id")));
        json_decref(res);
        assert_true(wait_until(op_running, NULL));
        assert_int_equal(vm_create_cancel(&vms, op_id, &res, &e), 0);
        json_decref(res);
        vm_create_wait(&vms, op_id);
        fake_health_mode(HEALTH_OK);
        assert_int_equal(vm_create_status(&vms, op_id, &res, &e), 0);
        assert_string_equal(json_string_value(json_object_get(res, "state")), "cancelled");
        json_decref(res);
        assert_true(is_state(id, "(none)"));
        assert_host_clean();
        _cleanup_free_ char *dir = path_join(layout.vms_dir, id);
        assert_int_equal(access(dir, F_OK), -1);
}

/* ---- the exit watcher -------------------------------------------------------------- */

static void test_exit_watcher(void **state) {
        _cleanup_free_ char *id = NULL;
        json_t *res = NULL;
        struct op_error e = OP_ERROR_INIT;
        (void) state;
        assert_int_equal(create_vm("theta", true, false, &id), 0);
        assert_int_equal(vm_show(&vms, id, &res, &e), 0);
        pid_t pid = (pid_t) json_integer_value(json_object_get(res, "pid"));
        json_decref(res);
        fake_crash_vmm(pid);
        assert_true(wait_until(stopped, id));
        assert_host_clean();
        assert_no_runtime_files(id);
        assert_true(fake_calls("nat_disable") >= 1 && fake_calls("guard_disable") >= 1 && fake_calls("tap_delete") >= 1);
}

/* ---- reconcile ------------------------------------------------------------------------ */

static void test_reconcile_live(void **state) {
        _cleanup_free_ char *id = NULL;
        json_t *res = NULL;
        struct op_error e = OP_ERROR_INIT;
        (void) state;
        assert_int_equal(create_vm("iota", true, false, &id), 0);
        restart_service();
        assert_true(is_state(id, "running"));
        assert_int_equal(fake_live_vmms(), 1);
        assert_int_equal(fake_live_taps(), 1);
        assert_int_equal(vm_show(&vms, id, &res, &e), 0);
        pid_t pid = (pid_t) json_integer_value(json_object_get(res, "pid"));
        json_decref(res);
        assert_true(pid > 0);
        /* adopted: the watcher sees its exit */
        fake_crash_vmm(pid);
        assert_true(wait_until(stopped, id));
        assert_host_clean();
}

static void test_reconcile_dead(void **state) {
        _cleanup_free_ char *id = NULL, *id2 = NULL;
        json_t *res = NULL;
        struct op_error e = OP_ERROR_INIT;
        (void) state;
        assert_int_equal(create_vm("kappa", true, false, &id), 0);
        assert_int_equal(create_vm("lambda", true, false, &id2), 0);
        assert_int_equal(vm_show(&vms, id, &res, &e), 0);
        pid_t pid = (pid_t) json_integer_value(json_object_get(res, "pid"));
        json_decref(res);
        vms_done(&vms); /* the daemon is gone; then the VMM dies */
        fake_crash_vmm(pid);
        while (fake_live_vmms() > 1)
                poll(NULL, 0, 10);
        /* and kappa's handles.json is lost: the row's teardown record remains */
        write_handles(id, NULL);
        service_start();
        vms_reconcile(&vms);
        assert_true(is_state(id, "stopped"));
        assert_true(is_state(id2, "running"));
        assert_int_equal(fake_live_taps(), 1);
        assert_int_equal(fake_live_nat(), 1);
        assert_no_runtime_files(id);
}

static pid_t pid_of(const char *ref) {
        json_t *res = NULL;
        struct op_error e = OP_ERROR_INIT;
        assert_int_equal(vm_show(&vms, ref, &res, &e), 0);
        pid_t pid = (pid_t) json_integer_value(json_object_get(res, "pid"));
        json_decref(res);
        return pid;
}

static char *tap_of(const char *ref) {
        struct vm_row r;
        assert_int_equal(store_vm_get(store, ref, &r), 0);
        char *t = xasprintf("bg%.12s", r.id);
        vm_row_done(&r);
        return t;
}

/* handles.json that names someone else's devices, is garbage, or is a FIFO. */
static void test_reconcile_hostile(void **state) {
        _cleanup_free_ char *id = NULL, *id2 = NULL, *fifo = NULL;
        (void) state;
        assert_int_equal(create_vm("mu", false, false, &id), 0);
        assert_int_equal(create_vm("nu", false, false, &id2), 0);
        _cleanup_free_ char *mu_tap = tap_of("mu"), *nu_tap = tap_of("nu");
        pid_t mu = pid_of("mu");
        vms_done(&vms);
        fake_crash_vmm(mu);
        while (fake_live_vmms() > 1)
                poll(NULL, 0, 10);
        /* mu is dead; its files claim nu's TAP, the bridge, and pid 1 */
        _cleanup_free_ char *hostile = xasprintf("{\"pid\":1,\"tap\":\"%s\",\"vmm\":\"fake\"}", nu_tap);
        write_handles(id, hostile);
        assert_int_equal(store_vm_set_teardown(store, id, "{\"pid\":1,\"tap\":\"br-fc\"}"), 0);
        fake_put_tap("victim0");
        service_start();
        vms_reconcile(&vms);
        assert_true(is_state(id, "stopped"));
        assert_false(fake_has_tap(mu_tap));   /* its own TAP goes */
        assert_true(fake_has_tap(nu_tap));    /* nu's survives */
        assert_true(fake_has_tap("victim0"));
        assert_true(is_state(id2, "running"));
        assert_int_equal(fake_violations(), 0);

        /* nu is alive: garbage, then a FIFO, as its handles: adopted all the same, nothing hangs */
        vms_done(&vms);
        write_handles(id2, "{not json");
        service_start();
        vms_reconcile(&vms);
        assert_true(is_state(id2, "running"));
        assert_int_equal(pid_of("nu") > 0, 1);
        vms_done(&vms);
        fifo = xasprintf("%s/%s/handles.json", layout.vms_dir, id2);
        unlink(fifo);
        assert_int_equal(mkfifo(fifo, 0600), 0);
        service_start();
        vms_reconcile(&vms);
        assert_true(is_state(id2, "running"));
        assert_true(fake_has_tap(nu_tap));
        assert_true(fake_has_tap("victim0"));
        assert_int_equal(fake_violations(), 0);
}

static bool running_state(void *ud) {
        return is_state(ud, "running");
}

static bool error_state(void *ud) {
        return is_state(ud, "error");
}

/* The daemon died during a start: the live VMM is adopted, but the VM is
 * running only once its agent and sshd answer; one that never gets there is
 * stopped and marked error. Adoption rewrites a garbage handles.json. */
static void test_reconcile_starting(void **state) {
        _cleanup_free_ char *id = NULL, *id2 = NULL;
        (void) state;
        assert_int_equal(create_vm("boots", false, false, &id), 0);
        assert_int_equal(create_vm("hangs", false, false, &id2), 0);
        pid_t hangs = pid_of("hangs");
        vms_done(&vms);
        assert_int_equal(store_vm_set_state(store, id, "starting", NULL), 0);
        assert_int_equal(store_vm_set_state(store, id2, "starting", NULL), 0);
        write_handles(id, "{not json");
        fake_health_mode(HEALTH_NO_SSHD);
        service_start();
        vms_reconcile(&vms);
        { char *st = state_of("boots"); if (strcmp(st, "starting")) fail_msg("state %s", st); free(st); } /* not running before it answers */
        _cleanup_free_ char *hp = xasprintf("%s/%s/handles.json", layout.vms_dir, id);
        json_t *hj = json_load_file(hp, 0, NULL);
        assert_non_null(hj); /* rewritten from what was found */
        assert_true(json_integer_value(json_object_get(hj, "pid")) > 0);
        json_decref(hj);
        /* sshd comes up: both are running */
        fake_health_mode(HEALTH_OK);
        assert_true(wait_until(running_state, "boots"));
        assert_true(wait_until(running_state, "hangs"));
        /* a VM that never gets ready (agent_boot_timeout is 2 s here) */
        vms_done(&vms);
        assert_int_equal(store_vm_set_state(store, id2, "starting", NULL), 0);
        fake_health_mode(HEALTH_NO_SSHD);
        service_start();
        vms_reconcile(&vms);
        assert_true(wait_until(error_state, "hangs"));
        assert_true(hangs > 0);
        assert_int_equal(fake_live_vmms(), 1); /* its VMM was stopped; "boots" runs on */
        fake_health_mode(HEALTH_OK);
        assert_int_equal(fake_violations(), 0);
}

/* A create the daemon died in (its dir still marked, or never made) is
 * rolled back by reconcile, a delete it died in after the files went is
 * completed; a finished --no-start VM is kept. */
static void test_create_interrupted(void **state) {
        _cleanup_free_ char *id = NULL, *id2 = NULL, *id3 = NULL, *id4 = NULL;
        json_t *res = NULL;
        struct op_error e = OP_ERROR_INIT;
        (void) state;
        /* a stopped VM whose delete died after removing its files */
        assert_int_equal(create_vm("deleted", false, false, &id4), 0);
        assert_int_equal(vm_stop(&vms, "deleted", NULL, &res, &e), 0);
        json_decref(res);
        res = NULL;
        _cleanup_free_ char *dir4 = xasprintf("%s/%s", layout.vms_dir, id4);
        assert_int_equal(create_vm("half", false, true, &id), 0);
        assert_int_equal(create_vm("nodir", false, true, &id2), 0);
        assert_int_equal(create_vm("whole", false, true, &id3), 0);
        _cleanup_free_ char *dir = xasprintf("%s/%s", layout.vms_dir, id), *marker = xasprintf("%s/.creating", dir);
        _cleanup_free_ char *dir2 = xasprintf("%s/%s", layout.vms_dir, id2);
        _cleanup_free_ char *marker3 = xasprintf("%s/%s/.creating", layout.vms_dir, id3);
        assert_int_equal(access(marker3, F_OK), -1); /* a finished create leaves no marker */
        vms_done(&vms);
        assert_int_equal(write_file_atomic(marker, "", 0, 0600), 0);
        assert_int_equal(rm_rf(dir2), 0);
        assert_int_equal(rm_rf(dir4), 0);
        service_start();
        vms_reconcile(&vms);
        assert_int_equal(vm_show(&vms, "deleted", &res, &e), -ENOENT);
        op_error_done(&e);
        assert_int_equal(vm_show(&vms, "half", &res, &e), -ENOENT);
        op_error_done(&e);
        assert_int_equal(vm_show(&vms, "nodir", &res, &e), -ENOENT);
        op_error_done(&e);
        assert_int_equal(access(dir, F_OK), -1);
        assert_true(is_state("whole", "created"));
        assert_host_clean();
}

/* ---- requests the service refuses ------------------------------------------------------- */

static void test_bad_requests(void **state) {
        struct op_error e = OP_ERROR_INIT;
        json_t *res = NULL;
        (void) state;
        struct vm_create_req bad[] = {
                { .name = "x", .image = "test-img", .vcpu = 0, .vcpu_set = true },
                { .name = "x", .image = "test-img", .vcpu = 65 },
                { .name = "x", .image = "test-img", .memory_mib = 64, .memory_set = true },
                { .name = "x", .image = "test-img", .memory_mib = 4294967808LL, .memory_set = true },
                { .name = "x", .image = "test-img", .disk_size_bytes = 1LL << 40 },
                { .name = "Bad_Name", .image = "test-img" },
                { .name = "x", .image = "no-such-image" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                assert_true(vm_create_begin(&vms, "op-test", &bad[i], &res, &e) < 0);
                assert_true(e.code == RPC_BAD_REQUEST || e.code == RPC_NOT_FOUND);
                op_error_done(&e);
        }
        /* more memory than the host has (and under the 1 TiB maximum) */
        struct sysinfo si;
        assert_int_equal(sysinfo(&si), 0);
        int64_t host_mib = (int64_t) ((uint64_t) si.totalram * si.mem_unit >> 20);
        struct vm_create_req big = { .name = "x", .image = "test-img", .memory_mib = host_mib + 1024, .memory_set = true };
        assert_true(vm_create_begin(&vms, "op-test", &big, &res, &e) < 0);
        assert_int_equal(e.code, RPC_BAD_REQUEST);
        assert_non_null(strstr(op_error_message(&e), "more than this host has"));
        op_error_done(&e);
        /* refused before any row */
        assert_int_equal(vm_show(&vms, "x", &res, &e), -ENOENT);
        op_error_done(&e);
        assert_int_equal(vm_show(&vms, "nobody", &res, &e), -ENOENT);
        assert_int_equal(e.code, RPC_NOT_FOUND);
        op_error_done(&e);
        struct vm_set_req s = { .memory_mib = 1LL << 40, .memory_set = true, .nat = -1 };
        assert_true(vm_set(&vms, "nobody", &s, &res, &e) < 0);
        assert_int_equal(e.code, RPC_BAD_REQUEST);
        op_error_done(&e);
        assert_host_clean();
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
                cmocka_unit_test_setup_teardown(test_no_nat, setup, teardown),
                cmocka_unit_test_setup_teardown(test_isolate, setup, teardown),
                cmocka_unit_test_setup_teardown(test_start_failures, setup, teardown),
                cmocka_unit_test_setup_teardown(test_boot_failures, setup, teardown),
                cmocka_unit_test_setup_teardown(test_create_failures, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cancel_create, setup, teardown),
                cmocka_unit_test_setup_teardown(test_exit_watcher, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reconcile_live, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reconcile_dead, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reconcile_hostile, setup, teardown),
                cmocka_unit_test_setup_teardown(test_create_interrupted, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reconcile_starting, setup, teardown),
                cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
        };
        /* mkfs.ext4 and friends live in sbin, which a user's PATH may lack */
        const char *path = getenv("PATH");
        _cleanup_free_ char *p = xasprintf("%s:/usr/sbin:/sbin", path ? path : "/usr/bin:/bin");
        setenv("PATH", p, 1);
        signal(SIGPIPE, SIG_IGN);
        if (!getenv("TEST_VMS_VERBOSE"))
                log_setup(-1, LOG_LEVEL_ERROR, true);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
