/* SPDX-License-Identifier: MIT */
#include "hostops.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "debianbuild.h"
#include "dmsnap.h"
#include "fsutil.h"
#include "ids.h"
#include "ipnet.h"
#include "macro.h"
#include "netlink.h"
#include "nft.h"
#include "strbuf.h"
#include "sysops.h"

#define TAP_POOL_MAX 255

static int refuse(struct op_error *e, const char *fmt, ...) _printf_(2, 3);
static int refuse(struct op_error *e, const char *fmt, ...) {
        char buf[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        return op_fail_as(e, RPC_UNAUTHORIZED, -EPERM, "refused: %s", buf);
}

static bool only(const char *s, const char *set) {
        return s && *s && strspn(s, set) == strlen(s);
}

#define LOWER_DIGITS "abcdefghijklmnopqrstuvwxyz0123456789"
#define HEX "0123456789abcdef"

/* ---- policy ------------------------------------------------------------- */

int host_policy_init(struct host_policy *p, const char *bridge, const char *bridge_ip, int prefix,
                     const char *const *roots, struct op_error *e) {
        *p = (struct host_policy) { 0 };
        struct ipv4_subnet net;
        _cleanup_free_ char *msg = NULL;
        if (ipv4_subnet_init(&net, bridge_ip, prefix, &msg) < 0)
                return op_fail_as(e, RPC_BAD_REQUEST, -EINVAL, "%s", msg);
        p->bridge = xstrdup(bridge);
        p->bridge_ip = xstrdup(bridge_ip);
        p->owner_uid = getuid(); /* in-process: ourselves; the helper sets the install's owner */
        p->owner_gid = getgid();
        p->bridge_addr = net.bridge;
        p->prefix = prefix;
        size_t n = 0;
        /* Roots are taken as given (they may sit below a symlinked home):
         * the symlink rule applies from each root down. */
        for (const char *const *r = roots; r && *r && n < HOST_POLICY_MAX_ROOTS; r++) {
                size_t l = strlen(*r);
                if ((*r)[0] != '/' || l < 2)
                        continue;
                p->roots[n] = xstrdup(*r);
                while (l > 1 && p->roots[n][l - 1] == '/')
                        p->roots[n][--l] = '\0';
                n++;
        }
        if (host_check_bridge(p, bridge, e) < 0) {
                host_policy_done(p);
                return op_recode(e, RPC_BAD_REQUEST);
        }
        return 0;
}

void host_policy_done(struct host_policy *p) {
        host_jail_done(&p->jail);
        free(p->jail_why);
        free(p->jail_base);
        free(p->agent_bin);
        free(p->work_base);
        free(p->bridge);
        free(p->bridge_ip);
        for (size_t i = 0; p->roots[i]; i++)
                free(p->roots[i]);
        *p = (struct host_policy) { 0 };
}

/* ---- the rules ------------------------------------------------------------ */

int host_check_bridge(const struct host_policy *p, const char *name, struct op_error *e) {
        if (!name || (strcmp(name, "br-fc") != 0 && strncmp(name, "br-fc-", 6) != 0) || strlen(name) >= IFNAMSIZ ||
            !only(name, LOWER_DIGITS "-"))
                return refuse(e, "bridge '%s' is not banger's (br-fc or br-fc-*)", strempty(name));
        if (strcmp(name, p->bridge) != 0)
                return refuse(e, "bridge '%s' is not the configured bridge %s", name, p->bridge);
        return 0;
}

int host_check_tap_name(const char *name, struct op_error *e) {
        if (name && strlen(name) == 14 && strncmp(name, "bg", 2) == 0 && only(name + 2, HEX))
                return 0;
        if (name && strncmp(name, "tap-pool-", 9) == 0 && only(name + 9, "0123456789") && strlen(name + 9) <= 3 &&
            atoi(name + 9) <= TAP_POOL_MAX && (name[9] != '0' || name[10] == '\0'))
                return 0;
        return refuse(e, "'%s' is not a banger TAP name (bg<12 hex digits> or tap-pool-<0..%d>)", strempty(name),
                      TAP_POOL_MAX);
}

int host_check_vm_id(const char *id, struct op_error *e) {
        if (is_hex_id(id, 8))
                return 0;
        return refuse(e, "'%s' is not a VM id (16 lowercase hex digits)", strempty(id));
}

int host_check_guest_ip(const struct host_policy *p, const char *ip, struct op_error *e) {
        uint32_t a, mask = p->prefix ? 0xFFFFFFFFu << (32 - p->prefix) : 0;
        if (!ip || ipv4_parse(ip, &a) < 0)
                return op_fail_as(e, RPC_BAD_REQUEST, -EINVAL, "'%s' is not an IPv4 address", strempty(ip));
        if ((a & mask) != (p->bridge_addr & mask) || a == (p->bridge_addr & mask) || a == ((p->bridge_addr & mask) | ~mask) ||
            a == p->bridge_addr)
                return refuse(e, "%s is not a guest address of %s/%d", ip, p->bridge_ip, p->prefix);
        return 0;
}

int host_check_mac(const char *mac, struct op_error *e) {
        bool form = mac && strlen(mac) == 17;
        for (size_t i = 0; form && i < 17; i++)
                form = i % 3 == 2 ? mac[i] == ':' : strchr(HEX, mac[i]) != NULL;
        if (!form)
                return refuse(e, "'%s' is not a MAC address (six lowercase hex pairs separated by ':')", strempty(mac));
        if (strtoul(mac, NULL, 16) & 1)
                return refuse(e, "%s is a group (multicast) MAC, not a guest's (the first octet must be even)", mac);
        if (strcmp(mac, "00:00:00:00:00:00") == 0)
                return refuse(e, "%s is the all-zero MAC, not a guest's", mac);
        return 0;
}


/* No component from the root down may be a symlink (a component that does
 * not exist yet ends the walk: nothing below it can exist either). */
static int no_symlink_below(const char *path, const char *root, bool must_exist, struct op_error *e) {
        _cleanup_free_ char *cur = xstrdup(path);
        size_t rl = strlen(root);
        for (size_t i = rl; ; i++) {
                if (cur[i] != '/' && cur[i] != '\0')
                        continue;
                char c = cur[i];
                cur[i] = '\0';
                struct stat st;
                if (lstat(cur, &st) < 0) {
                        cur[i] = c;
                        if (errno == ENOENT && !must_exist)
                                return 0;
                        return errno == ENOENT ? op_fail_as(e, RPC_NOT_FOUND, -ENOENT, "%s does not exist", path)
                                               : op_fail(e, -errno, "%s: %s", path, strerror(errno));
                }
                if (S_ISLNK(st.st_mode))
                        return refuse(e, "%s has a symlink component (%s)", path, cur);
                cur[i] = c;
                if (c == '\0')
                        return 0;
        }
}

int host_check_path(const struct host_policy *p, const char *path, bool must_exist, struct op_error *e) {
        if (!path || path[0] != '/' || strstr(path, "//") || strstr(path, "/./") || strstr(path, "/../") ||
            (strlen(path) >= 2 && strcmp(path + strlen(path) - 2, "/.") == 0) ||
            (strlen(path) >= 3 && strcmp(path + strlen(path) - 3, "/..") == 0) || strlen(path) >= PATH_MAX)
                return refuse(e, "'%s' is not an absolute, normalised path", strempty(path));
        for (size_t i = 0; p->roots[i]; i++)
                if (path_below(path, p->roots[i]) && strcmp(path, p->roots[i]) != 0)
                        return no_symlink_below(path, p->roots[i], must_exist, e);
        return refuse(e, "%s is outside banger's directories", path);
}

/* ---- networking ------------------------------------------------------------- */

int hostop_bridge_ensure(const struct host_policy *p, const char *bridge, struct op_error *e) {
        if (host_check_bridge(p, bridge, e) < 0)
                return e ? e->err : -EPERM;
        return nl_bridge_ensure(bridge, p->bridge_ip, p->prefix, e);
}

int hostop_tap_create(const struct host_policy *p, const char *tap, const char *bridge, struct op_error *e) {
        int r;
        if ((r = host_check_tap_name(tap, e)) < 0 || (r = host_check_bridge(p, bridge, e)) < 0)
                return r;
        return nl_tap_create(tap, bridge, p->owner_uid, e);
}

/* tap is a banger TAP name, and the kernel says it is a tun device on the
 * policy's bridge (or, when !need_bridge, on nothing). -ENOENT when gone. */
static int check_tap_device(const struct host_policy *p, const char *tap, bool need_bridge, struct op_error *e) {
        struct nl_link_info info;
        _cleanup_op_error_ struct op_error le = OP_ERROR_INIT;
        int r = host_check_tap_name(tap, e);
        if (r < 0)
                return r;
        r = nl_link_info(tap, &info, &le);
        if (r < 0) {
                if (r != -ENOENT)
                        op_error_move(e, &le);
                return r;
        }
        if (strcmp(info.kind, "tun") != 0)
                return refuse(e, "%s is a %s device, not a TAP", tap, info.kind[0] ? info.kind : "plain");
        if ((info.master_index > 0 || need_bridge) && strcmp(info.master, p->bridge) != 0)
                return refuse(e, "TAP %s is attached to %s, not to %s", tap, info.master[0] ? info.master : "nothing",
                              p->bridge);
        return 0;
}

int hostop_tap_delete(const struct host_policy *p, const char *tap, struct op_error *e) {
        int r = check_tap_device(p, tap, false, e);
        if (r == 0)
                r = nl_link_delete(tap, e);
        return r == -ENOENT ? 0 : r;
}

int hostop_tap_open(const struct host_policy *p, const char *tap, int *ret_fd, struct op_error *e) {
        int r = check_tap_device(p, tap, true, e);
        if (r == -ENOENT)
                return op_not_found(e, "TAP %s does not exist", tap);
        return r < 0 ? r : nl_tap_open(tap, ret_fd, e);
}

bool hostop_link_exists(const struct host_policy *p, const char *name) {
        (void) p;
        return name && *name && strlen(name) < IFNAMSIZ && nl_link_exists(name);
}

int hostop_nat_enable(const struct host_policy *p, const char *vm_id, const char *ip, struct op_error *e) {
        int r;
        if ((r = host_check_vm_id(vm_id, e)) < 0 || (r = host_check_guest_ip(p, ip, e)) < 0)
                return r;
        return nft_nat_enable(vm_id, ip, p->bridge, e);
}

int hostop_nat_disable(const struct host_policy *p, const char *vm_id, struct op_error *e) {
        (void) p;
        int r = host_check_vm_id(vm_id, e);
        return r < 0 ? r : nft_nat_disable(vm_id, e);
}

int hostop_guard_enable(const struct host_policy *p, const char *vm_id, const char *tap, const char *ip,
                        const char *mac, bool isolate, struct op_error *e) {
        int r;
        if ((r = host_check_vm_id(vm_id, e)) < 0 || (r = host_check_tap_name(tap, e)) < 0 ||
            (r = host_check_guest_ip(p, ip, e)) < 0 || (r = host_check_mac(mac, e)) < 0)
                return r;
        struct nft_guard g = {
                .vm_id = vm_id, .tap = tap, .ip = ip, .mac = mac, .bridge = p->bridge, .isolate = isolate,
        };
        return nft_guard_enable(&g, e);
}

int hostop_guard_disable(const struct host_policy *p, const char *vm_id, struct op_error *e) {
        (void) p;
        int r = host_check_vm_id(vm_id, e);
        return r < 0 ? r : nft_guard_disable(vm_id, e);
}

int hostop_ip_forward(const struct host_policy *p, struct op_error *e) {
        (void) p;
        return sys_ip_forward_on(e);
}

int hostop_dns_route(const struct host_policy *p, const char *listen_addr, struct op_error *e) {
        uint32_t ip;
        uint16_t port;
        if (ipv4_port_parse(listen_addr, &ip, &port) < 0 || (ip >> 24) != 127)
                return refuse(e, "DNS routing goes to a loopback IPv4:port only (got '%s')", strempty(listen_addr));
        return sys_dns_route(p->bridge, listen_addr, e);
}

void hostop_dns_unroute(const struct host_policy *p) {
        sys_dns_unroute(p->bridge);
}

/* ---- image builds ----------------------------------------------------------------- */

static int check_build(const struct host_policy *p, const struct hostop_debian_build *q, struct op_error *e) {
        if (!only(q->suite, "abcdefghijklmnopqrstuvwxyz") || strlen(q->suite) > 32)
                return refuse(e, "suite '%s' is not a Debian suite name", strempty(q->suite));
        if (!q->mirror || (strncmp(q->mirror, "http://", 7) != 0 && strncmp(q->mirror, "https://", 8) != 0) ||
            strpbrk(q->mirror, " \t\r\n\"'\\`$;") || strlen(q->mirror) > 512)
                return refuse(e, "mirror '%s' is not a plain http(s) URL", strempty(q->mirror));
        size_t n = 0;
        for (const char *const *pk = q->packages; pk && *pk; pk++, n++)
                if (!only(*pk, LOWER_DIGITS "+-.") || **pk == '-' || **pk == '.' || strlen(*pk) > 100 || n >= 512)
                        return refuse(e, "'%s' is not a Debian package name", *pk);
        if (!q->init_mode || (strcmp(q->init_mode, "fast") != 0 && strcmp(q->init_mode, "systemd") != 0))
                return refuse(e, "init mode '%s' is not fast or systemd", strempty(q->init_mode));
        if (!p->agent_bin)
                return op_fail(e, -ENOENT, "banger-agent not found (set $BANGER_AGENT or install it)");
        return 0;
}

/* The directory at path (below a root), opened one component at a time
 * with O_NOFOLLOW from the root down: what was checked is what is used. */
static int open_dir_below(const struct host_policy *p, const char *path, int *ret_fd, struct op_error *e) {
        int r = host_check_path(p, path, true, e);
        if (r < 0)
                return r;
        const char *root = NULL;
        for (size_t i = 0; p->roots[i] && !root; i++)
                if (path_below(path, p->roots[i]))
                        root = p->roots[i];
        _cleanup_close_ int fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return op_fail(e, -errno, "%s: %s", root, strerror(errno));
        _cleanup_free_ char *rest = xstrdup(path + strlen(root) + 1);
        char *save = NULL;
        for (char *c = strtok_r(rest, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
                int next = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (next < 0)
                        return errno == ELOOP ? refuse(e, "%s has a symlink component (%s)", path, c)
                               : errno == ENOTDIR ? refuse(e, "%s is not a directory", path)
                                                  : op_fail(e, -errno, "%s: %s", path, strerror(errno));
                close(fd);
                fd = next;
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* The request checked, out_dir opened: the mechanism's request. */
static int build_req(const struct host_policy *p, const struct hostop_debian_build *q, int *out_fd,
                     struct debian_build_req *ret, struct op_error *e) {
        int r = check_build(p, q, e);
        if (r < 0 || (r = open_dir_below(p, q->out_dir, out_fd, e)) < 0)
                return r;
        *ret = (struct debian_build_req) { .suite = q->suite, .mirror = q->mirror, .packages = q->packages,
                                           .init_mode = q->init_mode, .agent_bin = p->agent_bin, .out_fd = *out_fd,
                                           .work_base = p->work_base ? p->work_base : "/var/tmp",
                                           .owner_uid = p->owner_uid, .owner_gid = p->owner_gid };
        return 0;
}

int hostop_build_debian(const struct host_policy *p, const struct hostop_debian_build *q, bool (*cancelled)(void *ud),
                        void *cancel_ud, uint64_t *ret_rootfs_size, struct op_error *e) {
        _cleanup_close_ int out_fd = -1;
        struct debian_build_req b;
        int r = build_req(p, q, &out_fd, &b, e);
        return r < 0 ? r : debian_build(&b, cancelled, cancel_ud, ret_rootfs_size, e);
}

int hostop_build_debian_tar(const struct host_policy *p, const struct hostop_debian_build *q, bool (*cancelled)(void *ud),
                            void *cancel_ud, struct op_error *e) {
        _cleanup_close_ int out_fd = -1;
        struct debian_build_req b;
        int r = build_req(p, q, &out_fd, &b, e);
        return r < 0 ? r : debian_build_tar(&b, cancelled, cancel_ud, e);
}

int hostop_sweep_builds(const struct host_policy *p) {
        return debian_sweep_work(p->work_base ? p->work_base : "/var/tmp");
}


/* ---- root disks: device-mapper snapshots ----------------------------------------- */

int host_check_dm_files(const struct host_policy *p, const struct stat *o, const struct stat *c, struct op_error *e) {
        if (!S_ISREG(o->st_mode) || !S_ISREG(c->st_mode))
                return refuse(e, "a snapshot's origin and COW are regular files");
        if (o->st_dev == c->st_dev && o->st_ino == c->st_ino)
                return refuse(e, "a snapshot's origin and COW are two files, not one");
        if ((uint64_t) o->st_size < HOST_DM_ORIGIN_MIN || o->st_size % 512 != 0)
                return refuse(e, "the origin (%lld bytes) is not at least 1 MiB of whole 512-byte sectors",
                              (long long) o->st_size);
        if (c->st_uid != p->owner_uid)
                return refuse(e, "the COW file belongs to uid %u, not to banger's owner (uid %u)", (unsigned) c->st_uid,
                              (unsigned) p->owner_uid);
        if (c->st_size < o->st_size || (uint64_t) c->st_size > HOST_DM_COW_MAX)
                return refuse(e, "the COW file (%lld bytes) is not between the origin's size (%lld) and 1 TiB",
                              (long long) c->st_size, (long long) o->st_size);
        return 0;
}

/* A regular file below a root, opened with every component O_NOFOLLOW. */
static int open_file_below(const struct host_policy *p, const char *path, int flags, int *ret_fd, struct op_error *e) {
        int r = host_check_path(p, path, true, e);
        if (r < 0)
                return r;
        _cleanup_free_ char *dir = xstrdup(path);
        char *slash = strrchr(dir, '/');
        *slash = '\0';
        _cleanup_close_ int dfd = -1;
        bool in_root = false; /* a file right in a root: the root is taken as given */
        for (size_t i = 0; p->roots[i]; i++)
                in_root |= strcmp(dir, p->roots[i]) == 0;
        if (in_root && (dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
                return op_fail(e, -errno, "%s: %s", dir, strerror(errno));
        if (!in_root && (r = open_dir_below(p, dir, &dfd, e)) < 0)
                return r;
        int fd = openat(dfd, slash + 1, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                return errno == ELOOP ? refuse(e, "%s is a symlink", path)
                                      : op_fail(e, -errno, "%s: %s", path, strerror(errno));
        *ret_fd = fd;
        return 0;
}

bool hostop_dm_available(const struct host_policy *p) {
        (void) p;
        return dmsnap_available();
}

int hostop_dm_snapshot_create(const struct host_policy *p, const char *vm_id, const char *origin_path,
                              const char *cow_path, char **ret_dev, struct op_error *e) {
        _cleanup_close_ int ofd = -1, cfd = -1;
        struct stat o, c;
        int r;
        if ((r = host_check_vm_id(vm_id, e)) < 0 || (r = open_file_below(p, origin_path, O_RDONLY, &ofd, e)) < 0 ||
            (r = open_file_below(p, cow_path, O_RDWR, &cfd, e)) < 0)
                return r;
        if (fstat(ofd, &o) < 0 || fstat(cfd, &c) < 0)
                return op_fail(e, -errno, "fstat: %s", strerror(errno));
        if ((r = host_check_dm_files(p, &o, &c, e)) < 0)
                return r;
        return dmsnap_create(vm_id, ofd, cfd, p->owner_uid, p->owner_gid, ret_dev, e);
}

int hostop_dm_snapshot_remove(const struct host_policy *p, const char *vm_id, struct op_error *e) {
        (void) p;
        int r = host_check_vm_id(vm_id, e);
        return r < 0 ? r : dmsnap_remove(vm_id, e);
}

int hostop_dm_snapshot_list(const struct host_policy *p, char ***ret_vm_ids, struct op_error *e) {
        (void) p;
        return dmsnap_list(ret_vm_ids, e);
}

/* ---- Firecracker under its jailer ------------------------------------------ */

int hostop_fc_jail_start(const struct host_policy *p, const char *vm_id, const char *const *files, size_t n,
                         const char *log_path, int vcpu, int memory_mib, pid_t *ret_pid, char **ret_root,
                         struct op_error *e) {
        int r = host_check_vm_id(vm_id, e);
        if (r < 0)
                return r;
        if (vcpu < 1 || vcpu > 32 || memory_mib < 64 || memory_mib > (1 << 20))
                return refuse(e, "%d CPUs and %d MiB are not a VM's (1-32, 64 MiB-1 TiB)", vcpu, memory_mib);
        if (!p->jail_on)
                return op_fail(e, p->jail_refused ? -EPERM : -EOPNOTSUPP, "%s",
                               p->jail_why ? p->jail_why : "firecracker runs unjailed here");
        if (n == 0 || n > HOST_JAIL_MAX_FILES)
                return refuse(e, "%zu files for a jail (1 to %d)", n, HOST_JAIL_MAX_FILES);
        int fds[HOST_JAIL_MAX_FILES];
        const char *names[HOST_JAIL_MAX_FILES];
        for (size_t i = 0; i < HOST_JAIL_MAX_FILES; i++)
                fds[i] = -1;
        _cleanup_free_ char *dm = xasprintf("/dev/mapper/banger-%s", vm_id);
        for (size_t i = 0; r == 0 && i < n; i++) {
                names[i] = files[i] && strrchr(files[i], '/') ? strrchr(files[i], '/') + 1 : "";
                for (size_t k = 0; r == 0 && k < i; k++)
                        if (strcmp(names[k], names[i]) == 0)
                                r = refuse(e, "two files named %s for one jail", names[i]);
                if (r == 0 && files[i] && strcmp(files[i], dm) == 0) { /* udev's link to ../dm-N: root's /dev */
                        struct stat st;
                        fds[i] = open(files[i], O_PATH | O_CLOEXEC);
                        if (fds[i] < 0 || fstat(fds[i], &st) < 0 || !S_ISBLK(st.st_mode))
                                r = refuse(e, "%s is not a block device", files[i]);
                } else if (r == 0 && (r = open_file_below(p, files[i], O_PATH, &fds[i], e)) == 0) {
                        struct stat st;
                        if (fstat(fds[i], &st) < 0 || !S_ISREG(st.st_mode))
                                r = refuse(e, "%s is not a regular file", files[i]);
                }
        }
        _cleanup_close_ int lfd = -1;
        struct stat lst;
        if (r == 0 && (r = open_file_below(p, log_path, O_WRONLY | O_APPEND, &lfd, e)) == 0 &&
            (fstat(lfd, &lst) < 0 || !S_ISREG(lst.st_mode)))
                r = refuse(e, "%s is not a regular file", log_path);
        _cleanup_free_ char *root = r == 0 ? jail_root(&p->jail, vm_id) : NULL;
        if (r == 0) /* below banger's dirs, no symlink on the way (jail_prepare checks what it opens too) */
                r = host_check_path(p, root, false, e);
        if (r == 0)
                r = jail_prepare(&p->jail, root, fds, names, n, e);
        if (r == 0) {
                _cleanup_free_ char *ctl = jail_cgroup2_controllers();
                _cleanup_strv_free_ char **limits = jail_cgroup_limits(ctl, vcpu, memory_mib);
                _cleanup_strv_free_ char **argv = jail_argv(&p->jail, vm_id, limits);
                r = jail_spawn(argv, lfd, ret_pid, e);
        }
        for (size_t i = 0; i < HOST_JAIL_MAX_FILES; i++)
                if (fds[i] >= 0)
                        close(fds[i]);
        if (r < 0) {
                (void) jail_remove(p->jail.chroot_base, vm_id);
                return r;
        }
        *ret_root = TAKE_PTR(root);
        return 0;
}

int hostop_fc_jail_remove(const struct host_policy *p, const char *vm_id, struct op_error *e) {
        int r = host_check_vm_id(vm_id, e);
        if (r < 0 || !p->jail_base)
                return r;
        if ((r = host_check_path(p, p->jail_base, false, e)) < 0)
                return r;
        r = jail_remove(p->jail_base, vm_id);
        return r < 0 ? op_fail(e, r, "removing the jails of vm %s: %s", vm_id, strerror(-r)) : 0;
}

int hostop_fc_jail_list(const struct host_policy *p, char ***ret_vm_ids, struct op_error *e) {
        if (!p->jail_base) {
                *ret_vm_ids = xcalloc(1, sizeof(char *));
                return 0;
        }
        int r = host_check_path(p, p->jail_base, false, e);
        if (r < 0)
                return r;
        r = jail_list(p->jail_base, ret_vm_ids);
        return r < 0 ? op_fail(e, r, "listing the jails under %s: %s", p->jail_base, strerror(-r)) : 0;
}
