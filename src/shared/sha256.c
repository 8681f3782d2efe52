/* SPDX-License-Identifier: MIT */
#include "sha256.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <unistd.h>

int sha256_init(struct sha256 *s) {
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1) {
                EVP_MD_CTX_free(c);
                return -ENOMEM;
        }
        s->md = c;
        return 0;
}

void sha256_update(struct sha256 *s, const void *data, size_t len) {
        EVP_DigestUpdate(s->md, data, len);
}

void sha256_final_hex(struct sha256 *s, char out[65]) {
        unsigned char d[32];
        unsigned n = 0;

        EVP_DigestFinal_ex(s->md, d, &n);
        for (unsigned i = 0; i < 32; i++)
                snprintf(out + 2 * i, 3, "%02x", d[i]);
        out[64] = '\0';
        sha256_abort(s);
}

void sha256_abort(struct sha256 *s) {
        EVP_MD_CTX_free(s->md);
        s->md = NULL;
}

void sha256_buf_hex(const void *data, size_t len, char out[65]) {
        struct sha256 s;
        if (sha256_init(&s) < 0) {
                out[0] = '\0';
                return;
        }
        sha256_update(&s, data, len);
        sha256_final_hex(&s, out);
}

int sha256_file_hex(const char *path, char out[65]) {
        struct sha256 s;
        char buf[1 << 16];
        int fd = open(path, O_RDONLY | O_CLOEXEC), r = 0;

        if (fd < 0)
                return -errno;
        if (sha256_init(&s) < 0) {
                close(fd);
                return -ENOMEM;
        }
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        r = -errno;
                        break;
                }
                if (n == 0)
                        break;
                sha256_update(&s, buf, (size_t) n);
        }
        close(fd);
        if (r < 0) {
                sha256_abort(&s);
                return r;
        }
        sha256_final_hex(&s, out);
        return 0;
}
