/* SPDX-License-Identifier: MIT */
/* libFuzzer target: the TOML subset parser and config resolution. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "toml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const struct config_host host = {
                .state_dir = "/s", .home = "/h", .ncpus = 8, .mem_bytes = 16ULL << 30, .apt_mirror = NULL,
        };
        struct toml_table *t = NULL;
        struct toml_error terr;
        struct config *c = NULL;
        struct config_error cerr;

        if (toml_parse((const char *) data, size, &t, &terr) == 0) {
                /* every parsed string is NUL-free and line numbers are sane */
                for (size_t i = 0; i < t->n; i++)
                        if (t->kvs[i].value.line == 0)
                                abort();
                toml_table_free(t);
        }
        if (config_load((const char *) data, size, &host, &c, &cerr) == 0) {
                json_t *j = config_to_json(c);
                json_decref(j);
                config_free(c);
        } else {
                if (!cerr.msg)
                        abort(); /* an error always says why */
                config_error_done(&cerr);
        }
        return 0;
}
