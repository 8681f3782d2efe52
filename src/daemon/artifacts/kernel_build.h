/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * Kernels built from source (kernel_build.c), the steps on the source
 * package (kernel_source.c). artifacts.h has the entry points.
 */

#include <stdint.h>

#include "op_error.h"
#include "ops/progress.h"

/* The tarball's one top directory `top` unpacked (stripped) into dest, a
 * new directory; progress as "unpack" bytes of the compressed file;
 * -ECANCELED when p is cancelled. dest is left for the caller to remove on
 * failure. */
_warn_unused_ int kernel_source_unpack(const char *tarball, const char *top, const char *dest, const struct progress *p,
                                       struct op_error *err);
/* The date of the newest entry of a changelog.Debian.gz (seconds since the
 * epoch): the timestamp a build of that source records. */
_warn_unused_ int kernel_source_date(const char *changelog_gz, int64_t *ret_epoch, struct op_error *err);
