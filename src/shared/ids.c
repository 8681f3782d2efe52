/* SPDX-License-Identifier: MIT */
#include "ids.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "macro.h"
#include "strbuf.h"

void random_bytes(void *buf, size_t n) {
        uint8_t *p = buf;
        while (n > 0) {
                ssize_t r = getrandom(p, n, 0);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        abort();
                p += r;
                n -= (size_t) r;
        }
}

char *random_hex(size_t nbytes) {
        uint8_t b[64];
        char *s = xmalloc(2 * nbytes + 1);
        if (nbytes > sizeof(b))
                abort();
        random_bytes(b, nbytes);
        for (size_t i = 0; i < nbytes; i++)
                snprintf(s + 2 * i, 3, "%02x", b[i]);
        s[2 * nbytes] = '\0';
        return s;
}

bool is_hex_id(const char *s, size_t nbytes) {
        return s && strlen(s) == 2 * nbytes && strspn(s, "0123456789abcdef") == 2 * nbytes;
}
