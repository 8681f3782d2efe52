/* SPDX-License-Identifier: MIT */
/* libFuzzer target: Release/Packages parsing, image manifests, archive paths. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "archive_path.h"
#include "debian.h"
#include "image_manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *text = (const char *) data;
        struct release rel;
        struct deb_package p;
        struct image_manifest m;
        char *err = NULL;

        if (debian_release_parse(text, size, &rel, &err) == 0) {
                for (size_t i = 0; i < rel.n_files; i++)
                        if (!is_sha256_hex(rel.files[i].sha256))
                                abort();
                debian_release_done(&rel);
        } else
                free(err);
        err = NULL;
        if (debian_packages_find(text, size, "linux-image-cloud-amd64", &p, &err) == 0) {
                if (p.filename[0] == '/' || strstr(p.filename, ".."))
                        abort(); /* never a path outside the pool */
                char *d = p.depends ? debian_depends_first_with_prefix(p.depends, "linux-image-") : NULL;
                free(d);
                deb_package_done(&p);
        } else
                free(err);
        err = NULL;
        if (image_manifest_parse(text, size, &m, &err) == 0)
                image_manifest_done(&m);
        else
                free(err);
        /* archive paths: a NUL-terminated copy, at most 8 KiB */
        if (size < 8192) {
                char *s = malloc(size + 1), *n = NULL;
                memcpy(s, data, size);
                s[size] = '\0';
                if (archive_path_normalize(s, &n) == 0) {
                        /* relative, and no component is "", "." or ".." */
                        if (n[0] == '/')
                                abort();
                        for (const char *c = n; *c;) {
                                size_t len = strcspn(c, "/");
                                if (len == 0 || (len == 1 && c[0] == '.') || (len == 2 && c[0] == '.' && c[1] == '.'))
                                        abort();
                                c += len + (c[len] == '/');
                        }
                        free(n);
                }
                char *nl = strchr(s, '\n');
                if (nl) {
                        *nl = '\0';
                        (void) archive_symlink_is_safe(s, nl + 1);
                }
                free(s);
        }
        return 0;
}
