/* SPDX-License-Identifier: MIT */
#include "gitrepo.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "archive_path.h"
#include "fsutil.h"
#include "macro.h"
#include "proc_spawn.h"
#include "strbuf.h"

int git_capture(const char *dir, const char *const *args, char **ret_out, char **ret_err) {
        size_t len;
        return git_capture_n(dir, args, ret_out, &len, ret_err);
}

static int git_run(const char *dir, const char *const *args, int in_fd, char **ret_out, size_t *ret_len,
                   char **ret_err) {
        size_t n = 0;
        while (args[n])
                n++;
        _cleanup_free_ char **argv = xcalloc(n + 4, sizeof(char *));
        argv[0] = (char *) "git";
        argv[1] = (char *) "-C";
        argv[2] = (char *) dir;
        for (size_t i = 0; i < n; i++)
                argv[3 + i] = (char *) args[i];
        struct spawn_fd_map in = { 0, in_fd };
        struct spawn_opts o = { .fds = in_fd >= 0 ? &in : NULL, .n_fds = in_fd >= 0 ? 1 : 0, .capture_stdout = true,
                                .capture_stderr = true, .timeout_ms = 120000, .max_capture = 256u << 20 };
        struct spawn_result res = { 0 };
        int r = spawn_run(argv, &o, &res);
        if (r < 0) {
                *ret_err = xasprintf("cannot run git: %s (apt-get install git)", strerror(-r));
                return r;
        }
        if (res.exit_code != 0) {
                res.err[strcspn(res.err, "\n")] = '\0';
                *ret_err = xasprintf("git %s: %s", args[0], *res.err ? res.err : "failed");
                spawn_result_done(&res);
                return -EIO;
        }
        while (res.out_len > 0 && res.out[res.out_len - 1] == '\n')
                res.out[--res.out_len] = '\0';
        *ret_len = res.out_len;
        *ret_out = TAKE_PTR(res.out);
        spawn_result_done(&res);
        return 0;
}

int git_capture_n(const char *dir, const char *const *args, char **ret_out, size_t *ret_len, char **ret_err) {
        return git_run(dir, args, -1, ret_out, ret_len, ret_err);
}

int git_capture_in(const char *dir, const char *const *args, int in_fd, char **ret_out, char **ret_err) {
        size_t len;
        return git_run(dir, args, in_fd, ret_out, &len, ret_err);
}

static char *git_opt(const char *dir, const char *const *args) {
        char *out = NULL, *err = NULL;
        if (git_capture(dir, args, &out, &err) < 0 || !out || !*out) {
                free(out);
                out = NULL;
        }
        free(err);
        return out;
}

void git_repo_done(struct git_repo *r) {
        free(r->toplevel);
        free(r->head);
        free(r->branch);
        free(r->origin);
        free(r->user_name);
        free(r->user_email);
        *r = (struct git_repo) { 0 };
}

int git_repo_inspect(const char *path, struct git_repo *ret, char **ret_err) {
        struct stat st;
        _cleanup_free_ char *out = NULL, *err = NULL, *abs = NULL;
        *ret = (struct git_repo) { 0 };
        if (stat(path, &st) < 0) {
                *ret_err = xasprintf("%s: %s", path, strerror(errno));
                return -errno;
        }
        if (!S_ISDIR(st.st_mode)) {
                *ret_err = xasprintf("%s is not a directory", path);
                return -ENOTDIR;
        }
        abs = realpath(path, NULL);
        if (!abs) {
                *ret_err = xasprintf("%s: %s", path, strerror(errno));
                return -errno;
        }
        if (git_capture(abs, (const char *const[]) { "rev-parse", "--is-bare-repository", NULL }, &out, &err) < 0) {
                *ret_err = xasprintf("%s is not inside a git repository", abs);
                return -EINVAL;
        }
        if (strcmp(out, "true") == 0) {
                *ret_err = xasprintf("%s is a bare git repository (a work tree is needed)", abs);
                return -EINVAL;
        }
        free(TAKE_PTR(out));
        free(TAKE_PTR(err));
        if (git_capture(abs, (const char *const[]) { "rev-parse", "--show-toplevel", NULL }, &out, &err) < 0 || !*out) {
                *ret_err = xasprintf("%s is not inside a git work tree", abs);
                return -EINVAL;
        }
        ret->toplevel = TAKE_PTR(out);
        free(TAKE_PTR(err));
        _cleanup_free_ char *gm = path_join(ret->toplevel, ".gitmodules");
        _cleanup_free_ char *subs = git_opt(ret->toplevel, (const char *const[]) { "submodule", "status", NULL });
        if (access(gm, F_OK) == 0 || (subs && *subs)) {
                *ret_err = xasprintf("%s has git submodules, which banger does not ship", ret->toplevel);
                git_repo_done(ret);
                return -EINVAL;
        }
        if (git_capture(ret->toplevel, (const char *const[]) { "rev-parse", "--verify", "-q", "HEAD^{commit}", NULL },
                        &out, &err) < 0) {
                *ret_err = xasprintf("%s has no commits yet", ret->toplevel);
                git_repo_done(ret);
                return -EINVAL;
        }
        ret->head = TAKE_PTR(out);
        ret->branch = git_opt(ret->toplevel, (const char *const[]) { "symbolic-ref", "--short", "-q", "HEAD", NULL });
        ret->origin = git_opt(ret->toplevel, (const char *const[]) { "config", "--get", "remote.origin.url", NULL });
        ret->user_name = git_opt(ret->toplevel, (const char *const[]) { "config", "--local", "--get", "user.name", NULL });
        ret->user_email = git_opt(ret->toplevel,
                                  (const char *const[]) { "config", "--local", "--get", "user.email", NULL });
        return 0;
}

void git_files_free(struct git_file *f, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(f[i].path);
        free(f);
}

static int cmp_file(const void *a, const void *b) {
        return strcmp(((const struct git_file *) a)->path, ((const struct git_file *) b)->path);
}

/* NUL-separated git output into files (skipping what is missing). */
static int add_files(const char *top, const char *out, size_t len, bool untracked, struct git_file **v, size_t *n,
                     char **ret_err) {
        for (size_t i = 0; i < len;) {
                const char *p = out + i;
                size_t l = strnlen(p, len - i);
                i += l + 1;
                if (l == 0)
                        continue;
                _cleanup_free_ char *norm = NULL;
                if (archive_path_normalize(p, &norm) < 0 || strcmp(norm, p) != 0) {
                        *ret_err = xasprintf("refusing the path '%s' from git", p);
                        return -EINVAL;
                }
                _cleanup_free_ char *full = path_join(top, p);
                struct stat st;
                if (lstat(full, &st) < 0)
                        continue; /* deleted in the work tree: the guest sees it deleted too */
                if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
                        continue;
                *v = xrealloc(*v, (*n + 1) * sizeof(**v));
                (*v)[(*n)++] = (struct git_file) { .path = xstrdup(p), .mode = st.st_mode, .size = (uint64_t) st.st_size,
                                                   .untracked = untracked };
        }
        return 0;
}

int git_repo_files(const char *toplevel, bool include_untracked, struct git_file **ret, size_t *ret_n,
                   size_t *ret_skipped, char **ret_err) {
        struct git_file *v = NULL;
        size_t n = 0;
        int r;
        *ret_skipped = 0;
        /* -z output is NUL-separated; the capture keeps the bytes */
        struct spawn_opts o = { .capture_stdout = true, .capture_stderr = true, .timeout_ms = 120000,
                                .max_capture = 256u << 20 };
        const char *const lists[2][8] = {
                { "git", "-C", toplevel, "ls-files", "-z", "--cached", NULL },
                { "git", "-C", toplevel, "ls-files", "-z", "--others", "--exclude-standard", NULL },
        };
        for (int k = 0; k < 2; k++) {
                struct spawn_result res = { 0 };
                r = spawn_run((char *const *) lists[k], &o, &res);
                if (r < 0 || res.exit_code != 0) {
                        *ret_err = xasprintf("git ls-files in %s failed: %s", toplevel, r < 0 ? strerror(-r) : res.err);
                        spawn_result_done(&res);
                        git_files_free(v, n);
                        return r < 0 ? r : -EIO;
                }
                if (k == 0 || include_untracked)
                        r = add_files(toplevel, res.out, res.out_len, k == 1, &v, &n, ret_err);
                else
                        for (size_t i = 0; i < res.out_len; i++)
                                *ret_skipped += res.out[i] == '\0';
                spawn_result_done(&res);
                if (r < 0) {
                        git_files_free(v, n);
                        return r;
                }
        }
        if (n > 1)
                qsort(v, n, sizeof(*v), cmp_file);
        *ret = v;
        *ret_n = n;
        return 0;
}

char *shell_quote(const char *s) {
        struct strbuf sb = STRBUF_INIT;
        strbuf_addch(&sb, '\'');
        for (; *s; s++) {
                if (*s == '\'')
                        strbuf_addstr(&sb, "'\\''");
                else
                        strbuf_addch(&sb, *s);
        }
        strbuf_addch(&sb, '\'');
        return strbuf_detach(&sb, NULL);
}

char *shell_join(char *const *argv, int n) {
        struct strbuf sb = STRBUF_INIT;
        for (int i = 0; i < n; i++) {
                _cleanup_free_ char *q = shell_quote(argv[i]);
                strbuf_addf(&sb, "%s%s", i ? " " : "", q);
        }
        return strbuf_detach(&sb, NULL);
}
