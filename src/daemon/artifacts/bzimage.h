/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * Extracts the uncompressed ELF kernel (vmlinux) from a bzImage, so QEMU can
 * boot it through PVH (measurably faster than the bzImage path: no in-guest
 * decompression). The Debian cloud kernel's payload is LZ4 (legacy frames).
 */

#include "op_error.h"
#include <stdbool.h>
#include <stddef.h>

/* 0 and the ELF in *ret (malloc'd), -ENOTSUP for other payload formats,
 * -EBADMSG for a malformed image. *ret_has_pvh: the ELF has a PVH entry note. */
_warn_unused_ int bzimage_extract_vmlinux(const unsigned char *img, size_t len, unsigned char **ret, size_t *ret_len,
                            bool *ret_has_pvh, struct op_error *err);

/* True when the ELF image carries a XEN_ELFNOTE_PHYS32_ENTRY note. */
bool elf_has_pvh_note(const unsigned char *elf, size_t len);
