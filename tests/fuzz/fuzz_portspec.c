/* SPDX-License-Identifier: MIT */
/* libFuzzer target: port forward specs as users and RPC clients send them. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "portspec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char s[160];
        struct port_spec p, q;
        const char *why = NULL;
        bool a, b;
        if (size >= sizeof(s))
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        if (port_spec_parse(s, &p, &why) == 0) {
                char buf[PORTSPEC_TEXT_MAX];
                /* what it accepts formats to a spec that reads back the same */
                if (p.host_port == 0 || p.guest_port == 0)
                        abort();
                port_spec_format(&p, buf);
                if (port_spec_parse(buf, &q, &why) != 0 || memcmp(&p, &q, sizeof(p)) != 0)
                        abort();
        } else if (!why)
                abort();
        why = NULL;
        if (port_key_parse(s, &p, &a, &b, &why) == 0) {
                if (p.host_port == 0)
                        abort();
        } else if (!why)
                abort();
        return 0;
}
