/* SPDX-License-Identifier: MIT */
#include "fetch.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "macro.h"
#include "sha256.h"
#include "strbuf.h"

struct sink {
        const struct fetch_opts *o;
        CURL *curl;
        int fd;             /* -1: memory */
        struct strbuf *mem;
        struct sha256 sha;
        uint64_t written;
        uint64_t max;
        int err;            /* -errno from our side */
        bool transient;     /* the failure may pass: another try is worth it */
        struct strbuf error_body;
        bool error_body_full;
};

#define ERROR_BODY_MAX 4096

void fetch_reply_done(struct fetch_reply *r) {
        free(r->content_type);
        free(r->www_authenticate);
        free(r->docker_content_digest);
        free(r->error_body);
        free(r->effective_url);
        *r = (struct fetch_reply) { 0 };
}

/* An answer >= 400 when the caller handles those: its body is kept apart,
 * at most ERROR_BODY_MAX bytes, and the transfer ends there (a server
 * sending an endless error body costs nothing). */
static size_t error_body(struct sink *s, const char *p, size_t len) {
        size_t room = ERROR_BODY_MAX - s->error_body.len;
        strbuf_add(&s->error_body, p, len < room ? len : room);
        if (len < room)
                return len;
        s->error_body_full = true;
        return 0;
}

static size_t on_data(char *p, size_t size, size_t n, void *ud) {
        struct sink *s = ud;
        size_t len = size * n;
        long status = 0;

        if (s->o->reply && curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status >= 400)
                return error_body(s, p, len);
        if (s->written + len > s->max || (s->o->expect_size && s->written + len > s->o->expect_size)) {
                s->err = -EFBIG;
                return 0;
        }
        if (s->fd >= 0) {
                int r = write_all(s->fd, p, len);
                if (r < 0) {
                        s->err = r;
                        return 0;
                }
                if (s->o->written && len)
                        s->o->written(s->o->ud, s->fd, s->written + len);
        } else
                strbuf_add(s->mem, p, len);
        sha256_update(&s->sha, p, len);
        s->written += len;
        return len;
}

/* The last response's header `name` (after redirects), or NULL. */
static char *last_header(CURL *c, const char *name) {
        struct curl_header *h = NULL;
        if (curl_easy_header(c, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK || !h || !h->value)
                return NULL;
        return xstrndup(h->value, 8192);
}

/* What the caller of a reply wants to know, from curl's own parse. */
static void fill_reply(CURL *c, struct fetch_reply *r) {
        const char *ct = NULL, *url = NULL;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
                r->content_type = xstrndup(ct, 8192);
        if (curl_easy_getinfo(c, CURLINFO_EFFECTIVE_URL, &url) == CURLE_OK && url)
                r->effective_url = xstrdup(url);
        r->www_authenticate = last_header(c, "WWW-Authenticate");
        r->docker_content_digest = last_header(c, "Docker-Content-Digest");
}

static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
        struct sink *s = ud;
        (void) ultotal;
        (void) ulnow;
        if (s->o->cancel && s->o->cancel(s->o->ud)) {
                s->err = -ECANCELED;
                return 1;
        }
        if (s->o->progress)
                s->o->progress(s->o->ud, (uint64_t) dlnow,
                               dltotal > 0 ? (uint64_t) dltotal : s->o->expect_size);
        return 0;
}

void fetch_global_init(void) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* A transfer's failure as -errno: -EIO for the transient ones (connection,
 * timeout, a cut transfer), others for what retrying does not change. */
static int curl_errno(CURLcode cc) {
        switch (cc) {
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
                return -EKEYREJECTED;
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_URL_MALFORMAT:
        case CURLE_TOO_MANY_REDIRECTS:
                return -EPROTO;
        default:
                return -EIO;
        }
}

static struct curl_slist *request_headers(const struct fetch_opts *o) {
        struct curl_slist *h = NULL;
        for (const char *const *p = o->headers; p && *p; p++)
                h = curl_slist_append(h, *p);
        return h;
}

static int run(struct sink *s, struct op_error *err) {
        const struct fetch_opts *o = s->o;
        char errbuf[CURL_ERROR_SIZE] = "";
        CURL *c = curl_easy_init();
        struct curl_slist *hdrs = request_headers(o);
        long status = 0;
        CURLcode cc;
        int r;

        if (!c) {
                curl_slist_free_all(hdrs);
                return -ENOMEM;
        }
        curl_easy_setopt(c, CURLOPT_URL, o->url);
        curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, o->https_only ? "https" : "http,https");
        curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, o->https_only ? "https" : "http,https");
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
        curl_easy_setopt(c, CURLOPT_FAILONERROR, o->reply ? 0L : 1L);
        if (hdrs)
                curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
        if (o->userpwd) {
                curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
                curl_easy_setopt(c, CURLOPT_USERPWD, o->userpwd);
        }
        s->curl = c;
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 20L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L); /* < 1 KiB/s for 60 s: give up */
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_USERAGENT, "banger");
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, s);
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, s);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
        cc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (o->reply) {
                fetch_reply_done(o->reply);
                fill_reply(c, o->reply);
        }
        curl_easy_cleanup(c);
        curl_slist_free_all(hdrs);
        if (o->reply && o->reply->status >= 400 && (cc == CURLE_OK || (cc == CURLE_WRITE_ERROR && s->error_body_full))) {
                o->reply->error_body = strbuf_detach(&s->error_body, NULL);
                return s->fd >= 0 ? -EREMOTEIO : 0;
        }
        strbuf_release(&s->error_body);
        if (s->err == -ECANCELED) {
                return op_fail(err, -ECANCELED, "download of %s cancelled", o->url);
        }
        if (s->err == -EFBIG) {
                return op_fail(err, -EFBIG, "%s is larger than expected", o->url);
        }
        if (s->err < 0) {
                return op_fail(err, s->err, "writing %s: %s", o->url, strerror(-s->err));
        }
        if (cc != CURLE_OK) { /* -EIO only for what another try may cure */
                r = curl_errno(cc);
                s->transient = r == -EIO && (cc != CURLE_HTTP_RETURNED_ERROR || status == 429 || status >= 500);
                return op_fail(err, r, "downloading %s: %s", o->url, errbuf[0] ? errbuf : curl_easy_strerror(cc));
        }
        if (o->expect_size && s->written != o->expect_size) {
                return op_fail(err, -EBADMSG, "%s: got %llu bytes, expected %llu", o->url, (unsigned long long) s->written,
                                     (unsigned long long) o->expect_size);
        }
        return 0;
}

static int check_hash(const struct fetch_opts *o, const char *got, struct op_error *err) {
        if (o->expect_sha256 && strcmp(o->expect_sha256, got) != 0) {
                return op_fail(err, -EBADMSG, "%s: SHA256 mismatch (got %s, expected %s)", o->url, got, o->expect_sha256);
        }
        return 0;
}

static int file_once(const struct fetch_opts *o, const char *dest, char ret_sha256[65], bool *transient,
                     struct op_error *err) {
        _cleanup_free_ char *tmp = xasprintf("%s.part", dest);
        struct sink s = { .o = o, .max = o->max_bytes ? o->max_bytes : (64ULL << 30), .error_body = STRBUF_INIT };
        char hex[65];
        int r;

        s.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (s.fd < 0) {
                return op_fail(err, -errno, "cannot create %s: %s", tmp, strerror(errno));
        }
        if (sha256_init(&s.sha) < 0) {
                close(s.fd);
                unlink(tmp);
                return -ENOMEM;
        }
        if (o->written)
                o->written(o->ud, s.fd, 0);
        r = run(&s, err);
        *transient = s.transient;
        sha256_final_hex(&s.sha, hex);
        if (r == 0)
                r = check_hash(o, hex, err);
        if (r == 0 && !o->no_fsync && fsync(s.fd) < 0)
                r = -errno;
        close(s.fd);
        if (r == 0 && rename(tmp, dest) < 0) {
                r = -errno;
                op_fail(err, r, "cannot rename to %s: %s", dest, strerror(errno));
        }
        if (r < 0) {
                unlink(tmp);
                return r;
        }
        if (ret_sha256)
                memcpy(ret_sha256, hex, 65);
        return 0;
}

static int memory_once(const struct fetch_opts *o, char **ret_data, size_t *ret_len, bool *transient,
                       struct op_error *err) {
        struct strbuf mem = STRBUF_INIT;
        struct sink s = { .o = o, .fd = -1, .mem = &mem, .max = o->max_bytes ? o->max_bytes : (256u << 20),
                          .error_body = STRBUF_INIT };
        char hex[65];
        int r;

        if (sha256_init(&s.sha) < 0)
                return -ENOMEM;
        r = run(&s, err);
        *transient = s.transient;
        sha256_final_hex(&s.sha, hex);
        if (r == 0 && !(o->reply && o->reply->status >= 400))
                r = check_hash(o, hex, err);
        if (r < 0) {
                strbuf_release(&mem);
                return r;
        }
        *ret_data = strbuf_detach(&mem, ret_len);
        return 0;
}

/* Transfers the server or the network may cure (a timeout, a cut
 * connection, a stall, 429, 5xx) are tried FETCH_TRIES times, 1 s then 2 s
 * apart, unless the caller handles answers itself (reply) or cancels. */
#define FETCH_TRIES 3

static bool backoff(const struct fetch_opts *o, int attempt) {
        for (int i = 0; i < 10 << attempt; i++) {
                if (o->cancel && o->cancel(o->ud))
                        return false;
                struct timespec ts = { .tv_nsec = 100 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
        return true;
}

int fetch_to_file(const struct fetch_opts *o, const char *dest, char ret_sha256[65], struct op_error *err) {
        for (int attempt = 0;; attempt++) {
                bool transient = false;
                int r = file_once(o, dest, ret_sha256, &transient, err);
                if (r == 0 || !transient || o->reply || attempt + 1 >= FETCH_TRIES || !backoff(o, attempt))
                        return r < 0 && transient && attempt > 0 ? op_prefix(err, "after %d tries", attempt + 1) : r;
                op_error_done(err);
        }
}

int fetch_to_memory(const struct fetch_opts *o, char **ret_data, size_t *ret_len, struct op_error *err) {
        for (int attempt = 0;; attempt++) {
                bool transient = false;
                int r = memory_once(o, ret_data, ret_len, &transient, err);
                if (r == 0 || !transient || o->reply || attempt + 1 >= FETCH_TRIES || !backoff(o, attempt))
                        return r < 0 && transient && attempt > 0 ? op_prefix(err, "after %d tries", attempt + 1) : r;
                op_error_done(err);
        }
}
