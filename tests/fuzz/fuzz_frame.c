/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the frame reader and the exec spec of agent protocol
 * version 2 (src/shared/frame.h), as the agent, bangerd and the CLI read
 * them: frames one after another from the input, every OPEN payload parsed
 * as a spec. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        size_t used = 0;
        for (;;) {
                struct frame f;
                int n = frame_parse(data + used, size - used, &f);
                if (n <= 0)
                        break;
                if ((size_t) n > size - used || f.len > FRAME_MAX_PAYLOAD || f.type < FRAME_OPEN || f.type > FRAME_TYPE_MAX ||
                    f.payload != data + used + FRAME_HDR)
                        abort();
                used += (size_t) n;
                /* every payload is also tried as a spec: the agent reads OPEN's */
                struct exec_spec s;
                const char *why;
                if (exec_spec_parse(f.payload, f.len, &s, &why) == 0) {
                        if (s.kind == SPEC_KIND_EXEC && (s.argc == 0 || !s.argv[0]))
                                abort();
                        for (size_t i = 0; i < s.argc; i++)
                                if (!s.argv[i] || strlen(s.argv[i]) > f.len)
                                        abort();
                        if (s.argv[s.argc] || s.env[s.envc])
                                abort();
                        for (size_t i = 0; i < s.envc; i++)
                                if (!strchr(s.env[i], '='))
                                        abort();
                        if (s.cwd && s.cwd[0] != '/')
                                abort();
                        exec_spec_free(&s);
                } else if (!why)
                        abort();
        }
        return 0;
}
