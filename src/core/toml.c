/* SPDX-License-Identifier: MIT */
#include "toml.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "strbuf.h"

struct cursor {
        const char *p;
        const char *end;
        unsigned line;
        struct toml_error *err;
};

static const char *const type_names[_TOML_TYPE_MAX] = {
        [TOML_STRING] = "string",
        [TOML_INT] = "integer",
        [TOML_BOOL] = "boolean",
        [TOML_TABLE] = "table",
        [TOML_ARRAY_OF_TABLES] = "array of tables",
};

const char *toml_type_to_string(enum toml_type t) {
        return t < _TOML_TYPE_MAX ? type_names[t] : "unknown";
}

_printf_(2, 3) static int fail(struct cursor *c, const char *fmt, ...) {
        va_list ap;

        c->err->line = c->line;
        va_start(ap, fmt);
        vsnprintf(c->err->msg, sizeof(c->err->msg), fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static void value_free(struct toml_value *v) {
        switch (v->type) {
        case TOML_STRING:
                free(v->s);
                break;
        case TOML_TABLE:
                toml_table_free(v->table);
                break;
        case TOML_ARRAY_OF_TABLES:
                for (size_t i = 0; i < v->array.n; i++)
                        toml_table_free(v->array.items[i]);
                free(v->array.items);
                break;
        default:
                break;
        }
}

void toml_table_free(struct toml_table *t) {
        if (!t)
                return;
        for (size_t i = 0; i < t->n; i++) {
                free(t->kvs[i].key);
                value_free(&t->kvs[i].value);
        }
        free(t->kvs);
        free(t);
}

const struct toml_value *toml_table_get(const struct toml_table *t, const char *key) {
        for (size_t i = 0; t && i < t->n; i++)
                if (strcmp(t->kvs[i].key, key) == 0)
                        return &t->kvs[i].value;
        return NULL;
}

static struct toml_value *table_add(struct toml_table *t, char *key, unsigned line) {
        if (t->n == t->alloc) {
                t->alloc = t->alloc ? t->alloc * 2 : 8;
                t->kvs = xrealloc(t->kvs, t->alloc * sizeof(*t->kvs));
        }
        t->kvs[t->n] = (struct toml_kv) { .key = key, .value = { .line = line } };
        return &t->kvs[t->n++].value;
}

static bool at_end(const struct cursor *c) {
        return c->p >= c->end;
}

static void skip_ws(struct cursor *c) {
        while (!at_end(c) && (*c->p == ' ' || *c->p == '\t'))
                c->p++;
}

/* After a statement: optional comment, then end of line or input. */
static int expect_eol(struct cursor *c) {
        skip_ws(c);
        if (!at_end(c) && *c->p == '#') {
                while (!at_end(c) && *c->p != '\n') {
                        unsigned char ch = (unsigned char) *c->p;
                        if ((ch < 0x20 && ch != '\t' && ch != '\r') || ch == 0x7f)
                                return fail(c, "control character in comment");
                        c->p++;
                }
        }
        if (!at_end(c) && *c->p == '\r')
                c->p++;
        if (at_end(c))
                return 0;
        if (*c->p != '\n')
                return fail(c, "unexpected '%c' after value", *c->p);
        c->p++;
        c->line++;
        return 0;
}

static bool is_bare_key_char(char ch) {
        return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' ||
               ch == '-';
}

static void utf8_put(struct strbuf *sb, uint32_t cp) {
        if (cp < 0x80)
                strbuf_addch(sb, (char) cp);
        else if (cp < 0x800) {
                strbuf_addch(sb, (char) (0xC0 | (cp >> 6)));
                strbuf_addch(sb, (char) (0x80 | (cp & 0x3F)));
        } else if (cp < 0x10000) {
                strbuf_addch(sb, (char) (0xE0 | (cp >> 12)));
                strbuf_addch(sb, (char) (0x80 | ((cp >> 6) & 0x3F)));
                strbuf_addch(sb, (char) (0x80 | (cp & 0x3F)));
        } else {
                strbuf_addch(sb, (char) (0xF0 | (cp >> 18)));
                strbuf_addch(sb, (char) (0x80 | ((cp >> 12) & 0x3F)));
                strbuf_addch(sb, (char) (0x80 | ((cp >> 6) & 0x3F)));
                strbuf_addch(sb, (char) (0x80 | (cp & 0x3F)));
        }
}

static int parse_unicode_escape(struct cursor *c, int digits, struct strbuf *sb) {
        uint32_t cp = 0;

        if (c->end - c->p < digits)
                return fail(c, "truncated unicode escape");
        for (int i = 0; i < digits; i++) {
                char h = *c->p++;
                cp <<= 4;
                if (h >= '0' && h <= '9')
                        cp |= (uint32_t) (h - '0');
                else if (h >= 'a' && h <= 'f')
                        cp |= (uint32_t) (h - 'a' + 10);
                else if (h >= 'A' && h <= 'F')
                        cp |= (uint32_t) (h - 'A' + 10);
                else
                        return fail(c, "bad hex digit in unicode escape");
        }
        if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
                return fail(c, "invalid unicode scalar U+%04X", cp);
        utf8_put(sb, cp);
        return 0;
}

static int parse_basic_string(struct cursor *c, char **ret) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        int r;

        c->p++; /* opening quote */
        if (c->end - c->p >= 2 && c->p[0] == '"' && c->p[1] == '"')
                return fail(c, "multi-line strings are not supported");
        for (;;) {
                if (at_end(c) || *c->p == '\n')
                        return fail(c, "unterminated string");
                unsigned char ch = (unsigned char) *c->p;
                if (ch == '"') {
                        c->p++;
                        break;
                }
                if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                        return fail(c, "control character in string");
                if (ch != '\\') {
                        strbuf_addch(&sb, (char) ch);
                        c->p++;
                        continue;
                }
                c->p++;
                if (at_end(c))
                        return fail(c, "unterminated escape");
                char e = *c->p++;
                switch (e) {
                case 'b': strbuf_addch(&sb, '\b'); break;
                case 't': strbuf_addch(&sb, '\t'); break;
                case 'n': strbuf_addch(&sb, '\n'); break;
                case 'f': strbuf_addch(&sb, '\f'); break;
                case 'r': strbuf_addch(&sb, '\r'); break;
                case '"': strbuf_addch(&sb, '"'); break;
                case '\\': strbuf_addch(&sb, '\\'); break;
                case 'u':
                        if ((r = parse_unicode_escape(c, 4, &sb)) < 0)
                                return r;
                        break;
                case 'U':
                        if ((r = parse_unicode_escape(c, 8, &sb)) < 0)
                                return r;
                        break;
                default:
                        return fail(c, "invalid escape '\\%c'", e);
                }
        }
        *ret = strbuf_detach(&sb, NULL);
        return 0;
}

static int parse_literal_string(struct cursor *c, char **ret) {
        const char *start;

        c->p++;
        if (c->end - c->p >= 2 && c->p[0] == '\'' && c->p[1] == '\'')
                return fail(c, "multi-line strings are not supported");
        start = c->p;
        for (;;) {
                if (at_end(c) || *c->p == '\n')
                        return fail(c, "unterminated string");
                unsigned char ch = (unsigned char) *c->p;
                if (ch == '\'')
                        break;
                if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                        return fail(c, "control character in string");
                c->p++;
        }
        *ret = xstrndup(start, (size_t) (c->p - start));
        c->p++;
        return 0;
}

static int parse_key(struct cursor *c, char **ret) {
        const char *start = c->p;

        if (at_end(c))
                return fail(c, "expected a key");
        if (*c->p == '"')
                return parse_basic_string(c, ret);
        if (*c->p == '\'')
                return parse_literal_string(c, ret);
        while (!at_end(c) && is_bare_key_char(*c->p))
                c->p++;
        if (c->p == start)
                return fail(c, "expected a key, found '%c'", *c->p);
        *ret = xstrndup(start, (size_t) (c->p - start));
        return 0;
}

static int parse_integer(struct cursor *c, int64_t *ret) {
        const char *start = c->p;
        bool neg = false, prev_digit = false;
        uint64_t v = 0, limit;
        size_t ndigits = 0;
        char first = 0;

        if (*c->p == '+' || *c->p == '-') {
                neg = *c->p == '-';
                c->p++;
        }
        while (!at_end(c) && ((*c->p >= '0' && *c->p <= '9') || *c->p == '_')) {
                if (*c->p == '_') {
                        if (!prev_digit || c->p + 1 >= c->end || c->p[1] < '0' || c->p[1] > '9')
                                return fail(c, "misplaced '_' in integer");
                        prev_digit = false;
                        c->p++;
                        continue;
                }
                if (ndigits == 0)
                        first = *c->p;
                limit = neg ? (uint64_t) INT64_MAX + 1 : (uint64_t) INT64_MAX;
                uint64_t d = (uint64_t) (*c->p - '0');
                if (v > (limit - d) / 10)
                        return fail(c, "integer out of range");
                v = v * 10 + d;
                ndigits++;
                prev_digit = true;
                c->p++;
        }
        if (ndigits == 0)
                return fail(c, "invalid value");
        if (first == '0' && ndigits > 1)
                return fail(c, "leading zeros are not allowed in integers (use a string for octal modes)");
        if (!at_end(c) && (*c->p == '.' || *c->p == 'e' || *c->p == 'E'))
                return fail(c, "floats are not supported");
        if (!at_end(c) && (*c->p == 'x' || *c->p == 'o' || *c->p == 'b') && c->p - start == 1)
                return fail(c, "only decimal integers are supported");
        if (!at_end(c) && (*c->p == '-' || *c->p == ':'))
                return fail(c, "dates and times are not supported");
        *ret = neg ? (int64_t) (0 - v) : (int64_t) v;
        return 0;
}

static int parse_value(struct cursor *c, struct toml_value *v) {
        int r;

        if (at_end(c) || *c->p == '\n' || *c->p == '\r' || *c->p == '#')
                return fail(c, "missing value");
        switch (*c->p) {
        case '"':
                v->type = TOML_STRING;
                v->s = NULL;
                r = parse_basic_string(c, &v->s);
                return r;
        case '\'':
                v->type = TOML_STRING;
                v->s = NULL;
                return parse_literal_string(c, &v->s);
        case '[':
                return fail(c, "arrays are not supported");
        case '{':
                return fail(c, "inline tables are not supported");
        default:
                break;
        }
        if (c->end - c->p >= 4 && memcmp(c->p, "true", 4) == 0 &&
            (c->end - c->p == 4 || !is_bare_key_char(c->p[4]))) {
                v->type = TOML_BOOL;
                v->b = true;
                c->p += 4;
                return 0;
        }
        if (c->end - c->p >= 5 && memcmp(c->p, "false", 5) == 0 &&
            (c->end - c->p == 5 || !is_bare_key_char(c->p[5]))) {
                v->type = TOML_BOOL;
                v->b = false;
                c->p += 5;
                return 0;
        }
        if ((*c->p >= '0' && *c->p <= '9') || *c->p == '+' || *c->p == '-') {
                v->type = TOML_INT;
                return parse_integer(c, &v->i);
        }
        return fail(c, "invalid value (strings need quotes)");
}

static int parse_header(struct cursor *c, struct toml_table *root, struct toml_table **cur) {
        bool array = c->end - c->p >= 2 && c->p[1] == '[';
        _cleanup_free_ char *name = NULL;
        struct toml_value *v;
        int r;

        c->p += array ? 2 : 1;
        skip_ws(c);
        r = parse_key(c, &name);
        if (r < 0)
                return r;
        skip_ws(c);
        if (!at_end(c) && *c->p == '.')
                return fail(c, "nested tables are not supported");
        if (array) {
                if (c->end - c->p < 2 || c->p[0] != ']' || c->p[1] != ']')
                        return fail(c, "expected ']]' after table name");
                c->p += 2;
        } else {
                if (at_end(c) || *c->p != ']')
                        return fail(c, "expected ']' after table name");
                c->p++;
        }

        for (size_t i = 0; i < root->n; i++) {
                if (strcmp(root->kvs[i].key, name) != 0)
                        continue;
                v = &root->kvs[i].value;
                if (array && v->type == TOML_ARRAY_OF_TABLES)
                        goto append;
                if (!array && v->type == TOML_TABLE)
                        return fail(c, "table '%s' defined twice", name);
                return fail(c, "'%s' is already defined as a %s (line %u)", name, toml_type_to_string(v->type),
                            v->line);
        }
        v = table_add(root, TAKE_PTR(name), c->line);
        if (!array) {
                v->type = TOML_TABLE;
                v->table = xcalloc(1, sizeof(struct toml_table));
                v->table->line = c->line;
                v->table->defined = true;
                *cur = v->table;
                return 0;
        }
        v->type = TOML_ARRAY_OF_TABLES;
        v->array.items = NULL;
        v->array.n = 0;
append:
        v->array.items = xrealloc(v->array.items, (v->array.n + 1) * sizeof(struct toml_table *));
        v->array.items[v->array.n] = xcalloc(1, sizeof(struct toml_table));
        v->array.items[v->array.n]->line = c->line;
        v->array.items[v->array.n]->defined = true;
        *cur = v->array.items[v->array.n++];
        return 0;
}

static int parse_keyval(struct cursor *c, struct toml_table *cur) {
        _cleanup_free_ char *key = NULL;
        struct toml_value tmp = { .line = c->line };
        int r;

        r = parse_key(c, &key);
        if (r < 0)
                return r;
        skip_ws(c);
        if (!at_end(c) && *c->p == '.')
                return fail(c, "dotted keys are not supported");
        if (at_end(c) || *c->p != '=')
                return fail(c, "expected '=' after key '%s'", key);
        c->p++;
        skip_ws(c);
        if (toml_table_get(cur, key))
                return fail(c, "duplicate key '%s'", key);
        r = parse_value(c, &tmp);
        if (r < 0) {
                value_free(&tmp);
                return r;
        }
        *table_add(cur, TAKE_PTR(key), tmp.line) = tmp;
        return 0;
}

int toml_parse(const char *text, size_t len, struct toml_table **ret, struct toml_error *err) {
        struct cursor c = { .p = text, .end = text + len, .line = 1, .err = err };
        struct toml_table *root, *cur;
        int r;

        *err = (struct toml_error) { 0 };
        if (len > TOML_MAX_INPUT)
                return fail(&c, "file is larger than %u bytes", TOML_MAX_INPUT);
        if (memchr(text, '\0', len))
                return fail(&c, "file contains a NUL byte");
        cur = root = xcalloc(1, sizeof(*root));
        root->defined = true;
        /* A UTF-8 BOM is tolerated at the very start. */
        if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
                c.p += 3;
        while (!at_end(&c)) {
                skip_ws(&c);
                if (at_end(&c))
                        break;
                if (*c.p == '[')
                        r = parse_header(&c, root, &cur);
                else if (*c.p == '#' || *c.p == '\n' || *c.p == '\r')
                        r = 0;
                else
                        r = parse_keyval(&c, cur);
                if (r == 0)
                        r = expect_eol(&c);
                if (r < 0) {
                        toml_table_free(root);
                        return r;
                }
        }
        *ret = root;
        return 0;
}
