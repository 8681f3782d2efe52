/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * A client of one repository of an OCI distribution (v2) registry, over
 * libcurl (fetch.h): manifests by tag or digest, blobs into files with their
 * digest checked while they stream. Anonymous pulls answer the bearer-token
 * challenge of a 401 (WWW-Authenticate: Bearer realm,service,scope); with
 * credentials for the registry in the Docker config file, they go to the
 * token server (or to a registry asking for Basic). Plain http only for
 * loopback registries and the ones listed as insecure; answers 429 and 5xx
 * and broken transfers are retried with back-off. Several threads may fetch
 * through one client at once (they share its token).
 */

#include <stddef.h>
#include <stdint.h>

#include "artifacts/fetch.h"
#include "oci.h"
#include "op_error.h"
#include "ops/progress.h"

struct registry_opts {
        const char *const *insecure; /* registries ("host[:port]") allowed over http; NULL-terminated */
        const char *userpwd;         /* "user:password" for this registry, or NULL */
        const struct progress *p;    /* cancellation */
};

struct registry;

_warn_unused_ int registry_open(const struct oci_ref *ref, const struct registry_opts *o, struct registry **ret,
                                struct op_error *e);
void registry_close(struct registry *r);

/* The manifest (or index) `reference` (a tag or a digest) names, at most
 * 4 MiB: its bytes, media type and digest (the SHA-256 of those bytes; a
 * digest reference must match it). */
_warn_unused_ int registry_manifest(struct registry *r, const char *reference, char **ret_body, size_t *ret_len,
                                    char **ret_type, char ret_digest[72], struct op_error *e);

/* The blob `digest` of `size` bytes into dest (written through dest.part,
 * renamed only once size and digest matched; nothing left otherwise).
 * progress and written (fetch.h; each may be NULL) get ud. */
_warn_unused_ int registry_blob(struct registry *r, const char *digest, int64_t size, const char *dest,
                                fetch_progress_fn progress, fetch_written_fn written, void *ud, struct op_error *e);
