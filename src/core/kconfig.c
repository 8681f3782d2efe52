/* SPDX-License-Identifier: MIT */
#include "kconfig.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "strbuf.h"

/* One line of a fragment or a .config: the symbol and its value ("n" for
 * "# CONFIG_X is not set"). false: no setting (a comment, a blank line). */
static bool setting(const char *line, size_t len, const char **ret_sym, size_t *ret_symlen, const char **ret_val,
                    size_t *ret_vallen) {
        static const char not_set[] = " is not set";
        const char *sym = line;
        if (len > 2 && line[0] == '#' && line[1] == ' ' && strncmp(line + 2, "CONFIG_", 7) == 0) {
                size_t n = strspn(line + 2, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_");
                if (n <= 7 || len != 2 + n + strlen(not_set) || strncmp(line + 2 + n, not_set, strlen(not_set)) != 0)
                        return false;
                *ret_sym = line + 2, *ret_symlen = n, *ret_val = "n", *ret_vallen = 1;
                return true;
        }
        if (len < 8 || strncmp(line, "CONFIG_", 7) != 0)
                return false;
        size_t n = strspn(sym, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_");
        if (n <= 7 || n >= len || sym[n] != '=')
                return false;
        *ret_sym = sym, *ret_symlen = n, *ret_val = sym + n + 1, *ret_vallen = len - n - 1;
        return true;
}

/* The value the config gives sym ("n" when it does not set it). */
static void config_value(const char *config, size_t clen, const char *sym, size_t symlen, const char **ret_val,
                         size_t *ret_vallen) {
        *ret_val = "n", *ret_vallen = 1;
        for (size_t off = 0; off < clen;) {
                const char *line = config + off, *nl = memchr(line, '\n', clen - off);
                size_t len = nl ? (size_t) (nl - line) : clen - off;
                const char *s, *v;
                size_t sl, vl;
                off += len + 1;
                if (setting(line, len, &s, &sl, &v, &vl) && sl == symlen && memcmp(s, sym, sl) == 0) {
                        *ret_val = v, *ret_vallen = vl;
                        return;
                }
        }
}

static bool blank_or_comment(const char *line, size_t len) {
        while (len && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r'))
                len--;
        return len == 0 || line[0] == '#';
}

int kconfig_check_fragment(const char *fragment, size_t flen, const char *config, size_t clen,
                           struct kconfig_check *ret) {
        struct strbuf sb = STRBUF_INIT;
        *ret = (struct kconfig_check) { 0 };
        for (size_t off = 0; off < flen;) {
                const char *line = fragment + off, *nl = memchr(line, '\n', flen - off);
                size_t len = nl ? (size_t) (nl - line) : flen - off;
                const char *sym, *want, *got;
                size_t sl, wl, gl;
                off += len + 1;
                if (!setting(line, len, &sym, &sl, &want, &wl)) {
                        if (blank_or_comment(line, len) && strncmp(line, "# CONFIG_", 9) != 0)
                                continue;
                        strbuf_release(&sb);
                        strbuf_addf(&sb, "%.*s", (int) len, line);
                        ret->report = strbuf_detach(&sb, NULL);
                        return -EBADMSG;
                }
                ret->options++;
                config_value(config, clen, sym, sl, &got, &gl);
                bool want_off = wl == 1 && want[0] == 'n', got_off = gl == 1 && got[0] == 'n';
                if (want_off ? got_off : (wl == gl && memcmp(want, got, wl) == 0))
                        continue;
                ret->dropped++;
                strbuf_addf(&sb, "%s%.*s=%.*s (got: %s%.*s)", sb.len ? ", " : "", (int) sl, sym, (int) wl, want,
                            got_off ? "not set" : "", got_off ? 0 : (int) gl, got);
        }
        ret->report = sb.len ? strbuf_detach(&sb, NULL) : xstrdup("");
        strbuf_release(&sb);
        return 0;
}

void kconfig_check_done(struct kconfig_check *c) {
        if (c)
                free(c->report);
}
