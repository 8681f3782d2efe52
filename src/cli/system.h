/* SPDX-License-Identifier: MIT */
#pragma once

/* Pieces of the system install shared by `banger system` and `banger update`. */

#include <stdbool.h>
#include <sys/types.h>

#include "cli.h"
#include "install.h"

/* The install file this CLI reads ($BANGER_INSTALL_FILE or the default). */
const char *system_install_file(void);
char *system_bin(const struct install_info *i, const char *name);
char *system_helper_log(const struct install_info *i);
/* 0 when something accepts on the unix socket at path, else -errno. */
int system_probe_socket(const char *path);
/* The owner is in /dev/kvm's group (or there is no /dev/kvm). */
bool system_owner_in_kvm_group(const struct install_info *i);
/* The running helper's pid (from its pidfile, checked against its binary), or 0. */
pid_t system_helper_pid(const struct install_info *i);

/* banger, bangerd, bangerd-root into <prefix>/bin and banger-agent,
 * banger-init into <prefix>/lib/banger, each replaced atomically, taken from
 * from_dir (or from_dir/../lib/banger). */
int system_copy_binaries(struct cli_ctx *ctx, const char *from_dir, const struct install_info *i);
/* banger(1), banger-config(5), bangerd(8) into <prefix>/share/man/manN, as
 * the installed <prefix>/bin/banger renders them; 0644, each atomically. */
int system_write_man_pages(struct cli_ctx *ctx, const struct install_info *i);
int system_write_install(struct cli_ctx *ctx, const struct install_info *i, const char *file);
/* Stops (restart) and starts the two services, whichever their manager. */
int system_restart_services(struct cli_ctx *ctx, const struct install_info *i, const char *file);

/* The systemd units (system_units.c): the helper keeps only these capabilities. */
#define SYSTEM_HELPER_CAPS                                                                                    \
        "CAP_NET_ADMIN CAP_SYS_ADMIN CAP_SYS_CHROOT CAP_CHOWN CAP_FOWNER CAP_FSETID CAP_DAC_OVERRIDE "       \
        "CAP_DAC_READ_SEARCH CAP_MKNOD CAP_SETUID CAP_SETGID CAP_SETFCAP CAP_KILL"
char *system_unit_daemon(const struct install_info *i, const char *install_file);
char *system_unit_helper(const struct install_info *i, const char *install_file);
