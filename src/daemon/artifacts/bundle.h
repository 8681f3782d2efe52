/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * Image bundles: a .tar.zst holding exactly rootfs.ext4 and manifest.json
 * (banger's own exports may add work-seed.ext4). Reading is strict: any
 * other entry, a duplicate, a non-regular entry or an unsafe path rejects
 * the bundle. The SHA-256 of the compressed stream is computed while it is
 * read; rootfs.ext4 is written sparse and checked against the manifest.
 */

#include "op_error.h"
#include <stdbool.h>

#include "artifacts.h"
#include "image_manifest.h"

_warn_unused_ int bundle_read(const char *bundle_path, const char *dest_dir, const char *expect_sha256,
                const struct progress *p, struct image_manifest *ret_manifest, struct op_error *err);

/* Writes manifest.json (text), rootfs.ext4 and work-seed.ext4 (if the path
 * is non-NULL) from src paths into out (atomically). */
_warn_unused_ int bundle_write(const char *out, const char *manifest_json, const char *rootfs, const char *work_seed,
                 const struct progress *p, struct op_error *err);
