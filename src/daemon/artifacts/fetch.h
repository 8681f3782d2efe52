/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * HTTP(S) downloads with libcurl: streamed to a file with SHA-256 computed on
 * the way, size limits, progress and cancellation. Only http and https, also
 * across redirects.
 */

#include "op_error.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef void (*fetch_progress_fn)(void *ud, uint64_t done, uint64_t total);
typedef bool (*fetch_cancel_fn)(void *ud); /* true: stop now */
/* fetch_to_file: with bytes 0 when a try opens its file (a retry opens a new
 * one), then after each piece of the body is written, with the bytes in the
 * file so far; fd is fetch's own (write-only), valid during the call. */
typedef void (*fetch_written_fn)(void *ud, int fd, uint64_t bytes);

/* What a server answered, for callers that handle HTTP errors themselves
 * (a registry's 401 with its WWW-Authenticate challenge, a 429). */
struct fetch_reply {
        long status;                 /* of the last response (after redirects) */
        char *content_type;          /* these three: malloc'd or NULL */
        char *www_authenticate;
        char *docker_content_digest;
        char *error_body;            /* the body of an answer >= 400 (at most 4 KiB; the rest is not read) */
        char *effective_url;         /* where the last response came from (after redirects) */
};
void fetch_reply_done(struct fetch_reply *r);

struct fetch_opts {
        const char *url;
        const char *const *headers; /* extra request headers "Name: value", NULL-terminated */
        const char *userpwd;        /* HTTP basic auth "user:password" (never sent to another host on a redirect) */
        bool https_only;            /* redirects included (else http and https) */
        struct fetch_reply *reply;  /* non-NULL: an answer >= 400 is not a failure of the
                                     * transfer: fetch_to_memory returns 0 and no data,
                                     * fetch_to_file returns -EREMOTEIO and keeps no file;
                                     * reply->status says which, reply->error_body what */
        uint64_t max_bytes;        /* 0: 64 GiB */
        const char *expect_sha256; /* NULL: do not check */
        uint64_t expect_size;      /* 0: unknown */
        bool no_fsync;             /* fetch_to_file: the caller re-hashes the file before every use
                                    * (the OCI blob cache), so a crash's torn file is caught there */
        fetch_progress_fn progress;
        fetch_cancel_fn cancel;
        fetch_written_fn written;
        void *ud;
};

/* Without reply, an answer >= 400 fails the fetch. */
/* Writes to dest (created 0600, replaced atomically on success; nothing left
 * on failure). ret_sha256 may be NULL. -ECANCELED when cancelled. */
_warn_unused_ int fetch_to_file(const struct fetch_opts *o, const char *dest, char ret_sha256[65], struct op_error *err);
_warn_unused_ int fetch_to_memory(const struct fetch_opts *o, char **ret_data, size_t *ret_len, struct op_error *err);

/* curl_global_init once, before threads. */
void fetch_global_init(void);
