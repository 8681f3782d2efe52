/* SPDX-License-Identifier: MIT */
/*
 * The two systemd units of a system install. The daemon runs as the owner
 * with everything but its own directories read-only and no way back to
 * privilege; the helper runs as root, but without the capabilities none of
 * its operations needs, with a private /tmp and /var/tmp (its builds' work
 * dirs) and no view of /home. KillMode=process on the daemon: its VMs
 * (QEMU in their own sessions) outlive a restart.
 */
#include <string.h>

#include "strbuf.h"
#include "system.h"

/* systemd's *Directory= settings take paths relative to /run, /var/lib,
 * /var/cache; an install elsewhere names them in ReadWritePaths only. */
static const char *below(const char *path, const char *base) {
        size_t n = strlen(base);
        return strncmp(path, base, n) == 0 && path[n] == '/' && path[n + 1] ? path + n + 1 : NULL;
}

static void managed_dir(struct strbuf *sb, const char *kind, const char *path, const char *base, const char *mode) {
        const char *rel = below(path, base);
        if (rel)
                strbuf_addf(sb, "%sDirectory=%s\n%sDirectoryMode=%s\n", kind, rel, kind, mode);
}

char *system_unit_daemon(const struct install_info *i, const char *install_file) {
        struct strbuf sb = STRBUF_INIT;
        strbuf_addf(&sb,
                    "# written by `banger system install`; `banger system uninstall` removes it\n"
                    "[Unit]\n"
                    "Description=banger daemon (development VMs for %s)\n"
                    "Requires=bangerd-root.service\n"
                    "After=bangerd-root.service network.target\n"
                    "\n"
                    "[Service]\n"
                    "Type=simple\n"
                    "User=%s\n"
                    "ExecStart=%s/bin/bangerd --system --install %s --foreground\n"
                    "ExecReload=/bin/kill -HUP $MAINPID\n"
                    "Restart=on-failure\n"
                    "RestartSec=1\n"
                    "KillMode=process\n",
                    i->owner_user, i->owner_user, i->prefix, install_file);
        managed_dir(&sb, "Runtime", i->runtime_dir, "/run", "0700");
        if (below(i->runtime_dir, "/run"))
                strbuf_addstr(&sb, "RuntimeDirectoryPreserve=yes\n");
        managed_dir(&sb, "State", i->state_dir, "/var/lib", "0700");
        managed_dir(&sb, "Cache", i->cache_dir, "/var/cache", "0700");
        strbuf_addf(&sb,
                    "ReadWritePaths=%s %s %s\n"
                    "UMask=0077\n"
                    "NoNewPrivileges=yes\n"
                    "ProtectSystem=strict\n"
                    "ProtectHome=read-only\n"
                    "ProtectKernelModules=yes\n"
                    "ProtectKernelLogs=yes\n"
                    "ProtectControlGroups=yes\n"
                    "ProtectClock=yes\n"
                    "RestrictSUIDSGID=yes\n"
                    "RestrictRealtime=yes\n"
                    "RestrictNamespaces=yes\n"
                    "LockPersonality=yes\n"
                    "SystemCallArchitectures=native\n"
                    "CapabilityBoundingSet=\n"
                    "AmbientCapabilities=\n"
                    "\n"
                    "[Install]\n"
                    "WantedBy=multi-user.target\n",
                    i->state_dir, i->cache_dir, i->runtime_dir);
        return strbuf_detach(&sb, NULL);
}

char *system_unit_helper(const struct install_info *i, const char *install_file) {
        struct strbuf sb = STRBUF_INIT;
        strbuf_addf(&sb,
                    "# written by `banger system install`; `banger system uninstall` removes it\n"
                    "[Unit]\n"
                    "Description=banger root helper (the privileged operations of bangerd for %s)\n"
                    "Before=bangerd.service\n"
                    "\n"
                    "[Service]\n"
                    "Type=simple\n"
                    "ExecStart=%s/bin/bangerd-root --system --install %s\n"
                    "Restart=on-failure\n"
                    "RestartSec=1\n"
                    "# it cancels its own builds on SIGTERM and waits for them; nothing of a VM is its child\n"
                    "KillMode=process\n"
                    "SendSIGKILL=no\n"
                    "TimeoutStopSec=60\n",
                    i->owner_user, i->prefix, install_file);
        managed_dir(&sb, "Runtime", i->helper_runtime, "/run", "0711");
        if (below(i->helper_runtime, "/run"))
                strbuf_addstr(&sb, "RuntimeDirectoryPreserve=yes\n");
        strbuf_addf(&sb,
                    "ReadWritePaths=%s %s %s\n"
                    "UMask=0022\n"
                    "NoNewPrivileges=yes\n"
                    "ProtectSystem=strict\n"
                    "ProtectHome=yes\n"
                    "PrivateTmp=yes\n"
                    "ProtectKernelModules=yes\n"
                    "ProtectKernelLogs=yes\n"
                    "ProtectClock=yes\n"
                    "RestrictSUIDSGID=yes\n"
                    "RestrictRealtime=yes\n"
                    "LockPersonality=yes\n"
                    "SystemCallArchitectures=native\n"
                    "# links, TAPs, nft (NET_ADMIN); image builds: mmdebstrap's mounts and chroot, dpkg's\n"
                    "# owners, modes, device nodes and file capabilities, apt's sandbox user, mkfs reading\n"
                    "# every file; cancelling a build (KILL)\n"
                    "CapabilityBoundingSet=" SYSTEM_HELPER_CAPS "\n"
                    "\n"
                    "[Install]\n"
                    "WantedBy=multi-user.target\n",
                    i->state_dir, i->cache_dir, i->runtime_dir);
        return strbuf_detach(&sb, NULL);
}
