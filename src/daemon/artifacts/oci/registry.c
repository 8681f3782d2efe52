/* SPDX-License-Identifier: MIT */
#include "registry.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "jsonx.h"
#include "sha256.h"
#include "oci_auth.h"
#include "strbuf.h"

#define MANIFEST_MAX (4u << 20)
#define ATTEMPTS 4

struct registry {
        char *base;        /* "https://host/v2/<repo>" */
        char *host;        /* as in the reference, for messages */
        char *repo;
        char *userpwd;
        pthread_mutex_t mu; /* auth_header: a pull fetches several blobs at once */
        char *auth_header; /* "Authorization: Bearer ..." once a token was given */
        char **insecure;   /* registries allowed over http, lower case */
        bool https;
        const struct progress *p;
};

/* scheme, host (lower case) and port of an http(s) URL, through curl's own
 * URL parser; the port is the scheme's default when none is written. */
struct origin {
        char *scheme, *host, *port;
};

static void origin_done(struct origin *o) {
        curl_free(o->scheme);
        curl_free(o->host);
        curl_free(o->port);
        *o = (struct origin) { 0 };
}

static int origin_of(const char *url, struct origin *ret) {
        CURLU *u = curl_url();
        int rc = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
                                 curl_url_get(u, CURLUPART_SCHEME, &ret->scheme, 0) == CURLUE_OK &&
                                 curl_url_get(u, CURLUPART_HOST, &ret->host, 0) == CURLUE_OK &&
                                 curl_url_get(u, CURLUPART_PORT, &ret->port, CURLU_DEFAULT_PORT) == CURLUE_OK
                         ? 0
                         : -EINVAL;
        curl_url_cleanup(u);
        if (rc < 0)
                origin_done(ret);
        for (char *c = rc == 0 ? ret->host : NULL; c && *c; c++)
                *c = (char) tolower((unsigned char) *c);
        return rc;
}

static bool same_origin(const char *a, const char *b) {
        struct origin x = { 0 }, y = { 0 };
        bool same = origin_of(a, &x) == 0 && origin_of(b, &y) == 0 && strcmp(x.scheme, y.scheme) == 0 &&
                    strcmp(x.host, y.host) == 0 && strcmp(x.port, y.port) == 0;
        origin_done(&x);
        origin_done(&y);
        return same;
}

/* localhost, 127.0.0.0/8 or ::1 (host as in a URL: "[::1]" brackets allowed). */
static bool host_is_loopback(const char *host) {
        char buf[64];
        size_t n = strlen(host);
        if (host[0] == '[' && n > 2 && host[n - 1] == ']' && n - 2 < sizeof(buf)) {
                memcpy(buf, host + 1, n - 2);
                buf[n - 2] = '\0';
                host = buf;
        }
        struct in_addr v4;
        struct in6_addr v6;
        if (inet_pton(AF_INET, host, &v4) == 1)
                return (ntohl(v4.s_addr) >> 24) == 127;
        if (inet_pton(AF_INET6, host, &v6) == 1)
                return IN6_IS_ADDR_LOOPBACK(&v6);
        return strcasecmp(host, "localhost") == 0;
}

/* A registry name "host[:port]" (IPv6 in brackets): its host part. */
static char *registry_host(const char *registry) {
        if (registry[0] == '[') {
                const char *close = strchr(registry, ']');
                return close ? xstrndup(registry, (size_t) (close - registry) + 1) : xstrdup(registry);
        }
        return xstrndup(registry, strcspn(registry, ":"));
}

static bool insecure_ok(const struct registry *r, const char *host_port, const char *host) {
        if (host_is_loopback(host))
                return true;
        for (char **i = r->insecure; i && *i; i++)
                if (strcasecmp(*i, host_port) == 0 || strcasecmp(*i, host) == 0)
                        return true;
        return false;
}

int registry_open(const struct oci_ref *ref, const struct registry_opts *o, struct registry **ret, struct op_error *e) {
        struct registry *r = xcalloc(1, sizeof(*r));
        size_t n = 0;
        while (o->insecure && o->insecure[n])
                n++;
        r->insecure = xcalloc(n + 1, sizeof(char *));
        for (size_t i = 0; i < n; i++)
                r->insecure[i] = xstrdup(o->insecure[i]);
        _cleanup_free_ char *host = registry_host(ref->registry);
        bool insecure = insecure_ok(r, ref->registry, host);
        r->https = !insecure;
        r->host = xstrdup(ref->registry);
        r->repo = xstrdup(ref->repository);
        r->base = xasprintf("%s://%s/v2/%s", insecure ? "http" : "https", oci_ref_api_host(ref), ref->repository);
        r->userpwd = o->userpwd ? xstrdup(o->userpwd) : NULL;
        r->p = o->p;
        pthread_mutex_init(&r->mu, NULL);
        *ret = r;
        (void) e;
        return 0;
}

void registry_close(struct registry *r) {
        if (!r)
                return;
        for (char **i = r->insecure; i && *i; i++)
                free(*i);
        free(r->insecure);
        free(r->base);
        free(r->host);
        free(r->repo);
        free(r->userpwd);
        free(r->auth_header);
        pthread_mutex_destroy(&r->mu);
        free(r);
}

static bool cancelled_cb(void *ud) {
        return progress_cancelled(ud);
}

/* "CODE: message" of a registry's error body, or NULL. */
static char *registry_says(const char *body) {
        _cleanup_json_ json_t *j = body ? json_loads(body, 0, NULL) : NULL;
        json_t *first = json_array_get(json_object_get(j, "errors"), 0);
        const char *code = json_string_value(json_object_get(first, "code"));
        const char *msg = json_string_value(json_object_get(first, "message"));
        if (!code && !msg)
                msg = json_string_value(json_object_get(j, "details")); /* a token server's */
        if (!code && !msg)
                return NULL;
        char *s = xasprintf("%s%s%s", code ? code : "", code && msg ? ": " : "", msg ? msg : "");
        str_defuse(s, '?');
        if (strlen(s) > 300)
                s[300] = '\0';
        return s;
}

static bool sleep_backoff(const struct registry *r, int attempt) {
        for (int i = 0; i < (250 << attempt) / 50; i++) {
                if (progress_cancelled(r->p))
                        return false;
                nanosleep(&(struct timespec) { 0, 50 * 1000 * 1000 }, NULL);
        }
        return true;
}

/* The token endpoint: the challenge's realm with scope and service. Plain
 * http only where the registry itself may be (loopback, insecure list). */
static int token_url(const struct registry *r, const struct www_auth *a, const char *scope, char **ret,
                     struct op_error *e) {
        struct origin o = { 0 };
        if (origin_of(a->realm, &o) < 0)
                return op_fail(e, -EPROTO, "%s sent an unusable token realm", r->host);
        bool ok = strcmp(o.scheme, "https") == 0 ||
                  (strcmp(o.scheme, "http") == 0 && insecure_ok(r, o.host, o.host));
        origin_done(&o);
        if (!ok)
                return op_fail(e, -EPROTO, "%s names a token server over plain http (%.200s): refused", r->host,
                               a->realm);
        CURL *c = curl_easy_init();
        if (!c)
                return op_fail(e, -ENOMEM, "curl_easy_init failed");
        char *es = curl_easy_escape(c, scope, 0), *sv = a->service ? curl_easy_escape(c, a->service, 0) : NULL;
        *ret = xasprintf("%s%sscope=%s%s%s", a->realm, strchr(a->realm, '?') ? "&" : "?", es, sv ? "&service=" : "",
                         sv ? sv : "");
        curl_free(es);
        curl_free(sv);
        curl_easy_cleanup(c);
        return 0;
}

/* One GET of the token endpoint, retried as registry requests are. */
static int token_get(const struct registry *r, const char *url, struct fetch_reply *rep, char **ret, size_t *ret_len,
                     struct op_error *e) {
        int rc = 0;
        for (int i = 0; i < ATTEMPTS; i++) {
                struct fetch_opts o = { .url = url, .max_bytes = 1u << 20, .userpwd = r->userpwd, .reply = rep,
                                        .https_only = strncmp(url, "https://", 8) == 0, .cancel = cancelled_cb,
                                        .ud = (void *) r->p };
                free(*ret);
                *ret = NULL;
                rc = fetch_to_memory(&o, ret, ret_len, e);
                if ((rc < 0 && rc != -EIO) || (rc == 0 && rep->status != 429 && rep->status < 500))
                        return rc;
                if (i + 1 < ATTEMPTS && !sleep_backoff(r, i))
                        return op_fail(e, -ECANCELED, "cancelled");
        }
        return rc;
}

/* Asks the challenge's realm for a token for pulling this repository. */
/* The token into r->auth_header (for the requests to come) and *mine (for
 * the one that asked: another thread may replace the shared one before its
 * retry, and a token may serve one request only). */
static int get_token(struct registry *r, const struct www_auth *a, char **mine, struct op_error *e) {
        _cleanup_free_ char *scope = a->scope ? xstrdup(a->scope) : xasprintf("repository:%s:pull", r->repo);
        _cleanup_free_ char *url = NULL, *body = NULL;
        size_t len = 0;
        struct fetch_reply rep = { 0 };
        int rc = token_url(r, a, scope, &url, e);
        if (rc == 0)
                rc = token_get(r, url, &rep, &body, &len, e);
        if (rc == 0 && rep.status != 200) {
                _cleanup_free_ char *says = registry_says(rep.error_body);
                rc = op_fail_as(e, rep.status == 401 || rep.status == 403 ? RPC_UNAUTHORIZED : RPC_OPERATION_FAILED,
                                -EACCES, "unauthorized: the token server of %s refused %s (HTTP %ld%s%s)%s", r->host,
                                scope, rep.status, says ? ": " : "", strempty(says),
                                r->userpwd ? "" : "; credentials go in ~/.docker/config.json \"auths\"");
        }
        fetch_reply_done(&rep);
        if (rc < 0)
                return rc;
        _cleanup_json_ json_t *j = json_loadb(body, len, 0, NULL);
        const char *tok = json_string_value(json_object_get(j, "token"));
        if (!tok || !*tok)
                tok = json_string_value(json_object_get(j, "access_token"));
        if (!tok || !*tok || strlen(tok) > 65536 || strpbrk(tok, "\r\n"))
                return op_fail(e, -EPROTO, "the token server of %s sent no usable token", r->host);
        char *h = xasprintf("Authorization: Bearer %s", tok);
        free(*mine);
        *mine = xstrdup(h);
        pthread_mutex_lock(&r->mu);
        free(r->auth_header);
        r->auth_header = h;
        pthread_mutex_unlock(&r->mu);
        return 0;
}

/* After a 401 from the registry itself (never one from a host a redirect
 * led to: it would get the credentials): a token (a new one when the one we
 * had expired), or basic credentials; -EACCES when neither helps. */
static int answer_challenge(struct registry *r, const struct fetch_reply *rep, bool *basic, char **mine,
                            struct op_error *e) {
        _cleanup_free_ char *says = registry_says(rep->error_body);
        struct www_auth a = { 0 };
        if (!rep->effective_url || !same_origin(rep->effective_url, r->base))
                return op_fail_as(e, RPC_UNAUTHORIZED, -EACCES,
                                  "unauthorized: %s redirected to a host that asks for credentials: not answered", r->host);
        if (*basic || !rep->www_authenticate || www_auth_parse(rep->www_authenticate, &a) < 0)
                return op_fail_as(e, RPC_UNAUTHORIZED, -EACCES, "unauthorized: %s refused %s%s%s%s", r->host,
                                  r->repo, says ? " (" : "", strempty(says), says ? ")" : "");
        int rc;
        if (strcmp(a.scheme, "bearer") == 0)
                rc = get_token(r, &a, mine, e);
        else if (r->userpwd) {
                *basic = true;
                rc = 0;
        } else
                rc = op_fail_as(e, RPC_UNAUTHORIZED, -EACCES,
                                "unauthorized: %s wants credentials for %s (put them in ~/.docker/config.json \"auths\")",
                                r->host, r->repo);
        www_auth_done(&a);
        return rc;
}

struct req {
        const char *url;
        const char *accept; /* a header, or NULL */
        char *body;         /* manifests: into memory */
        size_t len;
        const char *dest;   /* blobs: into this file */
        const char *digest; /* blobs: "sha256:<hex>" */
        int64_t size;
        fetch_progress_fn progress;
        fetch_written_fn written;
        void *ud;
        struct fetch_reply rep;
        const struct registry *r;
        char *auth;         /* the header of the token this request got, once it answered a challenge */
};

static bool blob_cancelled(void *ud) {
        const struct req *q = ud;
        return progress_cancelled(q->r->p);
}

static void blob_progress(void *ud, uint64_t done, uint64_t total) {
        const struct req *q = ud;
        if (q->progress)
                q->progress(q->ud, done, total);
}

static void blob_written(void *ud, int fd, uint64_t bytes) {
        const struct req *q = ud;
        if (q->written)
                q->written(q->ud, fd, bytes);
}

static int attempt(struct registry *r, struct req *q, bool basic, struct op_error *e) {
        const char *hdrs[3] = { 0 };
        size_t n = 0;
        _cleanup_free_ char *shared = NULL;
        if (!q->auth) { /* the token another request got (NULL: none yet) */
                pthread_mutex_lock(&r->mu);
                shared = r->auth_header ? xstrdup(r->auth_header) : NULL;
                pthread_mutex_unlock(&r->mu);
        }
        if (q->accept)
                hdrs[n++] = q->accept;
        if (q->auth || shared)
                hdrs[n++] = q->auth ? q->auth : shared;
        struct fetch_opts o = { .url = q->url, .headers = hdrs, .userpwd = basic ? r->userpwd : NULL, .reply = &q->rep,
                                .https_only = r->https, .cancel = cancelled_cb, .ud = (void *) r->p,
                                .progress = q->progress };
        fetch_reply_done(&q->rep);
        if (!q->dest) {
                o.max_bytes = MANIFEST_MAX;
                free(q->body);
                q->body = NULL;
                return fetch_to_memory(&o, &q->body, &q->len, e);
        }
        o.ud = q;
        o.cancel = blob_cancelled;
        o.progress = blob_progress;
        o.written = blob_written;
        q->r = r;
        o.expect_sha256 = q->digest + 7;
        o.expect_size = (uint64_t) q->size;
        o.max_bytes = (uint64_t) q->size;
        o.no_fsync = true; /* the blob cache re-hashes a blob before each use (pull.c) */
        int rc = fetch_to_file(&o, q->dest, NULL, e);
        return rc == -EREMOTEIO ? 0 : rc;
}

/* The request with the challenge answered and 429/5xx/transfer errors retried. */
static int request(struct registry *r, struct req *q, struct op_error *e) {
        bool basic = false;
        int rc = 0;
        for (int i = 0, challenges = 0; i < ATTEMPTS; i++) {
                rc = attempt(r, q, basic, e);
                if (rc == -ECANCELED || rc == -EBADMSG || rc == -EFBIG || (rc < 0 && rc != -EIO))
                        return rc;
                long st = q->rep.status;
                if (rc == 0 && st == 401 && challenges++ < 2) {
                        rc = answer_challenge(r, &q->rep, &basic, &q->auth, e);
                        if (rc < 0)
                                return rc;
                        i--; /* a challenge answered is no failed attempt */
                        continue;
                }
                if (rc == 0 && st != 429 && st < 500)
                        return 0;
                if (i + 1 < ATTEMPTS && !sleep_backoff(r, i))
                        return op_fail(e, -ECANCELED, "cancelled");
        }
        return rc < 0 ? rc : 0;
}

static int http_error(const struct registry *r, const struct req *q, const char *what, struct op_error *e) {
        _cleanup_free_ char *says = registry_says(q->rep.error_body ? q->rep.error_body : q->body);
        long st = q->rep.status;
        int code = st == 404 ? RPC_NOT_FOUND : st == 401 || st == 403 ? RPC_UNAUTHORIZED : RPC_OPERATION_FAILED;
        return op_fail_as(e, code, st == 404 ? -ENOENT : st == 401 || st == 403 ? -EACCES : -EIO,
                          "%s %s of %s/%s: HTTP %ld%s%s", what, st == 404 ? "not found" : "refused", r->host, r->repo,
                          st, says ? ": " : "", strempty(says));
}

int registry_manifest(struct registry *r, const char *reference, char **ret_body, size_t *ret_len, char **ret_type,
                      char ret_digest[72], struct op_error *e) {
        _cleanup_free_ char *url = xasprintf("%s/manifests/%s", r->base, reference);
        struct req q = { .url = url, .accept = "Accept: " OCI_MANIFEST_ACCEPT };
        int rc = request(r, &q, e);
        if (rc == 0 && q.rep.status != 200)
                rc = http_error(r, &q, "manifest", e);
        if (rc == 0) {
                char hex[65];
                sha256_buf_hex(q.body, q.len, hex);
                snprintf(ret_digest, 72, "sha256:%s", hex);
                if (strncmp(reference, "sha256:", 7) == 0 && strcmp(reference, ret_digest) != 0)
                        rc = op_fail(e, -EBADMSG, "the manifest %s of %s/%s has digest %s", reference, r->host, r->repo,
                                     ret_digest);
        }
        if (rc == 0) {
                const char *ct = q.rep.content_type;
                size_t n = ct ? strcspn(ct, ";") : 0;
                *ret_type = n ? xstrndup(ct, n) : NULL;
                *ret_len = q.len;
                *ret_body = q.body;
                q.body = NULL;
        }
        free(q.body);
        fetch_reply_done(&q.rep);
        free(q.auth);
        return rc;
}

#define EMPTY_SHA256 "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

int registry_blob(struct registry *r, const char *digest, int64_t size, const char *dest, fetch_progress_fn progress,
                  fetch_written_fn written, void *ud, struct op_error *e) {
        if (!oci_digest_valid(digest))
                return op_fail(e, -EINVAL, "bad digest %s", digest);
        if (size <= 0) { /* nothing to fetch (and no size to hold a download to) */
                if (size < 0 || strcmp(digest, EMPTY_SHA256) != 0)
                        return op_fail(e, -EBADMSG, "blob %s of %s/%s: the manifest gives it %lld bytes", digest, r->host,
                                       r->repo, (long long) size);
                int fd = open(dest, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0)
                        return op_fail(e, -errno, "cannot create %s: %s", dest, strerror(errno));
                close(fd);
                return 0;
        }
        _cleanup_free_ char *url = xasprintf("%s/blobs/%s", r->base, digest);
        struct req q = { .url = url, .dest = dest, .digest = digest, .size = size, .progress = progress,
                         .written = written, .ud = ud };
        int rc = request(r, &q, e);
        if (rc == 0 && q.rep.status != 200)
                rc = http_error(r, &q, "blob", e);
        else if (rc == -EBADMSG || rc == -EFBIG)
                rc = op_fail(e, rc, "blob %s of %s/%s: %s", digest, r->host, r->repo, op_error_message(e));
        fetch_reply_done(&q.rep);
        free(q.auth);
        return rc;
}
