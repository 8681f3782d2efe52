/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A strict parser for the TOML subset banger's config uses: basic and literal
 * strings (one line), decimal integers, booleans, `[table]`,
 * `[[array_of_tables]]` (one level, no dotted names) and `#` comments.
 * Anything else (floats, arrays, inline tables, dates, multi-line strings,
 * dotted keys) is a clear error rather than a silent misreading.
 *
 * Pure: no I/O, no globals; safe to fuzz.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum toml_type {
        TOML_STRING,
        TOML_INT,
        TOML_BOOL,
        TOML_TABLE,
        TOML_ARRAY_OF_TABLES,
        _TOML_TYPE_MAX,
};

struct toml_table;

struct toml_value {
        enum toml_type type;
        unsigned line; /* 1-based line the key (or header) was on */
        union {
                char *s; /* owned; UTF-8 without NUL bytes */
                int64_t i;
                bool b;
                struct toml_table *table; /* owned */
                struct {
                        struct toml_table **items; /* owned */
                        size_t n;
                } array;
        };
};

struct toml_kv {
        char *key; /* owned */
        struct toml_value value;
};

struct toml_table {
        struct toml_kv *kvs;
        size_t n;
        size_t alloc;
        unsigned line;
        bool defined; /* by a [header] (not just implied) */
};

struct toml_error {
        unsigned line;
        char msg[200];
};

#define TOML_MAX_INPUT (1u << 20)

/* 0 and a root table in *ret, or -EINVAL with err filled in. */
int toml_parse(const char *text, size_t len, struct toml_table **ret, struct toml_error *err);
void toml_table_free(struct toml_table *t);
const struct toml_value *toml_table_get(const struct toml_table *t, const char *key);
const char *toml_type_to_string(enum toml_type t);
