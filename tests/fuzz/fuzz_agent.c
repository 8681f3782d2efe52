/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the guest agent's request reader. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/agent/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct agent_request r;
        bool idk;
        char out[256];
        size_t pos = 0;

        if (agent_request_parse((const char *) data, size, &r, &idk) == AGENT_OK) {
                if (!r.method[0] || strlen(r.method) >= sizeof(r.method))
                        abort();
                if (!json_put_string(out, sizeof(out), &pos, r.method))
                        abort(); /* a method always fits a reply */
        }
        return 0;
}
