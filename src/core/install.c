/* SPDX-License-Identifier: MIT */
#include "install.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "macro.h"
#include "strbuf.h"
#include "toml.h"

const char *install_file_path(layout_getenv_fn get_env) {
        const char *p = get_env ? get_env("BANGER_INSTALL_FILE") : NULL;
        return p && p[0] == '/' ? p : INSTALL_FILE_DEFAULT;
}

static char *rooted(const char *root, const char *path) {
        if (!root || !*root || strcmp(root, "/") == 0)
                return xstrdup(path);
        size_t n = strlen(root);
        while (n > 1 && root[n - 1] == '/')
                n--;
        return xasprintf("%.*s%s", (int) n, root, path);
}

void install_defaults(const char *root, struct install_info *ret) {
        *ret = (struct install_info) {
                .prefix = rooted(root, "/usr/local"), .config_file = rooted(root, "/etc/banger/config.toml"),
                .state_dir = rooted(root, "/var/lib/banger"), .cache_dir = rooted(root, "/var/cache/banger"),
                .runtime_dir = rooted(root, "/run/banger"), .helper_runtime = rooted(root, "/run/banger-root"),
        };
}

void install_info_done(struct install_info *i) {
        char **all[] = { &i->owner_user, &i->owner_home, &i->version,     &i->commit,      &i->built_at,
                         &i->installed_at, &i->prefix,  &i->config_file, &i->state_dir,  &i->cache_dir,
                         &i->runtime_dir, &i->helper_runtime, &i->manager };
        for (size_t k = 0; k < ELEMENTSOF(all); k++)
                free(*all[k]);
        *i = (struct install_info) { 0 };
}

/* Absolute, no "." or ".." components, no "//", at most PATH_MAX/2. */
static bool clean_path(const char *p) {
        if (!p || p[0] != '/' || strlen(p) > PATH_MAX / 2 || strstr(p, "//") || strstr(p, "/./") ||
            strstr(p, "/../"))
                return false;
        size_t n = strlen(p);
        return !(n >= 2 && strcmp(p + n - 2, "/.") == 0) && !(n >= 3 && strcmp(p + n - 3, "/..") == 0) &&
               !strpbrk(p, "\"\\\n");
}

static bool user_name_ok(const char *s) {
        return s && *s && strlen(s) <= 32 && s[0] != '-' &&
               strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == strlen(s);
}

struct field {
        const char *table, *key;
        bool is_int, is_path, required;
        size_t off;
};

#define S(t, k, f, path, req) { t, k, false, path, req, offsetof(struct install_info, f) }
#define I(t, k, f) { t, k, true, false, true, offsetof(struct install_info, f) }
static const struct field fields[] = {
        S("owner", "user", owner_user, false, true),  I("owner", "uid", owner_uid),
        I("owner", "gid", owner_gid),                  S("owner", "home", owner_home, true, true),
        S("build", "version", version, false, false),  S("build", "commit", commit, false, false),
        S("build", "built_at", built_at, false, false), S("build", "installed_at", installed_at, false, false),
        S("paths", "prefix", prefix, true, true),      S("paths", "config", config_file, true, true),
        S("paths", "state", state_dir, true, true),    S("paths", "cache", cache_dir, true, true),
        S("paths", "runtime", runtime_dir, true, true), S("paths", "helper_runtime", helper_runtime, true, true),
        S("service", "manager", manager, false, false),
};
#undef S
#undef I

static const struct field *find(const char *table, const char *key) {
        for (size_t k = 0; k < ELEMENTSOF(fields); k++)
                if (strcmp(fields[k].table, table) == 0 && strcmp(fields[k].key, key) == 0)
                        return &fields[k];
        return NULL;
}

static int set_field(const struct field *f, const struct toml_value *v, struct install_info *ret, char **ret_err) {
        char *base = (char *) ret + f->off;
        if (f->is_int) {
                if (v->type != TOML_INT || v->i < 1 || v->i > 0x7fffffff) {
                        *ret_err = xasprintf("line %u: %s.%s must be a positive integer (an owner is not root)", v->line,
                                             f->table, f->key);
                        return -EINVAL;
                }
                if (strcmp(f->key, "uid") == 0)
                        *(uid_t *) base = (uid_t) v->i;
                else
                        *(gid_t *) base = (gid_t) v->i;
                return 0;
        }
        if (v->type != TOML_STRING || (f->is_path && !clean_path(v->s))) {
                *ret_err = xasprintf("line %u: %s.%s must be %s", v->line, f->table, f->key,
                                     f->is_path ? "an absolute, normalised path" : "a string");
                return -EINVAL;
        }
        /* written back verbatim by install_format: nothing that needs escaping */
        for (const unsigned char *c = (const unsigned char *) v->s; *c; c++)
                if (*c < 0x20 || *c == 0x7f || *c == '"' || *c == '\\') {
                        *ret_err = xasprintf("line %u: %s.%s holds a control character, '\"' or '\\'", v->line,
                                             f->table, f->key);
                        return -EINVAL;
                }
        free(*(char **) base);
        *(char **) base = xstrdup(v->s);
        return 0;
}

static int parse_table(const char *name, const struct toml_table *t, struct install_info *ret, char **ret_err) {
        for (size_t k = 0; k < t->n; k++) {
                const struct field *f = find(name, t->kvs[k].key);
                if (!f) {
                        *ret_err = xasprintf("line %u: unknown key %s.%s", t->kvs[k].value.line, name, t->kvs[k].key);
                        return -EINVAL;
                }
                int r = set_field(f, &t->kvs[k].value, ret, ret_err);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int check_complete(const struct install_info *i, char **ret_err) {
        for (size_t k = 0; k < ELEMENTSOF(fields); k++) {
                const char *base = (const char *) i + fields[k].off;
                bool set = fields[k].is_int ? *(const uint32_t *) base != 0 : *(char *const *) base != NULL;
                if (fields[k].required && !set) {
                        *ret_err = xasprintf("%s.%s is missing", fields[k].table, fields[k].key);
                        return -EINVAL;
                }
        }
        if (i->manager && strcmp(i->manager, "systemd") != 0 && strcmp(i->manager, "direct") != 0) {
                *ret_err = xasprintf("service.manager '%s' is not systemd or direct", i->manager);
                return -EINVAL;
        }
        if (!user_name_ok(i->owner_user)) {
                *ret_err = xasprintf("owner.user '%s' is not a user name", i->owner_user);
                return -EINVAL;
        }
        return 0;
}

int install_parse(const char *text, size_t len, struct install_info *ret, char **ret_err) {
        struct toml_table *root = NULL;
        struct toml_error terr;
        struct install_info i = { 0 };
        int r = toml_parse(text, len, &root, &terr);
        if (r < 0) {
                *ret_err = xasprintf("line %u: %s", terr.line, terr.msg);
                return r;
        }
        for (size_t k = 0; r == 0 && k < root->n; k++) {
                const struct toml_kv *kv = &root->kvs[k];
                if (kv->value.type != TOML_TABLE) {
                        *ret_err = xasprintf("line %u: '%s' is not one of the tables owner, build, paths, service",
                                             kv->value.line, kv->key);
                        r = -EINVAL;
                } else
                        r = parse_table(kv->key, kv->value.table, &i, ret_err);
        }
        toml_table_free(root);
        if (r == 0)
                r = check_complete(&i, ret_err);
        if (r < 0) {
                install_info_done(&i);
                return r;
        }
        *ret = i;
        return 0;
}

char *install_format(const struct install_info *i) {
        struct strbuf sb = STRBUF_INIT;
        const char *table = NULL;
        strbuf_addstr(&sb, "# banger's system install: written by `banger system install`, kept by `banger update`\n");
        for (size_t k = 0; k < ELEMENTSOF(fields); k++) {
                const struct field *f = &fields[k];
                const char *base = (const char *) i + f->off;
                if (!table || strcmp(table, f->table) != 0) {
                        strbuf_addf(&sb, "%s[%s]\n", table ? "\n" : "", f->table);
                        table = f->table;
                }
                if (f->is_int)
                        strbuf_addf(&sb, "%s = %u\n", f->key, *(const uint32_t *) base);
                else if (*(char *const *) base)
                        strbuf_addf(&sb, "%s = \"%s\"\n", f->key, *(char *const *) base);
        }
        return strbuf_detach(&sb, NULL);
}

char *install_helper_socket(const struct install_info *i) {
        return path_join(i->helper_runtime, HELPER_SOCKET_NAME);
}

void install_layout(const struct install_info *i, struct layout *ret) {
        layout_from_dirs(ret, i->config_file, i->state_dir, i->cache_dir, i->runtime_dir);
}
