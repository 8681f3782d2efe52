/* SPDX-License-Identifier: MIT */
#include "aptsources.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fsutil.h"
#include "macro.h"
#include "strbuf.h"

static char **split_ws(const char *s) {
        size_t n = 0;
        char **v = xcalloc(1, sizeof(char *));

        while (*s) {
                s += strspn(s, " \t\r\n");
                size_t k = strcspn(s, " \t\r\n");
                if (!k)
                        break;
                v = xrealloc(v, (n + 2) * sizeof(char *));
                v[n++] = xstrndup(s, k);
                v[n] = NULL;
                s += k;
        }
        return v;
}

static bool strv_contains(char *const *v, const char *s) {
        for (; v && *v; v++)
                if (strcmp(*v, s) == 0)
                        return true;
        return false;
}

static void push(struct apt_sources *out, struct apt_source *src) {
        out->items = xrealloc(out->items, (out->n + 1) * sizeof(*out->items));
        out->items[out->n++] = *src;
}

static void source_free(struct apt_source *s) {
        strv_free(s->uris);
        strv_free(s->suites);
        strv_free(s->components);
}

void aptsources_free(struct apt_sources *s) {
        for (size_t i = 0; i < s->n; i++)
                source_free(&s->items[i]);
        free(s->items);
        s->items = NULL;
        s->n = 0;
}

struct stanza {
        struct strbuf types, uris, suites, components, enabled;
        struct strbuf *last; /* field continuation lines append here */
};

static void stanza_reset(struct stanza *st) {
        strbuf_reset(&st->types);
        strbuf_reset(&st->uris);
        strbuf_reset(&st->suites);
        strbuf_reset(&st->components);
        strbuf_reset(&st->enabled);
        st->last = NULL;
}

static void stanza_flush(struct stanza *st, struct apt_sources *out) {
        if (st->types.len && st->uris.len && st->suites.len) {
                char **types = split_ws(st->types.buf);
                struct apt_source src = {
                        .deb = strv_contains(types, "deb"),
                        .enabled = !(st->enabled.len && (strncasecmp(st->enabled.buf, "no", 2) == 0 ||
                                                         strncasecmp(st->enabled.buf, "false", 5) == 0)),
                        .uris = split_ws(st->uris.buf),
                        .suites = split_ws(st->suites.buf),
                        .components = split_ws(st->components.buf),
                };
                strv_free(types);
                push(out, &src);
        }
        stanza_reset(st);
}

void aptsources_parse_deb822(const char *text, struct apt_sources *out) {
        struct stanza st = { STRBUF_INIT, STRBUF_INIT, STRBUF_INIT, STRBUF_INIT, STRBUF_INIT, NULL };
        const char *p = text;

        while (*p) {
                size_t n = strcspn(p, "\n");
                _cleanup_free_ char *line = xstrndup(p, n);
                p += n + (p[n] == '\n');

                size_t k = strlen(line);
                while (k && (line[k - 1] == '\r' || line[k - 1] == ' ' || line[k - 1] == '\t'))
                        line[--k] = '\0';
                if (line[0] == '#')
                        continue;
                if (k == 0) {
                        stanza_flush(&st, out);
                        continue;
                }
                if (line[0] == ' ' || line[0] == '\t') {
                        if (st.last) {
                                strbuf_addch(st.last, ' ');
                                strbuf_addstr(st.last, line);
                        }
                        continue;
                }
                char *colon = strchr(line, ':');
                if (!colon) {
                        st.last = NULL;
                        continue;
                }
                *colon = '\0';
                const char *val = colon + 1;
                struct strbuf *dst = NULL;
                if (strcasecmp(line, "Types") == 0)
                        dst = &st.types;
                else if (strcasecmp(line, "URIs") == 0)
                        dst = &st.uris;
                else if (strcasecmp(line, "Suites") == 0)
                        dst = &st.suites;
                else if (strcasecmp(line, "Components") == 0)
                        dst = &st.components;
                else if (strcasecmp(line, "Enabled") == 0)
                        dst = &st.enabled;
                st.last = dst;
                if (dst) {
                        strbuf_reset(dst);
                        val += strspn(val, " \t");
                        strbuf_addstr(dst, val);
                }
        }
        stanza_flush(&st, out);
        strbuf_release(&st.types);
        strbuf_release(&st.uris);
        strbuf_release(&st.suites);
        strbuf_release(&st.components);
        strbuf_release(&st.enabled);
}

void aptsources_parse_oneline(const char *text, struct apt_sources *out) {
        const char *p = text;

        while (*p) {
                size_t n = strcspn(p, "\n");
                _cleanup_free_ char *line = xstrndup(p, n);
                p += n + (p[n] == '\n');

                char *hash = strchr(line, '#');
                if (hash)
                        *hash = '\0';
                /* Options: "deb [arch=amd64 signed-by=...] uri suite comps" */
                char *open = strchr(line, '[');
                if (open) {
                        char *close = strchr(open, ']');
                        if (!close)
                                continue;
                        memset(open, ' ', (size_t) (close - open) + 1);
                }
                _cleanup_strv_free_ char **w = split_ws(line);
                size_t nw = 0;
                while (w[nw])
                        nw++;
                if (nw < 3 || (strcmp(w[0], "deb") != 0 && strcmp(w[0], "deb-src") != 0))
                        continue;
                struct apt_source src = {
                        .deb = strcmp(w[0], "deb") == 0,
                        .enabled = true,
                        .uris = xcalloc(2, sizeof(char *)),
                        .suites = xcalloc(2, sizeof(char *)),
                        .components = xcalloc(nw - 2, sizeof(char *)),
                };
                src.uris[0] = xstrdup(w[1]);
                src.suites[0] = xstrdup(w[2]);
                for (size_t i = 3; i < nw; i++)
                        src.components[i - 3] = xstrdup(w[i]);
                push(out, &src);
        }
}

static bool plain_suite(const char *s) {
        static const char *const bad[] = { "-security", "-updates", "-backports", "-proposed-updates" };
        size_t n = strlen(s);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                size_t k = strlen(bad[i]);
                if (n >= k && strcmp(s + n - k, bad[i]) == 0)
                        return false;
        }
        return !strchr(s, '/');
}

char *aptsources_pick_mirror(const struct apt_sources *s) {
        for (size_t i = 0; i < s->n; i++) {
                const struct apt_source *src = &s->items[i];
                bool suite_ok = false;

                if (!src->deb || !src->enabled || !strv_contains(src->components, "main"))
                        continue;
                for (char **su = src->suites; su && *su; su++)
                        if (plain_suite(*su))
                                suite_ok = true;
                if (!suite_ok)
                        continue;
                for (char **u = src->uris; u && *u; u++) {
                        if (strncmp(*u, "http://", 7) != 0 && strncmp(*u, "https://", 8) != 0)
                                continue;
                        char *r = xstrdup(*u);
                        size_t n = strlen(r);
                        while (n > 0 && r[n - 1] == '/')
                                r[--n] = '\0';
                        return r;
                }
        }
        return NULL;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static char *try_file(const char *path, bool deb822) {
        _cleanup_free_ char *text = NULL;
        struct apt_sources s = { 0 };
        size_t len;
        char *r;

        if (read_file(path, 1u << 20, &text, &len) < 0)
                return NULL;
        if (deb822)
                aptsources_parse_deb822(text, &s);
        else
                aptsources_parse_oneline(text, &s);
        r = aptsources_pick_mirror(&s);
        aptsources_free(&s);
        return r;
}

char *aptsources_read_host(const char *apt_dir, char **ret_origin) {
        _cleanup_free_ char *dpath = path_join(apt_dir, "sources.list.d");
        _cleanup_free_ char *main_list = path_join(apt_dir, "sources.list");
        char **names = NULL;
        size_t n = 0;
        char *found = NULL;
        DIR *d = opendir(dpath);

        if (d) {
                struct dirent *de;
                while ((de = readdir(d))) {
                        size_t k = strlen(de->d_name);
                        if ((k > 8 && strcmp(de->d_name + k - 8, ".sources") == 0) ||
                            (k > 5 && strcmp(de->d_name + k - 5, ".list") == 0)) {
                                names = xrealloc(names, (n + 1) * sizeof(char *));
                                names[n++] = xstrdup(de->d_name);
                        }
                }
                closedir(d);
                if (n)
                        qsort(names, n, sizeof(char *), cmp_str);
        }
        /* Deb822 files are the modern default; prefer them, then sources.list,
         * then other one-line files. */
        for (int pass = 0; pass < 3 && !found; pass++) {
                if (pass == 1) {
                        found = try_file(main_list, false);
                        if (found && ret_origin)
                                *ret_origin = xstrdup(main_list);
                        continue;
                }
                for (size_t i = 0; i < n && !found; i++) {
                        bool deb822 = strlen(names[i]) > 8 &&
                                      strcmp(names[i] + strlen(names[i]) - 8, ".sources") == 0;
                        if (deb822 != (pass == 0))
                                continue;
                        _cleanup_free_ char *p = path_join(dpath, names[i]);
                        found = try_file(p, deb822);
                        if (found && ret_origin)
                                *ret_origin = xstrdup(p);
                }
        }
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
        return found;
}
