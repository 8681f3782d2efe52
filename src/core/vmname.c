/* SPDX-License-Identifier: MIT */
#include "vmname.h"

#include <errno.h>
#include <string.h>
#include <stdint.h>

#include "ids.h"
#include "macro.h"
#include "strbuf.h"

/* Go's %q for a string: double quotes, backslash escapes for '"', '\\' and
 * control bytes; printable UTF-8 stays as it is. */
static char *quote(const char *s) {
        struct strbuf sb = STRBUF_INIT;
        strbuf_addch(&sb, '"');
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if (*p == '"' || *p == '\\')
                        strbuf_addf(&sb, "\\%c", *p);
                else if (*p == '\n')
                        strbuf_addstr(&sb, "\\n");
                else if (*p == '\t')
                        strbuf_addstr(&sb, "\\t");
                else if (*p < 0x20 || *p == 0x7f)
                        strbuf_addf(&sb, "\\x%02x", *p);
                else
                        strbuf_addch(&sb, (char) *p);
        }
        strbuf_addch(&sb, '"');
        return strbuf_detach(&sb, NULL);
}

/* Go's %q for the rune starting at s (UTF-8 sequences are kept whole). */
static char *quote_rune(const char *s) {
        unsigned char c = (unsigned char) *s;
        size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
        for (size_t i = 1; i < n; i++)
                if (((unsigned char) s[i] & 0xC0) != 0x80)
                        n = 1;
        if (n > 1)
                return xasprintf("'%.*s'", (int) n, s);
        if (c == '\'' || c == '\\')
                return xasprintf("'\\%c'", c);
        if (c == '\n')
                return xstrdup("'\\n'");
        if (c == '\t')
                return xstrdup("'\\t'");
        if (c < 0x20 || c >= 0x7f)
                return xasprintf("'\\x%02x'", c);
        return xasprintf("'%c'", c);
}

int vm_name_validate(const char *name, char **ret_err) {
        if (!name || !*name) {
                *ret_err = xstrdup("vm name is required");
                return -EINVAL;
        }
        _cleanup_free_ char *q = quote(name);
        size_t len = strlen(name);
        if (len > VM_NAME_MAX) {
                *ret_err = xasprintf("vm name %s is %zu characters; max is %d (DNS label limit)", q, len, VM_NAME_MAX);
                return -EINVAL;
        }
        if (name[0] == '-' || name[len - 1] == '-') {
                *ret_err = xasprintf("vm name %s cannot start or end with '-'", q);
                return -EINVAL;
        }
        for (size_t i = 0; i < len; i++) {
                char c = name[i];
                if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')
                        continue;
                _cleanup_free_ char *r = quote_rune(name + i);
                *ret_err = xasprintf("vm name %s has invalid character %s at position %zu (allowed: lowercase a-z, "
                                     "0-9, '-')",
                                     q, r, i);
                return -EINVAL;
        }
        return 0;
}

static const char *const adjectives[] = {
        "amber", "bold",  "brisk", "calm",   "clever", "cosmic", "crisp",  "dapper", "eager", "fancy",
        "gentle", "happy", "hazy",  "jolly",  "keen",   "lively", "lucky",  "mellow", "merry", "nimble",
        "noble", "plucky", "proud", "quick",  "quiet",  "rapid",  "rustic", "shiny",  "silent", "snappy",
        "solid", "steady", "sunny", "swift",  "tidy",   "vivid",  "warm",   "witty",  "zesty",  "zippy",
};
static const char *const nouns[] = {
        "badger", "beacon", "cedar",  "comet",  "condor", "falcon", "fjord",  "gecko",  "harbor", "heron",
        "island", "jaguar", "kestrel", "lagoon", "lantern", "lynx",  "maple",  "meadow", "nebula", "otter",
        "panda",  "pebble", "pine",   "quartz", "raven",  "reef",   "river",  "rocket", "saffron", "sparrow",
        "summit", "tiger",  "tundra", "valley", "walrus", "willow", "wombat", "yak",    "zebra",  "zephyr",
};

char *vm_name_generate(void) {
        uint32_t r;
        random_bytes(&r, sizeof(r));
        return xasprintf("%s-%s", adjectives[r % ELEMENTSOF(adjectives)],
                         nouns[(r / ELEMENTSOF(adjectives)) % ELEMENTSOF(nouns)]);
}

bool vm_id_like(const char *s) {
        size_t n = s ? strlen(s) : 0;
        return n >= 1 && n <= 16 && strspn(s, "0123456789abcdef") == n;
}

char *vm_id_generate(void) {
        return random_hex(8);
}
