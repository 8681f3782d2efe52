/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

#include "op_error.h"

/* Kernel module metadata from the ELF .modinfo section (libelf). */

/* *ret_depends: comma-separated module names ("" for none), malloc'd. */
_warn_unused_ int modinfo_depends(const char *ko_path, char **ret_depends, struct op_error *err);

/* *ret_release: the kernel release the module was built for (the first word
 * of its vermagic; "" when it has none), malloc'd. */
_warn_unused_ int modinfo_release(const char *ko_path, char **ret_release, struct op_error *err);
