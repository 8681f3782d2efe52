/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

#include "op_error.h"
#include <jansson.h>

#include "artifacts.h"

/*
 * Builds a `debian` catalog recipe into dest_dir: rootfs.ext4,
 * work-seed.ext4 and manifest.json. A build cache keyed by (recipe, agent
 * binary, mirror, signed Release) makes repeat builds a copy. As root or
 * through the helper: the privileged build (mmdebstrap root mode, mkfs -d);
 * without either: mmdebstrap's unshare mode (priv.h build_debian_tar), whose
 * tar becomes the two images through the OCI flattener (libext2fs).
 */
_warn_unused_ int imagebuild_debian(struct artifacts *a, json_t *recipe, const char *dest_dir, const struct progress *p,
                      json_t **ret_manifest, struct op_error *err);

/* 0 when this daemon can build a Debian image; why not and what to do
 * instead otherwise (RPC_UNAUTHORIZED). */
_warn_unused_ int imagebuild_possible(struct artifacts *a, struct op_error *err);
