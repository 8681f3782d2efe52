/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * gzip layers decompressed with ISA-L's igzip (several times zlib's speed,
 * which libarchive uses): every member of a multi-member file, each
 * member's CRC32 and ISIZE checked against its trailer (igzip does, in
 * ISAL_GZIP mode). After the last member, bytes that do not start another
 * member are ignored, as libarchive's gzip filter does. Built only when
 * meson finds libisal (HAVE_ISAL); libarchive decompresses otherwise.
 */

#include <stdbool.h>

#include "macro.h"

/* The gzip data of in (from its current offset) decompressed into out. 0,
 * -EBADMSG (damaged or truncated: *ret_why says how), -ECANCELED (*stop
 * became true), or another negative errno from read/write (*ret_why set).
 * *ret_why is the caller's to free. */
_warn_unused_ int oci_gunzip(int in, int out, const _Atomic bool *stop, char **ret_why);
