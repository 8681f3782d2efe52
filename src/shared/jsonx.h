/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * jansson helpers: cleanup, compact line encoding and table-driven decoding of
 * JSON objects into C structs (RPC params, manifests).
 */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

static inline void banger_json_decrefp(json_t **p) {
        if (*p)
                json_decref(*p);
}
#define _cleanup_json_ _cleanup_(banger_json_decrefp)

enum json_field_type {
        JSON_FIELD_STRING, /* char * (owned by the struct; free with json_fields_free) */
        JSON_FIELD_INT,    /* int64_t */
        JSON_FIELD_BOOL,   /* bool */
        JSON_FIELD_JSON,   /* json_t * (new reference) */
        _JSON_FIELD_MAX,
};

struct json_field {
        const char *name;
        enum json_field_type type;
        size_t offset;         /* of the value in the target struct */
        bool required;
        size_t present_offset; /* of a bool set when present, or JSON_NO_PRESENT */
        int64_t min, max;      /* for INT when min < max */
};
#define JSON_NO_PRESENT SIZE_MAX

/*
 * Decodes `obj` (an object, or NULL meaning {}) into `out` following `fields`.
 * Unknown keys, wrong types, missing required keys and out-of-range integers
 * are errors: returns -EINVAL with a message naming the key in *ret_err.
 */
int json_decode_fields(json_t *obj, const struct json_field *fields, size_t n_fields, void *out,
                       char **ret_err);
void json_fields_free(const struct json_field *fields, size_t n_fields, void *out);

/* Compact encoding, keys in insertion order, no trailing newline. Never NULL. */
char *json_dump_compact(const json_t *j);
