/* SPDX-License-Identifier: MIT */
/* libFuzzer target: what `banger update` and the system install read from
 * others: the release manifest, SHA256SUMS, versions and install.toml. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "install.h"
#include "release.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *text = (const char *) data;
        char *err = NULL;
        struct release_manifest m = { 0 };
        if (release_manifest_parse(text, size, &m, &err) == 0) {
                /* what it accepts is what it promises */
                if (!release_version_valid(m.latest_stable) || !release_manifest_has(&m, m.latest_stable))
                        abort();
                for (size_t i = 0; i < m.n_versions; i++)
                        if (!release_version_valid(m.versions[i]))
                                abort();
                release_manifest_done(&m);
        } else if (!err)
                abort();
        free(err);
        err = NULL;

        struct release_sums s = { 0 };
        if (release_sums_parse(text, size, &s, &err) == 0) {
                for (size_t i = 0; i < s.n; i++)
                        if (strchr(s.items[i].name, '/') || strlen(s.items[i].hex) != 64 ||
                            release_sums_find(&s, s.items[i].name) != s.items[i].hex)
                                abort();
                release_sums_done(&s);
        } else if (!err)
                abort();
        free(err);
        err = NULL;

        struct install_info in = { 0 };
        if (install_parse(text, size, &in, &err) == 0) {
                char *again = install_format(&in);
                struct install_info back = { 0 };
                char *err2 = NULL;
                /* what it accepts, formatted, parses back */
                if (install_parse(again, strlen(again), &back, &err2) != 0 || back.owner_uid != in.owner_uid ||
                    strcmp(back.state_dir, in.state_dir) != 0)
                        abort();
                free(again);
                install_info_done(&back);
                install_info_done(&in);
        } else if (!err)
                abort();
        free(err);

        if (size < 80) {
                char v[80];
                memcpy(v, data, size);
                v[size] = '\0';
                if (release_version_valid(v) && release_version_compare(v, v) != 0)
                        abort();
        }
        return 0;
}
