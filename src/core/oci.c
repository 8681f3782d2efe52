/* SPDX-License-Identifier: MIT */
#include "oci.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>

#include "jsonx.h"
#include "macro.h"
#include "strbuf.h"

/* ---- helpers -------------------------------------------------------------- */

/* Messages quote what a registry or a user wrote: control characters in
 * them become '?' so that printing one is always safe. */
_printf_(2, 3) static int fail(char **ret_err, const char *fmt, ...) {
        va_list ap;
        struct strbuf sb = STRBUF_INIT;
        va_start(ap, fmt);
        strbuf_vaddf(&sb, fmt, ap);
        va_end(ap);
        *ret_err = str_defuse(strbuf_detach(&sb, NULL), '?');
        return -EINVAL;
}

static bool lower_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool any_alnum(char c) {
        return lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool lower_hex(const char *s, size_t n) {
        for (size_t k = 0; k < n; k++)
                if (!((s[k] >= '0' && s[k] <= '9') || (s[k] >= 'a' && s[k] <= 'f')))
                        return false;
        return true;
}

bool oci_digest_valid(const char *d) {
        return d && strncmp(d, "sha256:", 7) == 0 && strlen(d) == 71 && lower_hex(d + 7, 64);
}

/* The value of a JSON string, or NULL when v is not one or holds a NUL
 * (jansson accepts "\u0000"; C strings would silently end there). */
static const char *jstr(const json_t *v) {
        if (!json_is_string(v))
                return NULL;
        const char *s = json_string_value(v);
        return strlen(s) == json_string_length(v) ? s : NULL;
}

/* ---- references ----------------------------------------------------------- */

/* path-component := [a-z0-9]+ ((?:[._]|__|[-]*) [a-z0-9]+)* */
static bool path_component_valid(const char *s, size_t n) {
        if (n == 0 || !lower_alnum(s[0]) || !lower_alnum(s[n - 1]))
                return false;
        for (size_t i = 0; i < n;) {
                if (lower_alnum(s[i])) {
                        i++;
                        continue;
                }
                size_t j = i, dashes = 0;
                for (; j < n && !lower_alnum(s[j]); j++)
                        dashes += s[j] == '-';
                size_t len = j - i;
                bool ok = (len == 1 && (s[i] == '.' || s[i] == '_')) || (len == 2 && s[i] == '_' && s[i + 1] == '_') ||
                          dashes == len;
                if (!ok)
                        return false;
                i = j;
        }
        return true;
}

static int path_check(const char *p, char **ret_err) {
        size_t n = strlen(p);
        for (size_t k = 0; k < n; k++)
                if (p[k] >= 'A' && p[k] <= 'Z')
                        return fail(ret_err, "the repository '%.256s' must be lower case", p);
        for (size_t off = 0; off <= n;) {
                const char *slash = memchr(p + off, '/', n - off);
                size_t len = slash ? (size_t) (slash - (p + off)) : n - off;
                if (!path_component_valid(p + off, len))
                        return fail(ret_err,
                                    "'%.*s' is not a repository path component (lower case letters and digits, "
                                    "separated by '.', '_', '__' or dashes)",
                                    (int) (len > 256 ? 256 : len), p + off);
                off += len + 1;
        }
        return 0;
}

/* domain-name := component ('.' component)*, component [a-zA-Z0-9] with inner '-' */
static bool domain_name_valid(const char *s, size_t n) {
        if (n == 0 || !any_alnum(s[0]) || !any_alnum(s[n - 1]))
                return false;
        for (size_t k = 1; k < n; k++) {
                if (s[k] == '.' && (s[k - 1] == '.' || s[k - 1] == '-' || !any_alnum(s[k + 1])))
                        return false;
                if (s[k] != '.' && s[k] != '-' && !any_alnum(s[k]))
                        return false;
        }
        return true;
}

/* host [':' port]; host a domain name, an IPv4 address or "[" IPv6 "]" */
static bool registry_valid(const char *s, size_t n) {
        size_t h;
        if (n > 0 && s[0] == '[') {
                const char *close = memchr(s, ']', n);
                if (!close || close == s + 1)
                        return false;
                h = (size_t) (close - s) + 1;
                for (size_t k = 1; k + 1 < h; k++)
                        if (!(s[k] == ':' || (s[k] >= '0' && s[k] <= '9') || (s[k] >= 'a' && s[k] <= 'f') ||
                              (s[k] >= 'A' && s[k] <= 'F')))
                                return false;
        } else {
                const char *colon = memchr(s, ':', n);
                h = colon ? (size_t) (colon - s) : n;
                if (!domain_name_valid(s, h))
                        return false;
        }
        if (h == n)
                return true;
        size_t digits = n - h - 1;
        if (s[h] != ':' || digits == 0 || digits > 5)
                return false;
        unsigned port = 0;
        for (size_t k = h + 1; k < n; k++) {
                if (s[k] < '0' || s[k] > '9')
                        return false;
                port = port * 10 + (unsigned) (s[k] - '0');
        }
        return port >= 1 && port <= 65535;
}

/* tag := [\w][\w.-]{0,127} */
static bool tag_valid(const char *t) {
        size_t n = strlen(t);
        return n >= 1 && n <= 128 && (any_alnum(t[0]) || t[0] == '_') &&
               strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

/* The first component names a registry when it looks like a host. */
static bool looks_like_registry(const char *s, size_t n) {
        return memchr(s, '.', n) || memchr(s, ':', n) || (n == 9 && strncasecmp(s, "localhost", 9) == 0);
}

/* name := [registry '/'] path; fills registry and repository. */
static int ref_split_name(const char *name, struct oci_ref *ref, char **ret_err) {
        _cleanup_free_ char *registry = NULL, *repository = NULL;
        const char *slash = strchr(name, '/'), *path = name;
        if (slash && looks_like_registry(name, (size_t) (slash - name))) {
                size_t n = (size_t) (slash - name);
                if (!registry_valid(name, n))
                        return fail(ret_err, "'%.*s' is not a registry (host[:port])", (int) (n > 256 ? 256 : n), name);
                registry = xstrndup(name, n);
                for (char *p = registry; *p; p++)
                        if (*p >= 'A' && *p <= 'Z')
                                *p = (char) (*p - 'A' + 'a');
                path = slash + 1;
        }
        if (!registry || strcmp(registry, "index.docker.io") == 0) {
                free(registry);
                registry = xstrdup("docker.io");
        }
        int r = path_check(path, ret_err);
        if (r < 0)
                return r;
        if (strcmp(registry, "docker.io") == 0 && !strchr(path, '/'))
                repository = xasprintf("library/%s", path);
        else
                repository = xstrdup(path);
        if (strlen(registry) + 1 + strlen(repository) > OCI_NAME_MAX)
                return fail(ret_err, "the name '%s/%.64s...' is longer than %u characters", registry, repository,
                            OCI_NAME_MAX);
        ref->registry = TAKE_PTR(registry);
        ref->repository = TAKE_PTR(repository);
        return 0;
}

/* Splits "name[:tag][@digest]" (cut in place) and checks each part. */
static int ref_parse_parts(char *buf, struct oci_ref *ref, char **ret_err) {
        char *digest = strchr(buf, '@'), *tag = NULL;
        if (digest) {
                *digest++ = '\0';
                if (!oci_digest_valid(digest))
                        return fail(ret_err, "the digest '%.80s' is not sha256:<64 lowercase hex digits>", digest);
        }
        char *colon = strrchr(buf, ':'), *slash = strrchr(buf, '/');
        if (colon && (!slash || colon > slash)) {
                *colon = '\0';
                tag = colon + 1;
                if (!tag_valid(tag))
                        return fail(ret_err,
                                    "the tag '%.140s' is not 1-128 letters, digits, '_', '.' or '-' (not starting "
                                    "with '.' or '-')",
                                    tag);
        }
        if (!*buf)
                return fail(ret_err, "it names no repository");
        int r = ref_split_name(buf, ref, ret_err);
        if (r < 0)
                return r;
        ref->tag = tag ? xstrdup(tag) : digest ? NULL : xstrdup("latest");
        ref->digest = digest ? xstrdup(digest) : NULL;
        return 0;
}

int oci_ref_parse(const char *s, struct oci_ref *ret, char **ret_err) {
        struct oci_ref ref = { 0 };
        _cleanup_free_ char *why = NULL, *buf = NULL;
        if (!s || !*s)
                return fail(ret_err, "the image reference is empty");
        if (strlen(s) > OCI_REF_MAX)
                return fail(ret_err, "the image reference '%.64s...' is longer than %u bytes", s, OCI_REF_MAX);
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p <= ' ' || *p == 0x7f)
                        return fail(ret_err, "the image reference '%.100s' contains whitespace or a control character",
                                    s);
        buf = xstrdup(s);
        if (ref_parse_parts(buf, &ref, &why) < 0) {
                oci_ref_done(&ref);
                return fail(ret_err, "'%.*s' is not an image reference: %s", (int) OCI_REF_MAX, s, why);
        }
        *ret = ref;
        return 0;
}

void oci_ref_done(struct oci_ref *r) {
        if (!r)
                return;
        free(r->registry);
        free(r->repository);
        free(r->tag);
        free(r->digest);
        *r = (struct oci_ref) { 0 };
}

char *oci_ref_string(const struct oci_ref *r) {
        return xasprintf("%s/%s%s%s%s%s", strempty(r->registry), strempty(r->repository), r->tag ? ":" : "",
                         strempty(r->tag), r->digest ? "@" : "", strempty(r->digest));
}

const char *oci_ref_api_host(const struct oci_ref *r) {
        if (!r->registry)
                return NULL;
        return strcmp(r->registry, "docker.io") == 0 ? "registry-1.docker.io" : r->registry;
}

/* Lower case, [^a-z0-9-] -> '-', runs of '-' collapsed, trimmed, <= 63 chars. */
static char *dns_label_from(const char *s) {
        char *out = xmalloc(strlen(s) + 1);
        size_t n = 0;
        for (const char *p = s; *p; p++) {
                char c = *p;
                if (c >= 'A' && c <= 'Z')
                        c = (char) (c - 'A' + 'a');
                else if (!lower_alnum(c))
                        c = '-';
                if (c == '-' && (n == 0 || out[n - 1] == '-'))
                        continue;
                out[n++] = c;
        }
        if (n > 63)
                n = 63;
        while (n > 0 && out[n - 1] == '-')
                n--;
        out[n] = '\0';
        if (n == 0) {
                free(out);
                return NULL;
        }
        return out;
}

char *oci_ref_image_name(const struct oci_ref *r) {
        _cleanup_free_ char *raw = NULL;
        if (!r->repository)
                return NULL;
        const char *slash = strrchr(r->repository, '/');
        const char *last = slash ? slash + 1 : r->repository;
        if (r->tag && strcmp(r->tag, "latest") != 0)
                raw = xasprintf("%s-%s", last, r->tag);
        else if (!r->tag && r->digest && strchr(r->digest, ':'))
                raw = xasprintf("%s-%.12s", last, strchr(r->digest, ':') + 1);
        else
                raw = xstrdup(last);
        return dns_label_from(raw);
}

/* ---- manifests and indexes ------------------------------------------------ */

static const struct {
        const char *type;
        enum oci_kind kind;
} manifest_types[] = {
        { OCI_MT_MANIFEST, OCI_KIND_MANIFEST },
        { DOCKER_MT_MANIFEST, OCI_KIND_MANIFEST },
        { OCI_MT_INDEX, OCI_KIND_INDEX },
        { DOCKER_MT_LIST, OCI_KIND_INDEX },
};

static const struct {
        const char *type;
        enum oci_compression compression;
} layer_types[] = {
        { "application/vnd.oci.image.layer.v1.tar", OCI_COMPRESSION_NONE },
        { "application/vnd.oci.image.layer.v1.tar+gzip", OCI_COMPRESSION_GZIP },
        { "application/vnd.oci.image.layer.v1.tar+zstd", OCI_COMPRESSION_ZSTD },
        { "application/vnd.oci.image.layer.nondistributable.v1.tar", OCI_COMPRESSION_NONE },
        { "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", OCI_COMPRESSION_GZIP },
        { "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", OCI_COMPRESSION_ZSTD },
        { "application/vnd.docker.image.rootfs.diff.tar", OCI_COMPRESSION_NONE },
        { "application/vnd.docker.image.rootfs.diff.tar.gzip", OCI_COMPRESSION_GZIP },
        { "application/vnd.docker.image.rootfs.foreign.diff.tar", OCI_COMPRESSION_NONE },
        { "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", OCI_COMPRESSION_GZIP },
};

static const char *const compression_names[_OCI_COMPRESSION_MAX] = {
        [OCI_COMPRESSION_NONE] = "none",
        [OCI_COMPRESSION_GZIP] = "gzip",
        [OCI_COMPRESSION_ZSTD] = "zstd",
};

const char *oci_compression_to_string(enum oci_compression c) {
        return c >= 0 && c < _OCI_COMPRESSION_MAX ? compression_names[c] : NULL;
}

int oci_layer_compression(const char *media_type) {
        for (size_t k = 0; media_type && k < ELEMENTSOF(layer_types); k++)
                if (strcmp(media_type, layer_types[k].type) == 0)
                        return (int) layer_types[k].compression;
        return -EINVAL;
}

/* 0 when the type is none of the four manifest and index types */
static int manifest_kind(const char *mt) {
        for (size_t k = 0; mt && k < ELEMENTSOF(manifest_types); k++)
                if (strcmp(mt, manifest_types[k].type) == 0)
                        return (int) manifest_types[k].kind;
        return 0;
}

static bool is_image_manifest_type(const char *mt) {
        return manifest_kind(mt) == OCI_KIND_MANIFEST;
}

/* RFC 6838: type "/" subtype, each 1-127 of [A-Za-z0-9!#$&^_.+-], starting alphanumeric */
static bool media_type_valid(const char *s) {
        static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$&^_.+-";
        size_t t = strspn(s, chars);
        if (t == 0 || t > 127 || !any_alnum(s[0]) || s[t] != '/')
                return false;
        const char *sub = s + t + 1;
        size_t n = strspn(sub, chars);
        return n >= 1 && n <= 127 && any_alnum(sub[0]) && sub[n] == '\0';
}

/* The media type of a Content-Type header: parameters and blanks dropped, lower case. */
static char *content_type_base(const char *ct) {
        size_t n = strcspn(ct, ";");
        while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
                n--;
        while (n > 0 && (*ct == ' ' || *ct == '\t')) {
                ct++;
                n--;
        }
        char *s = xstrndup(ct, n);
        for (char *p = s; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                        *p = (char) (*p - 'A' + 'a');
        return s;
}

/* os, architecture, variant: 1-64 of [A-Za-z0-9._-] */
static bool platform_word_valid(const char *s) {
        size_t n = s ? strlen(s) : 0;
        return n >= 1 && n <= 64 &&
               strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

void oci_descriptor_done(struct oci_descriptor *d) {
        free(d->media_type);
        free(d->digest);
        free(d->os);
        free(d->architecture);
        free(d->variant);
        *d = (struct oci_descriptor) { 0 };
}

static void descriptors_free(struct oci_descriptor *v, size_t n) {
        for (size_t k = 0; v && k < n; k++)
                oci_descriptor_done(&v[k]);
        free(v);
}

static int platform_parse_json(json_t *p, struct oci_descriptor *d, char **ret_err) {
        if (!json_is_object(p))
                return fail(ret_err, "platform is not an object");
        const char *os = jstr(json_object_get(p, "os")), *arch = jstr(json_object_get(p, "architecture"));
        json_t *v = json_object_get(p, "variant");
        const char *variant = jstr(v);
        if (!platform_word_valid(os) || !platform_word_valid(arch))
                return fail(ret_err, "platform.os and platform.architecture must be 1-64 of [A-Za-z0-9._-]");
        if (v && !json_is_null(v) && !(variant && (!*variant || platform_word_valid(variant))))
                return fail(ret_err, "platform.variant must be 1-64 of [A-Za-z0-9._-]");
        d->os = xstrdup(os);
        d->architecture = xstrdup(arch);
        d->variant = variant && *variant ? xstrdup(variant) : NULL;
        return 0;
}

/* A descriptor object; its platform only for index entries. */
static int descriptor_parse(json_t *o, bool index, struct oci_descriptor *ret, char **ret_err) {
        struct oci_descriptor d = { 0 };
        if (!json_is_object(o))
                return fail(ret_err, "not an object");
        const char *mt = jstr(json_object_get(o, "mediaType")), *digest = jstr(json_object_get(o, "digest"));
        json_t *size = json_object_get(o, "size"), *platform = json_object_get(o, "platform");
        if (!mt || !media_type_valid(mt))
                return fail(ret_err, "mediaType is missing or not a media type");
        if (!digest)
                return fail(ret_err, "digest is missing or not a string");
        if (!oci_digest_valid(digest))
                return fail(ret_err, "the digest '%.80s' is not sha256:<64 lowercase hex digits>", digest);
        if (!json_is_integer(size) || json_integer_value(size) < 0 || json_integer_value(size) > OCI_BLOB_SIZE_MAX)
                return fail(ret_err, "size must be an integer from 0 to 64 GiB");
        if (index && platform && !json_is_null(platform)) {
                int r = platform_parse_json(platform, &d, ret_err);
                if (r < 0)
                        return r;
        }
        d.media_type = xstrdup(mt);
        d.digest = xstrdup(digest);
        d.size = (int64_t) json_integer_value(size);
        *ret = d;
        return 0;
}

/* "layers" (index false) or an index's "manifests" (index true). */
static int descriptors_parse(json_t *a, bool index, struct oci_descriptor **ret, size_t *ret_n, char **ret_err) {
        const char *what = index ? "manifests" : "layers";
        size_t max = index ? OCI_MAX_INDEX_ENTRIES : OCI_MAX_LAYERS, n = json_array_size(a);
        if (!json_is_array(a))
                return fail(ret_err, "'%s' is missing or not an array", what);
        if (n > max)
                return fail(ret_err, "%zu %s, more than the %zu allowed", n, what, max);
        struct oci_descriptor *v = n ? xcalloc(n, sizeof(*v)) : NULL;
        for (size_t k = 0; k < n; k++) {
                _cleanup_free_ char *why = NULL;
                int r = descriptor_parse(json_array_get(a, k), index, &v[k], &why);
                if (r == 0 && !index && oci_layer_compression(v[k].media_type) < 0)
                        r = fail(&why, "the media type '%.100s' is not a tar layer (plain, gzip or zstd)",
                                 v[k].media_type);
                if (r < 0) {
                        descriptors_free(v, n);
                        return fail(ret_err, "%s[%zu]: %s", what, k, why);
                }
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* The type the document declares: its "mediaType" wins over the
 * Content-Type; when both name a manifest or index type, they must agree on
 * which of the two it is. */
static int manifest_type(json_t *j, const char *content_type, char **ret_mt, enum oci_kind *ret_kind,
                         char **ret_err) {
        _cleanup_free_ char *ct = content_type ? content_type_base(content_type) : NULL;
        json_t *f = json_object_get(j, "mediaType");
        int ct_kind = manifest_kind(ct);
        const char *mt;
        if (f) {
                mt = jstr(f);
                if (!mt)
                        return fail(ret_err, "mediaType is not a string");
                if (!manifest_kind(mt))
                        return fail(ret_err, "the media type '%.100s' is not an image manifest or index", mt);
                if (ct_kind && ct_kind != manifest_kind(mt))
                        return fail(ret_err, "the Content-Type '%s' and the mediaType '%s' disagree", ct, mt);
        } else {
                if (!ct || !*ct)
                        return fail(ret_err, "no media type: neither a mediaType field nor a Content-Type");
                if (!ct_kind)
                        return fail(ret_err, "the media type '%.100s' is not an image manifest or index", ct);
                mt = ct;
        }
        *ret_mt = xstrdup(mt);
        *ret_kind = (enum oci_kind) manifest_kind(mt);
        return 0;
}

static int manifest_config(json_t *v, struct oci_descriptor *ret, char **ret_err) {
        _cleanup_free_ char *why = NULL;
        struct oci_descriptor d = { 0 };
        if (!v || json_is_null(v))
                return fail(ret_err, "an image manifest without config");
        if (descriptor_parse(v, false, &d, &why) < 0)
                return fail(ret_err, "config: %s", why);
        if (strcmp(d.media_type, OCI_MT_CONFIG) != 0 && strcmp(d.media_type, DOCKER_MT_CONFIG) != 0) {
                int r = fail(ret_err, "config: the media type '%.100s' is not an image config", d.media_type);
                oci_descriptor_done(&d);
                return r;
        }
        *ret = d;
        return 0;
}

static int manifest_body(json_t *j, const char *content_type, struct oci_manifest *m, char **ret_err) {
        if (!json_is_object(j))
                return fail(ret_err, "not a JSON object");
        json_t *v = json_object_get(j, "schemaVersion");
        if (json_is_integer(v) && json_integer_value(v) == 1)
                return fail(ret_err, "schema version 1 manifests are not supported (deprecated)");
        if (!json_is_integer(v) || json_integer_value(v) != 2)
                return fail(ret_err, "schemaVersion must be 2");
        int r = manifest_type(j, content_type, &m->media_type, &m->kind, ret_err);
        if (r < 0)
                return r;
        if (m->kind == OCI_KIND_INDEX)
                return descriptors_parse(json_object_get(j, "manifests"), true, &m->manifests, &m->n_manifests,
                                         ret_err);
        r = manifest_config(json_object_get(j, "config"), &m->config, ret_err);
        if (r < 0)
                return r;
        return descriptors_parse(json_object_get(j, "layers"), false, &m->layers, &m->n_layers, ret_err);
}

int oci_manifest_parse(const char *text, size_t len, const char *content_type, struct oci_manifest *ret,
                       char **ret_err) {
        struct oci_manifest m = { 0 };
        _cleanup_free_ char *why = NULL;
        json_error_t je;
        if (len > OCI_MANIFEST_MAX)
                return fail(ret_err, "the manifest is larger than %u bytes", OCI_MANIFEST_MAX);
        /* duplicate keys would let two readers see two manifests */
        _cleanup_json_ json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        if (!j)
                return fail(ret_err, "manifest: line %d: %s", je.line, je.text);
        if (manifest_body(j, content_type, &m, &why) < 0) {
                oci_manifest_done(&m);
                return fail(ret_err, "manifest: %s", why);
        }
        *ret = m;
        return 0;
}

void oci_manifest_done(struct oci_manifest *m) {
        if (!m)
                return;
        free(m->media_type);
        oci_descriptor_done(&m->config);
        descriptors_free(m->layers, m->n_layers);
        descriptors_free(m->manifests, m->n_manifests);
        *m = (struct oci_manifest) { 0 };
}

const struct oci_descriptor *oci_index_pick(const struct oci_manifest *idx, const char *os, const char *arch,
                                            const char *variant) {
        if (!idx || idx->kind != OCI_KIND_INDEX || !os || !arch)
                return NULL;
        bool any_variant = !variant || strcmp(arch, "amd64") == 0;
        for (size_t k = 0; k < idx->n_manifests; k++) {
                const struct oci_descriptor *d = &idx->manifests[k];
                if (!is_image_manifest_type(d->media_type) || !d->os || !d->architecture)
                        continue;
                if (strcmp(d->os, os) != 0 || strcmp(d->architecture, arch) != 0)
                        continue;
                if (!any_variant && (!d->variant || strcmp(d->variant, variant) != 0))
                        continue;
                return d;
        }
        return NULL;
}

/* An entry oci_index_platforms lists: an image manifest for a known platform. */
static bool platform_listed(const struct oci_descriptor *d) {
        return is_image_manifest_type(d->media_type) && d->os && d->architecture && strcmp(d->os, "unknown") != 0 &&
               strcmp(d->architecture, "unknown") != 0;
}

static bool same_platform(const struct oci_descriptor *a, const struct oci_descriptor *b) {
        return strcmp(a->os, b->os) == 0 && strcmp(a->architecture, b->architecture) == 0 &&
               strcmp(strempty(a->variant), strempty(b->variant)) == 0;
}

char *oci_index_platforms(const struct oci_manifest *idx) {
        struct strbuf sb = STRBUF_INIT;
        for (size_t k = 0; idx && k < idx->n_manifests; k++) {
                const struct oci_descriptor *d = &idx->manifests[k];
                bool seen = false;
                if (!platform_listed(d))
                        continue;
                for (size_t i = 0; i < k && !seen; i++)
                        seen = platform_listed(&idx->manifests[i]) && same_platform(&idx->manifests[i], d);
                if (seen)
                        continue;
                strbuf_addf(&sb, "%s%s/%s%s%s", sb.len ? ", " : "", d->os, d->architecture, d->variant ? "/" : "",
                            strempty(d->variant));
        }
        return strbuf_detach(&sb, NULL);
}

int oci_platform_parse(const char *s, char **ret_os, char **ret_arch, char **ret_variant, char **ret_err) {
        _cleanup_free_ char *buf = NULL;
        char *parts[3] = { NULL, NULL, NULL };
        size_t n = 0;
        if (!s || strlen(s) > 3 * 64 + 2)
                goto bad;
        buf = xstrdup(s);
        for (char *p = buf; p && n < 3; n++) {
                parts[n] = p;
                p = strchr(p, '/');
                if (p)
                        *p++ = '\0';
                if (!platform_word_valid(parts[n]) || (p && n == 2))
                        goto bad;
        }
        if (n < 2)
                goto bad;
        *ret_os = xstrdup(parts[0]);
        *ret_arch = xstrdup(parts[1]);
        *ret_variant = parts[2] ? xstrdup(parts[2]) : NULL;
        return 0;
bad:
        return fail(ret_err, "'%.200s' is not a platform (os/architecture[/variant], e.g. linux/amd64)", strempty(s));
}

/* ---- image config --------------------------------------------------------- */

static bool env_entry_valid(const char *s) {
        return s[0] != '=' && strchr(s, '=');
}

/* A JSON array of strings (absent or null: empty) as a NULL-terminated
 * vector; each string accepted by ok (NULL: any). */
static int strv_from_json(json_t *a, const char *what, size_t max, bool (*ok)(const char *), char ***ret,
                          size_t *ret_n, char **ret_err) {
        size_t n = 0;
        if (a && !json_is_null(a)) {
                if (!json_is_array(a))
                        return fail(ret_err, "%s must be an array of strings", what);
                n = json_array_size(a);
                if (n > max)
                        return fail(ret_err, "%s has %zu entries, more than the %zu allowed", what, n, max);
        }
        char **v = xcalloc(n + 1, sizeof(char *));
        for (size_t k = 0; k < n; k++) {
                const char *s = jstr(json_array_get(a, k));
                if (!s || (ok && !ok(s))) {
                        strv_free(v);
                        if (!s)
                                return fail(ret_err, "%s[%zu] is not a string (without NUL)", what, k);
                        return fail(ret_err, "%s[%zu] '%.100s' is not valid here", what, k, s);
                }
                v[k] = xstrdup(s);
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* A string field that may be absent, null or "" (all NULL). */
static int opt_string(json_t *o, const char *key, char **ret, char **ret_err) {
        json_t *v = json_object_get(o, key);
        if (!v || json_is_null(v))
                return 0;
        const char *s = jstr(v);
        if (!s)
                return fail(ret_err, "config.%s is not a string (without NUL)", key);
        *ret = *s ? xstrdup(s) : NULL;
        return 0;
}

/* The "config" object: absent or null leaves every run field empty. */
static int config_run_fields(json_t *cfg, struct oci_config *c, char **ret_err) {
        int r;
        if (cfg && !json_is_null(cfg) && !json_is_object(cfg))
                return fail(ret_err, "config is not an object");
        cfg = json_is_object(cfg) ? cfg : NULL; /* json_object_get(NULL, ...) is NULL */
        r = strv_from_json(json_object_get(cfg, "Env"), "config.Env", OCI_MAX_CONFIG_STRINGS, env_entry_valid,
                           &c->env, &c->n_env, ret_err);
        if (r == 0)
                r = strv_from_json(json_object_get(cfg, "Entrypoint"), "config.Entrypoint", OCI_MAX_CONFIG_STRINGS,
                                   NULL, &c->entrypoint, &c->n_entrypoint, ret_err);
        if (r == 0)
                r = strv_from_json(json_object_get(cfg, "Cmd"), "config.Cmd", OCI_MAX_CONFIG_STRINGS, NULL, &c->cmd,
                                   &c->n_cmd, ret_err);
        if (r == 0)
                r = opt_string(cfg, "WorkingDir", &c->working_dir, ret_err);
        if (r == 0)
                r = opt_string(cfg, "User", &c->user, ret_err);
        return r;
}

static int config_rootfs(json_t *rootfs, struct oci_config *c, char **ret_err) {
        if (!json_is_object(rootfs))
                return fail(ret_err, "rootfs is missing or not an object");
        const char *type = jstr(json_object_get(rootfs, "type"));
        if (!type || strcmp(type, "layers") != 0)
                return fail(ret_err, "rootfs.type must be \"layers\"");
        json_t *ids = json_object_get(rootfs, "diff_ids");
        if (!json_is_array(ids))
                return fail(ret_err, "rootfs.diff_ids is missing or not an array");
        return strv_from_json(ids, "rootfs.diff_ids", OCI_MAX_LAYERS, oci_digest_valid, &c->diff_ids, &c->n_diff_ids,
                              ret_err);
}

static int config_body(json_t *j, struct oci_config *c, char **ret_err) {
        if (!json_is_object(j))
                return fail(ret_err, "not a JSON object");
        const char *os = jstr(json_object_get(j, "os")), *arch = jstr(json_object_get(j, "architecture"));
        if (!platform_word_valid(os) || !platform_word_valid(arch))
                return fail(ret_err, "os and architecture must be 1-64 of [A-Za-z0-9._-]");
        c->os = xstrdup(os);
        c->architecture = xstrdup(arch);
        int r = config_run_fields(json_object_get(j, "config"), c, ret_err);
        if (r < 0)
                return r;
        return config_rootfs(json_object_get(j, "rootfs"), c, ret_err);
}

int oci_config_parse(const char *text, size_t len, struct oci_config *ret, char **ret_err) {
        struct oci_config c = { 0 };
        _cleanup_free_ char *why = NULL;
        json_error_t je;
        if (len > OCI_CONFIG_MAX)
                return fail(ret_err, "the image config is larger than %u bytes", OCI_CONFIG_MAX);
        _cleanup_json_ json_t *j = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
        if (!j)
                return fail(ret_err, "image config: line %d: %s", je.line, je.text);
        if (config_body(j, &c, &why) < 0) {
                oci_config_done(&c);
                return fail(ret_err, "image config: %s", why);
        }
        *ret = c;
        return 0;
}

void oci_config_done(struct oci_config *c) {
        if (!c)
                return;
        free(c->os);
        free(c->architecture);
        strv_free(c->env);
        strv_free(c->entrypoint);
        strv_free(c->cmd);
        free(c->working_dir);
        free(c->user);
        strv_free(c->diff_ids);
        *c = (struct oci_config) { 0 };
}

static json_t *strv_json(char *const *v, size_t n) {
        json_t *a = json_array();
        for (size_t k = 0; v && k < n; k++)
                json_array_append_new(a, json_string(v[k]));
        return a;
}

static json_t *string_or_null(const char *s) {
        return s ? json_string(s) : json_null();
}

json_t *oci_config_run_json(const struct oci_config *c) {
        json_t *o = json_object();
        json_object_set_new(o, "env", strv_json(c->env, c->n_env));
        json_object_set_new(o, "entrypoint", strv_json(c->entrypoint, c->n_entrypoint));
        json_object_set_new(o, "cmd", strv_json(c->cmd, c->n_cmd));
        json_object_set_new(o, "working_dir", string_or_null(c->working_dir));
        json_object_set_new(o, "user", string_or_null(c->user));
        return o;
}
