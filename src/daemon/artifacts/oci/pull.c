/* SPDX-License-Identifier: MIT */
#include "pull.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "artifacts/oci/archive.h"
#include "artifacts/oci/blobcache.h"
#include "artifacts/oci/flatten.h"
#include "artifacts/oci/inject.h"
#include "artifacts/oci/registry.h"
#include "artifacts/oci/stream.h"
#include "archive_path.h"
#include "fsutil.h"
#include "jsonx.h"
#include "log.h"
#include "oci.h"
#include "oci_auth.h"
#include "parse.h"
#include "procscan.h"
#include "sha256.h"
#include "store/store_artifacts.h"
#include "strbuf.h"

#define LAYOUT_TAG_KEY "org.opencontainers.image.ref.name"

/* Where the image comes from: a registry's repository or a layout dir
 * (given, or unpacked from an oci-archive or a docker-archive). */
struct source {
        struct oci_ref ref;   /* registry */
        struct registry *reg; /* registry */
        char *dir;            /* layout */
        char *tag;            /* layout: NULL = its only image */
        char *display;        /* canonical, for messages and the image's source */
        char *unpacked;       /* an archive's: dir, removed at the end */
        char *archive;        /* the archive file */
        json_t *docker;       /* docker-archive: its manifest.json entry */
        json_t *docker_blobs; /* docker-archive: digest -> path inside dir */
};

struct pull {
        struct artifacts *a;
        const struct oci_pull_opts *o;
        const struct progress *p; /* &locked: the fetch's threads report through it */
        const struct progress *outer;
        struct progress locked;
        pthread_mutex_t mu;    /* the fetch's shared state */
        pthread_mutex_t pmu;   /* one report at a time (held while the client is written to) */
        struct source src;
        char *blob_dir;
        char *os, *arch, *variant;
        struct oci_manifest m; /* the image manifest */
        char digest[72];       /* its digest */
        struct oci_config cfg;
        char **layers;         /* cache paths, oldest first (n_layers of them) */
        struct layer_stream **streams; /* per layer: decompressed while fetched (stream.h), or NULL */
        struct layer_pool *pool;       /* the streams' memory */
        bool *torn;                    /* per layer: its stream, joined before the end, was not whole */
        uint64_t *got;         /* per layer: bytes fetched so far (the fetch's threads) */
        uint64_t got_sum;      /* their sum (atomic) */
        bool fetch_failed;     /* atomic: a fetch failed, the others give up */
        char *staging;         /* the new image's dir */
        json_t *run;           /* the run config as stored (uid/gid resolved) */
};

bool oci_source_is_local(const char *ref) {
        return strncmp(ref, "oci:", 4) == 0 || strncmp(ref, "oci-archive:", 12) == 0 ||
               strncmp(ref, "docker-archive:", 15) == 0;
}

char *oci_ref_default_name(const char *ref) {
        struct oci_ref r = { 0 };
        char *why = NULL, *name = NULL;
        if (!oci_source_is_local(ref) && strpbrk(ref, "/:@") && oci_ref_parse(ref, &r, &why) == 0)
                name = oci_ref_image_name(&r);
        free(why);
        oci_ref_done(&r);
        return name;
}

static void source_done(struct source *s) {
        if (s->unpacked)
                (void) rm_rf(s->unpacked);
        free(s->unpacked);
        free(s->archive);
        json_decref(s->docker);
        json_decref(s->docker_blobs);
        oci_ref_done(&s->ref);
        registry_close(s->reg);
        free(s->dir);
        free(s->tag);
        free(s->display);
}

/* "PATH[:tag]" after the scheme: PATH absolute; a tag has no '/'. */
static int split_local(const char *ref, const char *spec, char **ret_path, char **ret_tag, struct op_error *e) {
        const char *colon = strrchr(spec, ':');
        if (colon && strchr(colon, '/'))
                colon = NULL;
        *ret_path = colon ? xstrndup(spec, (size_t) (colon - spec)) : xstrdup(spec);
        *ret_tag = colon && colon[1] ? xstrdup(colon + 1) : NULL;
        if ((*ret_path)[0] != '/')
                return op_fail_as(e, RPC_BAD_REQUEST, -EINVAL, "%s: the path must be absolute", ref);
        return 0;
}

/* "oci:DIR[:tag]": DIR a real directory. */
static int open_layout(struct pull *q, const char *ref, struct op_error *e) {
        struct source *s = &q->src;
        struct stat st;
        int rc = split_local(ref, ref + 4, &s->dir, &s->tag, e);
        if (rc < 0)
                return rc;
        if (lstat(s->dir, &st) < 0 || !S_ISDIR(st.st_mode))
                return op_fail_as(e, RPC_BAD_REQUEST, -ENOENT, "%s: %s is not a directory", ref, s->dir);
        s->display = xasprintf("oci:%s%s%s", s->dir, s->tag ? ":" : "", strempty(s->tag));
        return 0;
}

/* "oci-archive:FILE[:tag]" and "docker-archive:FILE": unpacked into the cache. */
static int open_archive(struct pull *q, const char *ref, bool docker, struct op_error *e) {
        struct source *s = &q->src;
        int rc = split_local(ref, strchr(ref, ':') + 1, &s->archive, &s->tag, e);
        if (rc < 0)
                return rc;
        if (docker && s->tag)
                return op_fail_as(e, RPC_BAD_REQUEST, -EINVAL, "%s: a docker-archive is named without a tag", ref);
        s->display = xasprintf("%s:%s%s%s", docker ? "docker-archive" : "oci-archive", s->archive, s->tag ? ":" : "",
                               strempty(s->tag));
        _cleanup_free_ char *parent = path_join(q->a->layout->cache_dir, "oci");
        s->unpacked = staging_dir(parent, "unpack");
        s->dir = xstrdup(s->unpacked);
        if (mkdir_p(s->dir, 0700) < 0)
                return op_fail(e, -errno, "cannot create %s: %s", s->dir, strerror(errno));
        progress_stage(q->p, "unpack", "%s", s->archive);
        return oci_archive_unpack(s->archive, s->dir, q->p, e);
}

/* The user's registry credentials: $DOCKER_CONFIG/config.json or ~/.docker/config.json. */
static char *docker_creds(const char *registry) {
        const char *dc = getenv("DOCKER_CONFIG"), *home = getenv("HOME");
        _cleanup_free_ char *path = dc && *dc ? path_join(dc, "config.json")
                                              : home && *home ? xasprintf("%s/.docker/config.json", home) : NULL;
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        char *userpwd = NULL;
        if (!path || read_file_nofollow(path, 1u << 20, &text, &len) < 0)
                return NULL;
        if (docker_config_auth(text, len, registry, &userpwd) < 0)
                log_warn("%s: no usable credentials for %s in it", path, registry);
        return userpwd;
}

static int open_registry(struct pull *q, const char *ref, struct op_error *e) {
        char *why = NULL;
        if (oci_ref_parse(ref, &q->src.ref, &why) < 0) {
                int rc = op_fail_as(e, RPC_BAD_REQUEST, -EINVAL, "'%s' is not an image reference: %s", ref, why);
                free(why);
                return rc;
        }
        q->src.display = oci_ref_string(&q->src.ref);
        _cleanup_free_ char *userpwd = docker_creds(q->src.ref.registry);
        /* insecure_registries: "host[:port], ..." */
        _cleanup_free_ char *list = xstrdup(strempty(config_live_get(q->a->config)->insecure_registries));
        const char *insecure[65] = { 0 };
        size_t n = 0;
        char *save = NULL;
        for (char *t = strtok_r(list, ", ", &save); t && n < 64; t = strtok_r(NULL, ", ", &save))
                insecure[n++] = t;
        struct registry_opts ro = { .insecure = insecure, .userpwd = userpwd, .p = q->p };
        return registry_open(&q->src.ref, &ro, &q->src.reg, e);
}

/* ---- the blob cache ------------------------------------------------------------ */

static char *cache_path(const struct pull *q, const char *digest) {
        return xasprintf("%s/%s", q->blob_dir, digest + 7);
}

struct blob_progress {
        const struct pull *q;
        const char *stage;
        uint64_t total;
        uint64_t *got;                /* a layer's slot in q->got: the sum of them is reported; NULL: done is */
        bool want_stream;             /* a fetched layer: decompress it on the way */
        struct layer_stream *stream;  /* cache_blob's, when it fetched one */
};

static void on_blob_bytes(void *ud, uint64_t done, uint64_t total) {
        struct blob_progress *b = ud;
        (void) total;
        if (b->got) { /* (a layer's count only grows, but a retry starts it again) */
                uint64_t was = __atomic_exchange_n(b->got, done, __ATOMIC_RELAXED);
                done = __atomic_add_fetch((uint64_t *) &b->q->got_sum, done - was, __ATOMIC_RELAXED);
        }
        progress_bytes(b->q->p, b->stage, done, b->total);
}

static void on_blob_written(void *ud, int fd, uint64_t bytes) {
        layer_stream_written(((struct blob_progress *) ud)->stream, fd, bytes);
}

/* A file copied into dest (O_NOFOLLOW, regular, exactly size bytes, the
 * digest checked on the way, progress and cancellation as a download's);
 * nothing left at dest on failure. */
static int copy_verified(const char *src, const char *dest, const char *digest, int64_t size, struct blob_progress *bp,
                         struct op_error *e) {
        _cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        struct stat st;
        if (in < 0 || fstat(in, &st) < 0 || !S_ISREG(st.st_mode))
                return op_fail(e, -ENOENT, "blob %s: %s is missing or not a regular file", digest, src);
        if (st.st_size != size)
                return op_fail(e, -EBADMSG, "blob %s: %s has %lld bytes, the manifest says %lld", digest, src,
                               (long long) st.st_size, (long long) size);
        _cleanup_close_ int out = open(dest, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (out < 0)
                return op_fail(e, -errno, "cannot create %s: %s", dest, strerror(errno));
        struct sha256 h;
        if (sha256_init(&h) < 0)
                return op_fail(e, -ENOMEM, "sha256");
        char buf[1 << 16], hex[65];
        ssize_t n;
        int rc = 0;
        uint64_t done = 0;
        if (bp)
                layer_stream_written(bp->stream, out, 0);
        while (rc == 0 && (n = read(in, buf, sizeof(buf))) > 0) {
                sha256_update(&h, buf, (size_t) n);
                rc = write_all(out, buf, (size_t) n);
                done += (uint64_t) n;
                if (bp && rc == 0)
                        layer_stream_written(bp->stream, out, done);
                if (bp && rc == 0 && progress_cancelled(bp->q->p))
                        rc = op_fail(e, -ECANCELED, "cancelled");
                else if (bp && (done & ((1u << 22) - 1)) < sizeof(buf))
                        on_blob_bytes(bp, done, (uint64_t) size);
        }
        sha256_final_hex(&h, hex);
        if (rc == 0 && n < 0)
                rc = -errno;
        if (rc == 0 && strcmp(hex, digest + 7) != 0)
                rc = op_fail(e, -EBADMSG, "blob %s: %s has digest sha256:%s", digest, src, hex);
        else if (rc < 0 && rc != -ECANCELED)
                rc = op_fail(e, rc, "copying %s: %s", src, strerror(-rc));
        if (rc < 0)
                unlink(dest);
        return rc;
}

/* Fetches (registry) or copies (layout) one blob into the cache. */
static int fetch_blob(struct pull *q, const struct oci_descriptor *d, const char *tmp, struct blob_progress *bp,
                      struct op_error *e) {
        if (q->src.reg)
                return registry_blob(q->src.reg, d->digest, d->size, tmp, on_blob_bytes,
                                     bp->stream ? on_blob_written : NULL, bp, e);
        const char *rel = json_string_value(json_object_get(q->src.docker_blobs, d->digest));
        _cleanup_free_ char *src = rel ? path_join(q->src.dir, rel)
                                       : xasprintf("%s/blobs/sha256/%s", q->src.dir, d->digest + 7);
        return copy_verified(src, tmp, d->digest, d->size, bp, e);
}

/* The blob's path in the cache, fetched unless a verified copy is there;
 * concurrent pulls of one blob wait for the first. */
static int cache_blob(struct pull *q, const struct oci_descriptor *d, struct blob_progress *bp, char **ret,
                      struct op_error *e) {
        _cleanup_free_ char *path = cache_path(q, d->digest), *key = xasprintf("blob:%s", d->digest);
        struct stat st;
        char hex[65];
        int rc = 0;
        if (!inflight_begin(q->a, key, q->p, &rc, e)) {
                if (rc < 0)
                        return rc;
        } else {
                bool have = lstat(path, &st) == 0 && S_ISREG(st.st_mode) && sha256_file_hex(path, hex) == 0 &&
                            strcmp(hex, d->digest + 7) == 0;
                if (have && st.st_size != d->size) /* the blob is right, the manifest is not: keep the blob */
                        rc = op_fail_as(e, RPC_BAD_REQUEST, -EBADMSG, "%s gives blob %s %lld bytes; it has %lld",
                                        q->src.display, d->digest, (long long) d->size, (long long) st.st_size);
                else if (!have) {
                        _cleanup_free_ char *tmp = xasprintf("%s.tmp-%d", path, (int) getpid());
                        unlink(path);
                        if (bp->want_stream)
                                bp->stream = layer_stream_new(q->pool);
                        rc = fetch_blob(q, d, tmp, bp, e);
                        if (rc == 0 && rename(tmp, path) < 0)
                                rc = op_fail(e, -errno, "cannot rename %s: %s", tmp, strerror(errno));
                        layer_stream_end(bp->stream, rc == 0);
                        if (rc < 0)
                                unlink(tmp);
                }
                inflight_end(q->a, key, rc, e);
                if (rc < 0)
                        return rc;
        }
        *ret = xstrdup(path);
        return 0;
}

/* A small blob (config, index, manifest) read whole from the cache. */
static int small_blob(struct pull *q, const struct oci_descriptor *d, size_t max, char **ret, size_t *ret_len,
                      struct op_error *e) {
        if (d->size < 0 || (uint64_t) d->size > max)
                return op_fail(e, -EFBIG, "blob %s is too large (%lld bytes)", d->digest, (long long) d->size);
        struct blob_progress bp = { .q = q, .stage = "metadata" };
        _cleanup_free_ char *path = NULL;
        int rc = cache_blob(q, d, &bp, &path, e);
        if (rc == 0 && read_file_nofollow(path, max, ret, ret_len) < 0)
                rc = op_fail(e, -EIO, "cannot read %s", path);
        return rc;
}

/* ---- manifests ------------------------------------------------------------------ */

/* The layout's index.json entry for the tag (or its only entry). */
static int layout_entry(struct pull *q, struct oci_descriptor *ret, struct op_error *e) {
        _cleanup_free_ char *path = path_join(q->src.dir, "index.json"), *text = NULL;
        size_t len = 0;
        if (read_file_nofollow(path, OCI_MANIFEST_MAX, &text, &len) < 0)
                return op_fail_as(e, RPC_BAD_REQUEST, -ENOENT, "%s: no readable index.json (not an OCI image layout)",
                                  q->src.dir);
        _cleanup_json_ json_t *j = json_loadb(text, len, 0, NULL);
        json_t *list = json_object_get(j, "manifests"), *it, *pick = NULL;
        size_t i, n = json_array_size(list);
        _cleanup_strbuf_ struct strbuf tags = STRBUF_INIT;
        json_array_foreach(list, i, it) {
                const char *t = json_string_value(json_object_get(json_object_get(it, "annotations"), LAYOUT_TAG_KEY));
                if (t)
                        strbuf_addf(&tags, "%s%s", tags.len ? ", " : "", t);
                if ((q->src.tag && t && strcmp(t, q->src.tag) == 0) || (!q->src.tag && n == 1))
                        pick = it;
        }
        if (!pick)
                return op_fail_as(e, RPC_NOT_FOUND, -ENOENT, "%s: %s (tags: %s)", q->src.dir,
                                  q->src.tag ? "no image with that tag" : "several images: name one with :TAG",
                                  tags.len ? tags.buf : "none");
        const char *mt = json_string_value(json_object_get(pick, "mediaType"));
        const char *dg = json_string_value(json_object_get(pick, "digest"));
        json_int_t size = json_integer_value(json_object_get(pick, "size"));
        if (!mt || !dg || !oci_digest_valid(dg) || size <= 0 || size > OCI_MANIFEST_MAX)
                return op_fail_as(e, RPC_BAD_REQUEST, -EINVAL, "%s: a malformed entry in index.json", q->src.dir);
        *ret = (struct oci_descriptor) { .media_type = xstrdup(mt), .digest = xstrdup(dg), .size = size };
        return 0;
}

/* One manifest document by digest or tag: its bytes, type and digest. */
static int get_manifest(struct pull *q, const struct oci_descriptor *d, const char *reference, char **ret,
                        size_t *ret_len, char **ret_type, char ret_digest[72], struct op_error *e) {
        if (q->src.reg)
                return registry_manifest(q->src.reg, d ? d->digest : reference, ret, ret_len, ret_type, ret_digest, e);
        int rc = small_blob(q, d, OCI_MANIFEST_MAX, ret, ret_len, e);
        if (rc == 0) {
                *ret_type = xstrdup(d->media_type);
                snprintf(ret_digest, 72, "%s", d->digest);
        }
        return rc;
}

static int parse_manifest(const char *text, size_t len, const char *type, const char *what, struct oci_manifest *ret,
                          struct op_error *e) {
        char *why = NULL;
        if (oci_manifest_parse(text, len, type, ret, &why) == 0)
                return 0;
        int rc = op_fail_as(e, RPC_BAD_REQUEST, -EINVAL, "%s: %s", what, why);
        free(why);
        return rc;
}

/* A file of the unpacked docker-archive as a descriptor (its digest computed). */
static int docker_file(struct pull *q, json_t *jpath, const char *media_type, struct oci_descriptor *ret,
                       struct op_error *e) {
        _cleanup_free_ char *rel = NULL;
        const char *p = json_string_value(jpath);
        if (!p || archive_path_normalize(p, &rel) < 0 || !*rel)
                return op_fail_as(e, RPC_BAD_REQUEST, -EINVAL, "%s: a bad path in manifest.json", q->src.display);
        _cleanup_free_ char *path = path_join(q->src.dir, rel);
        struct stat st;
        char hex[65];
        if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode) || sha256_file_hex(path, hex) < 0)
                return op_fail_as(e, RPC_BAD_REQUEST, -ENOENT, "%s: %s is missing", q->src.display, rel);
        *ret = (struct oci_descriptor) { .media_type = xstrdup(media_type), .digest = xasprintf("sha256:%s", hex),
                                         .size = (int64_t) st.st_size };
        json_object_set_new(q->src.docker_blobs, ret->digest, json_string(rel));
        return 0;
}

/* docker-archive: manifest.json [{"Config", "RepoTags", "Layers"}], one image;
 * its "digest" is the config's (the image ID). */
static int docker_manifest(struct pull *q, struct op_error *e) {
        _cleanup_free_ char *path = path_join(q->src.dir, "manifest.json"), *text = NULL;
        size_t len = 0;
        if (read_file_nofollow(path, OCI_MANIFEST_MAX, &text, &len) < 0)
                return op_fail_as(e, RPC_BAD_REQUEST, -ENOENT, "%s: no manifest.json (not a docker-archive)",
                                  q->src.display);
        _cleanup_json_ json_t *j = json_loadb(text, len, 0, NULL);
        json_t *m = json_array_get(j, 0), *layers = json_object_get(m, "Layers"), *it;
        size_t n = json_array_size(layers), i;
        if (json_array_size(j) != 1 || n == 0 || n > OCI_MAX_LAYERS)
                return op_fail_as(e, RPC_BAD_REQUEST, -EINVAL, "%s: manifest.json must describe one image with 1..%u layers",
                                  q->src.display, OCI_MAX_LAYERS);
        q->src.docker = json_incref(m);
        q->src.docker_blobs = json_object();
        q->m = (struct oci_manifest) { .kind = OCI_KIND_MANIFEST, .media_type = xstrdup(DOCKER_MT_MANIFEST),
                                       .layers = xcalloc(n, sizeof(struct oci_descriptor)) };
        int rc = docker_file(q, json_object_get(m, "Config"), DOCKER_MT_CONFIG, &q->m.config, e);
        json_array_foreach(layers, i, it) {
                if (rc == 0)
                        rc = docker_file(q, it, "application/vnd.docker.image.rootfs.diff.tar", &q->m.layers[i], e);
                q->m.n_layers = rc == 0 ? i + 1 : q->m.n_layers;
        }
        if (rc == 0)
                snprintf(q->digest, sizeof(q->digest), "%s", q->m.config.digest);
        return rc;
}

/* The image manifest for the platform: the reference's, or an index's pick. */
static int resolve(struct pull *q, struct op_error *e) {
        if (q->src.docker_blobs || strncmp(q->src.display, "docker-archive:", 15) == 0)
                return docker_manifest(q, e);
        struct oci_descriptor entry = { 0 };
        _cleanup_free_ char *text = NULL, *type = NULL;
        size_t len = 0;
        int rc = 0;
        if (!q->src.reg)
                rc = layout_entry(q, &entry, e);
        const char *reference = q->src.ref.digest ? q->src.ref.digest : q->src.ref.tag;
        if (rc == 0)
                rc = get_manifest(q, q->src.reg ? NULL : &entry, reference, &text, &len, &type, q->digest, e);
        if (rc == 0)
                rc = parse_manifest(text, len, type, q->src.display, &q->m, e);
        oci_descriptor_done(&entry);
        if (rc < 0 || q->m.kind == OCI_KIND_MANIFEST)
                return rc;
        const struct oci_descriptor *d = oci_index_pick(&q->m, q->os, q->arch, q->variant);
        if (!d) {
                _cleanup_free_ char *have = oci_index_platforms(&q->m);
                return op_fail_as(e, RPC_NOT_FOUND, -ENOENT, "%s has no image for %s/%s%s%s (it has: %s)",
                                  q->src.display, q->os, q->arch, q->variant ? "/" : "", strempty(q->variant), have);
        }
        struct oci_descriptor pick = { .media_type = xstrdup(d->media_type), .digest = xstrdup(d->digest),
                                       .size = d->size };
        free(text);
        free(type);
        text = type = NULL;
        oci_manifest_done(&q->m);
        rc = get_manifest(q, &pick, NULL, &text, &len, &type, q->digest, e);
        if (rc == 0)
                rc = parse_manifest(text, len, type, q->src.display, &q->m, e);
        if (rc == 0 && q->m.kind != OCI_KIND_MANIFEST)
                rc = op_fail_as(e, RPC_BAD_REQUEST, -EINVAL, "%s: an index inside an index", q->src.display);
        oci_descriptor_done(&pick);
        return rc;
}

static int read_config(struct pull *q, struct op_error *e) {
        _cleanup_free_ char *text = NULL, *why = NULL;
        size_t len = 0;
        int rc = small_blob(q, &q->m.config, OCI_CONFIG_MAX, &text, &len, e);
        if (rc < 0)
                return rc;
        if (oci_config_parse(text, len, &q->cfg, &why) < 0)
                return op_fail_as(e, RPC_BAD_REQUEST, -EINVAL, "%s: its config: %s", q->src.display, why);
        if (strcmp(q->cfg.os, q->os) != 0 || strcmp(q->cfg.architecture, q->arch) != 0)
                return op_fail_as(e, RPC_BAD_REQUEST, -EINVAL, "%s is an image for %s/%s, not %s/%s", q->src.display,
                                  q->cfg.os, q->cfg.architecture, q->os, q->arch);
        return 0;
}

static bool pull_cancelled(void *ud) {
        return progress_cancelled(((const struct pull *) ud)->p);
}

static bool always(void *ud) {
        (void) ud;
        return true;
}

/* A layer the stream can decompress (gzip by its media type). */
static bool gzip_layer(const struct oci_descriptor *d) {
        size_t n = d->media_type ? strlen(d->media_type) : 0;
        return n >= 4 && strcmp(d->media_type + n - 4, "gzip") == 0;
}

static int by_size_desc(const void *a, const void *b, void *ud) {
        const struct oci_descriptor *l = ud;
        int64_t x = l[*(const size_t *) a].size, y = l[*(const size_t *) b].size;
        size_t i = *(const size_t *) a, j = *(const size_t *) b;
        return x > y ? -1 : x < y ? 1 : i < j ? -1 : i > j ? 1 : 0;
}

/* Layer i's stream joined (NULL: there was none); true when its plain tar
 * was whole. */
static bool stream_done(struct pull *q, size_t i, bool (*cancel)(void *ud)) {
        bool whole = layer_stream_join(q->streams[i], cancel, q);
        q->streams[i] = NULL;
        return whole;
}

/* Every stream joined (cancel: pull_cancelled, or always to stop them). */
static void streams_join(struct pull *q, bool (*cancel)(void *ud)) {
        for (size_t i = 0; q->streams && i < q->m.n_layers; i++)
                if (q->streams[i])
                        stream_done(q, i, cancel);
}

/* at most this many layers decompressed while fetched at once (the rest: when the flatten comes to them) */
#define STREAMS_MAX 8
/* at most this much of their data held for the flatten (the layer it reads
 * may hold as much again, stream.h) */
#define POOL_BYTES (UINT64_C(256) << 20)
/* at most this many blobs fetched at once */
#define FETCHES_MAX 4

/* The fetch's threads take layers from `order` (the largest first: its
 * decompression is the longest) until none is left or one failed. */
struct fetch {
        struct pull *q;
        size_t *order, n, next; /* under q->mu */
        char *op_id;            /* the request's, for the log lines of every thread */
        size_t granted;         /* streams granted whose layer is still being fetched */
        bool all_gzip;          /* every layer can have a stream (else none is of use: plain_bytes) */
        uint64_t total;
        int rc;                 /* the first failure's */
        struct op_error e;
};

/* Under q->mu: a stream for layer i when fewer than STREAMS_MAX run (the
 * ones whose thread ended keep their data for the flatten). */
static bool stream_granted(struct fetch *f, size_t i) {
        struct pull *q = f->q;
        size_t live = f->granted;
        for (size_t k = 0; k < q->m.n_layers; k++)
                live += q->streams[k] && !layer_stream_finished(q->streams[k]);
        if (live >= STREAMS_MAX || !f->all_gzip)
                return false;
        f->granted++;
        return true;
}

/* A stream over a cached blob (cache_blob verified it): decompressed the
 * same way as a fetched one, so that the flatten can read every layer as it
 * comes. NULL: none to be had. */
static struct layer_stream *stream_cached(struct pull *q, const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return NULL;
        struct layer_stream *s = layer_stream_new(q->pool);
        layer_stream_written(s, fd, 0); /* (the stream opens the file again) */
        layer_stream_written(s, fd, (uint64_t) st.st_size);
        layer_stream_end(s, true);
        return s;
}

static void *fetch_run(void *arg) {
        struct fetch *f = arg;
        struct pull *q = f->q;
        size_t n = q->m.n_layers;
        log_set_op_id(f->op_id);
        for (;;) {
                pthread_mutex_lock(&q->mu);
                size_t i = f->rc == 0 && f->next < f->n ? f->order[f->next++] : n;
                bool granted = i < n && stream_granted(f, i);
                pthread_mutex_unlock(&q->mu);
                if (i == n)
                        return NULL;
                const struct oci_descriptor *d = &q->m.layers[i];
                struct blob_progress bp = { .q = q, .stage = "layers", .total = f->total, .got = &q->got[i],
                                            .want_stream = granted };
                struct op_error e = OP_ERROR_INIT;
                progress_stage(q->p, "layer", "%zu/%zu %.19s %.1f MiB", i + 1, n, d->digest,
                               (double) d->size / (1 << 20));
                char *path = NULL;
                int rc = cache_blob(q, d, &bp, &path, &e);
                if (rc == 0) /* (a cached blob, or a small one, said nothing yet) */
                        on_blob_bytes(&bp, (uint64_t) d->size, (uint64_t) d->size);
                if (rc == 0 && granted && !bp.stream)
                        bp.stream = stream_cached(q, path);
                pthread_mutex_lock(&q->mu);
                q->layers[i] = path;
                q->streams[i] = bp.stream;
                f->granted -= granted;
                if (rc < 0 && f->rc == 0) { /* the others stop too (pull_cancelled) */
                        f->rc = rc;
                        op_error_move(&f->e, &e);
                        __atomic_store_n(&q->fetch_failed, true, __ATOMIC_RELAXED);
                }
                pthread_mutex_unlock(&q->mu);
                op_error_done(&e);
        }
}

/* Every layer into the cache, up to FETCHES_MAX at once; a gzip one fetched
 * is also decompressed on the way, into memory (q->pool), up to STREAMS_MAX
 * at once. The streams stay in q->streams for the flatten (build joins
 * them). */
static int fetch_layers(struct pull *q, struct op_error *e) {
        size_t n = q->m.n_layers, n_threads = n < FETCHES_MAX ? n : FETCHES_MAX, started = 0;
        struct fetch f = { .q = q, .n = n, .order = xcalloc(n + 1, sizeof(size_t)), .e = OP_ERROR_INIT,
                           .op_id = xstrdup(log_get_op_id()) };
        f.all_gzip = layer_stream_supported();
        for (size_t i = 0; i < n; i++) {
                f.total += (uint64_t) q->m.layers[i].size;
                f.all_gzip = f.all_gzip && gzip_layer(&q->m.layers[i]);
        }
        progress_stage(q->p, "layers", "%zu, %.1f MiB", n, (double) f.total / (1 << 20));
        q->layers = xcalloc(n + 1, sizeof(char *));
        q->streams = xcalloc(n + 1, sizeof(*q->streams));
        q->torn = xcalloc(n + 1, sizeof(bool));
        q->pool = layer_pool_new(POOL_BYTES);
        q->got = xcalloc(n + 1, sizeof(*q->got));
        for (size_t i = 0; i < n; i++)
                f.order[i] = i;
        qsort_r(f.order, n, sizeof(size_t), by_size_desc, q->m.layers);
        pthread_t *threads = xcalloc(n_threads + 1, sizeof(pthread_t));
        for (; started + 1 < n_threads; started++) /* this thread is one of them */
                if (pthread_create(&threads[started], NULL, fetch_run, &f) != 0)
                        break;
        fetch_run(&f);
        for (size_t t = 0; t < started; t++)
                pthread_join(threads[t], NULL);
        free(threads);
        free(f.order);
        free(f.op_id);
        int rc = f.rc;
        if (rc < 0) {
                op_error_move(e, &f.e);
                streams_join(q, always); /* a failed pull does not wait for them */
        } else if (pull_cancelled(q))
                rc = op_fail(e, -ECANCELED, "cancelled");
        op_error_done(&f.e);
        return rc;
}

/* ---- the image ------------------------------------------------------------------ */

static void on_flatten(void *ud, size_t layer, size_t n_layers, uint64_t done, uint64_t total) {
        const struct pull *q = ud;
        (void) layer;
        (void) n_layers;
        progress_bytes(q->p, "flatten", done, total);
}

/* oci_flatten_opts.next. A layer that got no stream while fetched (all
 * STREAMS_MAX were busy, or its stream ended short before anything read it:
 * plain_bytes) gets one over its cached blob now; the streams of the layers
 * before it that have ended are joined first. (Those still checking their
 * gzip data to its end run on beside: one thread each, and a chunk.) */
static ssize_t next_stream(void *ud, size_t layer, const void **buf) {
        struct pull *q = ud;
        if (!buf) {
                layer_stream_discard(q->streams[layer]);
                return 0;
        }
        if (!q->streams[layer]) {
                for (size_t i = 0; i < layer; i++) /* (the flatten is past them) */
                        if (q->streams[i] && layer_stream_finished(q->streams[i]))
                                q->torn[i] = !stream_done(q, i, NULL);
                q->streams[layer] = stream_cached(q, q->layers[layer]);
                if (!q->streams[layer])
                        return -ENOTSUP;
        }
        return layer_stream_next(q->streams[layer], buf, pull_cancelled, q);
}

/* What the plain tars will hold together, when every layer is gzip with a
 * stream or can have one (0 otherwise: the flatten then decompresses the
 * layers itself, and so on a build without ISA-L): an ended
 * one's size, a running one's from its blob's gzip trailer (ISIZE: the
 * last member's size mod 4 GiB, anyone's to write; an estimate the flatten
 * checks, and not believed when it says the data shrank (a size that
 * wrapped, several members), is below what the stream has inflated
 * already, or says more than deflate's 1032:1; at most 4 GiB a layer, and
 * the image made for it is sparse and shrunk after). */
static uint64_t plain_bytes(struct pull *q) {
        uint64_t sum = 0;
        for (size_t i = 0; i < q->m.n_layers; i++) {
                struct stat st;
                unsigned char t[4];
                uint64_t have = 0; /* no stream yet: the flatten starts one (next_stream) */
                int r = -1;
                if (q->streams[i] && (r = layer_stream_size(q->streams[i], &have)) < 0) {
                        (void) stream_done(q, i, always); /* ended short, nothing read: next_stream starts another */
                        have = 0;
                }
                if (!q->streams[i] && gzip_layer(&q->m.layers[i]) && layer_stream_supported())
                        r = 0;
                if (r < 0)
                        return 0;
                if (r == 1) {
                        sum += have;
                        continue;
                }
                _cleanup_close_ int fd = open(q->layers[i], O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                if (fd < 0 || fstat(fd, &st) < 0 || st.st_size < 18 || pread(fd, t, 4, st.st_size - 4) != 4)
                        return 0;
                uint64_t isize = (uint64_t) t[0] | (uint64_t) t[1] << 8 | (uint64_t) t[2] << 16 | (uint64_t) t[3] << 24;
                uint64_t gz = (uint64_t) st.st_size;
                if (isize + gz / 64 + 1024 < gz || isize < have || isize > 1032 * gz)
                        return 0;
                sum += isize;
        }
        return sum;
}

/* After the flatten that read them: every stream joined, true when each
 * plain tar was whole (its gzip data checked to the end, CRC and size as
 * two passes would; the flatten stops reading at the tar's end). */
static bool streams_whole(struct pull *q) {
        bool whole = true;
        for (size_t i = 0; i < q->m.n_layers; i++)
                whole = (q->streams[i] ? stream_done(q, i, pull_cancelled) : !q->torn[i]) && whole;
        return whole;
}

/* The flatten, reading the streams as they inflate when it can (flatten.h,
 * next), from the blobs otherwise or when that could not be done. */
static int flatten(struct pull *q, const char *rootfs, struct oci_flatten_stats *st, struct op_error *e) {
        struct oci_flatten_opts fo = { .size_bytes = q->o->size_bytes, .progress = on_flatten,
                                       .cancel = pull_cancelled, .ud = q };
        size_t n = q->m.n_layers;
        fo.tar_bytes = plain_bytes(q);
        fo.next = fo.tar_bytes ? next_stream : NULL;
        if (!fo.next)
                streams_join(q, always); /* the flatten decompresses the blobs itself */
        if (fo.next)
                progress_stage(q->p, "flatten", "%zu layers into ext4 (read as they are decompressed)", n);
        else
                progress_stage(q->p, "flatten", "%zu layers into ext4", n);
        int rc = oci_flatten((const char *const *) q->layers, n, rootfs, &fo, st, e);
        if (rc == 0 && fo.next && !streams_whole(q)) { /* the tars ended well, a gzip trailer did not */
                unlink(rootfs);
                rc = pull_cancelled(q) ? op_fail(e, -ECANCELED, "cancelled")
                                       : op_fail(e, -EAGAIN, "a layer's gzip data did not check out to its end");
        }
        if (rc == -EAGAIN && fo.next) {
                log_info("%s: %s; flattened again from the blobs", q->src.display, e->msg);
                progress_stage(q->p, "flatten", "again, from the blobs (%s)", e->msg);
                op_error_done(e);
                streams_join(q, always);
                fo.next = NULL;
                fo.tar_bytes = 0;
                rc = oci_flatten((const char *const *) q->layers, n, rootfs, &fo, st, e);
        }
        streams_join(q, always); /* all ended already unless it failed */
        return rc;
}

static int write_manifest(struct pull *q, const char *staging, const char *name, const char *kernel,
                          struct op_error *e) {
        _cleanup_json_ json_t *m = json_pack("{s:i, s:s, s:s, s:s, s:{s:s, s:s, s:s, s:o}}", "format", 1, "name", name,
                                             "init_mode", "fast", "kernel_ref", kernel, "oci", "source",
                                             q->src.display, "manifest_digest", q->digest, "platform",
                                             q->cfg.architecture, "config", json_incref(q->run));
        _cleanup_free_ char *text = m ? json_dumps(m, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL,
                            *path = path_join(staging, "manifest.json");
        if (!text)
                return op_fail(e, -ENOMEM, "cannot encode the image's manifest");
        int rc = write_file_atomic(path, text, strlen(text), 0644);
        return rc < 0 ? op_fail(e, rc, "writing %s: %s", path, strerror(-rc)) : 0;
}

/* The kernel of the default image's catalog entry (what banger's own images boot). */
static char *default_kernel(const struct artifacts *a) {
        _cleanup_json_ json_t *cat = image_catalog();
        _cleanup_json_ json_t *e = catalog_find(cat, "images", config_live_get(a->config)->default_image_name);
        const char *k = json_string_value(json_object_get(e, "kernel_ref"));
        return xstrdup(k ? k : "debian-cloud-6.1");
}

/* The name's image: 1 when it is this very manifest (nothing to do), 0 when
 * there is none, else the error. */
static int already_there(struct pull *q, const char *name, struct op_error *e) {
        struct image_row r;
        if (store_image_get(q->a->store, name, &r) < 0)
                return 0;
        _cleanup_free_ char *dir = xstrdup(r.rootfs_path), *text = NULL;
        char *slash = strrchr(dir, '/');
        size_t len = 0;
        if (slash)
                *slash = '\0';
        _cleanup_free_ char *mpath = path_join(dir, "manifest.json");
        _cleanup_json_ json_t *m = read_file_nofollow(mpath, 16u << 20, &text, &len) == 0
                                           ? json_loadb(text, len, 0, NULL) : NULL;
        const char *have = json_string_value(json_object_get(json_object_get(m, "oci"), "manifest_digest"));
        bool same = r.managed && have && strcmp(have, q->digest) == 0;
        image_row_done(&r);
        if (same)
                return 1;
        return op_fail_as(e, RPC_ALREADY_EXISTS, -EEXIST,
                          "image '%s' already exists%s%s (banger image delete %s, or --name another)", name,
                          have ? " from manifest " : "", strempty(have), name);
}

static int build(struct pull *q, const char *staging, const char *name, struct op_error *e) {
        _cleanup_free_ char *rootfs = path_join(staging, "rootfs.ext4");
        _cleanup_free_ char *kernel = q->o->kernel_ref ? xstrdup(q->o->kernel_ref) : default_kernel(q->a);
        struct oci_flatten_stats st = { 0 };
        int rc = image_ensure_kernel(q->a, kernel, q->p, e); /* before the long work: a bad --kernel-ref fails at once */
        if (rc == 0)
                rc = flatten(q, rootfs, &st, e);
        streams_join(q, always);
        if (rc == 0) {
                progress_stage(q->p, "inject", "banger-agent, the image's Env");
                rc = oci_inject(rootfs, q->a->agent_bin, &q->cfg, &q->run, e);
        }
        if (rc == 0)
                rc = write_manifest(q, staging, name, kernel, e);
        if (rc < 0)
                return rc;
        struct image_row row = { .name = xstrdup(name), .managed = true, .kernel_name = xstrdup(kernel),
                                 .init_mode = xstrdup("fast"), .source = xstrdup(q->src.display),
                                 .rootfs_size_bytes = (int64_t) st.size_bytes };
        rc = image_commit(q->a, staging, &row, e);
        image_row_done(&row);
        return rc;
}

static int open_source(struct pull *q, const char *ref, struct op_error *e) {
        char *why = NULL;
        const char *plat = q->o->platform ? q->o->platform : "linux/amd64";
        if (oci_platform_parse(plat, &q->os, &q->arch, &q->variant, &why) < 0) {
                int rc = op_fail_as(e, RPC_BAD_REQUEST, -EINVAL, "--platform %s: %s", plat, why);
                free(why);
                return rc;
        }
        if (strncmp(ref, "oci:", 4) == 0)
                return open_layout(q, ref, e);
        if (strncmp(ref, "oci-archive:", 12) == 0 || strncmp(ref, "docker-archive:", 15) == 0)
                return open_archive(q, ref, ref[0] == 'd', e);
        return open_registry(q, ref, e);
}

/* The image's name: --name, or from the reference (a layout's: its dir's name and tag). */
static char *image_name(const struct pull *q) {
        if (q->o->name)
                return xstrdup(q->o->name);
        if (q->src.reg)
                return oci_ref_image_name(&q->src.ref);
        const char *tag0 = json_string_value(json_array_get(json_object_get(q->src.docker, "RepoTags"), 0));
        struct oci_ref dref = { 0 };
        char *dwhy = NULL, *dname = NULL;
        if (tag0 && oci_ref_parse(tag0, &dref, &dwhy) == 0)
                dname = oci_ref_image_name(&dref);
        free(dwhy);
        oci_ref_done(&dref);
        if (dname)
                return dname;
        _cleanup_free_ char *stem = q->src.archive ? xstrdup(q->src.archive) : NULL;
        static const char *const suffixes[] = { ".tar", ".tar.gz", ".tgz", ".tar.zst" };
        for (size_t i = 0; stem && i < ELEMENTSOF(suffixes); i++) { /* ubuntu-22.04.tar -> ubuntu-22.04 */
                size_t n = strlen(stem), k = strlen(suffixes[i]);
                if (n > k && strcmp(stem + n - k, suffixes[i]) == 0)
                        stem[n - k] = '\0';
        }
        const char *base = strrchr(stem ? stem : q->src.dir, '/');
        _cleanup_free_ char *r = xasprintf("localhost/%s:%s", base && base[1] ? base + 1 : "image",
                                           q->src.tag ? q->src.tag : "latest");
        for (char *c = r + 10; *c && *c != ':'; c++)
                *c = (char) (*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : (*c == '.' || *c == '_' || *c == '-' ||
                                                                       (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9'))
                                                                              ? *c : '-');
        struct oci_ref ref = { 0 };
        char *why = NULL, *name = NULL;
        if (oci_ref_parse(r, &ref, &why) == 0)
                name = oci_ref_image_name(&ref);
        free(why);
        oci_ref_done(&ref);
        return name;
}

/* q->locked: the outer progress, one report at a time (q->pmu, never held
 * while another lock is taken); cancelled also when a fetch beside failed. */
static void locked_stage(void *ud, const char *stage, const char *detail) {
        struct pull *q = ud;
        pthread_mutex_lock(&q->pmu);
        progress_stage(q->outer, stage, "%s", detail);
        pthread_mutex_unlock(&q->pmu);
}

static void locked_bytes(void *ud, const char *stage, uint64_t done, uint64_t total) {
        struct pull *q = ud;
        pthread_mutex_lock(&q->pmu);
        progress_bytes(q->outer, stage, done, total);
        pthread_mutex_unlock(&q->pmu);
}

static bool locked_cancelled(void *ud) {
        const struct pull *q = ud; /* no lock: it is asked under others' (inflight, a stream's) */
        return __atomic_load_n(&q->fetch_failed, __ATOMIC_RELAXED) || progress_cancelled(q->outer);
}

static void pull_done(struct pull *q) {
        for (size_t i = 0; i < q->m.n_layers; i++) { /* fetched largest first: a failure leaves holes */
                free(q->layers ? q->layers[i] : NULL);
        }
        free(q->layers);
        free(q->streams);
        free(q->torn);
        layer_pool_free(q->pool); /* (every stream joined: pull_build) */
        free(q->got);
        source_done(&q->src);
        free(q->blob_dir);
        free(q->os);
        free(q->arch);
        free(q->variant);
        oci_manifest_done(&q->m);
        oci_config_done(&q->cfg);
        json_decref(q->run);
        free(q->staging);
        pthread_mutex_destroy(&q->mu);
        pthread_mutex_destroy(&q->pmu);
}

/* The source opened, the manifest resolved, the image's name chosen. */
static int pull_resolve(struct pull *q, const char *ref, char **ret_name, struct op_error *e) {
        int rc = open_source(q, ref, e);
        if (rc == 0 && mkdir_p(q->blob_dir, 0700) < 0)
                rc = op_fail(e, -errno, "cannot create %s: %s", q->blob_dir, strerror(errno));
        if (rc == 0) {
                progress_stage(q->p, "resolve", "%s", q->src.display);
                rc = resolve(q, e);
        }
        if (rc == 0 && !(*ret_name = image_name(q)))
                rc = op_fail_as(e, RPC_BAD_REQUEST, -EINVAL, "no image name from %s: give --name", q->src.display);
        if (rc == 0 && !string_is_dns_label(*ret_name))
                rc = op_fail_as(e, RPC_BAD_REQUEST, -EINVAL, "image name '%s' is not a DNS label", *ret_name);
        return rc;
}

static int pull_build(struct pull *q, const char *name, struct op_error *e) {
        q->staging = staging_dir(q->a->layout->images_dir, "oci");
        int rc = read_config(q, e);
        if (rc == 0 && mkdir_p(q->staging, 0700) < 0)
                rc = op_fail(e, -errno, "cannot create %s", q->staging);
        if (rc == 0)
                rc = fetch_layers(q, e);
        if (rc == 0)
                rc = build(q, q->staging, name, e);
        streams_join(q, always); /* build did, unless fetch_layers failed */
        (void) rm_rf(q->staging);
        return rc;
}

static int pull_locked(struct pull *q, const char *ref, json_t **ret, struct op_error *e) {
        _cleanup_free_ char *name = NULL, *key = NULL;
        int rc = pull_resolve(q, ref, &name, e), there = 0;
        if (rc < 0)
                return rc;
        /* one pull per image name at a time: a second one waits, then finds it */
        key = xasprintf("image:%s", name);
        bool leader = inflight_begin(q->a, key, q->p, &rc, e);
        if (!leader && rc < 0)
                return rc;
        there = already_there(q, name, e);
        if (there == 0)
                rc = pull_build(q, name, e);
        if (leader)
                inflight_end(q->a, key, there < 0 ? there : rc, e);
        if (there < 0 || rc < 0)
                return there < 0 ? there : rc;
        rc = image_show(q->a, name, ret, e);
        if (rc == 0)
                json_object_set_new(*ret, "already_pulled", json_boolean(there == 1));
        return rc;
}

int oci_pull(struct artifacts *a, const char *ref, const struct oci_pull_opts *o, const struct progress *p,
             json_t **ret, struct op_error *err) {
        struct pull q = { .a = a, .o = o, .outer = p, .blob_dir = oci_blob_dir(a) };
        q.locked = (struct progress) { locked_stage, locked_bytes, locked_cancelled, &q };
        q.p = &q.locked;
        pthread_mutex_init(&q.mu, NULL);
        pthread_mutex_init(&q.pmu, NULL);
        if (o->name && !string_is_dns_label(o->name)) {
                pull_done(&q);
                return op_fail_as(err, RPC_BAD_REQUEST, -EINVAL, "image name '%s' is not a DNS label", o->name);
        }
        pthread_rwlock_rdlock(&a->oci_cache_lock);
        int rc = pull_locked(&q, ref, ret, err);
        pthread_rwlock_unlock(&a->oci_cache_lock);
        pull_done(&q);
        return rc;
}
