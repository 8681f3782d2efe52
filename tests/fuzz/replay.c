/* SPDX-License-Identifier: MIT */
/*
 * Replays saved fuzz inputs through a target without libFuzzer, so the corpus
 * runs as a regression test in every build (sanitizers included). Arguments
 * are files or directories; prints TAP.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fsutil.h"
#include "macro.h"
#include "strbuf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int n;

static int run_file(const char *path) {
        _cleanup_free_ char *data = NULL;
        size_t len;

        if (read_file(path, 16u << 20, &data, &len) < 0) {
                printf("not ok %d - %s (unreadable)\n", ++n, path);
                return 1;
        }
        LLVMFuzzerTestOneInput((const uint8_t *) data, len); /* aborts on a finding */
        printf("ok %d - %s\n", ++n, path);
        return 0;
}

static int cmp(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int main(int argc, char **argv) {
        int fails = 0;
        char **files = NULL;
        size_t nf = 0;

        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0)
                        continue;
                if (!S_ISDIR(st.st_mode)) {
                        files = xrealloc(files, (nf + 1) * sizeof(char *));
                        files[nf++] = xstrdup(argv[i]);
                        continue;
                }
                DIR *d = opendir(argv[i]);
                struct dirent *de;
                while (d && (de = readdir(d)))
                        if (de->d_name[0] != '.') {
                                files = xrealloc(files, (nf + 1) * sizeof(char *));
                                files[nf++] = path_join(argv[i], de->d_name);
                        }
                if (d)
                        closedir(d);
        }
        if (nf)
                qsort(files, nf, sizeof(char *), cmp);
        printf("1..%zu\n", nf);
        for (size_t i = 0; i < nf; i++) {
                fails += run_file(files[i]);
                free(files[i]);
        }
        free(files);
        return fails ? 1 : 0;
}
