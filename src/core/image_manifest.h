/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * manifest.json of an image (managed dir or bundle). Pure, fuzzed.
 *   {"format": 1, "name": "debian-bookworm-slim", "init_mode": "fast",
 *    "kernel_ref": "debian-cloud-6.1", "rootfs_sha256": "<hex>",
 *    "rootfs_size_bytes": 123, "work_seed_sha256": "<hex>", ...}
 * name, init_mode and format are required; other keys are metadata.
 */

#include <stddef.h>
#include <stdint.h>

struct image_manifest {
        char *name;
        char *init_mode;  /* "systemd" | "fast" */
        char *kernel_ref; /* may be NULL */
        char rootfs_sha256[65];
        char work_seed_sha256[65];
        uint64_t rootfs_size_bytes;
};

int image_manifest_parse(const char *text, size_t len, struct image_manifest *ret, char **ret_err);
void image_manifest_done(struct image_manifest *m);
