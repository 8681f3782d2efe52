/* SPDX-License-Identifier: MIT */
/*
 * doctor: a read-only report on the host. Never creates or changes anything:
 * the DB is inspected by `bangerd --check-migrations` (read-only open), and
 * directories are checked with lstat, not created.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <dirent.h>
#include <net/if.h>

#include "accel.h"
#include "aptsources.h"
#include "cli.h"
#include "config.h"
#include "fsutil.h"
#include "hostinfo.h"
#include "jsonx.h"
#include "macro.h"
#include "parse.h"
#include "proc_spawn.h"
#include "rpc_methods.h"
#include "strbuf.h"
#include "system.h"
#include "version.h"

enum status { PASS, WARN, FAIL };
static const char *const status_names[] = { "PASS", "WARN", "FAIL" };

struct report {
        json_t *checks; /* array */
        int fails;
};

_printf_(5, 6) static void add(struct report *rep, enum status st, const char *check, const char *hint,
                               const char *fmt, ...) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        va_list ap;

        va_start(ap, fmt);
        strbuf_vaddf(&sb, fmt, ap);
        va_end(ap);
        json_t *c = json_pack("{s:s, s:s, s:s}", "status", status_names[st], "check", check, "detail", sb.buf);
        if (hint)
                json_object_set_new(c, "hint", json_string(hint));
        json_array_append_new(rep->checks, c);
        rep->fails += st == FAIL;
}

static void check_arch(struct report *rep) {
        struct utsname u;
        uname(&u);
        if (strcmp(u.machine, "x86_64") == 0)
                add(rep, PASS, "architecture", NULL, "%s", u.machine);
        else
                add(rep, FAIL, "architecture", "banger supports x86_64 hosts only", "%s is not supported", u.machine);
}

/* The daemon's cached boot-probe verdict for a pulled kernel (read-only). */
static bool probe_verdict(const struct cli_ctx *ctx, struct accel_verdict *v) {
        DIR *d = opendir(ctx->layout.kernels_dir);
        struct dirent *de;
        bool found = false;
        while (d && !found && (de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                _cleanup_free_ char *vl = xasprintf("%s/%s/vmlinux", ctx->layout.kernels_dir, de->d_name);
                found = access(vl, R_OK) == 0 && accel_cached(ctx->layout.cache_dir, vl, v);
        }
        if (d)
                closedir(d);
        return found;
}

static void check_kvm(struct report *rep, const struct cli_ctx *ctx) {
        struct kvm_state k;
        struct accel_verdict v;
        hostinfo_kvm(&k);
        if (k.create_vm && probe_verdict(ctx, &v))
                add(rep, v.kvm_works ? PASS : WARN, "kvm",
                    v.kvm_works ? NULL : "VMs run under TCG (slower); set accel = \"kvm\" in config.toml to force KVM",
                    "/dev/kvm opens (API %d); boot probe: %s; VMs use %s", k.api_version, v.detail,
                    v.kvm_works ? "KVM" : "TCG");
        else if (k.create_vm)
                add(rep, PASS, "kvm", NULL,
                    "/dev/kvm present and openable (API %d, KVM_CREATE_VM ok); a guest boot probe decides whether "
                    "VMs use it (the daemon runs it once a kernel is pulled)",
                    k.api_version);
        else if (k.present)
                add(rep, WARN, "kvm", "add your user to the kvm group, or run as root",
                    "%s; VMs will run under TCG (slower)", k.error);
        else
                add(rep, WARN, "kvm", "enable virtualisation (VT-x/AMD-V) or nested virtualisation",
                    "%s; VMs will run under TCG (slower)", k.error);
        kvm_state_done(&k);
}

static void check_vmms(struct report *rep, const struct cli_ctx *ctx, const struct config *cfg) {
        struct tool_info q, f;

        hostinfo_tool(cfg->qemu_bin, &q);
        if (q.path)
                add(rep, PASS, "qemu", NULL, "%s: %s", q.path, q.version ? q.version : "(version unknown)");
        else
                add(rep, FAIL, "qemu", "apt-get install qemu-system-x86 qemu-utils", "%s not found", cfg->qemu_bin);
        hostinfo_tool(cfg->firecracker_bin, &f);
        _cleanup_free_ char *why = NULL;
        bool wanted = strcmp(cfg->vmm, "firecracker") == 0;
        int in_window = f.path ? hostinfo_fc_version(f.version, &why) : -1;
        if (!f.path) /* optional unless asked for: qemu boots everything */
                add(rep, wanted ? FAIL : PASS, "firecracker", NULL, "%s not found; %s", cfg->firecracker_bin,
                    wanted ? "vmm = \"firecracker\" in config cannot boot" : "the qemu backend is used");
        else
                add(rep, in_window == 0 ? PASS : in_window > 0 ? WARN : FAIL, "firecracker",
                    in_window < 0 ? "install Firecracker " FC_VERSION_MIN " to " FC_VERSION_TESTED ".x" : NULL,
                    "%s: %s", f.path, why);
        /* (as whoever does the privileged work decides it: the root helper of
         * a system install, else bangerd run as this user) */
        struct jail_plan j;
        hostinfo_jail(cfg->jailer_bin, f.path, ctx->system ? 0 : geteuid(), &j);
        if (j.mode != JAIL_NONE)
                add(rep, j.mode == JAIL_REFUSED ? FAIL : PASS, "jailer",
                    j.mode == JAIL_REFUSED ? "chown root: the file, chmod go-w (or jailer_bin = \"none\")" : NULL,
                    "%s", j.reason);
        jail_plan_done(&j);
        tool_info_done(&q);
        tool_info_done(&f);
}

/* QEMU's agent transport: vsock where /dev/vhost-vsock opens, else the
 * virtio-serial port; a FAIL only when the config insists on vsock. */
static void check_vsock(struct report *rep, const struct config *cfg) {
        _cleanup_free_ char *why = NULL;
        bool insist = strcmp(cfg->qemu_agent_transport, "vsock") == 0;
        bool serial = strcmp(cfg->qemu_agent_transport, "virtio-serial") == 0;
        if (hostinfo_vhost_vsock(&why))
                add(rep, PASS, "vsock", NULL, "/dev/vhost-vsock opens: QEMU VMs booted cold reach their agent over %s",
                    serial ? "virtio-serial (qemu_agent_transport = \"virtio-serial\")" : "vsock");
        else
                add(rep, insist ? FAIL : PASS, "vsock", insist ? "modprobe vhost_vsock, or qemu_agent_transport = \"auto\"" : NULL,
                    "%s: %s", why, insist ? "qemu_agent_transport = \"vsock\" cannot start QEMU VMs" : "agent over virtio-serial");
}

/* Firecracker's root disks: device-mapper snapshots where whoever does the
 * privileged work (the root helper, or the daemon this CLI starts: this
 * user) can use /dev/mapper/control; copies otherwise. */
static void check_dm(struct report *rep, const struct cli_ctx *ctx, const struct config *cfg) {
        struct stat st;
        bool present = stat("/dev/mapper/control", &st) == 0 && S_ISCHR(st.st_mode);
        int fd = present && !ctx->system ? open("/dev/mapper/control", O_RDWR | O_CLOEXEC) : -1;
        bool usable = present && (ctx->system || fd >= 0);
        if (fd >= 0)
                close(fd);
        if (usable) {
                add(rep, PASS, "device-mapper", NULL,
                    "Firecracker root disks are snapshots (a COW file over the image's rootfs)");
                return;
        }
        add(rep, strcmp(cfg->vmm, "firecracker") == 0 ? WARN : PASS, "device-mapper",
            present ? "run banger as root, or sudo banger system install --owner $USER" : "modprobe dm-snapshot",
            "%s: Firecracker root disks are copies of the image's rootfs (a reflink where the filesystem can, "
            "else a sparse copy)",
            present ? "/dev/mapper/control is root's" : "no /dev/mapper/control");
}

static void check_tun(struct report *rep, bool rootless) {
        struct stat st;
        if (stat("/dev/net/tun", &st) == 0 && S_ISCHR(st.st_mode))
                add(rep, PASS, "tun", NULL, "/dev/net/tun present");
        else
                add(rep, rootless ? WARN : FAIL, "tun", "modprobe tun",
                    "/dev/net/tun missing: TAP networking is impossible%s",
                    rootless ? " (rootless VMs use user-mode networking)" : "");
}

/* The daemon this CLI starts has this process's capabilities: without
 * CAP_NET_ADMIN and a system install it is rootless. */
static bool check_network(struct report *rep, const struct cli_ctx *ctx) {
        if (ctx->system) {
                add(rep, PASS, "network", NULL, "bridge mode (the root helper makes TAPs and nftables rules)");
                return false;
        }
        if (hostinfo_net_admin()) {
                add(rep, PASS, "network", NULL, "bridge mode (this user has CAP_NET_ADMIN)");
                return false;
        }
        add(rep, WARN, "network", "sudo banger system install --owner $USER (bridge mode and <name>.vm, bangerd still as you)",
            "rootless: VMs use user-mode networking (outbound access, ssh and --publish through QEMU on 127.0.0.1; "
            "no bridge, no <name>.vm from the host)");
        return true;
}

/* Who builds Debian images: root (here or the helper), else mmdebstrap's
 * unshare mode as this user. */
static void check_builds(struct report *rep, const struct cli_ctx *ctx) {
        _cleanup_free_ char *what = NULL, *how = NULL;
        if (ctx->system)
                add(rep, PASS, "image builds", NULL, "as root, by the root helper (mmdebstrap root mode)");
        else if (geteuid() == 0)
                add(rep, PASS, "image builds", NULL, "as root (mmdebstrap root mode)");
        else if (hostinfo_unshare_ready(&what, &how))
                add(rep, PASS, "image builds", NULL, "without root: mmdebstrap's unshare mode (subordinate ids from /etc/subuid)");
        else
                add(rep, WARN, "image builds", how,
                    "Debian image builds need %s (mmdebstrap's unshare mode); bundles and OCI pulls work without", what);
}

/* What `kernel build` compiles with (kernel_build.c checks the same). */
static void check_kernel_build(struct report *rep) {
        static const char *const tools[][2] = {
                { "gcc", "gcc" },   { "ld", "binutils" },   { "make", "make" }, { "bc", "bc" },
                { "flex", "flex" }, { "bison", "bison" }, { "perl", "perl" },
        };
        _cleanup_strbuf_ struct strbuf missing = STRBUF_INIT, pkgs = STRBUF_INIT;
        for (size_t i = 0; i < ELEMENTSOF(tools); i++) {
                _cleanup_free_ char *p = NULL;
                if (find_executable(tools[i][0], &p) == 0)
                        continue;
                strbuf_addf(&missing, "%s%s", missing.len ? ", " : "", tools[i][0]);
                strbuf_addf(&pkgs, " %s", tools[i][1]);
        }
        if (access("/usr/include/gelf.h", R_OK) < 0) {
                strbuf_addf(&missing, "%slibelf's headers", missing.len ? ", " : "");
                strbuf_addstr(&pkgs, " libelf-dev");
        }
        _cleanup_free_ char *hint = pkgs.len ? xasprintf("apt-get install%s", pkgs.buf) : NULL;
        if (missing.len)
                add(rep, WARN, "kernel builds", hint, "'banger kernel build' needs %s (pulled kernels do not)", missing.buf);
        else
                add(rep, PASS, "kernel builds", NULL, "gcc, ld, make, bc, flex, bison, perl, libelf's headers");
}

static void check_tools(struct report *rep) {
        static const struct {
                const char *name;
                bool required;
                const char *pkg;
        } tools[] = {
                { "qemu-img", true, "qemu-utils" },   { "ssh", true, "openssh-client" },
                { "ssh-keygen", true, "openssh-client" }, { "git", true, "git" },
                { "ip", true, "iproute2" },           { "mkfs.ext4", true, "e2fsprogs" },
                { "depmod", true, "kmod" }, /* the modules disk of a kernel pull */
                { "gpgv", false, "gpgv" },            { "mmdebstrap", false, "mmdebstrap" },
        };
        _cleanup_strbuf_ struct strbuf missing_req = STRBUF_INIT, missing_opt = STRBUF_INIT, pkgs = STRBUF_INIT;

        for (size_t i = 0; i < ELEMENTSOF(tools); i++) {
                _cleanup_free_ char *p = NULL;
                if (find_executable(tools[i].name, &p) == 0)
                        continue;
                struct strbuf *sb = tools[i].required ? &missing_req : &missing_opt;
                strbuf_addf(sb, "%s%s", sb->len ? ", " : "", tools[i].name);
                strbuf_addf(&pkgs, " %s", tools[i].pkg);
        }
        _cleanup_free_ char *hint = pkgs.len ? xasprintf("apt-get install%s", pkgs.buf) : NULL;
        if (missing_req.len)
                add(rep, FAIL, "host tools", hint, "missing: %s%s%s", missing_req.buf,
                    missing_opt.len ? "; optional missing: " : "", missing_opt.buf);
        else if (missing_opt.len)
                add(rep, WARN, "host tools", hint, "optional missing (image builds need them): %s", missing_opt.buf);
        else
                add(rep, PASS, "host tools", NULL, "qemu-img, ssh, ssh-keygen, git, ip, mkfs.ext4, depmod, gpgv, mmdebstrap");
}

static void check_dir(struct report *rep, const struct cli_ctx *ctx, const char *check, const char *path,
                      bool must_be_private) {
        struct stat st;
        _cleanup_free_ char *why = NULL;

        if (lstat(path, &st) < 0) {
                if (errno == ENOENT)
                        add(rep, PASS, check, NULL, "%s does not exist yet (created on first use)", path);
                else
                        add(rep, FAIL, check, NULL, "%s: %s", path, strerror(errno));
                return;
        }
        /* a system install's directories are its owner's, whoever asks */
        uid_t owner = ctx->system ? ctx->install.owner_uid : getuid();
        int r = ensure_private_dir(path, owner, false, &why);
        if (r == 0)
                add(rep, PASS, check, NULL, "%s (owner uid %u, mode 0700)", path, (unsigned) st.st_uid);
        else if (must_be_private)
                add(rep, FAIL, check, "fix the owner/mode (chmod 0700) or remove it", "%s",
                    why ? why : strerror(-r));
        else
                add(rep, WARN, check, "chmod 0700 it", "%s", why ? why : strerror(-r));
}

static void check_db(struct report *rep, const struct cli_ctx *ctx) {
        _cleanup_free_ char *bin = ctx->system ? system_bin(&ctx->install, "bangerd") : cli_find_bangerd();
        struct spawn_result res = { 0 };
        struct spawn_opts o = { .capture_stdout = true, .capture_stderr = true, .timeout_ms = 10000 };

        if (!bin) {
                add(rep, FAIL, "state store", "install bangerd next to banger", "bangerd not found");
                return;
        }
        char *argv[] = { bin, (char *) "--check-migrations", (char *) "--json", NULL, NULL, NULL };
        if (ctx->system) {
                argv[2] = (char *) "--install";
                argv[3] = (char *) system_install_file();
                argv[4] = (char *) "--json";
        }
        if (spawn_run(argv, &o, &res) < 0) {
                add(rep, FAIL, "state store", NULL, "cannot run %s", bin);
                return;
        }
        _cleanup_json_ json_t *j = json_loads(res.out, 0, NULL);
        const char *state = json_string_value(json_object_get(j, "state"));
        const char *detail = json_string_value(json_object_get(j, "detail"));
        if (!state)
                add(rep, FAIL, "state store", NULL, "bangerd --check-migrations failed: %s", res.err);
        else if (strcmp(state, "up_to_date") == 0 || strcmp(state, "missing") == 0 || strcmp(state, "pending") == 0)
                add(rep, PASS, "state store", NULL, "%s: %s", ctx->layout.db_path, detail);
        else
                add(rep, FAIL, "state store", "move the file aside; bangerd will create a fresh one", "%s: %s (%s)",
                    ctx->layout.db_path, state, detail);
        spawn_result_done(&res);
}

static void check_config(struct report *rep, const struct cli_ctx *ctx, struct config **ret_cfg) {
        _cleanup_free_ char *err = NULL;
        char sz[32], sz2[32];
        int r = hostinfo_load_config(&ctx->layout, ret_cfg, &err);

        if (r < 0) {
                add(rep, FAIL, "config", "fix the value named above", "%s", err);
                return;
        }
        struct config *c = *ret_cfg;
        bool exists = access(ctx->layout.config_file, F_OK) == 0;
        size_t nw = 0;
        for (char **w = c->warnings; w && *w; w++)
                nw++;
        if (nw) {
                _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
                for (char **w = c->warnings; w && *w; w++)
                        strbuf_addf(&sb, "%s%s", sb.len ? "; " : "", *w);
                add(rep, WARN, "config", "remove or correct the keys named", "%s: %s", ctx->layout.config_file, sb.buf);
        } else
                add(rep, PASS, "config", NULL, "%s%s", ctx->layout.config_file, exists ? "" : " (absent: defaults)");
        add(rep, PASS, "vm defaults", NULL, "vcpu %lld (%s), memory %lld MiB (%s), disk %s (%s), overlay %s (%s)",
            (long long) c->vcpu, config_source_to_string(c->prov[CONFIG_VCPU].source), (long long) c->memory_mib,
            config_source_to_string(c->prov[CONFIG_MEMORY_MIB].source), format_size(c->disk_size_bytes, sz, sizeof(sz)),
            config_source_to_string(c->prov[CONFIG_DISK_SIZE].source),
            format_size(c->system_overlay_size_bytes, sz2, sizeof(sz2)),
            config_source_to_string(c->prov[CONFIG_SYSTEM_OVERLAY_SIZE].source));
}

static void check_mirror(struct report *rep, const struct config *c) {
        enum config_source s = c->prov[CONFIG_DEBIAN_MIRROR].source;

        if (s == CONFIG_SOURCE_BUILTIN)
                add(rep, WARN, "debian mirror", "set debian_mirror in config.toml",
                    "no mirror found in %s; falling back to %s", hostinfo_apt_dir(), c->debian_mirror);
        else
                add(rep, PASS, "debian mirror", NULL, "%s (from %s)", c->debian_mirror,
                    s == CONFIG_SOURCE_FILE ? "config.toml" : hostinfo_apt_dir());
}

static void check_ip_forward(struct report *rep) {
        _cleanup_free_ char *v = NULL;
        size_t len;
        if (read_file("/proc/sys/net/ipv4/ip_forward", 16, &v, &len) < 0)
                add(rep, WARN, "ip forwarding", NULL, "cannot read /proc/sys/net/ipv4/ip_forward");
        else if (v[0] == '1')
                add(rep, PASS, "ip forwarding", NULL, "net.ipv4.ip_forward = 1");
        else
                add(rep, PASS, "ip forwarding", NULL,
                    "net.ipv4.ip_forward = 0: bangerd turns it on when a VM with --nat starts");
}

static void check_dns(struct report *rep, const struct config *c) {
        if (strcmp(c->dns_listen, "off") == 0) {
                add(rep, WARN, "vm dns", "set dns_listen in config.toml", "disabled: <name>.vm names do not resolve");
                return;
        }
        if (access("/run/systemd/resolve/io.systemd.Resolve", F_OK) == 0)
                add(rep, PASS, "vm dns", NULL,
                    "bangerd answers the vm zone on %s and routes ~vm there on %s with resolvectl", c->dns_listen,
                    c->bridge_name);
        else
                add(rep, WARN, "vm dns",
                    "resolv.conf cannot name a port: with dnsmasq add 'server=/vm/127.0.0.1#42069', or query it "
                    "directly: dig @127.0.0.1 -p 42069 <name>.vm",
                    "bangerd answers the vm zone on %s, but this host has no systemd-resolved to route ~vm to it",
                    c->dns_listen);
}

/* Rules commented banger-vm:<id> in `family` banger whose VM is not running. */
static void nft_orphans(const char *family, json_t *vms, struct strbuf *sb) {
        char *argv[] = { (char *) "nft", (char *) "-j", (char *) "list", (char *) "table", (char *) family,
                         (char *) "banger", NULL };
        struct spawn_opts o = { .capture_stdout = true, .capture_stderr = true, .timeout_ms = 5000 };
        struct spawn_result sr = { 0 };
        size_t i, k;
        json_t *it, *vm;
        if (spawn_run(argv, &o, &sr) == 0 && sr.exit_code == 0) {
                _cleanup_json_ json_t *j = json_loads(sr.out, 0, NULL);
                json_array_foreach(json_object_get(j, "nftables"), i, it) {
                        const char *cm = json_string_value(json_object_get(json_object_get(it, "rule"), "comment"));
                        if (!cm || strncmp(cm, "banger-vm:", 10) != 0)
                                continue;
                        bool owned = false;
                        json_array_foreach(vms, k, vm) {
                                owned |= strcmp(json_string_value(json_object_get(vm, "id")), cm + 10) == 0 &&
                                         strcmp(json_string_value(json_object_get(vm, "state")), "running") == 0;
                        }
                        if (!owned && !strstr(sb->buf ? sb->buf : "", cm))
                                strbuf_addf(sb, "%snft rules %s", sb->len ? ", " : "", cm);
                }
        }
        spawn_result_done(&sr);
}

/* TAPs and nft rules of banger's that no running VM owns. Asks the daemon
 * which VMs run (never starts one). */
static void check_orphans(struct report *rep, struct cli_ctx *ctx, const struct config *c) {
        _cleanup_json_ json_t *res = NULL;
        struct strbuf sb = STRBUF_INIT;
        if (cli_try_connect(ctx) < 0) {
                add(rep, PASS, "leftovers", NULL, "bangerd is not running: not checked (its start reconciles them)");
                return;
        }
        cli_disconnect(ctx);
        fflush(stderr);
        if (cli_call(ctx, CLI_NO_AUTOSTART, RPC_METHOD_VM_LIST, NULL, &res) != 0) {
                add(rep, WARN, "leftovers", NULL, "cannot list VMs");
                return;
        }
        json_t *vms = json_object_get(res, "vms"), *vm;
        size_t i;
        struct if_nameindex *ifs = if_nameindex();
        for (struct if_nameindex *f = ifs; f && f->if_index; f++) {
                bool ours = strncmp(f->if_name, "bg", 2) == 0 && strlen(f->if_name) == 14 &&
                            strspn(f->if_name + 2, "0123456789abcdef") == 12;
                bool pool = strncmp(f->if_name, "tap-pool-", 9) == 0;
                if (!ours && !(pool && c->tap_pool_size == 0))
                        continue;
                bool owned = false;
                json_array_foreach(vms, i, vm) {
                        const char *tap = json_string_value(json_object_get(vm, "tap"));
                        owned |= tap && strcmp(tap, f->if_name) == 0;
                }
                if (!owned)
                        strbuf_addf(&sb, "%sTAP %s", sb.len ? ", " : "", f->if_name);
        }
        if (ifs)
                if_freenameindex(ifs);
        nft_orphans("inet", vms, &sb);
        nft_orphans("bridge", vms, &sb);
        if (sb.len)
                add(rep, WARN, "leftovers", "restart bangerd (banger daemon stop; banger ping): reconcile removes them",
                    "not owned by a running VM: %s", sb.buf);
        else
                add(rep, PASS, "leftovers", NULL, "no banger TAP or nft rule without its VM");
        strbuf_release(&sb);
}

/* ---- the system install's posture ------------------------------------------------ */

/* path is a `type` of uid's with exactly `mode`; else why not, in *why. */
static bool shaped(const char *path, mode_t type, uid_t uid, mode_t mode, struct strbuf *why) {
        struct stat st;
        if (lstat(path, &st) < 0) {
                strbuf_addf(why, "%s%s: %s", why->len ? "; " : "", path, strerror(errno));
                return false;
        }
        if ((st.st_mode & S_IFMT) != type || st.st_uid != uid || (st.st_mode & 07777) != mode) {
                strbuf_addf(why, "%s%s is uid %u mode %04o (want uid %u mode %04o)", why->len ? "; " : "", path,
                            (unsigned) st.st_uid, (unsigned) (st.st_mode & 07777), (unsigned) uid, (unsigned) mode);
                return false;
        }
        return true;
}

static void check_sockets(struct report *rep, const struct install_info *i) {
        _cleanup_free_ char *hsock = install_helper_socket(i), *dsock = path_join(i->runtime_dir, "bangerd.sock");
        _cleanup_strbuf_ struct strbuf why = STRBUF_INIT;
        bool ok = shaped(hsock, S_IFSOCK, i->owner_uid, 0600, &why);
        ok &= shaped(i->helper_runtime, S_IFDIR, 0, 0711, &why);
        ok &= shaped(dsock, S_IFSOCK, i->owner_uid, 0600, &why);
        ok &= shaped(i->runtime_dir, S_IFDIR, i->owner_uid, 0700, &why);
        if (ok)
                add(rep, PASS, "sockets", NULL, "%s 0600 %s in a 0711 root dir; %s 0600 %s in a 0700 dir", hsock,
                    i->owner_user, dsock, i->owner_user);
        else
                add(rep, FAIL, "sockets", "sudo banger system restart", "%s", why.buf);
        bool helper = system_probe_socket(hsock) == 0, daemon = system_probe_socket(dsock) == 0;
        if (helper && daemon)
                add(rep, PASS, "services", NULL, "the root helper and bangerd answer");
        else
                add(rep, FAIL, "services", "sudo banger system restart (banger system status)", "%s%s%s",
                    helper ? "" : "the root helper does not answer", !helper && !daemon ? "; " : "",
                    daemon ? "" : "bangerd does not answer");
}

/* A unit without its hardening lines is an install someone edited. */
static void check_units(struct report *rep, const struct install_info *i) {
        if (!install_uses_systemd(i)) {
                add(rep, PASS, "unit hardening", NULL, "no units: the services are started directly (no systemd)");
                return;
        }
        _cleanup_free_ char *user = xasprintf("User=%s", i->owner_user);
        const char *const daemon_lines[] = { user, "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=read-only",
                                             "RestrictSUIDSGID=yes", "LockPersonality=yes", "KillMode=process", NULL };
        const char *const helper_lines[] = { "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                                             "RestrictSUIDSGID=yes", "LockPersonality=yes", "KillMode=process",
                                             "SendSIGKILL=no", "CapabilityBoundingSet=" SYSTEM_HELPER_CAPS, NULL };
        const char *const units[] = { "/etc/systemd/system/bangerd.service", "/etc/systemd/system/bangerd-root.service" };
        const char *const *want[] = { daemon_lines, helper_lines };
        _cleanup_strbuf_ struct strbuf missing = STRBUF_INIT;
        for (size_t u = 0; u < 2; u++) {
                _cleanup_free_ char *text = NULL;
                size_t len;
                if (read_file_nofollow(units[u], 1 << 20, &text, &len) < 0) {
                        strbuf_addf(&missing, "%s%s is missing", missing.len ? "; " : "", units[u]);
                        continue;
                }
                for (const char *const *l = want[u]; *l; l++) {
                        _cleanup_free_ char *line = xasprintf("\n%s\n", *l);
                        if (!strstr(text, line))
                                strbuf_addf(&missing, "%s%s lacks %s", missing.len ? "; " : "", units[u], *l);
                }
        }
        if (missing.len)
                add(rep, FAIL, "unit hardening", "sudo banger system install (re-renders the units)", "%s", missing.buf);
        else
                add(rep, PASS, "unit hardening", NULL, "bangerd.service and bangerd-root.service as installed");
}

static void check_binaries(struct report *rep, const struct install_info *i) {
        static const char *const files[] = { "bin/banger", "bin/bangerd", "bin/bangerd-root", "lib/banger/banger-agent",
                                             "lib/banger/banger-init" };
        _cleanup_strbuf_ struct strbuf why = STRBUF_INIT;
        for (size_t k = 0; k < ELEMENTSOF(files); k++) {
                _cleanup_free_ char *p = path_join(i->prefix, files[k]);
                struct stat st;
                if (lstat(p, &st) < 0 || !S_ISREG(st.st_mode) || st.st_uid != 0 || (st.st_mode & 022))
                        strbuf_addf(&why, "%s%s", why.len ? ", " : "", p);
        }
        if (why.len)
                add(rep, FAIL, "binaries", "sudo banger system install", "missing, not root's, or writable by others: %s",
                    why.buf);
        else
                add(rep, PASS, "binaries", NULL, "%s/bin and %s/lib/banger: root's, not writable by others", i->prefix,
                    i->prefix);
}

static void check_versions(struct report *rep, struct cli_ctx *ctx) {
        const struct install_info *i = &ctx->install;
        _cleanup_json_ json_t *ping = NULL;
        if (strcmp(strempty(i->version), banger_version()) != 0 || strcmp(strempty(i->commit), banger_commit()) != 0)
                add(rep, WARN, "version", "use the installed banger, or sudo banger update",
                    "this banger is v%s (%s), the install v%s (%s)", banger_version(), banger_commit(),
                    strempty(i->version), strempty(i->commit));
        else if (cli_try_connect(ctx) == 0 && cli_call(ctx, CLI_NO_AUTOSTART, RPC_METHOD_PING, NULL, &ping) == 0 &&
                 strcmp(strempty(json_string_value(json_object_get(ping, "commit"))), strempty(i->commit)) != 0)
                add(rep, WARN, "version", "sudo banger system restart", "bangerd runs commit %s, the install is %s",
                    json_string_value(json_object_get(ping, "commit")), strempty(i->commit));
        else
                add(rep, PASS, "version", NULL, "v%s (%s) installed and running", strempty(i->version),
                    strempty(i->commit));
}

static void check_install(struct report *rep, struct cli_ctx *ctx) {
        if (ctx->install_error) {
                add(rep, FAIL, "install", "fix it, or sudo banger system install again", "%s", ctx->install_error);
                return;
        }
        if (!ctx->system) {
                add(rep, WARN, "install", "sudo banger system install --owner $USER (bangerd then runs as you)",
                    "running outside the system install: bangerd runs as uid %u and does privileged work itself",
                    (unsigned) getuid());
                return;
        }
        add(rep, PASS, "install", NULL, "system install for %s (%s)", ctx->install.owner_user, system_install_file());
        check_binaries(rep, &ctx->install);
        check_sockets(rep, &ctx->install);
        check_units(rep, &ctx->install);
        check_versions(rep, ctx);
        if (!system_owner_in_kvm_group(&ctx->install))
                add(rep, WARN, "kvm group", "sudo usermod -aG kvm <owner>; sudo banger system restart",
                    "%s is not in /dev/kvm's group: VMs run under TCG", ctx->install.owner_user);
}

int cmd_doctor(struct cli_ctx *ctx, struct cli_args *a) {
        struct report rep = { .checks = json_array() };
        struct config *cfg = NULL;
        size_t i;
        json_t *c;
        (void) a;

        check_arch(&rep);
        check_install(&rep, ctx);
        check_kvm(&rep, ctx);
        check_config(&rep, ctx, &cfg);
        if (cfg) {
                check_vmms(&rep, ctx, cfg);
                check_vsock(&rep, cfg);
                check_dm(&rep, ctx, cfg);
                check_mirror(&rep, cfg);
        }
        bool rootless = check_network(&rep, ctx);
        check_builds(&rep, ctx);
        check_tun(&rep, rootless);
        if (!rootless)
                check_ip_forward(&rep);
        if (cfg) {
                check_dns(&rep, cfg);
                check_orphans(&rep, ctx, cfg);
        }
        check_tools(&rep);
        check_kernel_build(&rep);
        check_dir(&rep, ctx, "state dir", ctx->layout.state_dir, true);
        check_dir(&rep, ctx, "runtime dir", ctx->layout.runtime_dir, true);
        check_db(&rep, ctx);

        if (ctx->json) {
                _cleanup_json_ json_t *j = json_pack("{s:O, s:b}", "checks", rep.checks, "ok", rep.fails == 0);
                cli_print_json(j);
        } else {
                static const char *const colors[] = { "\033[32m", "\033[33m", "\033[31m" };
                json_array_foreach(rep.checks, i, c) {
                        const char *st = json_string_value(json_object_get(c, "status"));
                        int idx = strcmp(st, "PASS") == 0 ? 0 : strcmp(st, "WARN") == 0 ? 1 : 2;
                        if (ctx->color_out)
                                printf("%s%s\033[0m\t%s\n", colors[idx], st, json_string_value(json_object_get(c, "check")));
                        else
                                printf("%s\t%s\n", st, json_string_value(json_object_get(c, "check")));
                        printf("  - %s\n", json_string_value(json_object_get(c, "detail")));
                        if (json_object_get(c, "hint") && idx > 0)
                                printf("  fix: %s\n", json_string_value(json_object_get(c, "hint")));
                }
        }
        json_decref(rep.checks);
        config_free(cfg);
        return rep.fails ? 1 : 0;
}
