/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * OCI / Docker image metadata, the pure parts (no I/O, no globals, no
 * logging): image references, manifests, indexes and image configs as a
 * registry serves them. Everything here reads untrusted input and is fuzzed
 * (tests/fuzz/fuzz_oci.c); the downloading is the daemon's
 * (src/daemon/artifacts/oci/).
 *
 * Specs followed: OCI image-spec v1 (manifest, index, config, descriptor),
 * the distribution spec's reference grammar, Docker image manifest v2
 * schema 2 and its manifest list.
 *
 * Conventions: parsers return 0 or -EINVAL with a malloc'd, human readable
 * message in *ret_err (control characters in it are replaced by '?'); they
 * write *ret only on success. The _done() functions free what a parse
 * filled in, accept a zeroed struct and leave the struct zeroed.
 */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OCI_MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_MT_INDEX "application/vnd.oci.image.index.v1+json"
#define DOCKER_MT_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define DOCKER_MT_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
/* the Accept header value a client sends for manifests: all four */
#define OCI_MANIFEST_ACCEPT OCI_MT_INDEX ", " OCI_MT_MANIFEST ", " DOCKER_MT_LIST ", " DOCKER_MT_MANIFEST

#define OCI_MT_CONFIG "application/vnd.oci.image.config.v1+json"
#define DOCKER_MT_CONFIG "application/vnd.docker.container.image.v1+json"

/* Bounds on what a caller downloads and what a parse accepts. */
#define OCI_REF_MAX 512u              /* bytes of a reference string */
#define OCI_NAME_MAX 255u             /* "registry/repository" */
#define OCI_MANIFEST_MAX (4u << 20)   /* a manifest or index document */
#define OCI_CONFIG_MAX (8u << 20)     /* an image config blob */
#define OCI_BLOB_SIZE_MAX (64ll << 30) /* a descriptor's size */
#define OCI_MAX_LAYERS 1000u
#define OCI_MAX_INDEX_ENTRIES 1000u
#define OCI_MAX_CONFIG_STRINGS 4096u  /* per Env / Entrypoint / Cmd array */

/* ---- references ---------------------------------------------------------- */

/* [registry/]repository[:tag][@sha256:<hex>]. After a successful parse
 * registry and repository are set, and at least one of tag and digest. */
struct oci_ref {
        char *registry;   /* owned; "docker.io" when none given; "host:port" kept as written, host lower-cased */
        char *repository; /* owned; "library/debian" for a one-part docker.io repo */
        char *tag;        /* owned; NULL when only a digest was given; "latest" when neither */
        char *digest;     /* owned; "sha256:<64 lowercase hex>" or NULL */
};

int oci_ref_parse(const char *s, struct oci_ref *ret, char **ret_err);
void oci_ref_done(struct oci_ref *r);
/* canonical "registry/repository[:tag][@digest]"; parses back to the same fields */
char *oci_ref_string(const struct oci_ref *r);
/* the host to talk to: "registry-1.docker.io" for docker.io, else registry (borrowed) */
const char *oci_ref_api_host(const struct oci_ref *r);
/* The image name banger gives a pulled image: the last path component of the
 * repository, '-' and the tag ("docker.io/library/debian:bookworm" ->
 * "debian-bookworm"); tag "latest" is dropped ("alpine"); a ref with a digest
 * and no tag gives "<last>-<first 12 hex>" (with both, the tag wins). The
 * result is a DNS label: lower case, every char not [a-z0-9-] becomes '-',
 * runs of '-' collapse, no leading/trailing '-', at most 63 chars. NULL if
 * nothing is left. */
char *oci_ref_image_name(const struct oci_ref *r);

/* only "sha256:" + 64 lowercase hex digits */
bool oci_digest_valid(const char *d);

/* ---- manifests and indexes ------------------------------------------------ */

struct oci_descriptor;
void oci_descriptor_done(struct oci_descriptor *d); /* frees the fields, zeroes d */

struct oci_descriptor {
        char *media_type;   /* owned */
        char *digest;       /* owned, valid (oci_digest_valid) */
        int64_t size;       /* 0 ... OCI_BLOB_SIZE_MAX */
        char *os;           /* owned; index entries with a platform only, else NULL */
        char *architecture; /* owned; as os */
        char *variant;      /* owned; NULL when the platform has none */
};

enum oci_kind {
        OCI_KIND_MANIFEST = 1,
        OCI_KIND_INDEX = 2,
};

struct oci_manifest {
        enum oci_kind kind;
        char *media_type;                 /* owned; as declared (the field, else the content type) */
        struct oci_descriptor config;     /* manifests: an OCI or Docker image config */
        struct oci_descriptor *layers;    /* owned; manifests: oldest first */
        size_t n_layers;                  /* <= OCI_MAX_LAYERS */
        struct oci_descriptor *manifests; /* owned; indexes */
        size_t n_manifests;               /* <= OCI_MAX_INDEX_ENTRIES */
};

/* content_type: the HTTP Content-Type (parameters allowed) or NULL. The
 * JSON "mediaType" wins when present; the two must not disagree on kind.
 * Refused: schemaVersion other than 2, unknown media types, bad digests,
 * negative or too large sizes, layer types other than (OCI or Docker) tar,
 * tar+gzip, tar+zstd and their nondistributable/foreign variants, configs
 * that are not image configs, too many layers or entries, a manifest
 * without config, a document whose type neither the field nor the
 * Content-Type names (a caller reading a file passes the type it expects).
 * Index entries may have any media type; only image manifests among them
 * are picked. layers and manifests are NULL when empty. */
int oci_manifest_parse(const char *text, size_t len, const char *content_type, struct oci_manifest *ret,
                       char **ret_err);
void oci_manifest_done(struct oci_manifest *m);

enum oci_compression {
        OCI_COMPRESSION_NONE,
        OCI_COMPRESSION_GZIP,
        OCI_COMPRESSION_ZSTD,
        _OCI_COMPRESSION_MAX,
};
/* the compression of a layer media type oci_manifest_parse accepts, or -EINVAL */
int oci_layer_compression(const char *media_type);
const char *oci_compression_to_string(enum oci_compression c);

/* The first image manifest entry of an index for os/arch/variant (variant
 * NULL: any; ignored for amd64); borrowed, NULL if none. */
const struct oci_descriptor *oci_index_pick(const struct oci_manifest *idx, const char *os, const char *arch,
                                            const char *variant);
/* "linux/amd64, linux/arm64/v8" for error messages: the platforms of the
 * index's image manifests, each once, "unknown" ones (attestations) left
 * out; "" if none. Never NULL. */
char *oci_index_platforms(const struct oci_manifest *idx);
/* "linux/amd64", "linux/arm64/v8": *ret_variant is NULL without a variant. */
int oci_platform_parse(const char *s, char **ret_os, char **ret_arch, char **ret_variant, char **ret_err);

/* ---- image config --------------------------------------------------------- */

/* The image config blob. The vectors are owned, NULL-terminated and
 * non-NULL after a parse (possibly empty). */
struct oci_config {
        char *os, *architecture;             /* owned, non-empty */
        char **env;                          /* "K=V", K non-empty */
        size_t n_env;
        char **entrypoint;
        size_t n_entrypoint;
        char **cmd;
        size_t n_cmd;
        char *working_dir;                   /* owned; NULL when unset or empty */
        char *user;                          /* owned; NULL when unset or empty */
        char **diff_ids;                     /* rootfs.diff_ids, each valid (oci_digest_valid) */
        size_t n_diff_ids;                   /* <= OCI_MAX_LAYERS */
};

int oci_config_parse(const char *text, size_t len, struct oci_config *ret, char **ret_err);
void oci_config_done(struct oci_config *c);
/* The run fields as banger stores them in an image's manifest.json (new reference):
 * {"env":[..],"entrypoint":[..],"cmd":[..],"working_dir":s|null,"user":s|null} */
json_t *oci_config_run_json(const struct oci_config *c);
