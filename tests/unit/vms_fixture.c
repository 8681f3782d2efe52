/* SPDX-License-Identifier: MIT */
/*
 * The fixture of the VM service's unit tests (test_vms.c, test_vms_backends.c):
 * a state dir in /tmp, real SQLite and disks, the fake priv ops, VMM and agent
 * of fakes.c behind a VMM wrapper that records the guest CIDs it was given,
 * and the helpers both files use. No root, no QEMU.
 */
#include "vms_fixture.h"

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
struct layout layout;
struct config *config;
struct config_live live;
struct store *store;
static struct artifacts arts;
static struct opstate_registry ops;
struct vms vms;
static struct vmm_backend wrap_vmm; /* fake_vmm, its start watched for the guest CID */
static const struct vmm_entry vmm_tab[2] = { { &wrap_vmm, "fake" }, { &fake_fc_vmm, "fake" } };

/* ---- the agent's vsock: the device, the CIDs the VMM was given ------------- */

bool vsock_dev;       /* does the fake host have /dev/vhost-vsock? */
unsigned busy_cid;    /* held by a VM outside banger: its start is EADDRINUSE */
unsigned vmm_starts;
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

unsigned booted_cid(const char *id) {
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

void service_start(void) {
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

int setup(void **state) {
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

int teardown(void **state) {
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
bool wait_until(bool (*cond)(void *), void *ud) {
        for (int i = 0; i < 1000; i++) {
                if (cond(ud))
                        return true;
                poll(NULL, 0, 10);
        }
        return cond(ud);
}

char *state_of(const char *ref) {
        struct vm_row r;
        if (store_vm_get(store, ref, &r) < 0)
                return xstrdup("(none)");
        char *s = xstrdup(r.state);
        vm_row_done(&r);
        return s;
}

bool is_state(const char *ref, const char *want) {
        _cleanup_free_ char *s = state_of(ref);
        return strcmp(s, want) == 0;
}

bool stopped(void *ud) {
        return is_state(ud, "stopped");
}

/* Creates (and, unless no_start, starts) a VM; waits for the create. The
 * create's outcome: 0, or the negative errno its status reports. */
int create_req(const struct vm_create_req *q, char **ret_id) {
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

int create_vm(const char *name, bool nat, bool no_start, char **ret_id) {
        struct vm_create_req q = { .name = name, .image = "test-img", .nat = nat, .no_start = no_start };
        return create_req(&q, ret_id);
}

/* A Firecracker VM (the fake under that name) of banger's own image. */
int create_fc_vm(const char *name, bool no_start, char **ret_id) {
        struct vm_create_req q = { .name = name, .image = "own-img", .vmm = "firecracker", .no_start = no_start };
        return create_req(&q, ret_id);
}

void assert_host_clean(void) {
        if (fake_live_taps() || fake_live_nat() || fake_live_guards() || fake_live_vmms() || fake_live_dm() ||
            fake_violations())
                fail_msg("left behind: %zu TAPs, %zu NAT, %zu guards, %zu VMMs, %zu DM devices, %zu violations\n%s",
                         fake_live_taps(), fake_live_nat(), fake_live_guards(), fake_live_vmms(), fake_live_dm(),
                         fake_violations(), fake_log());
}

void assert_no_runtime_files(const char *id) {
        _cleanup_free_ char *handles = xasprintf("%s/%s/handles.json", layout.vms_dir, id);
        struct vm_row r;
        assert_int_equal(access(handles, F_OK), -1);
        if (store_vm_get(store, id, &r) == 0) {
                assert_null(r.teardown_json);
                vm_row_done(&r);
        }
}

/* Restarts the service as a new daemon would (VMs keep running). */
void restart_service(void) {
        vms_done(&vms);
        service_start();
        vms_reconcile(&vms);
}

void write_handles(const char *id, const char *text) {
        _cleanup_free_ char *p = xasprintf("%s/%s/handles.json", layout.vms_dir, id);
        unlink(p);
        if (text)
                write_text(p, text);
}

