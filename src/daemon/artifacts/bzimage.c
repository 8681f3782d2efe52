/* SPDX-License-Identifier: MIT */
#include "bzimage.h"

#include <elf.h>
#include <errno.h>
#include <lz4.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "strbuf.h"

#define LZ4_LEGACY_MAGIC 0x184C2102u
#define LZ4_LEGACY_BLOCK (8u << 20)
#define XEN_ELFNOTE_PHYS32_ENTRY 18

static uint32_t le32(const unsigned char *p) {
        return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

bool elf_has_pvh_note(const unsigned char *elf, size_t len) {
        if (len < sizeof(Elf64_Ehdr) || memcmp(elf, ELFMAG, SELFMAG) != 0 || elf[EI_CLASS] != ELFCLASS64)
                return false;
        const Elf64_Ehdr *eh = (const void *) elf;
        if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phoff > len ||
            (uint64_t) eh->e_phnum * sizeof(Elf64_Phdr) > len - eh->e_phoff)
                return false;
        for (unsigned i = 0; i < eh->e_phnum; i++) {
                Elf64_Phdr ph;
                memcpy(&ph, elf + eh->e_phoff + i * sizeof(ph), sizeof(ph));
                if (ph.p_type != PT_NOTE || ph.p_offset > len || ph.p_filesz > len - ph.p_offset)
                        continue;
                const unsigned char *p = elf + ph.p_offset, *end = p + ph.p_filesz;
                while (end - p >= (long) sizeof(Elf64_Nhdr)) {
                        Elf64_Nhdr nh;
                        memcpy(&nh, p, sizeof(nh));
                        size_t nsz = (nh.n_namesz + 3) & ~3u, dsz = (nh.n_descsz + 3) & ~3u;
                        p += sizeof(nh);
                        if ((size_t) (end - p) < nsz + dsz)
                                break;
                        if (nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY && nh.n_namesz == 4 && memcmp(p, "Xen", 4) == 0)
                                return true;
                        p += nsz + dsz;
                }
        }
        return false;
}

int bzimage_extract_vmlinux(const unsigned char *img, size_t len, unsigned char **ret, size_t *ret_len,
                            bool *ret_has_pvh, struct op_error *err) {
        if (len < 0x250 || memcmp(img + 0x202, "HdrS", 4) != 0) {
                return op_fail(err, -EBADMSG, "not a bzImage (no HdrS header)");
        }
        unsigned setup = img[0x1f1] ? img[0x1f1] : 4;
        size_t pm = ((size_t) setup + 1) * 512;
        uint32_t off = le32(img + 0x248), plen = le32(img + 0x24c);
        if (pm > len || off > len - pm || plen > len - pm - off || plen < 8) {
                return op_fail(err, -EBADMSG, "bzImage payload lies outside the file");
        }
        const unsigned char *p = img + pm + off, *end = p + plen;
        if (le32(p) != LZ4_LEGACY_MAGIC) {
                return op_fail(err, -ENOTSUP, "bzImage payload is not LZ4 (magic %08x)", le32(p));
        }
        uint32_t isize = le32(end - 4); /* every bzImage payload ends with its output size */
        if (isize == 0 || isize > (512u << 20)) {
                return op_fail(err, -EBADMSG, "implausible uncompressed kernel size");
        }
        unsigned char *out = malloc((size_t) isize + LZ4_LEGACY_BLOCK);
        size_t olen = 0;
        if (!out)
                return -ENOMEM;
        p += 4;
        while (end - p >= 8) {
                uint32_t csz = le32(p);
                if (csz == LZ4_LEGACY_MAGIC) { /* concatenated frame */
                        p += 4;
                        continue;
                }
                if (csz > (size_t) (end - p - 4))
                        break; /* the trailing size field */
                int n = LZ4_decompress_safe((const char *) p + 4, (char *) out + olen, (int) csz,
                                            (int) ((size_t) isize + LZ4_LEGACY_BLOCK - olen));
                if (n < 0) {
                        free(out);
                        return op_fail(err, -EBADMSG, "corrupt LZ4 data in the bzImage payload");
                }
                olen += (size_t) n;
                p += 4 + csz;
        }
        if (olen != isize || olen < 4 || memcmp(out, ELFMAG, SELFMAG) != 0) {
                free(out);
                return op_fail(err, -EBADMSG, "decompressed payload is not the expected ELF (%zu of %u bytes)", olen, isize);
        }
        *ret_has_pvh = elf_has_pvh_note(out, olen);
        *ret = out;
        *ret_len = olen;
        return 0;
}
