/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

/* Strict base64 (line breaks ignored, '=' only as trailing padding) into a
 * malloc'd buffer (NUL-terminated beyond *ret_len); 0 or -EINVAL. */
int base64_decode(const char *in, size_t len, unsigned char **ret, size_t *ret_len);
