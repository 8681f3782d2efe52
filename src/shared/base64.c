/* SPDX-License-Identifier: MIT */
#include "base64.h"

#include <errno.h>
#include <openssl/evp.h>
#include <string.h>

#include "macro.h"
#include "strbuf.h"

int base64_decode(const char *in, size_t len, unsigned char **ret, size_t *ret_len) {
        _cleanup_free_ char *clean = xmalloc(len + 1);
        size_t n = 0;
        for (size_t k = 0; k < len; k++)
                if (in[k] != '\n' && in[k] != '\r')
                        clean[n++] = in[k];
        clean[n] = '\0';
        if (n == 0 || n % 4 != 0 || strspn(clean, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") != n)
                return -EINVAL;
        size_t pad = clean[n - 1] == '=' ? (clean[n - 2] == '=' ? 2 : 1) : 0;
        const char *eq = strchr(clean, '=');
        if (eq && eq != clean + n - pad) /* '=' only as the trailing padding */
                return -EINVAL;
        unsigned char *out = xmalloc(n / 4 * 3 + 1);
        int got = EVP_DecodeBlock(out, (const unsigned char *) clean, (int) n);
        if (got < 0 || (size_t) got < pad) {
                free(out);
                return -EINVAL;
        }
        out[got - (int) pad] = '\0';
        *ret = out;
        *ret_len = (size_t) got - pad;
        return 0;
}
