/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the OCI decoders (src/core/oci.h), as `banger image
 * pull` meets them: the input is tried as an image reference and a platform
 * (NUL-terminated, at most 512 bytes), as a manifest or index (with a
 * Content-Type chosen by the input's length) and as an image config. What a
 * parser accepts must keep the promises its header makes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jsonx.h"
#include "oci.h"
#include "oci_auth.h"
#include "parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                 \
        do {                     \
                if (!(x))        \
                        abort(); \
        } while (0)

/* a refusal always says why, in printable text */
static void check_err(char *err) {
        CHECK(err && *err);
        for (const char *p = err; *p; p++)
                CHECK((unsigned char) *p >= 0x20 && *p != 0x7f);
        free(err);
}

static bool str_eq(const char *a, const char *b) {
        return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void check_ref(const struct oci_ref *r) {
        CHECK(r->registry && *r->registry && r->repository && *r->repository);
        CHECK(r->tag || r->digest);
        CHECK(!r->digest || oci_digest_valid(r->digest));
        CHECK(strlen(r->registry) + 1 + strlen(r->repository) <= OCI_NAME_MAX);
        CHECK(oci_ref_api_host(r));
        /* the canonical form parses back to the same fields, and is a fixed point */
        char *canon = oci_ref_string(r), *err = NULL;
        struct oci_ref back = { 0 };
        CHECK(oci_ref_parse(canon, &back, &err) == 0);
        CHECK(str_eq(r->registry, back.registry) && str_eq(r->repository, back.repository) &&
              str_eq(r->tag, back.tag) && str_eq(r->digest, back.digest));
        char *again = oci_ref_string(&back);
        CHECK(strcmp(canon, again) == 0);
        /* every parsed repository ends in a letter or digit: a name is left */
        char *name = oci_ref_image_name(r);
        CHECK(name && string_is_dns_label(name));
        free(name);
        free(again);
        free(canon);
        oci_ref_done(&back);
}

static void fuzz_strings(const uint8_t *data, size_t size) {
        char s[OCI_REF_MAX + 1];
        size_t n = size < OCI_REF_MAX ? size : OCI_REF_MAX;
        memcpy(s, data, n);
        s[n] = '\0';
        struct oci_ref r = { 0 };
        char *err = NULL;
        if (oci_ref_parse(s, &r, &err) == 0) {
                check_ref(&r);
                oci_ref_done(&r);
        } else
                check_err(err);

        char *os = NULL, *arch = NULL, *variant = NULL;
        err = NULL;
        if (oci_platform_parse(s, &os, &arch, &variant, &err) == 0) {
                CHECK(os && *os && arch && *arch && (!variant || *variant));
                CHECK(!strchr(os, '/') && !strchr(arch, '/') && (!variant || !strchr(variant, '/')));
                free(os);
                free(arch);
                free(variant);
        } else
                check_err(err);
}

static void check_descriptor(const struct oci_descriptor *d, bool index) {
        CHECK(d->media_type && oci_digest_valid(d->digest));
        CHECK(d->size >= 0 && d->size <= OCI_BLOB_SIZE_MAX);
        CHECK(!!d->os == !!d->architecture && (d->os || !d->variant));
        if (!index)
                CHECK(!d->os && oci_layer_compression(d->media_type) >= 0);
}

static void check_manifest(const struct oci_manifest *m) {
        CHECK(m->media_type);
        if (m->kind == OCI_KIND_MANIFEST) {
                CHECK(!strcmp(m->media_type, OCI_MT_MANIFEST) || !strcmp(m->media_type, DOCKER_MT_MANIFEST));
                CHECK(m->n_layers <= OCI_MAX_LAYERS && m->n_manifests == 0 && !m->manifests);
                CHECK(oci_digest_valid(m->config.digest) && !m->config.os);
                CHECK(!strcmp(m->config.media_type, OCI_MT_CONFIG) || !strcmp(m->config.media_type, DOCKER_MT_CONFIG));
                for (size_t k = 0; k < m->n_layers; k++)
                        check_descriptor(&m->layers[k], false);
                CHECK(!oci_index_pick(m, "linux", "amd64", NULL));
                return;
        }
        CHECK(m->kind == OCI_KIND_INDEX);
        CHECK(!strcmp(m->media_type, OCI_MT_INDEX) || !strcmp(m->media_type, DOCKER_MT_LIST));
        CHECK(m->n_manifests <= OCI_MAX_INDEX_ENTRIES && m->n_layers == 0 && !m->config.digest);
        for (size_t k = 0; k < m->n_manifests; k++)
                check_descriptor(&m->manifests[k], true);
        const struct oci_descriptor *d = oci_index_pick(m, "linux", "arm64", "v8");
        CHECK(!d || (d >= m->manifests && d < m->manifests + m->n_manifests && !strcmp(d->os, "linux") &&
                     !strcmp(d->architecture, "arm64") && d->variant && !strcmp(d->variant, "v8")));
        d = oci_index_pick(m, "linux", "amd64", NULL);
        CHECK(!d || (d >= m->manifests && d < m->manifests + m->n_manifests && !strcmp(d->architecture, "amd64")));
        char *p = oci_index_platforms(m);
        CHECK(p && (m->n_manifests || !*p));
        free(p);
}

static void fuzz_manifest(const char *text, size_t size) {
        static const char *const types[] = {
                NULL, OCI_MT_MANIFEST, OCI_MT_INDEX, DOCKER_MT_MANIFEST, DOCKER_MT_LIST, "application/json",
        };
        struct oci_manifest m = { 0 };
        char *err = NULL;
        if (oci_manifest_parse(text, size, types[size % 6], &m, &err) == 0) {
                check_manifest(&m);
                oci_manifest_done(&m);
        } else
                check_err(err);
}

static void check_strv(char **v, size_t n) {
        CHECK(v && !v[n]);
        for (size_t k = 0; k < n; k++)
                CHECK(v[k]);
}

static void fuzz_config(const char *text, size_t size) {
        struct oci_config c = { 0 };
        char *err = NULL;
        if (oci_config_parse(text, size, &c, &err) != 0) {
                check_err(err);
                return;
        }
        CHECK(c.os && *c.os && c.architecture && *c.architecture);
        check_strv(c.env, c.n_env);
        check_strv(c.entrypoint, c.n_entrypoint);
        check_strv(c.cmd, c.n_cmd);
        check_strv(c.diff_ids, c.n_diff_ids);
        for (size_t k = 0; k < c.n_env; k++)
                CHECK(c.env[k][0] != '=' && strchr(c.env[k], '='));
        for (size_t k = 0; k < c.n_diff_ids; k++)
                CHECK(oci_digest_valid(c.diff_ids[k]));
        CHECK((!c.working_dir || *c.working_dir) && (!c.user || *c.user));
        json_t *j = oci_config_run_json(&c);
        CHECK(json_array_size(json_object_get(j, "env")) == c.n_env &&
              json_array_size(json_object_get(j, "entrypoint")) == c.n_entrypoint &&
              json_array_size(json_object_get(j, "cmd")) == c.n_cmd && json_object_size(j) == 5);
        char *dump = json_dump_compact(j);
        free(dump);
        json_decref(j);
        oci_config_done(&c);
}

/* the registry's 401 challenge and ~/.docker/config.json (oci_auth.h) */
static void fuzz_auth(const uint8_t *data, size_t size) {
        char buf[1024];
        size_t n = size < sizeof(buf) - 1 ? size : sizeof(buf) - 1;
        memcpy(buf, data, n);
        buf[n] = '\0';
        struct www_auth a = { 0 };
        if (www_auth_parse(buf, &a) == 0) {
                CHECK(a.scheme && (strcmp(a.scheme, "bearer") == 0 || strcmp(a.scheme, "basic") == 0));
                CHECK(strcmp(a.scheme, "basic") == 0 || (a.realm && strncmp(a.realm, "http", 4) == 0));
                for (const char *v = a.realm; v && *v; v++)
                        CHECK((unsigned char) *v >= 0x20 && *v != 0x7f);
                www_auth_done(&a);
        }
        char *userpwd = NULL;
        int r = docker_config_auth((const char *) data, size, "docker.io", &userpwd);
        CHECK(r == 1 ? userpwd && strchr(userpwd, ':') : !userpwd);
        free(userpwd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        fuzz_auth(data, size);
        fuzz_strings(data, size);
        fuzz_manifest((const char *) data, size);
        fuzz_config((const char *) data, size);
        return 0;
}
