/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * The local OCI sources that come as one file: `oci-archive:FILE` (a tar of
 * an OCI image layout) and `docker-archive:FILE` (`docker save`, skopeo's
 * docker-archive). Unpacked strictly into a fresh directory: regular files
 * and directories only (symlinks, docker's legacy `<id>/layer.tar` links,
 * are skipped: never made), safe relative paths (archive_path.h), no
 * duplicate, at most 64 GiB and 100,000 entries; anything else refuses the
 * archive.
 */

#include "op_error.h"
#include "ops/progress.h"

_warn_unused_ int oci_archive_unpack(const char *file, const char *dest_dir, const struct progress *p,
                                     struct op_error *e);
