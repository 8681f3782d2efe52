/* SPDX-License-Identifier: MIT */
#include "layout.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "fsutil.h"
#include "macro.h"
#include "strbuf.h"

static char *xdg_dir(layout_getenv_fn get_env, const char *var, const char *home, const char *fallback) {
        const char *v = get_env(var);

        /* The XDG spec: relative values are invalid and must be ignored. */
        if (v && v[0] == '/')
                return path_join(v, "banger");
        return xasprintf("%s/%s/banger", home, fallback);
}

void layout_from_dirs(struct layout *ret, const char *config_file, const char *state_dir, const char *cache_dir,
                      const char *runtime_dir) {
        struct layout l = { 0 };
        l.config_file = xstrdup(config_file);
        l.config_dir = xstrdup(config_file);
        char *slash = strrchr(l.config_dir, '/');
        if (slash && slash != l.config_dir)
                *slash = '\0';
        l.state_dir = xstrdup(state_dir);
        l.db_path = path_join(l.state_dir, "state.db");
        l.log_path = path_join(l.state_dir, "bangerd.log");
        l.lock_path = path_join(l.state_dir, "bangerd.lock");
        l.vms_dir = path_join(l.state_dir, "vms");
        l.images_dir = path_join(l.state_dir, "images");
        l.kernels_dir = path_join(l.state_dir, "kernels");
        l.ssh_dir = path_join(l.state_dir, "ssh");
        l.cache_dir = xstrdup(cache_dir);
        l.runtime_dir = xstrdup(runtime_dir);
        l.socket_path = path_join(l.runtime_dir, "bangerd.sock");
        *ret = l;
}

int layout_resolve(struct layout *ret, layout_getenv_fn get_env, uid_t uid, char **ret_err) {
        const char *home = get_env("HOME");
        const char *rt = get_env("XDG_RUNTIME_DIR");

        if (!home || home[0] != '/') {
                bool all_set = true;
                const char *vars[] = { "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME" };
                for (size_t i = 0; i < ELEMENTSOF(vars); i++) {
                        const char *v = get_env(vars[i]);
                        if (!v || v[0] != '/')
                                all_set = false;
                }
                if (!all_set) {
                        *ret_err = xstrdup("HOME is not set to an absolute path and XDG directories are not all set");
                        return -EINVAL;
                }
                home = "/nonexistent";
        }
        _cleanup_free_ char *config_dir = xdg_dir(get_env, "XDG_CONFIG_HOME", home, ".config");
        _cleanup_free_ char *config_file = path_join(config_dir, "config.toml");
        _cleanup_free_ char *state = xdg_dir(get_env, "XDG_STATE_HOME", home, ".local/state");
        _cleanup_free_ char *cache = xdg_dir(get_env, "XDG_CACHE_HOME", home, ".cache");
        _cleanup_free_ char *runtime = rt && rt[0] == '/' ? path_join(rt, "banger")
                                                          : xasprintf("/tmp/banger-runtime-%u", (unsigned) uid);
        layout_from_dirs(ret, config_file, state, cache, runtime);
        return 0;
}

void layout_done(struct layout *l) {
        char **fields[] = { &l->config_dir, &l->config_file, &l->state_dir,   &l->db_path,
                            &l->log_path,   &l->lock_path,   &l->vms_dir,     &l->images_dir,
                            &l->kernels_dir, &l->ssh_dir,    &l->cache_dir,   &l->runtime_dir,
                            &l->socket_path };
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                free(*fields[i]);
                *fields[i] = NULL;
        }
}

int layout_prepare_runtime(const struct layout *l, uid_t uid, char **ret_err) {
        _cleanup_free_ char *why = NULL;
        _cleanup_free_ char *parent = xstrdup(l->runtime_dir);
        char *slash = strrchr(parent, '/');
        int r;

        /* $XDG_RUNTIME_DIR itself is the session manager's; only make ours. */
        if (slash && slash != parent) {
                *slash = '\0';
                struct stat st;
                if (stat(parent, &st) < 0) {
                        *ret_err = xasprintf("runtime parent %s: %s", parent, strerror(errno));
                        return -errno;
                }
        }
        r = ensure_private_dir(l->runtime_dir, uid, true, &why);
        if (r < 0) {
                *ret_err = why ? xasprintf("refusing runtime dir: %s", why)
                               : xasprintf("runtime dir %s: %s", l->runtime_dir, strerror(-r));
                return r;
        }
        return 0;
}

int layout_prepare_state(const struct layout *l, char **ret_err) {
        const char *dirs[] = { l->state_dir, l->vms_dir, l->images_dir, l->kernels_dir, l->ssh_dir, l->cache_dir };
        int r;

        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                r = mkdir_p(dirs[i], 0700);
                if (r < 0) {
                        *ret_err = xasprintf("cannot create %s: %s", dirs[i], strerror(-r));
                        return r;
                }
        }
        return 0;
}
