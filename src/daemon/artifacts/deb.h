/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * Reading Debian .deb files without dpkg: an `ar` archive holding
 * debian-binary, control.tar.* and data.tar.*; libarchive reads both layers.
 *
 * Strict: any entry with an absolute or climbing path, any device/fifo entry,
 * and any symlink or hard link that escapes the tree makes the whole archive
 * an error. Only entries `want` accepts are written, and they must be regular
 * files.
 */

#include "op_error.h"
#include <stdbool.h>

/* norm_path: normalised, relative ("boot/vmlinuz-6.1..."). Return the path to
 * write it to under dest_dir (malloc'd), or NULL to skip the entry. */
typedef char *(*deb_want_fn)(const char *norm_path, void *ud);

_warn_unused_ int deb_extract(const char *deb_path, const char *dest_dir, deb_want_fn want, void *ud, int *ret_written,
                struct op_error *err);
