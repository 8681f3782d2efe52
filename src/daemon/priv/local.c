/* SPDX-License-Identifier: MIT */
/* The privileged operations in-process: each entry is the checked host
 * operation of src/host/hostops.c under the daemon's policy. */
#include "priv.h"
#include "hostinfo.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "debianbuild.h"
#include "hostops.h"
#include "macro.h"
#include "strbuf.h"

struct priv_local {
        struct host_policy policy;
        struct priv_ops ops;
};

static int l_bridge_ensure(void *ud, const char *bridge, struct op_error *e) {
        return hostop_bridge_ensure(ud, bridge, e);
}

static int l_tap_create(void *ud, const char *tap, const char *bridge, struct op_error *e) {
        return hostop_tap_create(ud, tap, bridge, e);
}

static int l_tap_delete(void *ud, const char *tap, struct op_error *e) {
        return hostop_tap_delete(ud, tap, e);
}

static int l_tap_open(void *ud, const char *tap, int *ret_fd, struct op_error *e) {
        return hostop_tap_open(ud, tap, ret_fd, e);
}

static bool l_link_exists(void *ud, const char *name) {
        return hostop_link_exists(ud, name);
}

static int l_nat_enable(void *ud, const char *vm_id, const char *ip, struct op_error *e) {
        return hostop_nat_enable(ud, vm_id, ip, e);
}

static int l_nat_disable(void *ud, const char *vm_id, struct op_error *e) {
        return hostop_nat_disable(ud, vm_id, e);
}

static int l_guard_enable(void *ud, const char *vm_id, const char *tap, const char *ip, const char *mac, bool isolate,
                          struct op_error *e) {
        return hostop_guard_enable(ud, vm_id, tap, ip, mac, isolate, e);
}

static int l_guard_disable(void *ud, const char *vm_id, struct op_error *e) {
        return hostop_guard_disable(ud, vm_id, e);
}

static int l_ip_forward(void *ud, struct op_error *e) {
        return hostop_ip_forward(ud, e);
}

static int l_dns_route(void *ud, const char *listen_addr, struct op_error *e) {
        return hostop_dns_route(ud, listen_addr, e);
}

static void l_dns_unroute(void *ud) {
        hostop_dns_unroute(ud);
}

static int l_build_debian(void *ud, const struct priv_debian_build *q, bool (*cancelled)(void *cud), void *cancel_ud,
                          uint64_t *ret_rootfs_size, struct op_error *e) {
        struct hostop_debian_build h = { .suite = q->suite, .mirror = q->mirror, .packages = q->packages,
                                         .init_mode = q->init_mode, .out_dir = q->out_dir };
        return hostop_build_debian(ud, &h, cancelled, cancel_ud, ret_rootfs_size, e);
}

static int l_build_debian_tar(void *ud, const struct priv_debian_build *q, bool (*cancelled)(void *cud),
                              void *cancel_ud, struct op_error *e) {
        struct hostop_debian_build h = { .suite = q->suite, .mirror = q->mirror, .packages = q->packages,
                                         .init_mode = q->init_mode, .out_dir = q->out_dir };
        return hostop_build_debian_tar(ud, &h, cancelled, cancel_ud, e);
}

static int l_build_tar_check(void *ud, struct op_error *e) {
        (void) ud;
        return debian_unshare_check(e);
}

static bool l_dm_available(void *ud) {
        return hostop_dm_available(ud);
}

static int l_dm_snapshot_create(void *ud, const char *vm_id, const char *origin_path, const char *cow_path,
                                char **ret_dev, struct op_error *e) {
        return hostop_dm_snapshot_create(ud, vm_id, origin_path, cow_path, ret_dev, e);
}

static int l_dm_snapshot_remove(void *ud, const char *vm_id, struct op_error *e) {
        return hostop_dm_snapshot_remove(ud, vm_id, e);
}

static int l_dm_snapshot_list(void *ud, char ***ret_vm_ids, struct op_error *e) {
        return hostop_dm_snapshot_list(ud, ret_vm_ids, e);
}

void priv_jail_info_done(struct priv_jail_info *i) {
        free(i->exec_file);
        free(i->reason);
        *i = (struct priv_jail_info) { 0 };
}

static int l_fc_jail_info(void *ud, struct priv_jail_info *ret, struct op_error *e) {
        const struct host_policy *p = ud;
        (void) e;
        *ret = (struct priv_jail_info) {
                .mode = p->jail_on ? JAIL_ON : p->jail_refused ? JAIL_REFUSED : JAIL_OFF,
                .exec_file = p->jail_on ? xstrdup(p->jail.exec_file) : NULL,
                .reason = p->jail_why ? xstrdup(p->jail_why) : NULL,
        };
        return 0;
}

static int l_fc_jail_start(void *ud, const char *vm_id, const char *const *files, size_t n, const char *log_path,
                           int vcpu, int memory_mib, pid_t *ret_pid, char **ret_root, struct op_error *e) {
        return hostop_fc_jail_start(ud, vm_id, files, n, log_path, vcpu, memory_mib, ret_pid, ret_root, e);
}

static int l_fc_jail_remove(void *ud, const char *vm_id, struct op_error *e) {
        return hostop_fc_jail_remove(ud, vm_id, e);
}

static int l_fc_jail_list(void *ud, char ***ret_vm_ids, struct op_error *e) {
        return hostop_fc_jail_list(ud, ret_vm_ids, e);
}

void priv_local_set_jail(struct priv_local *l, const struct jail_plan *plan, const char *base, uid_t uid, gid_t gid) {
        struct host_policy *p = &l->policy;
        host_jail_done(&p->jail);
        free(p->jail_why);
        free(p->jail_base);
        p->jail_base = xstrdup(base);
        p->jail_why = plan->reason ? xstrdup(plan->reason) : NULL;
        p->jail_on = plan->mode == JAIL_ON;
        p->jail_refused = plan->mode == JAIL_REFUSED;
        if (p->jail_on)
                p->jail = (struct host_jail) { .jailer = xstrdup(plan->jailer), .exec_file = xstrdup(plan->exec_file),
                                               .chroot_base = xstrdup(base), .uid = uid, .gid = gid };
}

bool priv_is_build_hook(void) {
        return debian_is_customize_hook();
}

int priv_build_hook_main(int argc, char **argv) {
        return debian_customize_hook_main(argc, argv);
}

static void *sweep_thread(void *arg) {
        char *base = arg;
        (void) debian_sweep_work(base);
        free(base);
        return NULL;
}

static void sweep_in_background(const struct host_policy *p) {
        pthread_t t;
        pthread_attr_t a;
        char *base = xstrdup(p->work_base ? p->work_base : "/var/tmp");
        pthread_attr_init(&a);
        pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &a, sweep_thread, base) != 0) {
                (void) debian_sweep_work(base);
                free(base);
        }
        pthread_attr_destroy(&a);
}

int priv_local_new(const char *bridge, const char *bridge_ip, int prefix, const char *const *roots,
                   const char *agent_bin, struct priv_local **ret, struct op_error *e) {
        struct priv_local *l = xcalloc(1, sizeof(*l));
        int r = host_policy_init(&l->policy, bridge, bridge_ip, prefix, roots, e);
        if (r < 0) {
                free(l);
                return r;
        }
        l->policy.agent_bin = agent_bin ? xstrdup(agent_bin) : NULL;
        l->ops = (struct priv_ops) {
                .name = "local", .ud = &l->policy,
                .bridge_ensure = l_bridge_ensure, .tap_create = l_tap_create, .tap_delete = l_tap_delete, .tap_open = l_tap_open,
                .link_exists = l_link_exists, .nat_enable = l_nat_enable, .nat_disable = l_nat_disable,
                .guard_enable = l_guard_enable, .guard_disable = l_guard_disable, .ip_forward = l_ip_forward,
                .dns_route = l_dns_route, .dns_unroute = l_dns_unroute, .build_debian = l_build_debian,
                .dm_available = l_dm_available, .dm_snapshot_create = l_dm_snapshot_create,
                .dm_snapshot_remove = l_dm_snapshot_remove, .dm_snapshot_list = l_dm_snapshot_list,
                .fc_jail_info = l_fc_jail_info, .fc_jail_start = l_fc_jail_start, .fc_jail_remove = l_fc_jail_remove,
                .fc_jail_list = l_fc_jail_list,
        };
        /* without root: mmdebstrap's unshare mode, whose tree (owned by
         * subordinate ids) only comes out as a tar the daemon makes images of */
        if (geteuid() != 0) {
                l->ops.build_debian = NULL;
                l->ops.build_debian_tar = l_build_debian_tar;
                l->ops.build_tar_check = l_build_tar_check;
        }
        /* builds run here: what a killed one left goes now (without root in
         * the background: removing a namespace's tree takes helpers, and
         * the daemon's start waits for none of it) */
        if (geteuid() == 0)
                (void) hostop_sweep_builds(&l->policy);
        else
                sweep_in_background(&l->policy);
        *ret = l;
        return 0;
}

const struct priv_ops *priv_local_ops(struct priv_local *l) {
        return &l->ops;
}

void priv_local_free(struct priv_local *l) {
        if (!l)
                return;
        host_policy_done(&l->policy);
        free(l);
}
