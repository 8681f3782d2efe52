/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What `vm run ./repo` and the workspace service need to know about a host
 * repository, asked of git itself (no parsing of .git internals): the work
 * tree, HEAD, branch, origin and local identity, and the files to ship.
 * Shared by the CLI (preflight, --dry-run) and the daemon (prepare).
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct git_repo {
        char *toplevel;   /* absolute work tree root */
        char *head;       /* HEAD commit (40 hex) */
        char *branch;     /* current branch, or NULL when detached */
        char *origin;     /* remote.origin.url, or NULL */
        char *user_name;  /* repo-local user.name, or NULL */
        char *user_email; /* repo-local user.email, or NULL */
};

/* The path exists, is inside a non-bare work tree with at least one commit
 * and without submodules. 0, or -errno with *ret_err saying which. */
int git_repo_inspect(const char *path, struct git_repo *ret, char **ret_err);
void git_repo_done(struct git_repo *r);

struct git_file {
        char *path; /* relative to the top level, validated (no "..", not absolute) */
        mode_t mode;
        uint64_t size;
        bool untracked;
};

/* Tracked files present in the work tree (their working-tree content is what
 * ships), plus untracked non-ignored ones when asked. *ret_skipped counts the
 * untracked files left out. Sorted by path. */
int git_repo_files(const char *toplevel, bool include_untracked, struct git_file **ret, size_t *ret_n,
                   size_t *ret_skipped, char **ret_err);
void git_files_free(struct git_file *f, size_t n);

/* git -C dir args... ; stdout (trailing newline trimmed) in *ret_out. 0 when
 * git exited 0; -EIO with git's stderr in *ret_err otherwise. */
int git_capture(const char *dir, const char *const *args, char **ret_out, char **ret_err);
/* The same with the output's length (for -z output). */
int git_capture_n(const char *dir, const char *const *args, char **ret_out, size_t *ret_len, char **ret_err);
/* The same with in_fd as git's stdin. */
int git_capture_in(const char *dir, const char *const *args, int in_fd, char **ret_out, char **ret_err);

/* POSIX shell single-quoting of one word. */
char *shell_quote(const char *s);
/* Words quoted and joined with spaces. */
char *shell_join(char *const *argv, int n);
