/* SPDX-License-Identifier: MIT */
#include "oci_auth.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <strings.h>

#include "base64.h"
#include "jsonx.h"
#include "macro.h"
#include "strbuf.h"

void www_auth_done(struct www_auth *a) {
        free(a->scheme);
        free(a->realm);
        free(a->service);
        free(a->scope);
        *a = (struct www_auth) { 0 };
}

/* One name=value (value a token or a quoted string with \-escapes) at *p;
 * *p moves past it and a following comma. */
static int auth_param(const char **p, char **ret_name, char **ret_value) {
        const char *s = *p;
        size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
        if (n == 0 || s[n] != '=')
                return -EINVAL;
        struct strbuf v = STRBUF_INIT;
        const char *c = s + n + 1;
        if (*c == '"') {
                for (c++; *c && *c != '"'; c++) {
                        if (*c == '\\' && c[1])
                                c++;
                        if ((unsigned char) *c < 0x20 || *c == 0x7f || v.len >= 4096) {
                                strbuf_release(&v);
                                return -EINVAL;
                        }
                        strbuf_addch(&v, *c);
                }
                if (*c++ != '"') {
                        strbuf_release(&v);
                        return -EINVAL;
                }
        } else {
                size_t k = strcspn(c, ", \t");
                for (size_t i = 0; i < k; i++)
                        if ((unsigned char) c[i] < 0x20 || c[i] == 0x7f || c[i] == '"') {
                                strbuf_release(&v);
                                return -EINVAL;
                        }
                strbuf_add(&v, c, k);
                c += k;
        }
        while (*c == ' ' || *c == '\t')
                c++;
        if (*c == ',')
                c++;
        while (*c == ' ' || *c == '\t')
                c++;
        *ret_name = xstrndup(s, n);
        *ret_value = strbuf_detach(&v, NULL);
        *p = c;
        return 0;
}

int www_auth_parse(const char *header, struct www_auth *ret) {
        struct www_auth a = { 0 };
        const char *p = header;
        while (*p == ' ')
                p++;
        size_t n = strcspn(p, " ");
        if (n == 6 && strncasecmp(p, "bearer", 6) == 0)
                a.scheme = xstrdup("bearer");
        else if (n == 5 && strncasecmp(p, "basic", 5) == 0)
                a.scheme = xstrdup("basic");
        else
                return -EINVAL;
        p += n;
        while (*p == ' ')
                p++;
        while (*p) {
                char *name = NULL, *value = NULL;
                if (auth_param(&p, &name, &value) < 0) {
                        www_auth_done(&a);
                        return -EINVAL;
                }
                char **slot = strcasecmp(name, "realm") == 0     ? &a.realm
                              : strcasecmp(name, "service") == 0 ? &a.service
                              : strcasecmp(name, "scope") == 0   ? &a.scope
                                                                 : NULL;
                if (slot) {
                        free(*slot);
                        *slot = value;
                } else
                        free(value);
                free(name);
        }
        bool url = a.realm && (strncmp(a.realm, "https://", 8) == 0 || strncmp(a.realm, "http://", 7) == 0);
        if (strcmp(a.scheme, "bearer") == 0 && !url) {
                www_auth_done(&a);
                return -EINVAL;
        }
        *ret = a;
        return 0;
}

static int entry_userpwd(json_t *e, char **ret) {
        const char *auth = json_string_value(json_object_get(e, "auth"));
        if (auth && *auth) {
                unsigned char *raw = NULL;
                size_t len = 0;
                if (base64_decode(auth, strlen(auth), &raw, &len) < 0 || !memchr(raw, ':', len) ||
                    memchr(raw, '\0', len)) {
                        free(raw);
                        return -EINVAL;
                }
                *ret = (char *) raw;
                return 1;
        }
        const char *u = json_string_value(json_object_get(e, "username"));
        const char *pw = json_string_value(json_object_get(e, "password"));
        if (u && pw && *u && !strchr(u, ':')) {
                *ret = xasprintf("%s:%s", u, pw);
                return 1;
        }
        return 0;
}

int docker_config_auth(const char *json, size_t len, const char *registry, char **ret_userpwd) {
        _cleanup_json_ json_t *j = json_loadb(json, len, 0, NULL);
        if (!json_is_object(j))
                return -EINVAL;
        json_t *auths = json_object_get(j, "auths");
        if (!auths)
                return 0;
        if (!json_is_object(auths))
                return -EINVAL;
        bool hub = strcmp(registry, "docker.io") == 0;
        _cleanup_free_ char *https = xasprintf("https://%s", registry), *http = xasprintf("http://%s", registry);
        const char *keys[] = { registry, https, http, hub ? "https://index.docker.io/v1/" : NULL,
                               hub ? "index.docker.io" : NULL };
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                json_t *e = keys[i] ? json_object_get(auths, keys[i]) : NULL;
                if (!e)
                        continue;
                if (!json_is_object(e))
                        return -EINVAL;
                int r = entry_userpwd(e, ret_userpwd);
                if (r != 0)
                        return r;
        }
        return 0;
}
