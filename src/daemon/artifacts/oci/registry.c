/* SPDX-License-Identifier: MIT */
#include "registry.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <time.h>

#include "jsonx.h"
#include "sha256.h"
#include "oci_auth.h"
#include "strbuf.h"

#define MANIFEST_MAX (4u << 20)
#define ATTEMPTS 4

struct registry {
        char *base;  /* "https://host/v2/<repo>" */
        char *host;  /* as in the reference, for messages */
        char *repo;
        char *userpwd;
        char *auth_header; /* "Authorization: Bearer ..." once a token was given */
        bool https;
        const struct progress *p;
};

static bool is_loopback(const char *host) {
        size_t n = strcspn(host, ":");
        if (host[0] == '[')
                return strncmp(host, "[::1]", 5) == 0;
        return (n == 9 && strncmp(host, "localhost", 9) == 0) || strncmp(host, "127.", 4) == 0;
}

int registry_open(const struct oci_ref *ref, const struct registry_opts *o, struct registry **ret, struct op_error *e) {
        struct registry *r = xcalloc(1, sizeof(*r));
        bool insecure = is_loopback(ref->registry);
        for (const char *const *i = o->insecure; i && *i && !insecure; i++)
                insecure = strcmp(*i, ref->registry) == 0;
        r->https = !insecure;
        r->host = xstrdup(ref->registry);
        r->repo = xstrdup(ref->repository);
        r->base = xasprintf("%s://%s/v2/%s", insecure ? "http" : "https", oci_ref_api_host(ref), ref->repository);
        r->userpwd = o->userpwd ? xstrdup(o->userpwd) : NULL;
        r->p = o->p;
        *ret = r;
        (void) e;
        return 0;
}

void registry_close(struct registry *r) {
        if (!r)
                return;
        free(r->base);
        free(r->host);
        free(r->repo);
        free(r->userpwd);
        free(r->auth_header);
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
        for (char *c = s; *c; c++)
                if ((unsigned char) *c < 0x20 || *c == 0x7f)
                        *c = '?';
        if (strlen(s) > 300)
                s[300] = '\0';
        return s;
}

/* Asks the challenge's realm for a token for pulling this repository. */
static int get_token(struct registry *r, const struct www_auth *a, struct op_error *e) {
        CURL *c = curl_easy_init();
        if (!c)
                return op_fail(e, -ENOMEM, "curl_easy_init failed");
        _cleanup_free_ char *scope = a->scope ? xstrdup(a->scope) : xasprintf("repository:%s:pull", r->repo);
        char *es = curl_easy_escape(c, scope, 0), *sv = a->service ? curl_easy_escape(c, a->service, 0) : NULL;
        _cleanup_free_ char *url = xasprintf("%s%sscope=%s%s%s", a->realm, strchr(a->realm, '?') ? "&" : "?", es,
                                             sv ? "&service=" : "", sv ? sv : "");
        curl_free(es);
        curl_free(sv);
        curl_easy_cleanup(c);
        struct fetch_reply rep = { 0 };
        struct fetch_opts o = { .url = url, .max_bytes = 1u << 20, .userpwd = r->userpwd, .reply = &rep,
                                .https_only = r->https, .cancel = cancelled_cb, .ud = (void *) r->p };
        _cleanup_free_ char *body = NULL;
        size_t len = 0;
        int rc = fetch_to_memory(&o, &body, &len, e);
        if (rc == 0 && rep.status != 200) {
                _cleanup_free_ char *says = registry_says(body);
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
        free(r->auth_header);
        r->auth_header = xasprintf("Authorization: Bearer %s", tok);
        return 0;
}

/* After a 401: a token, or basic credentials; -EACCES when neither helps. */
static int answer_challenge(struct registry *r, const struct fetch_reply *rep, bool *basic, struct op_error *e) {
        struct www_auth a = { 0 };
        _cleanup_free_ char *says = registry_says(rep->error_body);
        if (!rep->www_authenticate || www_auth_parse(rep->www_authenticate, &a) < 0 || r->auth_header || *basic)
                return op_fail_as(e, RPC_UNAUTHORIZED, -EACCES, "unauthorized: %s refused %s%s%s%s", r->host,
                                  r->repo, says ? " (" : "", strempty(says), says ? ")" : "");
        int rc;
        if (strcmp(a.scheme, "bearer") == 0)
                rc = get_token(r, &a, e);
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

static bool sleep_backoff(const struct registry *r, int attempt) {
        for (int i = 0; i < (250 << attempt) / 50; i++) {
                if (progress_cancelled(r->p))
                        return false;
                nanosleep(&(struct timespec) { 0, 50 * 1000 * 1000 }, NULL);
        }
        return true;
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
        void *ud;
        struct fetch_reply rep;
        const struct registry *r;
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

static int attempt(struct registry *r, struct req *q, bool basic, struct op_error *e) {
        const char *hdrs[3] = { 0 };
        size_t n = 0;
        if (q->accept)
                hdrs[n++] = q->accept;
        if (r->auth_header)
                hdrs[n++] = r->auth_header;
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
        q->r = r;
        o.expect_sha256 = q->digest + 7;
        o.expect_size = (uint64_t) q->size;
        o.max_bytes = (uint64_t) q->size;
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
                        rc = answer_challenge(r, &q->rep, &basic, e);
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
        return rc;
}

int registry_blob(struct registry *r, const char *digest, int64_t size, const char *dest, fetch_progress_fn progress,
                  void *ud, struct op_error *e) {
        if (!oci_digest_valid(digest))
                return op_fail(e, -EINVAL, "bad digest %s", digest);
        _cleanup_free_ char *url = xasprintf("%s/blobs/%s", r->base, digest);
        struct req q = { .url = url, .dest = dest, .digest = digest, .size = size, .progress = progress, .ud = ud };
        int rc = request(r, &q, e);
        if (rc == 0 && q.rep.status != 200)
                rc = http_error(r, &q, "blob", e);
        else if (rc == -EBADMSG || rc == -EFBIG)
                rc = op_fail(e, rc, "blob %s of %s/%s: %s", digest, r->host, r->repo, op_error_message(e));
        fetch_reply_done(&q.rep);
        return rc;
}
