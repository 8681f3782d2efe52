/* SPDX-License-Identifier: MIT */
#include "archive_path.h"

#include <errno.h>
#include <string.h>

#include "macro.h"
#include "strbuf.h"

int archive_path_normalize(const char *path, char **ret) {
        size_t n = strlen(path);
        const char *p = path;

        if (n > 4096)
                return -ENAMETOOLONG;
        if (p[0] == '/')
                return -EPERM;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) p[i] < 0x20 || p[i] == 0x7f)
                        return -EINVAL;
        while (p[0] == '.' && p[1] == '/')
                p += 2;
        if (strcmp(p, ".") == 0)
                p += 1;
        _cleanup_free_ char *s = xstrdup(p);
        size_t k = strlen(s);
        while (k && s[k - 1] == '/')
                s[--k] = '\0';
        /* component checks */
        const char *c = s;
        while (*c) {
                size_t len = strcspn(c, "/");
                if (len == 0)
                        return -EINVAL; /* "a//b" */
                if ((len == 2 && c[0] == '.' && c[1] == '.') || (len == 1 && c[0] == '.'))
                        return -EPERM;
                c += len;
                if (*c == '/')
                        c++;
        }
        *ret = TAKE_PTR(s);
        return 0;
}

bool archive_symlink_is_safe(const char *path, const char *target) {
        int depth = 0;

        if (!target[0] || target[0] == '/')
                return false;
        /* depth of the directory holding the link */
        for (const char *c = path; *c; c++)
                if (*c == '/')
                        depth++;
        const char *t = target;
        while (*t) {
                size_t len = strcspn(t, "/");
                if (len == 2 && t[0] == '.' && t[1] == '.') {
                        if (--depth < 0)
                                return false;
                } else if (len && !(len == 1 && t[0] == '.'))
                        depth++;
                t += len;
                if (*t == '/')
                        t++;
        }
        return true;
}
