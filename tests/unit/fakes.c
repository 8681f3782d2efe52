/* SPDX-License-Identifier: MIT */
#include "fakes.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dmsnap.h"
#include "fsutil.h"
#include "hostops.h"
#include "jsonx.h"
#include "proc_spawn.h"
#include "strbuf.h"

#define MAX_ITEMS 64

struct set {
        char *v[MAX_ITEMS];
        size_t n;
};

static struct {
        pthread_mutex_t mu;
        struct host_policy policy;
        struct strbuf log;
        struct set taps, nat, guard, dm;
        bool dm_available;
        unsigned next_loop; /* the fake's loop minors */
        char *fail_at;
        enum fake_health health;
        size_t violations;
        struct {
                pid_t pid;
                char id[17];
        } procs[MAX_ITEMS];
        size_t n_procs;
} L = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void set_add(struct set *s, const char *x) {
        for (size_t i = 0; i < s->n; i++)
                if (strcmp(s->v[i], x) == 0)
                        return;
        if (s->n < MAX_ITEMS)
                s->v[s->n++] = xstrdup(x);
}

static bool set_del(struct set *s, const char *x) {
        for (size_t i = 0; i < s->n; i++)
                if (strcmp(s->v[i], x) == 0) {
                        free(s->v[i]);
                        s->v[i] = s->v[--s->n];
                        return true;
                }
        return false;
}

static bool set_has(struct set *s, const char *x) {
        for (size_t i = 0; i < s->n; i++)
                if (strcmp(s->v[i], x) == 0)
                        return true;
        return false;
}

static void set_clear(struct set *s) {
        while (s->n)
                free(s->v[--s->n]);
}

/* Records the call; true when it is to fail. L.mu held. */
static bool record(const char *op, const char *arg) {
        strbuf_addf(&L.log, "%s %s\n", op, arg ? arg : "");
        return L.fail_at && strcmp(L.fail_at, op) == 0;
}

/* A call that breaks the host's rules is a defect of the caller. */
static void check(int r, const char *op, struct op_error *ce) {
        if (r < 0) {
                L.violations++;
                strbuf_addf(&L.log, "VIOLATION %s: %s\n", op, op_error_message(ce));
        }
}

static int injected(struct op_error *e, const char *op) {
        return op_fail(e, -EIO, "injected failure: %s", op);
}

void fake_init(const char *bridge, const char *bridge_ip, int prefix, const char *const *roots) {
        struct op_error e = OP_ERROR_INIT;
        pthread_mutex_lock(&L.mu);
        if (host_policy_init(&L.policy, bridge, bridge_ip, prefix, roots, &e) < 0)
                abort();
        strbuf_init(&L.log, 0);
        L.health = HEALTH_OK;
        L.violations = 0;
        pthread_mutex_unlock(&L.mu);
}

void fake_done(void) {
        pthread_mutex_lock(&L.mu);
        for (size_t i = 0; i < L.n_procs; i++) {
                kill(L.procs[i].pid, SIGKILL);
                waitpid(L.procs[i].pid, NULL, 0);
        }
        L.n_procs = 0;
        set_clear(&L.taps);
        set_clear(&L.nat);
        set_clear(&L.guard);
        set_clear(&L.dm);
        L.dm_available = false;
        free(L.fail_at);
        L.fail_at = NULL;
        strbuf_release(&L.log);
        host_policy_done(&L.policy);
        pthread_mutex_unlock(&L.mu);
}

/* ---- priv ops ------------------------------------------------------------- */

static int f_bridge_ensure(void *ud, const char *bridge, struct op_error *e) {
        struct op_error ce = OP_ERROR_INIT;
        pthread_mutex_lock(&L.mu);
        check(host_check_bridge(&L.policy, bridge, &ce), "bridge_ensure", &ce);
        bool fail = record("bridge_ensure", bridge);
        pthread_mutex_unlock(&L.mu);
        op_error_done(&ce);
        return fail ? injected(e, "bridge_ensure") : 0;
}

static int f_tap_create(void *ud, const char *tap, const char *bridge, struct op_error *e) {
        struct op_error ce = OP_ERROR_INIT;
        pthread_mutex_lock(&L.mu);
        check(host_check_tap_name(tap, &ce), "tap_create", &ce);
        check(host_check_bridge(&L.policy, bridge, &ce), "tap_create", &ce);
        bool fail = record("tap_create", tap);
        int r = 0;
        if (fail)
                r = injected(e, "tap_create");
        else if (set_has(&L.taps, tap))
                r = op_fail(e, -EEXIST, "TAP %s exists", tap);
        else
                set_add(&L.taps, tap);
        pthread_mutex_unlock(&L.mu);
        op_error_done(&ce);
        return r;
}

static int f_tap_delete(void *ud, const char *tap, struct op_error *e) {
        struct op_error ce = OP_ERROR_INIT;
        pthread_mutex_lock(&L.mu);
        int v = host_check_tap_name(tap, &ce);
        check(v, "tap_delete", &ce);
        bool fail = record("tap_delete", tap);
        if (!fail && v == 0)
                set_del(&L.taps, tap);
        pthread_mutex_unlock(&L.mu);
        op_error_done(&ce);
        return fail ? injected(e, "tap_delete") : v;
}

/* The VMM gets an fd of the TAP: /dev/null stands in (the fake VMM ignores it). */
static int f_tap_open(void *ud, const char *tap, int *ret_fd, struct op_error *e) {
        struct op_error ce = OP_ERROR_INIT;
        pthread_mutex_lock(&L.mu);
        int v = host_check_tap_name(tap, &ce);
        check(v, "tap_open", &ce);
        bool fail = record("tap_open", tap);
        bool exists = set_has(&L.taps, tap);
        pthread_mutex_unlock(&L.mu);
        op_error_done(&ce);
        if (fail)
                return injected(e, "tap_open");
        if (v < 0 || !exists)
                return op_fail(e, -ENOENT, "fake: no TAP %s to open", tap);
        *ret_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
        return *ret_fd < 0 ? op_fail(e, -errno, "/dev/null: %s", strerror(errno)) : 0;
}

static bool f_link_exists(void *ud, const char *name) {
        pthread_mutex_lock(&L.mu);
        bool r = set_has(&L.taps, name) || strcmp(name, L.policy.bridge) == 0;
        pthread_mutex_unlock(&L.mu);
        return r;
}

static int rules_enable(struct set *s, const char *op, const char *vm_id, const char *ip, struct op_error *e) {
        struct op_error ce = OP_ERROR_INIT;
        pthread_mutex_lock(&L.mu);
        check(host_check_vm_id(vm_id, &ce), op, &ce);
        check(host_check_guest_ip(&L.policy, ip, &ce), op, &ce);
        bool fail = record(op, vm_id);
        if (!fail)
                set_add(s, vm_id);
        pthread_mutex_unlock(&L.mu);
        op_error_done(&ce);
        return fail ? injected(e, op) : 0;
}

static int rules_disable(struct set *s, const char *op, const char *vm_id, struct op_error *e) {
        struct op_error ce = OP_ERROR_INIT;
        pthread_mutex_lock(&L.mu);
        check(host_check_vm_id(vm_id, &ce), op, &ce);
        bool fail = record(op, vm_id);
        if (!fail)
                set_del(s, vm_id);
        pthread_mutex_unlock(&L.mu);
        op_error_done(&ce);
        return fail ? injected(e, op) : 0;
}

static int f_nat_enable(void *ud, const char *vm_id, const char *ip, struct op_error *e) {
        return rules_enable(&L.nat, "nat_enable", vm_id, ip, e);
}

static int f_nat_disable(void *ud, const char *vm_id, struct op_error *e) {
        return rules_disable(&L.nat, "nat_disable", vm_id, e);
}

/* Logged as "guard_enable <id> mac=<mac> isolate=<0|1>" for the tests to read. */
static int f_guard_enable(void *ud, const char *vm_id, const char *tap, const char *ip, const char *mac, bool isolate,
                          struct op_error *e) {
        struct op_error ce = OP_ERROR_INIT;
        pthread_mutex_lock(&L.mu);
        check(host_check_vm_id(vm_id, &ce), "guard_enable", &ce);
        check(host_check_guest_ip(&L.policy, ip, &ce), "guard_enable", &ce);
        check(host_check_tap_name(tap, &ce), "guard_enable", &ce);
        check(host_check_mac(mac, &ce), "guard_enable", &ce);
        _cleanup_free_ char *arg = xasprintf("%s mac=%s isolate=%d", strempty(vm_id), strempty(mac), isolate);
        bool fail = record("guard_enable", arg);
        if (!fail)
                set_add(&L.guard, vm_id);
        pthread_mutex_unlock(&L.mu);
        op_error_done(&ce);
        return fail ? injected(e, "guard_enable") : 0;
}

static int f_guard_disable(void *ud, const char *vm_id, struct op_error *e) {
        return rules_disable(&L.guard, "guard_disable", vm_id, e);
}

static int f_ip_forward(void *ud, struct op_error *e) {
        pthread_mutex_lock(&L.mu);
        bool fail = record("ip_forward", NULL);
        pthread_mutex_unlock(&L.mu);
        return fail ? injected(e, "ip_forward") : 0;
}

static int f_dns_route(void *ud, const char *listen_addr, struct op_error *e) {
        pthread_mutex_lock(&L.mu);
        record("dns_route", listen_addr);
        pthread_mutex_unlock(&L.mu);
        return 1; /* no systemd-resolved */
}

static void f_dns_unroute(void *ud) {
}

static int f_build_debian(void *ud, const struct priv_debian_build *q, bool (*c)(void *), void *cud, uint64_t *size,
                          struct op_error *e) {
        return op_fail(e, -EOPNOTSUPP, "no image builds in unit tests");
}

/* ---- device-mapper root disks: the published contract, checked ---------------- */

static bool f_dm_available(void *ud) {
        pthread_mutex_lock(&L.mu);
        bool r = L.dm_available;
        record("dm_available", r ? "1" : "0");
        pthread_mutex_unlock(&L.mu);
        return r;
}

/* What the real one opens, as it would (below a root, no symlink, regular,
 * read-only origin); a COW that is not sparse is a defect of the caller too
 * (the daemon makes it with truncate). L.mu held. */
static void dm_check_files(const char *origin, const char *cow, uint64_t *ret_sectors, struct op_error *ce) {
        struct stat o = { 0 }, c = { 0 };
        *ret_sectors = 0;
        if (host_check_path(&L.policy, origin, true, ce) < 0 || host_check_path(&L.policy, cow, true, ce) < 0)
                return;
        _cleanup_close_ int ofd = open(origin, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        _cleanup_close_ int cfd = open(cow, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (ofd < 0 || cfd < 0 || fstat(ofd, &o) < 0 || fstat(cfd, &c) < 0) {
                op_fail(ce, -errno, "fake dm: cannot open %s or %s", origin, cow);
                return;
        }
        if (host_check_dm_files(&L.policy, &o, &c, ce) < 0)
                return;
        if ((uint64_t) c.st_blocks * 512 >= (uint64_t) c.st_size)
                op_fail(ce, -EINVAL, "fake dm: the COW file %s is not sparse", cow);
        *ret_sectors = (uint64_t) o.st_size / 512;
}

/* Logged as "dm_snapshot_create banger-<id> 0 <sectors> snapshot <o> <c> P 8". */
static int f_dm_snapshot_create(void *ud, const char *vm_id, const char *origin, const char *cow, char **ret_dev,
                                struct op_error *e) {
        struct op_error ce = OP_ERROR_INIT;
        uint64_t sectors = 0;
        pthread_mutex_lock(&L.mu);
        int v = host_check_vm_id(vm_id, &ce);
        if (v == 0)
                dm_check_files(origin, cow, &sectors, &ce);
        v = v < 0 ? v : ce.err;
        check(v, "dm_snapshot_create", &ce);
        char odev[16], cdev[16];
        snprintf(odev, sizeof(odev), "7:%u", L.next_loop++);
        snprintf(cdev, sizeof(cdev), "7:%u", L.next_loop++);
        _cleanup_free_ char *table = dmsnap_table(sectors, odev, cdev);
        _cleanup_free_ char *name = dmsnap_name(strempty(vm_id));
        _cleanup_free_ char *arg = xasprintf("%s 0 %llu snapshot %s", name, (unsigned long long) sectors,
                                             table ? table : "(no table)");
        bool fail = record("dm_snapshot_create", arg);
        int r = 0;
        if (fail)
                r = injected(e, "dm_snapshot_create");
        else if (!L.dm_available)
                r = op_fail(e, -ENOENT, "fake: no device-mapper");
        else if (v < 0 || !table)
                r = op_fail(e, -EPERM, "fake: refused");
        else if (set_has(&L.dm, vm_id))
                r = op_fail(e, -EEXIST, "device-mapper: %s exists", name);
        else {
                set_add(&L.dm, vm_id);
                *ret_dev = xasprintf("/dev/mapper/%s", name);
        }
        pthread_mutex_unlock(&L.mu);
        op_error_done(&ce);
        return r;
}

static int f_dm_snapshot_remove(void *ud, const char *vm_id, struct op_error *e) {
        struct op_error ce = OP_ERROR_INIT;
        pthread_mutex_lock(&L.mu);
        int v = host_check_vm_id(vm_id, &ce);
        check(v, "dm_snapshot_remove", &ce);
        bool fail = record("dm_snapshot_remove", vm_id);
        if (!fail && v == 0)
                set_del(&L.dm, vm_id); /* 0 also when it was gone */
        pthread_mutex_unlock(&L.mu);
        op_error_done(&ce);
        return fail ? injected(e, "dm_snapshot_remove") : v;
}

static int f_dm_snapshot_list(void *ud, char ***ret_vm_ids, struct op_error *e) {
        pthread_mutex_lock(&L.mu);
        bool fail = record("dm_snapshot_list", NULL);
        char **ids = xcalloc(L.dm.n + 1, sizeof(char *));
        for (size_t i = 0; i < L.dm.n; i++)
                ids[i] = xstrdup(L.dm.v[i]);
        pthread_mutex_unlock(&L.mu);
        if (fail) {
                strv_free(ids);
                return injected(e, "dm_snapshot_list");
        }
        *ret_vm_ids = ids;
        return 0;
}

static const struct priv_ops fake_ops = {
        .name = "fake", .bridge_ensure = f_bridge_ensure, .tap_create = f_tap_create, .tap_delete = f_tap_delete, .tap_open = f_tap_open,
        .link_exists = f_link_exists, .nat_enable = f_nat_enable, .nat_disable = f_nat_disable,
        .guard_enable = f_guard_enable, .guard_disable = f_guard_disable, .ip_forward = f_ip_forward,
        .dns_route = f_dns_route, .dns_unroute = f_dns_unroute, .build_debian = f_build_debian,
        .dm_available = f_dm_available, .dm_snapshot_create = f_dm_snapshot_create,
        .dm_snapshot_remove = f_dm_snapshot_remove, .dm_snapshot_list = f_dm_snapshot_list,
};

const struct priv_ops *fake_priv(void) {
        return &fake_ops;
}

/* ---- the VMM ---------------------------------------------------------------- */

static bool alive(pid_t pid) {
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return false;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *rp = strrchr(buf, ')');
        return rp && rp[1] == ' ' && rp[2] != 'Z' && rp[2] != 'X';
}

pid_t fake_spawn_vmm(const char *id) {
        char *argv[] = { (char *) "/bin/sleep", (char *) "3600", NULL };
        struct spawn_opts o = { .new_session = true };
        pid_t pid;
        if (spawn_start(argv, &o, &pid) < 0)
                return -1;
        pthread_mutex_lock(&L.mu);
        if (L.n_procs < MAX_ITEMS) {
                L.procs[L.n_procs].pid = pid;
                snprintf(L.procs[L.n_procs].id, sizeof(L.procs[0].id), "%s", id);
                L.n_procs++;
        }
        pthread_mutex_unlock(&L.mu);
        return pid;
}

void fake_crash_vmm(pid_t pid) {
        kill(pid, SIGKILL);
}

static int v_build_argv(const struct vm_boot *b, const char *bin, char ***ret, struct op_error *e) {
        return op_fail(e, -EOPNOTSUPP, "fake");
}

static int v_start(const struct vm_boot *b, const char *bin, struct vm_proc *ret, struct op_error *e) {
        pthread_mutex_lock(&L.mu);
        bool fail = record("vmm_start", b->id);
        pthread_mutex_unlock(&L.mu);
        if (fail)
                return injected(e, "vmm_start");
        /* a device-mapper root: the VM's own device, made and not yet removed */
        bool dm = b->root_disk && strncmp(b->root_disk, "/dev/mapper/", 12) == 0;
        _cleanup_free_ char *own = xasprintf("/dev/mapper/" DMSNAP_PREFIX "%s", b->id);
        pthread_mutex_lock(&L.mu);
        bool dm_ok = !dm || (strcmp(b->root_disk, own) == 0 && set_has(&L.dm, b->id));
        strbuf_addf(&L.log, "vmm_root %s\n", strempty(b->root_disk));
        pthread_mutex_unlock(&L.mu);
        if (!b->tap || !b->work_disk || !b->kernel || !b->initrd || access(b->initrd, R_OK) < 0 || !b->root_disk ||
            (dm ? !dm_ok : access(b->root_disk, R_OK) < 0))
                return op_fail(e, -EINVAL, "fake vmm: incomplete boot description");
        pid_t pid = fake_spawn_vmm(b->id);
        if (pid < 0)
                return op_fail(e, -EIO, "fake vmm: cannot spawn");
        *ret = (struct vm_proc) { .pid = pid, .pidfd = (int) pidfd_open(pid, 0) };
        return 0;
}

static int v_stop(const struct vm_boot *b, const struct vm_proc *p, int timeout_ms, struct op_error *e) {
        pthread_mutex_lock(&L.mu);
        record("vmm_stop", b->id);
        pthread_mutex_unlock(&L.mu);
        kill(p->pid, SIGTERM);
        return 0;
}

static int v_kill(const struct vm_proc *p, int sig) {
        pthread_mutex_lock(&L.mu);
        char s[16];
        snprintf(s, sizeof(s), "%d", sig);
        record("vmm_kill", s);
        pthread_mutex_unlock(&L.mu);
        return kill(p->pid, sig) < 0 ? -errno : 0;
}

static bool v_owns(pid_t pid, const char *bin, const char *id) {
        bool ours = false;
        pthread_mutex_lock(&L.mu);
        for (size_t i = 0; i < L.n_procs; i++)
                if (L.procs[i].pid == pid && strcmp(L.procs[i].id, id) == 0)
                        ours = true;
        pthread_mutex_unlock(&L.mu);
        return ours && alive(pid);
}

static int v_unsupported(const struct vm_boot *b, struct op_error *e) {
        return op_fail(e, -EOPNOTSUPP, "fake");
}

static int v_snapshot(const struct vm_boot *b, int fd, int timeout_ms, struct op_error *e) {
        return op_fail(e, -EOPNOTSUPP, "fake");
}

const struct vmm_backend fake_vmm = {
        .name = "fake", .root_disk_create = vm_overlay_create, .warm_templates = true, .build_argv = v_build_argv, .start = v_start, .stop = v_stop, .kill = v_kill,
        .owns = v_owns, .pause = v_unsupported, .resume = v_unsupported, .snapshot = v_snapshot, .restore = v_snapshot,
};

/* The same fake under Firecracker's name (a VM row's `firecracker` and
 * its root disk follow the backend's name); its copy is a plain file copy. */
static int fc_root_copy(const char *path, const char *rootfs, uint64_t size_bytes, struct op_error *e) {
        int rc = copy_file_sparse(rootfs, path, 0600);
        return rc < 0 ? op_fail(e, rc, "copying %s: %s", rootfs, strerror(-rc)) : 0;
}

const struct vmm_backend fake_fc_vmm = {
        .name = "firecracker", .root_disk_create = fc_root_copy, .warm_templates = false, .build_argv = v_build_argv,
        .start = v_start, .stop = v_stop, .kill = v_kill, .owns = v_owns, .pause = v_unsupported,
        .resume = v_unsupported, .snapshot = v_snapshot, .restore = v_snapshot,
};

int fake_choose_vmm(void *ud, const char *want, size_t *ret_index, char **ret_accel, struct op_error *e) {
        *ret_index = want && strcmp(want, "firecracker") == 0 ? 1 : 0;
        *ret_accel = xstrdup("tcg");
        return 0;
}

/* ---- the agent ------------------------------------------------------------------ */

/* <runtime>/vms/<id>/agent.sock -> the fake VMM of <id>. */
static pid_t pid_of_socket(const char *socket_path) {
        const char *end = strrchr(socket_path, '/');
        pid_t pid = 0;
        if (!end || end - socket_path < 16)
                return 0;
        char id[17];
        memcpy(id, end - 16, 16);
        id[16] = '\0';
        pthread_mutex_lock(&L.mu);
        for (size_t i = 0; i < L.n_procs; i++)
                if (strcmp(L.procs[i].id, id) == 0 && alive(L.procs[i].pid))
                        pid = L.procs[i].pid;
        pthread_mutex_unlock(&L.mu);
        return pid;
}

static int block(const struct agent_wait *w, int timeout_ms, struct op_error *e) {
        for (int waited = 0; waited < timeout_ms; waited += 10) {
                if (w && w->cancelled && w->cancelled(w->ud))
                        return op_fail(e, -ECANCELED, "agent call abandoned");
                if (w && w->abort_fd >= 0 && poll(&(struct pollfd) { .fd = w->abort_fd, .events = POLLIN }, 1, 0) > 0)
                        return op_fail(e, -ECANCELED, "agent call abandoned");
                poll(NULL, 0, 10);
        }
        return op_fail(e, -ETIMEDOUT, "the agent did not answer within %d ms", timeout_ms);
}

int fake_agent_call(void *ud, const char *socket_path, const char *method, int timeout_ms,
                    const struct agent_wait *w, json_t **ret, struct op_error *e) {
        pid_t pid = pid_of_socket(socket_path);
        pthread_mutex_lock(&L.mu);
        char op[64];
        snprintf(op, sizeof(op), "agent_%s", method);
        bool fail = record(op, NULL);
        enum fake_health h = L.health;
        pthread_mutex_unlock(&L.mu);
        if (pid <= 0)
                return op_fail(e, -ECONNREFUSED, "cannot reach the agent at %s", socket_path);
        if (fail)
                return injected(e, op);
        if (strcmp(method, "health") == 0) {
                if (h == HEALTH_FAIL)
                        return op_fail(e, -EPROTO, "agent health: broken");
                if (h == HEALTH_BLOCK)
                        return block(w, timeout_ms, e);
                *ret = json_pack("{s:b}", "sshd_listening", h == HEALTH_OK);
        } else if (strcmp(method, "poweroff") == 0) {
                kill(pid, SIGTERM); /* the guest powers off: its VMM exits */
                *ret = json_object();
        } else if (strcmp(method, "stats") == 0)
                *ret = json_pack("{s:{s:i, s:i, s:i}, s:{s:i}}", "cpu", "total", 100, "idle", 50, "ncpu", 1, "memory",
                                 "total_kib", 1024);
        else
                *ret = json_object();
        return 0;
}

/* ---- injection and the ledger ------------------------------------------------------ */

void fake_fail_at(const char *op) {
        pthread_mutex_lock(&L.mu);
        free(L.fail_at);
        L.fail_at = op ? xstrdup(op) : NULL;
        pthread_mutex_unlock(&L.mu);
}

void fake_health_mode(enum fake_health m) {
        pthread_mutex_lock(&L.mu);
        L.health = m;
        pthread_mutex_unlock(&L.mu);
}

static size_t count(struct set *s) {
        pthread_mutex_lock(&L.mu);
        size_t n = s->n;
        pthread_mutex_unlock(&L.mu);
        return n;
}

size_t fake_live_taps(void) {
        return count(&L.taps);
}

size_t fake_live_nat(void) {
        return count(&L.nat);
}

size_t fake_live_guards(void) {
        return count(&L.guard);
}

bool fake_has_tap(const char *name) {
        pthread_mutex_lock(&L.mu);
        bool r = set_has(&L.taps, name);
        pthread_mutex_unlock(&L.mu);
        return r;
}

size_t fake_live_vmms(void) {
        size_t n = 0;
        pthread_mutex_lock(&L.mu);
        for (size_t i = 0; i < L.n_procs; i++)
                n += alive(L.procs[i].pid);
        pthread_mutex_unlock(&L.mu);
        return n;
}

size_t fake_calls(const char *op) {
        size_t n = 0, l = strlen(op);
        pthread_mutex_lock(&L.mu);
        for (const char *p = L.log.buf; p && *p;) {
                if (strncmp(p, op, l) == 0 && (p[l] == ' ' || p[l] == '\n'))
                        n++;
                const char *nl = strchr(p, '\n');
                p = nl ? nl + 1 : p + strlen(p);
        }
        pthread_mutex_unlock(&L.mu);
        return n;
}

size_t fake_violations(void) {
        pthread_mutex_lock(&L.mu);
        size_t n = L.violations;
        pthread_mutex_unlock(&L.mu);
        return n;
}

const char *fake_log(void) {
        return L.log.buf ? L.log.buf : "";
}

void fake_reset_calls(void) {
        pthread_mutex_lock(&L.mu);
        strbuf_reset(&L.log);
        pthread_mutex_unlock(&L.mu);
}

void fake_put_tap(const char *name) {
        pthread_mutex_lock(&L.mu);
        set_add(&L.taps, name);
        pthread_mutex_unlock(&L.mu);
}

void fake_dm_available(bool on) {
        pthread_mutex_lock(&L.mu);
        L.dm_available = on;
        pthread_mutex_unlock(&L.mu);
}

size_t fake_live_dm(void) {
        return count(&L.dm);
}

bool fake_has_dm(const char *vm_id) {
        pthread_mutex_lock(&L.mu);
        bool r = set_has(&L.dm, vm_id);
        pthread_mutex_unlock(&L.mu);
        return r;
}

void fake_put_dm(const char *vm_id) {
        pthread_mutex_lock(&L.mu);
        set_add(&L.dm, vm_id);
        pthread_mutex_unlock(&L.mu);
}

void fake_put_rules(const char *vm_id) {
        pthread_mutex_lock(&L.mu);
        set_add(&L.nat, vm_id);
        set_add(&L.guard, vm_id);
        pthread_mutex_unlock(&L.mu);
}
