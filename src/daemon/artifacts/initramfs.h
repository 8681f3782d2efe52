/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * newc cpio archives (libarchive) for the kernel's initramfs unpacker:
 * parents get directory entries first, timestamps are zero (reproducible),
 * owner root. The kernel accepts several archives concatenated, which is how
 * the per-VM configuration cpio rides on the per-kernel initramfs.
 */

#include "op_error.h"
#include <stdbool.h>
#include <stddef.h>

struct cpio_entry {
        const char *path;     /* inside the archive, relative ("init", "etc/x") */
        const char *src_file; /* content from this file, or */
        const void *data;     /* from memory */
        size_t len;
        unsigned mode;        /* permission bits */
};

/* Writes dest atomically. with_console adds dev/console (c 5:1) so the
 * kernel can open the console before /init runs. */
_warn_unused_ int cpio_write(const char *dest, const struct cpio_entry *entries, size_t n, bool with_console, struct op_error *err);
