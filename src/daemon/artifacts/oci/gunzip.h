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
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

/* The gzip data of in (from its current offset) decompressed into out. 0,
 * -EBADMSG (damaged or truncated: *ret_why says how), -ECANCELED (*stop
 * became true), or another negative errno from read/write (*ret_why set).
 * *ret_why is the caller's to free. */
_warn_unused_ int oci_gunzip(int in, int out, const _Atomic bool *stop, char **ret_why);

/* Where oci_gunzip_into reads: up to len bytes into buf; 0 at the end, or a
 * negative errno (-EINTR: called again; -ECANCELED: stops as *stop does). */
typedef ssize_t (*oci_read_fn)(void *ud, void *buf, size_t len);

/* Where oci_gunzip_into inflates to, with no copy: get gives room (*buf,
 * *cap > 0) or a negative errno; put says the first n bytes of the room get
 * last gave are data (n may be 0). */
struct oci_gunzip_sink {
        int (*get)(void *ud, uint8_t **buf, size_t *cap);
        int (*put)(void *ud, size_t n);
        void *ud;
};

/* oci_gunzip, the gzip data read through read_fn and inflated into sink's
 * room. */
_warn_unused_ int oci_gunzip_into(oci_read_fn read_fn, void *ud, const struct oci_gunzip_sink *sink,
                                  const _Atomic bool *stop, char **ret_why);
