/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the RPC request decoder and the response codec. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct rpc_request req;
        struct rpc_fault f;
        struct rpc_response resp;
        char *err = NULL;

        if (rpc_request_decode((const char *) data, size, &req, &f) == 0) {
                if (!req.method || !*req.method)
                        abort();
                /* what we accept, we can answer, and the answer decodes */
                char *line = rpc_response_encode_error(true, req.id, RPC_NOT_FOUND, req.method, "op-000000");
                if (rpc_response_decode(line, strlen(line), &resp, &err) != 0 || !resp.is_error ||
                    resp.id != req.id || strcmp(resp.message, req.method) != 0)
                        abort();
                rpc_response_done(&resp);
                free(line);
                line = rpc_request_encode(req.id, req.method, req.params);
                struct rpc_request again;
                if (rpc_request_decode(line, strlen(line), &again, &f) != 0 || strcmp(again.method, req.method) != 0)
                        abort();
                rpc_request_done(&again);
                free(line);
                rpc_request_done(&req);
        } else if (f.code >= _RPC_CODE_MAX || !f.msg[0])
                abort();
        if (rpc_response_decode((const char *) data, size, &resp, &err) == 0)
                rpc_response_done(&resp);
        else
                free(err);
        return 0;
}
