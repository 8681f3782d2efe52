/* SPDX-License-Identifier: MIT */
/* What `banger image pull` reads from a user and a registry: image
 * references, manifests, indexes and image configs. Good input parses to
 * what the specs say; anything else is refused with a message. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jsonx.h"
#include "macro.h"
#include "oci.h"
#include "oci_auth.h"
#include "strbuf.h"

#define H0 "5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9"
#define H1 "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b"
#define H2 "d4735e3a265e16eee03f59718b9b5d03019c07d8b6c51f90da3a666eec13ab35"
#define H3 "4e07408562bedb8b60ce05c1decfe3ad16b72230967de01f640b7e4729b49fce"
#define H4 "4b227777d4dd1fc61c6f884f48641d02b4d121d3fd328cb08b5531fcacdabf8a"
#define D0 "sha256:" H0
#define D1 "sha256:" H1
#define D2 "sha256:" H2
#define D3 "sha256:" H3
#define D4 "sha256:" H4

/* ---- references ----------------------------------------------------------- */

struct ref_case {
        const char *in;
        const char *registry, *repository, *tag, *digest;
        const char *canonical;
};

static const struct ref_case good_refs[] = {
        { "debian", "docker.io", "library/debian", "latest", NULL, "docker.io/library/debian:latest" },
        { "debian:bookworm", "docker.io", "library/debian", "bookworm", NULL, "docker.io/library/debian:bookworm" },
        { "docker.io/debian", "docker.io", "library/debian", "latest", NULL, "docker.io/library/debian:latest" },
        { "index.docker.io/library/debian:12", "docker.io", "library/debian", "12", NULL,
          "docker.io/library/debian:12" },
        { "Index.Docker.IO/alpine", "docker.io", "library/alpine", "latest", NULL, "docker.io/library/alpine:latest" },
        { "grafana/grafana:10.4.2", "docker.io", "grafana/grafana", "10.4.2", NULL,
          "docker.io/grafana/grafana:10.4.2" },
        { "localhost:5000/x", "localhost:5000", "x", "latest", NULL, "localhost:5000/x:latest" },
        { "localhost/x", "localhost", "x", "latest", NULL, "localhost/x:latest" },
        { "LOCALHOST:5000/x", "localhost:5000", "x", "latest", NULL, "localhost:5000/x:latest" },
        { "127.0.0.1:5000/a/b:t", "127.0.0.1:5000", "a/b", "t", NULL, "127.0.0.1:5000/a/b:t" },
        { "ghcr.io/org/tools/golang:1.22", "ghcr.io", "org/tools/golang", "1.22", NULL,
          "ghcr.io/org/tools/golang:1.22" },
        { "Registry.Example.COM:8443/team/app:V1_x", "registry.example.com:8443", "team/app", "V1_x", NULL,
          "registry.example.com:8443/team/app:V1_x" },
        { "[::1]:5000/foo:bar", "[::1]:5000", "foo", "bar", NULL, "[::1]:5000/foo:bar" },
        { "alpine@" D1, "docker.io", "library/alpine", NULL, D1, "docker.io/library/alpine@" D1 },
        { "alpine:3.20@" D2, "docker.io", "library/alpine", "3.20", D2, "docker.io/library/alpine:3.20@" D2 },
        { "quay.io/a__b/c-d/e---f/g.h/i_j:_x", "quay.io", "a__b/c-d/e---f/g.h/i_j", "_x", NULL,
          "quay.io/a__b/c-d/e---f/g.h/i_j:_x" },
        /* no '/': "localhost:5000" is repository "localhost", tag "5000" */
        { "localhost:5000", "docker.io", "library/localhost", "5000", NULL, "docker.io/library/localhost:5000" },
        { "docker.io/foo.com/bar", "docker.io", "foo.com/bar", "latest", NULL, "docker.io/foo.com/bar:latest" },
};

static void check_ref(const struct oci_ref *r, const struct ref_case *c) {
        assert_string_equal(r->registry, c->registry);
        assert_string_equal(r->repository, c->repository);
        if (c->tag)
                assert_string_equal(r->tag, c->tag);
        else
                assert_null(r->tag);
        if (c->digest)
                assert_string_equal(r->digest, c->digest);
        else
                assert_null(r->digest);
}

static void test_ref_good(void **state) {
        (void) state;
        for (size_t k = 0; k < ELEMENTSOF(good_refs); k++) {
                const struct ref_case *c = &good_refs[k];
                struct oci_ref r = { 0 }, back = { 0 };
                char *err = NULL;
                if (oci_ref_parse(c->in, &r, &err) != 0)
                        fail_msg("'%s' should parse: %s", c->in, err);
                check_ref(&r, c);
                _cleanup_free_ char *s = oci_ref_string(&r);
                assert_string_equal(s, c->canonical);
                /* the canonical form parses back to the same fields */
                assert_int_equal(oci_ref_parse(s, &back, &err), 0);
                check_ref(&back, c);
                oci_ref_done(&back);
                oci_ref_done(&r);
                assert_null(r.registry);
        }
}

static void test_ref_api_host(void **state) {
        (void) state;
        struct oci_ref r = { 0 };
        char *err = NULL;
        assert_int_equal(oci_ref_parse("debian", &r, &err), 0);
        assert_string_equal(oci_ref_api_host(&r), "registry-1.docker.io");
        oci_ref_done(&r);
        assert_int_equal(oci_ref_parse("ghcr.io/a/b", &r, &err), 0);
        assert_string_equal(oci_ref_api_host(&r), "ghcr.io");
        oci_ref_done(&r);
        assert_int_equal(oci_ref_parse("localhost:5000/x", &r, &err), 0);
        assert_string_equal(oci_ref_api_host(&r), "localhost:5000");
        oci_ref_done(&r);
        oci_ref_done(NULL);
}

static void test_ref_bad(void **state) {
        (void) state;
        char long_tag[200], long_name[300];
        memset(long_tag, 0, sizeof(long_tag));
        memcpy(long_tag, "a:", 2);
        memset(long_tag + 2, 't', 129);
        memset(long_name, 0, sizeof(long_name));
        memcpy(long_name, "ghcr.io/", 8);
        memset(long_name + 8, 'n', 256 - 8); /* 256 characters */
        const char *bad[] = {
                "", " ", "debian ", " debian", "deb ian", "deb\tian", "debian\n", "deb\x7fian", "Debian",
                "docker.io/Library/x", "ghcr.io/Org/x", "a..b", "a___b", "a._b", "a-.b", "-a", "a-", "_a", ".a",
                "a/", "/a", "a//b", "a:", "a:-tag", "a:.tag", "a:t@g", "a:t/x", long_tag, "a@", "a@@" D1,
                "a@sha256:" "abc", "a@sha512:" H0 H1, "a@SHA256:" H0, "a@sha256:" "6B86B273FF34FCE19D6B804EFF5A3F5747ADA4EAA22F1D49C01E52DDB7875B4B",
                "a@" D1 "0", "@" D1, ":tag", "host:99999/a", "host:0/a", "host:/a", "host:12x/a", "ho_st.com/a",
                "-host.com/a", "host-.com/a", "host..com/a", ".host.com/a", "[zz]:5000/a", "[]:5000/a", "[::1/a",
                "a:b:c", long_name, "d\xc3\xa9""bian", "a b/c", "ghcr.io/", "localhost/", NULL,
        };
        for (size_t k = 0; bad[k]; k++) {
                struct oci_ref r = { 0 };
                char *err = NULL;
                if (oci_ref_parse(bad[k], &r, &err) != -EINVAL)
                        fail_msg("'%s' should not parse", bad[k]);
                assert_non_null(err);
                assert_null(r.registry); /* untouched */
                for (const char *p = err; *p; p++)
                        assert_true((unsigned char) *p >= 0x20 && *p != 0x7f);
                free(err);
        }
        char *err = NULL;
        struct oci_ref r = { 0 };
        assert_int_equal(oci_ref_parse(NULL, &r, &err), -EINVAL);
        free(err);
        /* upper case in the repository gets its own message */
        assert_int_equal(oci_ref_parse("ghcr.io/Org/x", &r, &err), -EINVAL);
        assert_non_null(strstr(err, "lower case"));
        free(err);
}

static void test_ref_length(void **state) {
        (void) state;
        /* "docker.io/" + 245 = 255: fits; one more does not (the limit is on the canonical name) */
        char name[300] = "org/";
        memset(name + 4, 'x', 241);
        struct oci_ref r = { 0 };
        char *err = NULL;
        assert_int_equal(oci_ref_parse(name, &r, &err), 0);
        assert_int_equal(strlen(r.registry) + 1 + strlen(r.repository), 255);
        oci_ref_done(&r);
        name[245] = 'x';
        assert_int_equal(oci_ref_parse(name, &r, &err), -EINVAL);
        free(err);
        /* a one-part docker.io name gains "library/" */
        memset(name, 'y', 237);
        name[237] = '\0';
        assert_int_equal(oci_ref_parse(name, &r, &err), 0);
        oci_ref_done(&r);
        name[237] = 'y';
        name[238] = '\0';
        assert_int_equal(oci_ref_parse(name, &r, &err), -EINVAL);
        free(err);
        /* a 128-character tag is fine */
        char tagged[200] = "a:";
        memset(tagged + 2, 'T', 128);
        assert_int_equal(oci_ref_parse(tagged, &r, &err), 0);
        oci_ref_done(&r);
}

static void test_digest_valid(void **state) {
        (void) state;
        assert_true(oci_digest_valid(D0));
        assert_false(oci_digest_valid(NULL));
        assert_false(oci_digest_valid(""));
        assert_false(oci_digest_valid("sha256:"));
        assert_false(oci_digest_valid(H0));
        assert_false(oci_digest_valid(D0 "a"));
        assert_false(oci_digest_valid("sha512:" H0));
        assert_false(oci_digest_valid("sha256:5FECEB66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57e9"));
        assert_false(oci_digest_valid("sha256:5feceb66ffc86f38d952786c6d696c79c2dbc239dd4e91b46729d73a27fb57eg"));
}

/* ---- image names ---------------------------------------------------------- */

static void name_is(const char *ref, const char *want) {
        struct oci_ref r = { 0 };
        char *err = NULL;
        if (oci_ref_parse(ref, &r, &err) != 0)
                fail_msg("'%s' should parse: %s", ref, err);
        _cleanup_free_ char *got = oci_ref_image_name(&r);
        if (!got || strcmp(got, want) != 0)
                fail_msg("'%s' should be named '%s', not '%s'", ref, want, got ? got : "(null)");
        oci_ref_done(&r);
}

static void test_image_name(void **state) {
        (void) state;
        name_is("docker.io/library/debian:bookworm", "debian-bookworm");
        /* the brief's "golang-1.22" is not a DNS label: '.' becomes '-' like every other char */
        name_is("ghcr.io/org/tools/golang:1.22", "golang-1-22");
        name_is("alpine", "alpine");
        name_is("alpine:latest", "alpine");
        name_is("alpine@" D1, "alpine-6b86b273ff34");
        name_is("alpine:3.20@" D1, "alpine-3-20");
        name_is("alpine:latest@" D1, "alpine");
        name_is("quay.io/x/my_app.server:V1.2_RC--3", "my-app-server-v1-2-rc-3");
        name_is("a__b:_x_", "a-b-x");
        name_is("localhost:5000/tool:9", "tool-9");
        /* 62 'a' + "-x" is 64: cut at 63 leaves a trailing '-', which goes */
        char ref[100], want[100];
        memset(ref, 0, sizeof(ref));
        memset(ref, 'a', 62);
        strcat(ref, ":x");
        memset(want, 0, sizeof(want));
        memset(want, 'a', 62);
        name_is(ref, want);
        /* a long tag is cut */
        memset(ref, 0, sizeof(ref));
        strcpy(ref, "app:");
        memset(ref + 4, 'v', 90);
        memset(want, 0, sizeof(want));
        strcpy(want, "app-");
        memset(want + 4, 'v', 59);
        name_is(ref, want);
}

static void test_image_name_empty(void **state) {
        (void) state;
        /* a struct a parse would never give: nothing left of it */
        struct oci_ref r = { .registry = (char *) "x.io", .repository = (char *) "a/__", .tag = (char *) "latest" };
        assert_null(oci_ref_image_name(&r));
        r.tag = (char *) "..";
        assert_null(oci_ref_image_name(&r));
        r.tag = (char *) "-ok-";
        _cleanup_free_ char *s = oci_ref_image_name(&r);
        assert_string_equal(s, "ok");
}

/* ---- manifests ------------------------------------------------------------ */

static const char oci_manifest[] =
        "{\n"
        "  \"schemaVersion\": 2,\n"
        "  \"mediaType\": \"application/vnd.oci.image.manifest.v1+json\",\n"
        "  \"config\": {\n"
        "    \"mediaType\": \"application/vnd.oci.image.config.v1+json\",\n"
        "    \"digest\": \"" D0 "\",\n"
        "    \"size\": 1471\n"
        "  },\n"
        "  \"layers\": [\n"
        "    { \"mediaType\": \"application/vnd.oci.image.layer.v1.tar+gzip\", \"digest\": \"" D1 "\",\n"
        "      \"size\": 49556838 },\n"
        "    { \"mediaType\": \"application/vnd.oci.image.layer.v1.tar+zstd\", \"digest\": \"" D2 "\",\n"
        "      \"size\": 3210, \"annotations\": { \"org.opencontainers.image.title\": \"x\" } }\n"
        "  ],\n"
        "  \"annotations\": { \"org.opencontainers.image.created\": \"2024-06-10T00:00:00Z\" }\n"
        "}\n";

static const char docker_manifest[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\","
        "\"config\":{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"size\":7023,"
        "\"digest\":\"" D0 "\"},"
        "\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\"size\":32654,"
        "\"digest\":\"" D1 "\"},"
        "{\"mediaType\":\"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip\",\"size\":16724,"
        "\"digest\":\"" D2 "\",\"urls\":[\"https://example.com/layer\"]},"
        "{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar\",\"size\":0,\"digest\":\"" D3 "\"}]}";

static const char oci_index[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":["
        "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D1 "\",\"size\":1013,"
        "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
        "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D2 "\",\"size\":1013,"
        "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}},"
        "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" D3 "\",\"size\":566,"
        "\"annotations\":{\"vnd.docker.reference.digest\":\"" D1 "\","
        "\"vnd.docker.reference.type\":\"attestation-manifest\"},"
        "\"platform\":{\"architecture\":\"unknown\",\"os\":\"unknown\"}}]}";

static const char docker_list[] =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.docker.distribution.manifest.list.v2+json\","
        "\"manifests\":["
        "{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"size\":528,\"digest\":\"" D1 "\","
        "\"platform\":{\"architecture\":\"arm\",\"os\":\"linux\",\"variant\":\"v7\"}},"
        "{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"size\":528,\"digest\":\"" D2 "\","
        "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\",\"variant\":\"v3\",\"features\":[\"sse4\"]}},"
        "{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"size\":528,\"digest\":\"" D3 "\","
        "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
        "{\"mediaType\":\"application/vnd.docker.distribution.manifest.v2+json\",\"size\":528,\"digest\":\"" D4 "\","
        "\"platform\":{\"architecture\":\"amd64\",\"os\":\"windows\",\"os.version\":\"10.0.17763.5820\"}}]}";

static void test_oci_manifest(void **state) {
        (void) state;
        struct oci_manifest m = { 0 };
        char *err = NULL;
        assert_int_equal(oci_manifest_parse(oci_manifest, strlen(oci_manifest), OCI_MT_MANIFEST, &m, &err), 0);
        assert_int_equal(m.kind, OCI_KIND_MANIFEST);
        assert_string_equal(m.media_type, OCI_MT_MANIFEST);
        assert_string_equal(m.config.media_type, OCI_MT_CONFIG);
        assert_string_equal(m.config.digest, D0);
        assert_int_equal(m.config.size, 1471);
        assert_null(m.config.os);
        assert_int_equal(m.n_layers, 2);
        assert_string_equal(m.layers[0].digest, D1);
        assert_int_equal(m.layers[0].size, 49556838);
        assert_int_equal(oci_layer_compression(m.layers[0].media_type), OCI_COMPRESSION_GZIP);
        assert_int_equal(oci_layer_compression(m.layers[1].media_type), OCI_COMPRESSION_ZSTD);
        assert_null(m.layers[1].architecture);
        assert_int_equal(m.n_manifests, 0);
        assert_null(oci_index_pick(&m, "linux", "amd64", NULL));
        oci_manifest_done(&m);
        assert_null(m.media_type);
        oci_manifest_done(NULL);
}

static void test_docker_manifest(void **state) {
        (void) state;
        struct oci_manifest m = { 0 };
        char *err = NULL;
        assert_int_equal(oci_manifest_parse(docker_manifest, strlen(docker_manifest),
                                            DOCKER_MT_MANIFEST "; charset=utf-8", &m, &err),
                         0);
        assert_int_equal(m.kind, OCI_KIND_MANIFEST);
        assert_string_equal(m.media_type, DOCKER_MT_MANIFEST);
        assert_string_equal(m.config.media_type, DOCKER_MT_CONFIG);
        assert_int_equal(m.n_layers, 3);
        assert_int_equal(oci_layer_compression(m.layers[0].media_type), OCI_COMPRESSION_GZIP);
        assert_int_equal(oci_layer_compression(m.layers[1].media_type), OCI_COMPRESSION_GZIP);
        assert_int_equal(oci_layer_compression(m.layers[2].media_type), OCI_COMPRESSION_NONE);
        assert_int_equal(m.layers[2].size, 0);
        oci_manifest_done(&m);
}

static void test_oci_index(void **state) {
        (void) state;
        struct oci_manifest m = { 0 };
        char *err = NULL;
        assert_int_equal(oci_manifest_parse(oci_index, strlen(oci_index), NULL, &m, &err), 0);
        assert_int_equal(m.kind, OCI_KIND_INDEX);
        assert_string_equal(m.media_type, OCI_MT_INDEX);
        assert_int_equal(m.n_manifests, 3);
        assert_null(m.config.digest);
        assert_int_equal(m.n_layers, 0);
        assert_string_equal(m.manifests[1].os, "linux");
        assert_string_equal(m.manifests[1].architecture, "arm64");
        assert_string_equal(m.manifests[1].variant, "v8");
        assert_null(m.manifests[0].variant);

        assert_ptr_equal(oci_index_pick(&m, "linux", "amd64", NULL), &m.manifests[0]);
        assert_ptr_equal(oci_index_pick(&m, "linux", "amd64", "v2"), &m.manifests[0]); /* ignored for amd64 */
        assert_ptr_equal(oci_index_pick(&m, "linux", "arm64", NULL), &m.manifests[1]);
        assert_ptr_equal(oci_index_pick(&m, "linux", "arm64", "v8"), &m.manifests[1]);
        assert_null(oci_index_pick(&m, "linux", "arm64", "v9"));
        assert_null(oci_index_pick(&m, "linux", "s390x", NULL));
        assert_null(oci_index_pick(&m, "windows", "amd64", NULL));
        assert_null(oci_index_pick(NULL, "linux", "amd64", NULL));

        _cleanup_free_ char *p = oci_index_platforms(&m);
        assert_string_equal(p, "linux/amd64, linux/arm64/v8");
        oci_manifest_done(&m);
}

static void test_docker_list(void **state) {
        (void) state;
        struct oci_manifest m = { 0 };
        char *err = NULL;
        assert_int_equal(oci_manifest_parse(docker_list, strlen(docker_list), DOCKER_MT_LIST, &m, &err), 0);
        assert_int_equal(m.kind, OCI_KIND_INDEX);
        assert_int_equal(m.n_manifests, 4);
        assert_ptr_equal(oci_index_pick(&m, "linux", "amd64", NULL), &m.manifests[1]);
        assert_ptr_equal(oci_index_pick(&m, "linux", "arm", "v7"), &m.manifests[0]);
        assert_null(oci_index_pick(&m, "linux", "arm", "v6"));
        assert_ptr_equal(oci_index_pick(&m, "windows", "amd64", NULL), &m.manifests[3]);
        _cleanup_free_ char *p = oci_index_platforms(&m);
        assert_string_equal(p, "linux/arm/v7, linux/amd64/v3, linux/amd64, windows/amd64");
        oci_manifest_done(&m);

        struct oci_manifest empty = { .kind = OCI_KIND_INDEX };
        _cleanup_free_ char *none = oci_index_platforms(&empty);
        assert_string_equal(none, "");
}

static int parse_err(const char *text, const char *ct, const char *want_in_err) {
        struct oci_manifest m = { 0 };
        char *err = NULL;
        int r = oci_manifest_parse(text, strlen(text), ct, &m, &err);
        if (r == 0) {
                oci_manifest_done(&m);
                fail_msg("should not parse: %s", text);
        }
        assert_non_null(err);
        assert_null(m.media_type);
        if (want_in_err && !strstr(err, want_in_err))
                fail_msg("'%s' does not say '%s'", err, want_in_err);
        free(err);
        return r;
}

static void test_content_type(void **state) {
        (void) state;
        struct oci_manifest m = { 0 };
        char *err = NULL;
        /* the kinds disagree */
        assert_int_equal(parse_err(oci_manifest, OCI_MT_INDEX, "disagree"), -EINVAL);
        assert_int_equal(parse_err(oci_index, DOCKER_MT_MANIFEST, "disagree"), -EINVAL);
        /* same kind, other family: the field wins */
        assert_int_equal(oci_manifest_parse(oci_manifest, strlen(oci_manifest), DOCKER_MT_MANIFEST, &m, &err), 0);
        assert_string_equal(m.media_type, OCI_MT_MANIFEST);
        oci_manifest_done(&m);
        /* a generic Content-Type does not matter when the field is there */
        assert_int_equal(oci_manifest_parse(docker_list, strlen(docker_list), "application/json", &m, &err), 0);
        oci_manifest_done(&m);
        /* no field: the Content-Type (parameters dropped, any case) says it */
        static const char bare[] = "{\"schemaVersion\":2,\"config\":{\"mediaType\":\"" OCI_MT_CONFIG
                                   "\",\"digest\":\"" D0 "\",\"size\":2},\"layers\":[]}";
        assert_int_equal(oci_manifest_parse(bare, strlen(bare), " Application/VND.oci.image.manifest.v1+json ;x=y",
                                            &m, &err),
                         0);
        assert_string_equal(m.media_type, OCI_MT_MANIFEST);
        assert_int_equal(m.n_layers, 0);
        oci_manifest_done(&m);
        assert_int_equal(parse_err(bare, NULL, "no media type"), -EINVAL);
        assert_int_equal(parse_err(bare, "application/json", "not an image manifest"), -EINVAL);
        assert_int_equal(parse_err(bare, OCI_MT_INDEX, "manifests"), -EINVAL);
}

#define CFG "\"config\":{\"mediaType\":\"" OCI_MT_CONFIG "\",\"digest\":\"" D0 "\",\"size\":2}"
#define LAYER(mt, d, sz) "{\"mediaType\":\"" mt "\",\"digest\":\"" d "\",\"size\":" sz "}"
#define TGZ "application/vnd.oci.image.layer.v1.tar+gzip"
#define MANIFEST(body) "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_MANIFEST "\"," body "}"

static void test_manifest_refused(void **state) {
        (void) state;
        parse_err("{\"schemaVersion\":1,\"name\":\"library/debian\",\"tag\":\"12\",\"architecture\":\"amd64\","
                  "\"fsLayers\":[{\"blobSum\":\"" D1 "\"}],\"history\":[],\"signatures\":[]}",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws", "schema version 1");
        parse_err(MANIFEST(CFG ",\"layers\":[]") "x", NULL, "line");
        parse_err("[]", OCI_MT_MANIFEST, "not a JSON object");
        parse_err("{\"mediaType\":\"" OCI_MT_MANIFEST "\"," CFG ",\"layers\":[]}", NULL, "schemaVersion");
        parse_err("{\"schemaVersion\":\"2\",\"mediaType\":\"" OCI_MT_MANIFEST "\"," CFG ",\"layers\":[]}", NULL,
                  "schemaVersion");
        parse_err("{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.artifact.manifest.v1+json\"}", NULL,
                  "not an image manifest");
        parse_err("{\"schemaVersion\":2,\"mediaType\":7}", NULL, "not a string");
        parse_err("{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_MANIFEST "\\u0000\"," CFG ",\"layers\":[]}", NULL,
                  "line 1"); /* jansson refuses NUL */
        /* config */
        parse_err(MANIFEST("\"layers\":[]"), NULL, "without config");
        parse_err(MANIFEST("\"config\":null,\"layers\":[]"), NULL, "without config");
        parse_err(MANIFEST("\"config\":{\"mediaType\":\"application/vnd.cncf.helm.config.v1+json\",\"digest\":\"" D0
                           "\",\"size\":2},\"layers\":[]"),
                  NULL, "not an image config");
        parse_err(MANIFEST("\"config\":{\"mediaType\":\"" OCI_MT_CONFIG "\",\"digest\":\"sha256:abc\",\"size\":2},"
                           "\"layers\":[]"),
                  NULL, "config: the digest");
        /* layers */
        parse_err(MANIFEST(CFG), NULL, "'layers'");
        parse_err(MANIFEST(CFG ",\"layers\":{}"), NULL, "'layers'");
        parse_err(MANIFEST(CFG ",\"layers\":[" LAYER(TGZ, D1, "1") "," LAYER(TGZ, "sha256:" H2 "0", "1") "]"), NULL,
                  "layers[1]: the digest");
        parse_err(MANIFEST(CFG ",\"layers\":[" LAYER(TGZ, "sha512:" H1 H2, "1") "]"), NULL, "digest");
        parse_err(MANIFEST(CFG ",\"layers\":[{\"mediaType\":\"" TGZ "\",\"size\":1}]"), NULL, "digest is missing");
        parse_err(MANIFEST(CFG ",\"layers\":[" LAYER(TGZ, D1, "-1") "]"), NULL, "size");
        parse_err(MANIFEST(CFG ",\"layers\":[" LAYER(TGZ, D1, "68719476737") "]"), NULL, "size");
        parse_err(MANIFEST(CFG ",\"layers\":[" LAYER(TGZ, D1, "1.5") "]"), NULL, "size");
        parse_err(MANIFEST(CFG ",\"layers\":[" LAYER(TGZ, D1, "\"1\"") "]"), NULL, "size");
        parse_err(MANIFEST(CFG ",\"layers\":[" LAYER("application/vnd.oci.image.layer.v1.tar+bzip2", D1, "1") "]"),
                  NULL, "not a tar layer");
        parse_err(MANIFEST(CFG ",\"layers\":[" LAYER("application/vnd.oci.image.config.v1+json", D1, "1") "]"), NULL,
                  "not a tar layer");
        parse_err(MANIFEST(CFG ",\"layers\":[" LAYER("not a type", D1, "1") "]"), NULL, "mediaType");
        parse_err(MANIFEST(CFG ",\"layers\":[7]"), NULL, "layers[0]: not an object");
        /* duplicate keys */
        parse_err(MANIFEST(CFG "," CFG ",\"layers\":[]"), NULL, "duplicate");
        /* an index entry with a bad digest or platform */
        parse_err("{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX "\",\"manifests\":[" LAYER(OCI_MT_MANIFEST,
                                                                                                  "sha256:x", "1") "]}",
                  NULL, "manifests[0]");
        parse_err("{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX "\",\"manifests\":[{\"mediaType\":\"" OCI_MT_MANIFEST
                  "\",\"digest\":\"" D1 "\",\"size\":1,\"platform\":{\"os\":\"linux\"}}]}",
                  NULL, "platform");
        parse_err("{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX "\"}", NULL, "'manifests'");
        /* too large */
        struct oci_manifest m = { 0 };
        char *err = NULL;
        assert_int_equal(oci_manifest_parse("{}", OCI_MANIFEST_MAX + 1, NULL, &m, &err), -EINVAL);
        free(err);
}

static void test_manifest_accepted_types(void **state) {
        (void) state;
        static const char *const types[] = {
                "application/vnd.oci.image.layer.v1.tar",
                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                "application/vnd.oci.image.layer.nondistributable.v1.tar",
                "application/vnd.docker.image.rootfs.foreign.diff.tar",
        };
        for (size_t k = 0; k < ELEMENTSOF(types); k++) {
                _cleanup_free_ char *text =
                        xasprintf(MANIFEST(CFG ",\"layers\":[{\"mediaType\":\"%s\",\"digest\":\"" D1
                                               "\",\"size\":68719476736}]"),
                                  types[k]);
                struct oci_manifest m = { 0 };
                char *err = NULL;
                if (oci_manifest_parse(text, strlen(text), NULL, &m, &err) != 0)
                        fail_msg("%s: %s", types[k], err);
                assert_int_equal(m.layers[0].size, OCI_BLOB_SIZE_MAX);
                oci_manifest_done(&m);
        }
        assert_int_equal(oci_layer_compression(NULL), -EINVAL);
        assert_string_equal(oci_compression_to_string(OCI_COMPRESSION_ZSTD), "zstd");
        assert_string_equal(oci_compression_to_string(OCI_COMPRESSION_NONE), "none");
        assert_null(oci_compression_to_string(_OCI_COMPRESSION_MAX));
}

/* n copies of item, comma separated, inside head ... tail */
static char *repeat(const char *head, const char *item, size_t n, const char *tail) {
        struct strbuf sb = STRBUF_INIT;
        strbuf_addstr(&sb, head);
        for (size_t k = 0; k < n; k++)
                strbuf_addf(&sb, "%s%s", k ? "," : "", item);
        strbuf_addstr(&sb, tail);
        return strbuf_detach(&sb, NULL);
}

static void test_manifest_limits(void **state) {
        (void) state;
        struct oci_manifest m = { 0 };
        char *err = NULL;
        const char *head = "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_MANIFEST "\"," CFG ",\"layers\":[";
        _cleanup_free_ char *ok = repeat(head, LAYER(TGZ, D1, "1"), OCI_MAX_LAYERS, "]}");
        _cleanup_free_ char *over = repeat(head, LAYER(TGZ, D1, "1"), OCI_MAX_LAYERS + 1, "]}");
        assert_int_equal(oci_manifest_parse(ok, strlen(ok), NULL, &m, &err), 0);
        assert_int_equal(m.n_layers, OCI_MAX_LAYERS);
        oci_manifest_done(&m);
        parse_err(over, NULL, "more than");

        const char *ihead = "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX "\",\"manifests\":[";
        _cleanup_free_ char *iok = repeat(ihead, LAYER(OCI_MT_MANIFEST, D1, "1"), OCI_MAX_INDEX_ENTRIES, "]}");
        _cleanup_free_ char *iover = repeat(ihead, LAYER(OCI_MT_MANIFEST, D1, "1"), OCI_MAX_INDEX_ENTRIES + 1, "]}");
        assert_int_equal(oci_manifest_parse(iok, strlen(iok), NULL, &m, &err), 0);
        assert_int_equal(m.n_manifests, OCI_MAX_INDEX_ENTRIES);
        assert_null(oci_index_pick(&m, "linux", "amd64", NULL)); /* no platforms */
        oci_manifest_done(&m);
        parse_err(iover, NULL, "more than");
}

static void test_platform_parse(void **state) {
        (void) state;
        char *os = NULL, *arch = NULL, *variant = NULL, *err = NULL;
        assert_int_equal(oci_platform_parse("linux/amd64", &os, &arch, &variant, &err), 0);
        assert_string_equal(os, "linux");
        assert_string_equal(arch, "amd64");
        assert_null(variant);
        free(os);
        free(arch);
        assert_int_equal(oci_platform_parse("linux/arm64/v8", &os, &arch, &variant, &err), 0);
        assert_string_equal(os, "linux");
        assert_string_equal(arch, "arm64");
        assert_string_equal(variant, "v8");
        free(os);
        free(arch);
        free(variant);
        const char *bad[] = { "", "linux", "linux/", "/amd64", "linux//amd64", "linux/amd64/", "linux/amd64/v8/x",
                              "linux amd64", "linux/amd 64", "linux/am\x01", NULL };
        for (size_t k = 0; bad[k]; k++) {
                os = arch = variant = NULL;
                if (oci_platform_parse(bad[k], &os, &arch, &variant, &err) != -EINVAL)
                        fail_msg("'%s' should not be a platform", bad[k]);
                assert_null(os);
                assert_non_null(err);
                free(err);
        }
        assert_int_equal(oci_platform_parse(NULL, &os, &arch, &variant, &err), -EINVAL);
        free(err);
}

/* ---- image config --------------------------------------------------------- */

static const char docker_config[] =
        "{\"architecture\":\"amd64\",\"config\":{\"Hostname\":\"\",\"User\":\"app:app\",\"ExposedPorts\":"
        "{\"8080/tcp\":{}},\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\","
        "\"LANG=C.UTF-8\",\"EMPTY=\"],\"Entrypoint\":[\"/docker-entrypoint.sh\"],\"Cmd\":[\"nginx\",\"-g\","
        "\"daemon off;\"],\"WorkingDir\":\"/srv\",\"Labels\":{\"maintainer\":\"x\"},\"StopSignal\":\"SIGQUIT\"},"
        "\"created\":\"2024-06-10T00:00:00Z\",\"history\":[{\"created_by\":\"/bin/sh -c #(nop) ADD file:x in /\"}],"
        "\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" D3 "\",\"" D4 "\"]}}";

static void test_config_full(void **state) {
        (void) state;
        struct oci_config c = { 0 };
        char *err = NULL;
        assert_int_equal(oci_config_parse(docker_config, strlen(docker_config), &c, &err), 0);
        assert_string_equal(c.os, "linux");
        assert_string_equal(c.architecture, "amd64");
        assert_int_equal(c.n_env, 3);
        assert_string_equal(c.env[1], "LANG=C.UTF-8");
        assert_string_equal(c.env[2], "EMPTY=");
        assert_null(c.env[3]);
        assert_int_equal(c.n_entrypoint, 1);
        assert_string_equal(c.entrypoint[0], "/docker-entrypoint.sh");
        assert_int_equal(c.n_cmd, 3);
        assert_string_equal(c.cmd[2], "daemon off;");
        assert_string_equal(c.working_dir, "/srv");
        assert_string_equal(c.user, "app:app");
        assert_int_equal(c.n_diff_ids, 2);
        assert_string_equal(c.diff_ids[0], D3);
        assert_string_equal(c.diff_ids[1], D4);

        _cleanup_json_ json_t *j = oci_config_run_json(&c);
        _cleanup_free_ char *s = json_dump_compact(j);
        assert_string_equal(s, "{\"env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\","
                               "\"LANG=C.UTF-8\",\"EMPTY=\"],\"entrypoint\":[\"/docker-entrypoint.sh\"],"
                               "\"cmd\":[\"nginx\",\"-g\",\"daemon off;\"],\"working_dir\":\"/srv\","
                               "\"user\":\"app:app\"}");
        oci_config_done(&c);
        assert_null(c.env);
        oci_config_done(NULL);
}

#define ROOTFS "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}"

static void config_empty(const char *text) {
        struct oci_config c = { 0 };
        char *err = NULL;
        if (oci_config_parse(text, strlen(text), &c, &err) != 0)
                fail_msg("should parse: %s: %s", text, err);
        assert_non_null(c.env);
        assert_null(c.env[0]);
        assert_int_equal(c.n_env + c.n_entrypoint + c.n_cmd + c.n_diff_ids, 0);
        assert_non_null(c.entrypoint);
        assert_non_null(c.cmd);
        assert_non_null(c.diff_ids);
        assert_null(c.working_dir);
        assert_null(c.user);
        _cleanup_json_ json_t *j = oci_config_run_json(&c);
        _cleanup_free_ char *s = json_dump_compact(j);
        assert_string_equal(s, "{\"env\":[],\"entrypoint\":[],\"cmd\":[],\"working_dir\":null,\"user\":null}");
        oci_config_done(&c);
}

static void test_config_missing(void **state) {
        (void) state;
        config_empty("{\"architecture\":\"arm64\",\"os\":\"linux\"," ROOTFS "}");
        config_empty("{\"architecture\":\"arm64\",\"os\":\"linux\",\"config\":null," ROOTFS "}");
        config_empty("{\"architecture\":\"arm64\",\"os\":\"linux\",\"config\":{}," ROOTFS "}");
        config_empty("{\"architecture\":\"arm64\",\"os\":\"linux\",\"config\":{\"Env\":null,\"Entrypoint\":null,"
                     "\"Cmd\":null,\"WorkingDir\":null,\"User\":null}," ROOTFS "}");
        config_empty("{\"architecture\":\"arm64\",\"os\":\"linux\",\"config\":{\"Env\":[],\"Entrypoint\":[],"
                     "\"Cmd\":[],\"WorkingDir\":\"\",\"User\":\"\"}," ROOTFS "}");
}

static void config_bad(const char *text, const char *want) {
        struct oci_config c = { 0 };
        char *err = NULL;
        if (oci_config_parse(text, strlen(text), &c, &err) == 0) {
                oci_config_done(&c);
                fail_msg("should not parse: %s", text);
        }
        assert_null(c.os);
        if (!err || !strstr(err, want))
                fail_msg("'%s' does not say '%s'", err ? err : "(null)", want);
        free(err);
}

#define CONFIG(cfg) "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":" cfg "," ROOTFS "}"

static void test_config_bad(void **state) {
        (void) state;
        config_bad("", "line");
        config_bad("[]", "not a JSON object");
        config_bad("{\"os\":\"linux\"," ROOTFS "}", "architecture");
        config_bad("{\"os\":\"\",\"architecture\":\"amd64\"," ROOTFS "}", "architecture");
        config_bad("{\"architecture\":\"amd64\",\"os\":\"linux\"}", "rootfs");
        config_bad("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\"}}", "diff_ids");
        config_bad("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"x\",\"diff_ids\":[]}}",
                   "rootfs.type");
        config_bad("{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" H1
                   "\"]}}",
                   "rootfs.diff_ids[0]");
        config_bad(CONFIG("\"x\""), "config is not an object");
        config_bad(CONFIG("{\"Env\":[\"NOEQUALS\"]}"), "config.Env[0]");
        config_bad(CONFIG("{\"Env\":[\"A=1\",\"=x\"]}"), "config.Env[1]");
        config_bad(CONFIG("{\"Env\":\"A=1\"}"), "config.Env must be an array");
        config_bad(CONFIG("{\"Env\":[\"A=\\u0000\"]}"), "line 1"); /* jansson refuses NUL */
        config_bad(CONFIG("{\"Cmd\":[\"sh\",1]}"), "config.Cmd[1]");
        config_bad(CONFIG("{\"Entrypoint\":\"/bin/sh\"}"), "config.Entrypoint");
        config_bad(CONFIG("{\"WorkingDir\":1}"), "config.WorkingDir");
        config_bad(CONFIG("{\"User\":[\"root\"]}"), "config.User");
        config_bad(CONFIG("{\"Cmd\":[],\"Cmd\":[]}"), "duplicate");
        struct oci_config c = { 0 };
        char *err = NULL;
        assert_int_equal(oci_config_parse("{}", OCI_CONFIG_MAX + 1, &c, &err), -EINVAL);
        free(err);
}

/* ---- oci_auth.h ---- */

static void test_www_auth(void **state) {
        (void) state;
        struct www_auth a = { 0 };
        assert_int_equal(www_auth_parse("Bearer realm=\"https://auth.docker.io/token\",service=\"registry.docker.io\","
                                        "scope=\"repository:library/debian:pull\"", &a), 0);
        assert_string_equal(a.scheme, "bearer");
        assert_string_equal(a.realm, "https://auth.docker.io/token");
        assert_string_equal(a.service, "registry.docker.io");
        assert_string_equal(a.scope, "repository:library/debian:pull");
        www_auth_done(&a);
        /* case, spaces after commas, unquoted tokens, unknown params, escapes */
        assert_int_equal(www_auth_parse("bearer realm=http://127.0.0.1:5001/token, service=x, error=\"insufficient_scope\","
                                        " scope=\"a\\\"b\"", &a), 0);
        assert_string_equal(a.realm, "http://127.0.0.1:5001/token");
        assert_string_equal(a.service, "x");
        assert_string_equal(a.scope, "a\"b");
        www_auth_done(&a);
        assert_int_equal(www_auth_parse("Basic realm=\"Registry Realm\"", &a), 0);
        assert_string_equal(a.scheme, "basic");
        assert_null(a.service);
        www_auth_done(&a);
        const char *bad[] = { "", "Bearer", "Bearer service=\"x\"", "Bearer realm=\"ftp://x\"", "Digest realm=\"x\"",
                              "Bearer realm=\"https://x", "Bearer realm=\"https://x\nevil\"", "Bearer =x",
                              "Bearer realm=https://x\"y" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                if (www_auth_parse(bad[i], &a) == 0)
                        fail_msg("accepted: %s", bad[i]);
        }
}

static void test_docker_config(void **state) {
        (void) state;
        /* "banger:secret" */
        const char cfg[] = "{\"auths\": {\"https://index.docker.io/v1/\": {\"auth\": \"YmFuZ2VyOnNlY3JldA==\"},"
                           "\"127.0.0.1:5000\": {\"username\": \"u\", \"password\": \"p:w\"},"
                           "\"https://ghcr.io\": {\"auth\": \"YTpi\"}}}";
        char *up = NULL;
        assert_int_equal(docker_config_auth(cfg, sizeof(cfg) - 1, "docker.io", &up), 1);
        assert_string_equal(up, "banger:secret");
        free(up);
        assert_int_equal(docker_config_auth(cfg, sizeof(cfg) - 1, "127.0.0.1:5000", &up), 1);
        assert_string_equal(up, "u:p:w");
        free(up);
        assert_int_equal(docker_config_auth(cfg, sizeof(cfg) - 1, "ghcr.io", &up), 1);
        assert_string_equal(up, "a:b");
        free(up);
        assert_int_equal(docker_config_auth(cfg, sizeof(cfg) - 1, "quay.io", &up), 0);
        assert_int_equal(docker_config_auth("{}", 2, "docker.io", &up), 0);
        /* a credHelpers-only file has no auths: nothing, not an error */
        assert_int_equal(docker_config_auth("{\"credsStore\": \"desktop\"}", 25, "docker.io", &up), 0);
        const char *bad[] = { "not json", "{\"auths\": []}", "{\"auths\": {\"docker.io\": {\"auth\": \"!!!\"}}}",
                              "{\"auths\": {\"docker.io\": {\"auth\": \"bm9jb2xvbg==\"}}}" /* "nocolon" */ };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(docker_config_auth(bad[i], strlen(bad[i]), "docker.io", &up), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_www_auth),
                cmocka_unit_test(test_docker_config),
                cmocka_unit_test(test_ref_good),
                cmocka_unit_test(test_ref_api_host),
                cmocka_unit_test(test_ref_bad),
                cmocka_unit_test(test_ref_length),
                cmocka_unit_test(test_digest_valid),
                cmocka_unit_test(test_image_name),
                cmocka_unit_test(test_image_name_empty),
                cmocka_unit_test(test_oci_manifest),
                cmocka_unit_test(test_docker_manifest),
                cmocka_unit_test(test_oci_index),
                cmocka_unit_test(test_docker_list),
                cmocka_unit_test(test_content_type),
                cmocka_unit_test(test_manifest_refused),
                cmocka_unit_test(test_manifest_accepted_types),
                cmocka_unit_test(test_manifest_limits),
                cmocka_unit_test(test_platform_parse),
                cmocka_unit_test(test_config_full),
                cmocka_unit_test(test_config_missing),
                cmocka_unit_test(test_config_bad),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
