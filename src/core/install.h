/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The system install (`banger system install`): who owns it and where
 * everything lives, in /etc/banger/install.toml ($BANGER_INSTALL_FILE
 * elsewhere, for tests and for installs under a --root). The CLI, bangerd
 * and the root helper all read it; only `system install` and `update`
 * write it.
 *
 *   [owner]  user, uid, gid, home
 *   [build]  version, commit, built_at, installed_at
 *   [paths]  prefix, config, state, cache, runtime, helper_runtime
 *   [service] manager ("systemd" or "direct")
 *
 * Parsing is pure (no I/O): safe to fuzz and to run in the root helper.
 */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "layout.h"

#define INSTALL_FILE_DEFAULT "/etc/banger/install.toml"
#define HELPER_SOCKET_NAME "bangerd-root.sock"

struct install_info {
        char *owner_user;
        uid_t owner_uid;
        gid_t owner_gid;
        char *owner_home;
        char *version, *commit, *built_at, *installed_at;
        char *prefix;         /* binaries in <prefix>/bin, guest programs in <prefix>/lib/banger */
        char *config_file;    /* the daemon's and the helper's config.toml */
        char *state_dir;
        char *cache_dir;
        char *runtime_dir;    /* bangerd's socket */
        char *helper_runtime; /* the helper's socket (dir 0711) */
        char *manager;        /* "systemd" (units in /etc/systemd/system) or "direct" (pidfiles); NULL: direct */
};

static inline bool install_uses_systemd(const struct install_info *i) {
        return i->manager && i->manager[0] == 's';
}

/* $BANGER_INSTALL_FILE when set (absolute), else the default. */
const char *install_file_path(layout_getenv_fn get_env);

/* The defaults below `root` ("" or "/" for the real system). */
void install_defaults(const char *root, struct install_info *ret);
/* 0, or -EINVAL with *ret_err naming the field. Unknown keys are errors. */
int install_parse(const char *text, size_t len, struct install_info *ret, char **ret_err);
char *install_format(const struct install_info *i);
void install_info_done(struct install_info *i);

char *install_helper_socket(const struct install_info *i);
/* The daemon's directories in system mode. */
void install_layout(const struct install_info *i, struct layout *ret);
