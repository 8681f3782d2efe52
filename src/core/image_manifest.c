/* SPDX-License-Identifier: MIT */
#include "image_manifest.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "debian.h"
#include "jsonx.h"
#include "macro.h"
#include "parse.h"
#include "strbuf.h"

static bool kernel_ref_ok(const char *s) {
        size_t n = strlen(s);
        return n && n <= 64 && s[0] != '.' && s[0] != '-' &&
               strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

void image_manifest_done(struct image_manifest *m) {
        free(m->name);
        free(m->init_mode);
        free(m->kernel_ref);
        *m = (struct image_manifest) { 0 };
}

int image_manifest_parse(const char *text, size_t len, struct image_manifest *ret, char **ret_err) {
        _cleanup_json_ json_t *j = NULL;
        json_error_t je;
        struct image_manifest m = { 0 };
        json_t *v;

        if (len > (1u << 20)) {
                *ret_err = xstrdup("manifest.json is larger than 1 MiB");
                return -EFBIG;
        }
        j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        if (!j || !json_is_object(j)) {
                *ret_err = xasprintf("manifest.json is not a JSON object%s%s", j ? "" : ": ", j ? "" : je.text);
                return -EINVAL;
        }
        v = json_object_get(j, "format");
        if (!json_is_integer(v) || json_integer_value(v) != 1) {
                *ret_err = xstrdup("manifest.json: 'format' must be 1");
                return -EINVAL;
        }
        v = json_object_get(j, "name");
        if (!json_is_string(v) || !string_is_dns_label(json_string_value(v))) {
                *ret_err = xstrdup("manifest.json: 'name' must be a DNS label");
                return -EINVAL;
        }
        m.name = xstrdup(json_string_value(v));
        v = json_object_get(j, "init_mode");
        if (!json_is_string(v) || (strcmp(json_string_value(v), "systemd") != 0 && strcmp(json_string_value(v), "fast") != 0)) {
                image_manifest_done(&m);
                *ret_err = xstrdup("manifest.json: 'init_mode' must be \"systemd\" or \"fast\"");
                return -EINVAL;
        }
        m.init_mode = xstrdup(json_string_value(v));
        v = json_object_get(j, "kernel_ref");
        if (v && !json_is_null(v)) {
                if (!json_is_string(v) || !kernel_ref_ok(json_string_value(v))) {
                        image_manifest_done(&m);
                        *ret_err = xstrdup("manifest.json: 'kernel_ref' is not a valid kernel name");
                        return -EINVAL;
                }
                m.kernel_ref = xstrdup(json_string_value(v));
        }
        static const struct {
                const char *key;
                size_t off;
        } hashes[] = { { "rootfs_sha256", offsetof(struct image_manifest, rootfs_sha256) },
                       { "work_seed_sha256", offsetof(struct image_manifest, work_seed_sha256) } };
        for (size_t i = 0; i < ELEMENTSOF(hashes); i++) {
                v = json_object_get(j, hashes[i].key);
                if (!v)
                        continue;
                if (!json_is_string(v) || !is_sha256_hex(json_string_value(v))) {
                        image_manifest_done(&m);
                        *ret_err = xasprintf("manifest.json: '%s' must be 64 lowercase hex digits", hashes[i].key);
                        return -EINVAL;
                }
                memcpy((char *) &m + hashes[i].off, json_string_value(v), 65);
        }
        v = json_object_get(j, "rootfs_size_bytes");
        if (v) {
                if (!json_is_integer(v) || json_integer_value(v) < 0) {
                        image_manifest_done(&m);
                        *ret_err = xstrdup("manifest.json: 'rootfs_size_bytes' must be a non-negative integer");
                        return -EINVAL;
                }
                m.rootfs_size_bytes = (uint64_t) json_integer_value(v);
        }
        *ret = m;
        return 0;
}
