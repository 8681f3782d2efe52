/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/* SHA-256 (OpenSSL EVP underneath). Hex digests are lowercase, NUL-terminated. */

#include <stddef.h>

struct sha256 {
        void *md; /* EVP_MD_CTX *, owned */
};

int sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t len);
/* Finishes and frees the context. */
void sha256_final_hex(struct sha256 *s, char out[65]);
void sha256_abort(struct sha256 *s);
_warn_unused_ int sha256_file_hex(const char *path, char out[65]);
void sha256_buf_hex(const void *data, size_t len, char out[65]);
