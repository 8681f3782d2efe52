/* SPDX-License-Identifier: MIT */
#include "jsonx.h"

#include <errno.h>
#include <string.h>

#include "strbuf.h"

static const char *const type_names[_JSON_FIELD_MAX] = {
        [JSON_FIELD_STRING] = "a string",
        [JSON_FIELD_INT] = "an integer",
        [JSON_FIELD_BOOL] = "a boolean",
        [JSON_FIELD_JSON] = "a JSON value",
};

static const struct json_field *find_field(const struct json_field *fields, size_t n, const char *key) {
        for (size_t i = 0; i < n; i++)
                if (strcmp(fields[i].name, key) == 0)
                        return &fields[i];
        return NULL;
}

static int decode_one(const struct json_field *f, json_t *v, void *out, char **ret_err) {
        char *base = out;

        switch (f->type) {
        case JSON_FIELD_STRING:
                if (!json_is_string(v))
                        break;
                *(char **) (base + f->offset) = xstrdup(json_string_value(v));
                return 0;
        case JSON_FIELD_INT: {
                if (!json_is_integer(v))
                        break;
                int64_t x = json_integer_value(v);
                if (f->min < f->max && (x < f->min || x > f->max)) {
                        *ret_err = xasprintf("'%s' must be between %lld and %lld", f->name,
                                             (long long) f->min, (long long) f->max);
                        return -EINVAL;
                }
                *(int64_t *) (base + f->offset) = x;
                return 0;
        }
        case JSON_FIELD_BOOL:
                if (!json_is_boolean(v))
                        break;
                *(bool *) (base + f->offset) = json_is_true(v);
                return 0;
        case JSON_FIELD_JSON:
                *(json_t **) (base + f->offset) = json_incref(v);
                return 0;
        default:
                break;
        }
        *ret_err = xasprintf("'%s' must be %s", f->name,
                             f->type < _JSON_FIELD_MAX ? type_names[f->type] : "valid");
        return -EINVAL;
}

int json_decode_fields(json_t *obj, const struct json_field *fields, size_t n_fields, void *out,
                       char **ret_err) {
        const char *key;
        json_t *v;
        int r;

        if (obj && !json_is_object(obj)) {
                *ret_err = xstrdup("params must be an object");
                return -EINVAL;
        }
        if (obj)
                json_object_foreach(obj, key, v) {
                        const struct json_field *f = find_field(fields, n_fields, key);
                        if (!f) {
                                *ret_err = xasprintf("unknown parameter '%s'", key);
                                return -EINVAL;
                        }
                        r = decode_one(f, v, out, ret_err);
                        if (r < 0)
                                return r;
                        if (f->present_offset != JSON_NO_PRESENT)
                                *(bool *) ((char *) out + f->present_offset) = true;
                }
        for (size_t i = 0; i < n_fields; i++)
                if (fields[i].required && !(obj && json_object_get(obj, fields[i].name))) {
                        *ret_err = xasprintf("missing required parameter '%s'", fields[i].name);
                        return -EINVAL;
                }
        return 0;
}

void json_fields_free(const struct json_field *fields, size_t n_fields, void *out) {
        char *base = out;

        for (size_t i = 0; i < n_fields; i++) {
                if (fields[i].type == JSON_FIELD_STRING) {
                        char **p = (char **) (base + fields[i].offset);
                        free(*p);
                        *p = NULL;
                } else if (fields[i].type == JSON_FIELD_JSON) {
                        json_t **p = (json_t **) (base + fields[i].offset);
                        json_decref(*p);
                        *p = NULL;
                }
        }
}

char *json_dump_compact(const json_t *j) {
        char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
        return s ? s : xstrdup("null");
}
