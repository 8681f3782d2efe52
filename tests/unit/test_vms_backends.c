/* SPDX-License-Identifier: MIT */
/*
 * The VM service's hold on the backends' host resources, with the fixture of
 * vms_fixture.c: guest CIDs for QEMU's vhost-vsock (unique among running VMs,
 * reused, another one on EADDRINUSE, virtio-serial without the device) and a
 * Firecracker VM's device-mapper root (made at start, removed on stop, on a
 * failed start and by reconcile; the copy where device-mapper is absent).
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

/* ---- the agent's transport ----------------------------------------------------------- */

static unsigned handles_cid(const char *id) {
        _cleanup_free_ char *path = xasprintf("%s/%s/handles.json", layout.vms_dir, id), *text = NULL;
        size_t len;
        assert_int_equal(read_file(path, 1 << 16, &text, &len), 0);
        _cleanup_json_ json_t *j = json_loadb(text, len, 0, NULL);
        return (unsigned) json_integer_value(json_object_get(j, "vsock_cid"));
}

/* Unique CIDs among running VMs, reused once released, another one when
 * the host says a CID is taken; without the device, virtio-serial (or a
 * clear error when the config insists on vsock). */
static void test_vsock_cids(void **state) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL, *f = NULL, *g = NULL;
        struct op_error e = OP_ERROR_INIT;
        json_t *res = NULL;
        (void) state;
        assert_int_equal(create_vm("plain", true, false, &g), 0); /* no device: the port */
        assert_int_equal(booted_cid(g), 0);
        assert_int_equal(handles_cid(g), 0);

        vsock_dev = true;
        assert_int_equal(create_vm("va", true, false, &a), 0);
        assert_int_equal(create_vm("vb", true, false, &b), 0);
        unsigned ca = booted_cid(a), cb = booted_cid(b);
        assert_true(ca >= 3 && cb >= 3 && ca != cb);
        assert_int_equal(handles_cid(a), ca); /* what reconcile reads back */
        assert_int_equal(vm_agent(&vms, "va", "health", &res, &e), 0); /* reached at "vsock:<cid>/<id>" */
        json_decref(res);

        assert_int_equal(vm_stop(&vms, "va", NULL, &res, &e), 0); /* a's CID is free again */
        json_decref(res);
        assert_int_equal(create_vm("vc", true, false, &c), 0);
        assert_int_equal(booted_cid(c), ca);

        /* the lowest free CID is held outside banger: the start tries the next */
        assert_int_equal(vm_stop(&vms, "vc", NULL, &res, &e), 0);
        json_decref(res);
        busy_cid = ca;
        unsigned before = vmm_starts;
        assert_int_equal(create_vm("vd", true, false, &d), 0);
        unsigned cd = booted_cid(d);
        assert_true(cd != ca && cd != cb && cd >= 3);
        assert_int_equal(vmm_starts - before, 2);
        assert_int_equal(vm_agent(&vms, "vd", "health", &res, &e), 0);
        json_decref(res);

        /* restarting a stopped VM: a CID no running VM holds */
        busy_cid = 0;
        assert_int_equal(vm_start(&vms, "va", NULL, &res, &e), 0);
        json_decref(res);
        unsigned ca2 = booted_cid(a);
        assert_true(ca2 >= 3 && ca2 != cb && ca2 != cd);

        /* config "vsock" without the device: a clear error, nothing left running */
        vsock_dev = false;
        free(config->qemu_agent_transport);
        config->qemu_agent_transport = xstrdup("vsock");
        before = vmm_starts;
        assert_int_equal(create_vm("vf", true, false, &f), -EIO);
        assert_int_equal(vmm_starts, before); /* refused before any VMM */
        struct vm_row r;
        assert_int_equal(store_vm_get(store, f, &r), 0);
        assert_non_null(r.last_error);
        assert_non_null(strstr(r.last_error, "qemu_agent_transport = \"vsock\""));
        assert_non_null(strstr(r.last_error, "no /dev/vhost-vsock"));
        vm_row_done(&r);
        const char *names[] = { "plain", "va", "vb", "vc", "vd", "vf" };
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                assert_int_equal(vm_delete(&vms, names[i], NULL, &res, &e), 0);
                json_decref(res);
        }
        assert_host_clean();
}

/* ---- create -> start -> stop -> delete ----------------------------------------------- */

/* ---- Firecracker root disks: a device-mapper snapshot where usable ------------------ */

static bool vm_file(const char *id, const char *name) {
        _cleanup_free_ char *f = xasprintf("%s/%s/%s", layout.vms_dir, id, name);
        return access(f, F_OK) == 0;
}

static bool logged(const char *line) {
        return strstr(fake_log(), line) != NULL;
}

static void test_fc_dm_root(void **state) {
        _cleanup_free_ char *id = NULL, *text = NULL;
        struct op_error e = OP_ERROR_INIT;
        json_t *res = NULL;
        size_t len;
        (void) state;
        fake_dm_available(true);
        assert_int_equal(create_fc_vm("fc-dm", false, &id), 0);
        assert_true(is_state(id, "running"));
        /* a sparse COW file, no copy; the VMM booted the VM's own device */
        assert_true(vm_file(id, "root.cow"));
        assert_false(vm_file(id, "root.raw"));
        assert_true(fake_has_dm(id));
        assert_int_equal(fake_live_dm(), 1);
        _cleanup_free_ char *root = xasprintf("vmm_root /dev/mapper/banger-%s\n", id);
        _cleanup_free_ char *table = xasprintf("dm_snapshot_create banger-%s 0 2048 snapshot 7:", id);
        if (!logged(root) || !logged(table) || !logged(" P 8\n"))
                fail_msg("not booted from its snapshot (1 MiB origin, persistent, 8-sector chunks):\n%s", fake_log());
        /* recorded in its handles */
        _cleanup_free_ char *hp = xasprintf("%s/%s/handles.json", layout.vms_dir, id);
        _cleanup_free_ char *dev = xasprintf("\"dm\":\"/dev/mapper/banger-%s\"", id);
        assert_int_equal(read_file(hp, 1 << 16, &text, &len), 0);
        assert_non_null(strstr(text, dev));

        assert_int_equal(vm_stop(&vms, "fc-dm", NULL, &res, &e), 0);
        json_decref(res);
        assert_host_clean();
        assert_no_runtime_files(id);
        assert_true(vm_file(id, "root.cow")); /* the VM's writes stay */

        assert_int_equal(vm_start(&vms, "fc-dm", NULL, &res, &e), 0);
        json_decref(res);
        assert_int_equal(fake_live_dm(), 1);
        assert_int_equal(vm_delete(&vms, "fc-dm", NULL, &res, &e), 0);
        json_decref(res);
        assert_host_clean();
        _cleanup_free_ char *dir = path_join(layout.vms_dir, id);
        assert_int_equal(access(dir, F_OK), -1);
}

/* A start failing after the device was made removes it; one failing to
 * make it leaves nothing either. */
static void test_fc_dm_failed_start(void **state) {
        static const char *const steps[] = { "dm_snapshot_create", "vmm_start", "agent_health" };
        _cleanup_free_ char *id = NULL;
        struct op_error e = OP_ERROR_INIT;
        json_t *res = NULL;
        (void) state;
        fake_dm_available(true);
        assert_int_equal(create_fc_vm("fc-fail", true, &id), 0);
        assert_true(vm_file(id, "root.cow"));
        for (size_t i = 0; i < ELEMENTSOF(steps); i++) {
                fake_reset_calls();
                fake_fail_at(steps[i]);
                int rc = vm_start(&vms, "fc-fail", NULL, &res, &e);
                fake_fail_at(NULL);
                if (rc >= 0)
                        fail_msg("start succeeded despite a failing %s", steps[i]);
                op_error_done(&e);
                assert_true(is_state(id, "error"));
                assert_host_clean();
                assert_no_runtime_files(id);
                if (fake_calls("dm_snapshot_create") != 1 || fake_calls("dm_snapshot_remove") < 2)
                        fail_msg("failure at %s: the device not made once and removed after:\n%s", steps[i],
                                 fake_log());
        }
        assert_int_equal(vm_start(&vms, "fc-fail", NULL, &res, &e), 0);
        json_decref(res);
        assert_int_equal(fake_live_dm(), 1);
}

/* Reconcile: a running VM's device stays, a device no VM uses goes, and a
 * dead VM's goes with the rest of its runtime. */
static void test_fc_dm_reconcile(void **state) {
        _cleanup_free_ char *id = NULL, *id2 = NULL;
        struct op_error e = OP_ERROR_INIT;
        json_t *res = NULL;
        (void) state;
        fake_dm_available(true);
        assert_int_equal(create_fc_vm("fc-live", false, &id), 0);
        assert_int_equal(create_fc_vm("fc-dead", false, &id2), 0);
        assert_int_equal(vm_show(&vms, id2, &res, &e), 0);
        pid_t pid = (pid_t) json_integer_value(json_object_get(res, "pid"));
        json_decref(res);
        vms_done(&vms); /* the daemon goes; its VMs stay */
        fake_crash_vmm(pid);
        fake_put_dm("00000000deadbeef"); /* a crash between making and recording one */
        service_start();
        vms_reconcile(&vms);
        assert_true(is_state(id, "running"));
        assert_true(is_state(id2, "stopped"));
        assert_true(fake_has_dm(id));
        assert_false(fake_has_dm(id2));
        assert_false(fake_has_dm("00000000deadbeef"));
        assert_int_equal(fake_live_dm(), 1);
        assert_int_equal(vm_delete(&vms, "fc-live", NULL, &res, &e), 0);
        json_decref(res);
        assert_int_equal(vm_delete(&vms, "fc-dead", NULL, &res, &e), 0);
        json_decref(res);
        assert_host_clean();
}

/* Without device-mapper the root disk is a copy, as before; an image outside
 * banger's dirs gets a copy even with it. */
static void test_fc_no_dm(void **state) {
        _cleanup_free_ char *id = NULL, *id2 = NULL;
        struct op_error e = OP_ERROR_INIT;
        json_t *res = NULL;
        (void) state;
        assert_int_equal(create_fc_vm("fc-copy", false, &id), 0);
        assert_true(is_state(id, "running"));
        assert_true(vm_file(id, "root.raw"));
        assert_false(vm_file(id, "root.cow"));
        assert_int_equal(fake_calls("dm_snapshot_create") + fake_calls("dm_snapshot_remove"), 0);
        _cleanup_free_ char *root = xasprintf("vmm_root %s/%s/root.raw\n", layout.vms_dir, id);
        assert_true(logged(root));
        fake_dm_available(true);
        struct vm_create_req q = { .name = "fc-foreign", .image = "test-img", .vmm = "firecracker" };
        assert_int_equal(create_req(&q, &id2), 0);
        assert_true(vm_file(id2, "root.raw"));
        assert_int_equal(fake_live_dm(), 0);
        /* a copy VM stays one when device-mapper appears */
        assert_int_equal(vm_stop(&vms, "fc-copy", NULL, &res, &e), 0);
        json_decref(res);
        assert_int_equal(vm_start(&vms, "fc-copy", NULL, &res, &e), 0);
        json_decref(res);
        assert_int_equal(fake_live_dm(), 0);
        assert_int_equal(vm_delete(&vms, "fc-copy", NULL, &res, &e), 0);
        json_decref(res);
        assert_int_equal(vm_delete(&vms, "fc-foreign", NULL, &res, &e), 0);
        json_decref(res);
        assert_host_clean();
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_vsock_cids, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fc_dm_root, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fc_dm_failed_start, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fc_dm_reconcile, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fc_no_dm, setup, teardown),
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
