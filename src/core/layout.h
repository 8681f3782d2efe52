/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Where banger keeps things in user mode (XDG base directories):
 *   config   $XDG_CONFIG_HOME/banger/config.toml   (~/.config)
 *   state    $XDG_STATE_HOME/banger/               (~/.local/state)
 *            state.db, bangerd.log, bangerd.lock, vms/, images/, kernels/, ssh/
 *   cache    $XDG_CACHE_HOME/banger/               (~/.cache)
 *   runtime  $XDG_RUNTIME_DIR/banger/, else /tmp/banger-runtime-<uid>/
 *            bangerd.sock
 * layout_resolve() only computes paths; layout_prepare_runtime() and
 * layout_prepare_state() create and check directories.
 */

#include <sys/types.h>

struct layout {
        char *config_dir;
        char *config_file;
        char *state_dir;
        char *db_path;
        char *log_path;
        char *lock_path;
        char *vms_dir;
        char *images_dir;
        char *kernels_dir;
        char *ssh_dir;
        char *cache_dir;
        char *runtime_dir;
        char *socket_path;
};

/* getenv-like lookup, so tests can feed an environment. */
typedef const char *(*layout_getenv_fn)(const char *name);

/* 0, or -EINVAL with *ret_err when HOME is needed but missing/relative. */
int layout_resolve(struct layout *ret, layout_getenv_fn get_env, uid_t uid, char **ret_err);
/* The layout of a given set of directories (the system install's); the
 * files and subdirectories are derived as in layout_resolve. */
void layout_from_dirs(struct layout *ret, const char *config_file, const char *state_dir, const char *cache_dir,
                      const char *runtime_dir);
void layout_done(struct layout *l);

/* Creates the runtime dir (0700) or refuses one that is not ours, private and
 * a real directory. 0 or -errno with *ret_err. */
int layout_prepare_runtime(const struct layout *l, uid_t uid, char **ret_err);
/* Creates state (0700) and its subdirectories, and the cache dir. */
int layout_prepare_state(const struct layout *l, char **ret_err);
