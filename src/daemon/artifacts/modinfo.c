/* SPDX-License-Identifier: MIT */
#include "modinfo.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"
#include "op_error.h"
#include "strbuf.h"

/* The value of `key=` in the module's .modinfo ("" when the section has
 * none), malloc'd. */
static int modinfo_field(const char *ko_path, const char *key, char **ret_value, struct op_error *err) {
        size_t klen = strlen(key);
        _cleanup_close_ int fd = open(ko_path, O_RDONLY | O_CLOEXEC);
        Elf *elf;
        Elf_Scn *scn = NULL;
        size_t shstrndx;
        int r = -ENOENT;

        if (fd < 0)
                return op_fail(err, -errno, "%s: %s", ko_path, strerror(errno));
        if (elf_version(EV_CURRENT) == EV_NONE)
                return -ENOTSUP;
        elf = elf_begin(fd, ELF_C_READ, NULL);
        if (!elf || elf_kind(elf) != ELF_K_ELF || elf_getshdrstrndx(elf, &shstrndx) != 0) {
                op_fail(err, -EBADMSG, "%s is not an ELF module", ko_path);
                if (elf)
                        elf_end(elf);
                return -EBADMSG;
        }
        while ((scn = elf_nextscn(elf, scn))) {
                GElf_Shdr sh;
                if (!gelf_getshdr(scn, &sh))
                        continue;
                const char *name = elf_strptr(elf, shstrndx, sh.sh_name);
                if (!name || strcmp(name, ".modinfo") != 0)
                        continue;
                Elf_Data *d = elf_getdata(scn, NULL);
                if (!d || !d->d_buf)
                        break;
                const char *p = d->d_buf, *end = p + d->d_size;
                while (p < end) {
                        size_t len = strnlen(p, (size_t) (end - p));
                        if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
                                *ret_value = xstrndup(p + klen + 1, len - klen - 1);
                                r = 0;
                                break;
                        }
                        p += len + 1;
                }
                if (r < 0) { /* .modinfo without the key: no deps, no vermagic */
                        *ret_value = xstrdup("");
                        r = 0;
                }
                break;
        }
        elf_end(elf);
        if (r < 0)
                return op_fail(err, r, "%s has no .modinfo section", ko_path);
        return 0;
}

int modinfo_depends(const char *ko_path, char **ret_depends, struct op_error *err) {
        return modinfo_field(ko_path, "depends", ret_depends, err);
}

int modinfo_release(const char *ko_path, char **ret_release, struct op_error *err) {
        _cleanup_free_ char *vermagic = NULL;
        int r = modinfo_field(ko_path, "vermagic", &vermagic, err);
        if (r < 0)
                return r;
        *ret_release = xstrndup(vermagic, strcspn(vermagic, " "));
        return 0;
}
