/* SPDX-License-Identifier: MIT */
/* What a pulled image needs to boot under banger, put in its ext4. */
#include "inject.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disk/workdisk.h"
#include "parse.h"
#include "strbuf.h"

/* "export K='V'" lines for login shells (Debian's /etc/profile resets PATH). */
static char *profile_env(const struct oci_config *c) {
        struct strbuf sb = STRBUF_INIT;
        strbuf_addstr(&sb, "# the image config's Env, written by banger image pull\n");
        for (size_t i = 0; i < c->n_env; i++) {
                const char *eq = strchr(c->env[i], '=');
                size_t kl = eq ? (size_t) (eq - c->env[i]) : 0;
                if (!kl || strspn(c->env[i], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") != kl ||
                    (c->env[i][0] >= '0' && c->env[i][0] <= '9'))
                        continue;
                strbuf_addf(&sb, "export %.*s='", (int) kl, c->env[i]);
                for (const char *v = eq + 1; *v; v++)
                        if (*v == '\'')
                                strbuf_addstr(&sb, "'\\''");
                        else
                                strbuf_addch(&sb, *v);
                strbuf_addstr(&sb, "'\n");
        }
        return strbuf_detach(&sb, NULL);
}

/* `user` (a name, or a number) in an /etc/passwd text (libc's parser over
 * the bytes read from the image): uid, primary gid, home. A number not in
 * the file is that uid with gid 0 and home "/", as Docker has it. */
static int passwd_lookup(char *text, size_t len, const char *user, uint32_t *uid, uint32_t *gid, char **home) {
        int64_t num;
        bool numeric = parse_int_range(user, 0, 4294967294LL, &num) == 0;
        FILE *f = text ? fmemopen(text, len, "r") : NULL;
        struct passwd pw, *res = NULL;
        char buf[4096];
        int rc = numeric ? 0 : -ENOENT;
        *uid = numeric ? (uint32_t) num : 0, *gid = 0, *home = xstrdup("/");
        while (f && fgetpwent_r(f, &pw, buf, sizeof(buf), &res) == 0 && res) {
                if (numeric ? pw.pw_uid != (uid_t) num : strcmp(pw.pw_name, user) != 0)
                        continue;
                *uid = pw.pw_uid, *gid = pw.pw_gid;
                free(*home);
                *home = xstrdup(pw.pw_dir && *pw.pw_dir ? pw.pw_dir : "/");
                rc = 0;
                break;
        }
        if (f)
                fclose(f);
        return rc;
}

/* `group` (a name, or a number) in an /etc/group text. */
static int group_lookup(char *text, size_t len, const char *group, uint32_t *gid) {
        int64_t num;
        if (parse_int_range(group, 0, 4294967294LL, &num) == 0) {
                *gid = (uint32_t) num;
                return 0;
        }
        FILE *f = text ? fmemopen(text, len, "r") : NULL;
        struct group gr, *res = NULL;
        char buf[8192];
        int rc = -ENOENT;
        while (f && fgetgrent_r(f, &gr, buf, sizeof(buf), &res) == 0 && res)
                if (strcmp(gr.gr_name, group) == 0) {
                        *gid = gr.gr_gid;
                        rc = 0;
                        break;
                }
        if (f)
                fclose(f);
        return rc;
}

/* The config's User ("name", "uid", "name:group", "uid:gid") as numbers and
 * a home, from the image's own /etc/passwd and /etc/group. */
static int resolve_user(struct workdisk *w, const char *user, json_t *run, struct op_error *e) {
        _cleanup_free_ char *u = xstrdup(user), *passwd = NULL, *group = NULL, *home = NULL;
        size_t plen = 0, glen = 0;
        char *g = strchr(u, ':');
        if (g)
                *g++ = '\0';
        struct op_error ignore = OP_ERROR_INIT;
        if (workdisk_read(w, "/etc/passwd", 1u << 20, &passwd, &plen, &ignore) < 0) /* numbers only, then */
                op_error_done(&ignore);
        if (g && workdisk_read(w, "/etc/group", 1u << 20, &group, &glen, &ignore) < 0)
                op_error_done(&ignore);
        uint32_t uid = 0, gid = 0;
        if (passwd_lookup(passwd, plen, u, &uid, &gid, &home) < 0)
                return op_fail_as(e, RPC_BAD_REQUEST, -EINVAL, "the image's User '%s' is not in its /etc/passwd", user);
        if (g && group_lookup(group, glen, g, &gid) < 0)
                return op_fail_as(e, RPC_BAD_REQUEST, -EINVAL, "the image's User '%s': no group '%s' in its /etc/group",
                                  user, g);
        json_object_set_new(run, "uid", json_integer(uid));
        json_object_set_new(run, "gid", json_integer(gid));
        json_object_set_new(run, "home", json_string(home));
        return 0;
}

#define DEFAULT_PROFILE \
        "# written by banger image pull: the image had no /etc/profile\n" \
        "for f in /etc/profile.d/*.sh; do [ -r \"$f\" ] && . \"$f\"; done\nunset f\n"

int oci_inject(const char *rootfs, const char *agent_bin, const struct oci_config *cfg, json_t **ret_run,
               struct op_error *e) {
        static const char *const dirs[] = { "/proc", "/sys", "/dev", "/run", "/tmp", "/root", "/etc",
                                            "/etc/profile.d", "/usr", "/usr/local", "/usr/local/bin" };
        static const mode_t modes[] = { 0555, 0555, 0755, 0755, 01777, 0700, 0755, 0755, 0755, 0755, 0755 };
        struct workdisk *w = NULL;
        int rc = workdisk_open(rootfs, &w, e);
        for (size_t i = 0; rc == 0 && i < ELEMENTSOF(dirs); i++)
                rc = workdisk_mkdir(w, dirs[i], modes[i], e);
        if (rc == 0 && !agent_bin)
                rc = op_fail(e, -ENOENT, "banger-agent not found beside bangerd: the image would have no agent");
        if (rc == 0)
                rc = workdisk_put(w, "/usr/local/bin/banger-agent", agent_bin, 0, 0, e);
        if (rc == 0) {
                _cleanup_free_ char *env = profile_env(cfg);
                rc = workdisk_put_data(w, "/etc/profile.d/00-banger-image-env.sh", env, strlen(env), 0644, e);
        }
        /* an image without /etc/profile (busybox): one that reads profile.d,
         * so login shells (`vm run -- CMD`) see the Env too */
        _cleanup_free_ char *prof = NULL;
        size_t plen = 0;
        struct op_error none = OP_ERROR_INIT;
        if (rc == 0 && workdisk_read(w, "/etc/profile", 1u << 20, &prof, &plen, &none) == -ENOENT)
                rc = workdisk_put_data(w, "/etc/profile", DEFAULT_PROFILE, strlen(DEFAULT_PROFILE), 0644, e);
        op_error_done(&none);
        *ret_run = oci_config_run_json(cfg);
        if (rc == 0 && cfg->user)
                rc = resolve_user(w, cfg->user, *ret_run, e);
        int rc2 = workdisk_close(w, rc == 0 ? e : NULL);
        return rc < 0 ? rc : rc2;
}
