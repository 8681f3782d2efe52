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

static char T[64];
static struct layout layout;
static struct config *config;
static struct config_live live;
static struct store *store;
static struct artifacts arts;
static struct opstate_registry ops;
static struct vms vms;
static struct vmm_backend wrap_vmm; /* fake_vmm, its start watched for the guest CID */
static const struct vmm_entry vmm_tab[2] = { { &wrap_vmm, "fake" }, { &fake_fc_vmm, "fake" } };

/* ---- the agent's vsock: the device, the CIDs the VMM was given ------------- */

static bool vsock_dev;       /* does the fake host have /dev/vhost-vsock? */
static unsigned busy_cid;    /* held by a VM outside banger: its start is EADDRINUSE */
static unsigned vmm_starts;
static struct { char id[17]; unsigned cid; } booted[16];

static bool fake_vsock_usable(char **ret_why) {
        *ret_why = vsock_dev ? NULL : xstrdup("no /dev/vhost-vsock");
        return vsock_dev;
}

static int wrap_start(const struct vm_boot *b, const char *bin, struct vm_proc *ret, struct op_error *e) {
        vmm_starts++;
        if (b->vsock_cid && b->vsock_cid == busy_cid)
                return op_fail(e, -EADDRINUSE, "guest CID %u is in use on this host", b->vsock_cid);
        int rc = fake_vmm.start(b, bin, ret, e);
        for (size_t i = 0; rc == 0 && i < ELEMENTSOF(booted); i++)
                if (!booted[i].id[0] || strcmp(booted[i].id, b->id) == 0) {
                        snprintf(booted[i].id, sizeof(booted[i].id), "%s", b->id);
                        booted[i].cid = b->vsock_cid;
                        break;
                }
        return rc;
}

static unsigned booted_cid(const char *id) {
        for (size_t i = 0; i < ELEMENTSOF(booted); i++)
                if (strcmp(booted[i].id, id) == 0)
                        return booted[i].cid;
        fail_msg("vm %s never booted", id);
        return 0;
}

/* A vsock address names the VM (its tag) and the CID its VMM was given:
 * the fake agent is reached through that VM's socket path. */
static int wrap_agent_call(void *ud, const char *addr, const char *method, int timeout_ms, const struct agent_wait *w,
                           json_t **ret, struct op_error *e) {
        unsigned cid;
        if (!agent_addr_vsock(addr, &cid))
                return fake_agent_call(ud, addr, method, timeout_ms, w, ret, e);
        const char *id = strchr(addr, '/') + 1;
        assert_int_equal(cid, booted_cid(id));
        _cleanup_free_ char *path = xasprintf("%s/vms/%s/agent.sock", layout.runtime_dir, id);
        return fake_agent_call(ud, path, method, timeout_ms, w, ret, e);
}

/* ---- fixture --------------------------------------------------------------- */

static const char *env(const char *name) {
        static char buf[6][128];
        const char *keys[] = { "HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_RUNTIME_DIR" };
        const char *dirs[] = { "home", "config", "state", "cache", "run" };
        for (size_t i = 0; i < 5; i++)
                if (strcmp(name, keys[i]) == 0) {
                        snprintf(buf[i], sizeof(buf[i]), "%s/%s", T, dirs[i]);
                        return buf[i];
                }
        return NULL;
}

static void write_text(const char *path, const char *text) {
        assert_int_equal(write_file_atomic(path, text, strlen(text), 0600), 0);
}

/* name's files in dir: a 1 MiB rootfs, a kernel, an initrd. */
static void make_image_in(const char *dir, const char *id, const char *name) {
        _cleanup_free_ char *rootfs = path_join(dir, "rootfs.ext4");
        _cleanup_free_ char *kernel = path_join(dir, "vmlinux"), *initrd = path_join(dir, "initrd");
        assert_int_equal(mkdir_p(dir, 0700), 0);
        _cleanup_close_ int fd = open(rootfs, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        assert_true(fd >= 0 && ftruncate(fd, 1 << 20) == 0);
        write_text(kernel, "kernel");
        write_text(initrd, "initrd");
        struct image_row img = { .id = (char *) id, .name = (char *) name, .managed = false,
                                 .rootfs_path = rootfs, .kernel_path = kernel, .initrd_path = initrd,
                                 .init_mode = (char *) "fast", .rootfs_size_bytes = 1 << 20,
                                 .source = (char *) "test", .created_at = (char *) "2026-12-02T00:00:00Z" };
        assert_int_equal(store_image_insert(store, &img), 0);
}

static void make_image(void) {
        _cleanup_free_ char *dir = path_join(T, "img");
        make_image_in(dir, "0123456789abcdef", "test-img");
        /* one of banger's own (below the state dir): device-mapper roots take only those */
        _cleanup_free_ char *own = path_join(layout.state_dir, "images/fedcba9876543210");
        make_image_in(own, "fedcba9876543210", "own-img");
}

static void service_start(void) {
        size_t n_caps;
        const struct vm_cap *const *caps = vm_caps_default(&n_caps);
        struct vms_deps deps = {
                .layout = &layout, .config = &live, .store = store, .artifacts = &arts, .ops = &ops,
                .priv = fake_priv(), .vmms = vmm_tab, .n_vmms = 2, .choose_vmm = fake_choose_vmm,
                .agent_call = wrap_agent_call, .tsc_khz = 1000000, .caps = caps, .n_caps = n_caps,
                .vsock_usable = fake_vsock_usable,
                .agent_boot_timeout_ms = 2000, .stop_guest_timeout_ms = 2000,
        };
        struct op_error e = OP_ERROR_INIT;
        assert_int_equal(vms_init(&vms, &deps, &e), 0);
}

static int setup(void **state) {
        struct op_error e = OP_ERROR_INIT;
        char *msg = NULL;
        (void) state;
        snprintf(T, sizeof(T), "/tmp/banger-vms-XXXXXX");
        assert_non_null(mkdtemp(T));
        const char *sub[] = { "home", "config", "state", "cache", "run" };
        for (size_t i = 0; i < ELEMENTSOF(sub); i++) {
                _cleanup_free_ char *d = path_join(T, sub[i]);
                assert_int_equal(mkdir(d, 0700), 0);
        }
        assert_int_equal(layout_resolve(&layout, env, getuid(), &msg), 0);
        assert_int_equal(layout_prepare_state(&layout, &msg), 0);
        assert_int_equal(layout_prepare_runtime(&layout, getuid(), &msg), 0);
        assert_int_equal(mkdir_p(layout.config_dir, 0700), 0);
        /* warm_start off: the fake VMM cannot boot a template, and a build in
         * the background would add calls to the fake's log the tests read */
        write_text(layout.config_file, "dns_listen = \"off\"\nwarm_start = \"off\"\n[vm_defaults]\nvcpu = 1\nmemory_mib = 256\n"
                                       "disk_size = \"64M\"\nsystem_overlay_size = \"64M\"\n");
        assert_int_equal(hostinfo_load_config(&layout, &config, &msg), 0);
        config_live_init(&live, config);
        assert_int_equal(store_open(layout.db_path, 0, layout.vms_dir, &store, &e), 0);
        const char *roots[] = { layout.state_dir, layout.cache_dir, layout.runtime_dir, NULL };
        fake_init(config->bridge_name, config->bridge_ip, (int) config->cidr, roots);
        assert_int_equal(artifacts_init(&arts, &layout, &live, store, fake_priv(), &e), 0);
        opstate_init(&ops, 600000);
        wrap_vmm = fake_vmm;
        wrap_vmm.start = wrap_start;
        vsock_dev = false;
        busy_cid = 0;
        vmm_starts = 0;
        memset(booted, 0, sizeof(booted));
        make_image();
        service_start();
        return 0;
}

static int teardown(void **state) {
        (void) state;
        vms_done(&vms);
        fake_done();
        artifacts_done(&arts);
        opstate_done(&ops);
        store_close(store);
        config_live_done(&live);
        layout_done(&layout);
        rm_rf(T);
        return 0;
}

/* ---- helpers ------------------------------------------------------------------ */

/* Polls cond every 10 ms for up to 10 s (for what another thread does). */
static bool wait_until(bool (*cond)(void *), void *ud) {
        for (int i = 0; i < 1000; i++) {
                if (cond(ud))
                        return true;
                poll(NULL, 0, 10);
        }
        return cond(ud);
}

static char *state_of(const char *ref) {
        struct vm_row r;
        if (store_vm_get(store, ref, &r) < 0)
                return xstrdup("(none)");
        char *s = xstrdup(r.state);
        vm_row_done(&r);
        return s;
}

static bool is_state(const char *ref, const char *want) {
        _cleanup_free_ char *s = state_of(ref);
        return strcmp(s, want) == 0;
}

static bool stopped(void *ud) {
        return is_state(ud, "stopped");
}

/* Creates (and, unless no_start, starts) a VM; waits for the create. The
 * create's outcome: 0, or the negative errno its status reports. */
static int create_req(const struct vm_create_req *q, char **ret_id) {
        struct op_error e = OP_ERROR_INIT;
        json_t *res = NULL, *st = NULL;
        char op_id[RPC_OP_ID_SIZE];
        rpc_op_id_new(op_id);
        assert_int_equal(vm_create_begin(&vms, op_id, q, &res, &e), 0);
        if (ret_id)
                *ret_id = xstrdup(json_string_value(json_object_get(res, "id")));
        json_decref(res);
        vm_create_wait(&vms, op_id);
        assert_int_equal(vm_create_status(&vms, op_id, &st, &e), 0);
        const char *s = json_string_value(json_object_get(st, "state"));
        int rc = strcmp(s, "done") == 0 ? 0 : strcmp(s, "cancelled") == 0 ? -ECANCELED : -EIO;
        json_decref(st);
        return rc;
}

static int create_vm(const char *name, bool nat, bool no_start, char **ret_id) {
        struct vm_create_req q = { .name = name, .image = "test-img", .nat = nat, .no_start = no_start };
        return create_req(&q, ret_id);
}

/* A Firecracker VM (the fake under that name) of banger's own image. */
static int create_fc_vm(const char *name, bool no_start, char **ret_id) {
        struct vm_create_req q = { .name = name, .image = "own-img", .vmm = "firecracker", .no_start = no_start };
        return create_req(&q, ret_id);
}

static void assert_host_clean(void) {
        if (fake_live_taps() || fake_live_nat() || fake_live_guards() || fake_live_vmms() || fake_live_dm() ||
            fake_violations())
                fail_msg("left behind: %zu TAPs, %zu NAT, %zu guards, %zu VMMs, %zu DM devices, %zu violations\n%s",
                         fake_live_taps(), fake_live_nat(), fake_live_guards(), fake_live_vmms(), fake_live_dm(),
                         fake_violations(), fake_log());
}

static void assert_no_runtime_files(const char *id) {
        _cleanup_free_ char *handles = xasprintf("%s/%s/handles.json", layout.vms_dir, id);
        struct vm_row r;
        assert_int_equal(access(handles, F_OK), -1);
        if (store_vm_get(store, id, &r) == 0) {
                assert_null(r.teardown_json);
                vm_row_done(&r);
        }
}

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

/* Restarts the service as a new daemon would (VMs keep running). */
static void restart_service(void) {
        vms_done(&vms);
        service_start();
        vms_reconcile(&vms);
}

static void write_handles(const char *id, const char *text) {
        _cleanup_free_ char *p = xasprintf("%s/%s/handles.json", layout.vms_dir, id);
        unlink(p);
        if (text)
                write_text(p, text);
}

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
                cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
                cmocka_unit_test_setup_teardown(test_vsock_cids, setup, teardown),
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
