/* SPDX-License-Identifier: MIT */
#pragma once

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

/* All return 0 or -errno. */

/* Creates path and missing parents with `mode` (existing dirs untouched). */
_warn_unused_ int mkdir_p(const char *path, mode_t mode);

/* Reads a whole regular file (at most max bytes, else -EFBIG);
 * NUL-terminated. Anything else (a FIFO, a device, a directory) is -EBADFD
 * without blocking. */
_warn_unused_ int read_file(const char *path, size_t max, char **ret, size_t *ret_len);
/* The same, and a symlink as the last component is -ELOOP (files in banger's
 * own directories that a guest or a user could have replaced). */
_warn_unused_ int read_file_nofollow(const char *path, size_t max, char **ret, size_t *ret_len);
/* The last non-empty line of a regular file (read from its last 8 KiB, a
 * symlink refused), at most max_len bytes, control characters shown as '?'
 * (what a guest wrote, on its way to a terminal); NULL when there is none. */
char *file_last_line(const char *path, size_t max_len);
/* Removes path and everything below it without following symlinks or
 * crossing into another filesystem (whatever is mounted below stays, and
 * so does its mount point). 0 when it was already gone. */
int rm_rf(const char *path);

/* Writes via a temp file + fsync + rename, so readers see old or new. */
_warn_unused_ int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);

/*
 * A private directory: exists (created with 0700 when missing and `create`),
 * is a real directory (not a symlink), owned by `uid` and mode exactly 0700.
 * On refusal returns -EPERM and a message in *ret_why (malloc'd).
 */
int ensure_private_dir(const char *path, uid_t uid, bool create, char **ret_why);

char *path_join(const char *a, const char *b);
/* path is dir or below it (textually: both absolute and normalised). */
bool path_below(const char *path, const char *dir);

/* Writes a full buffer, retrying on EINTR and short writes. */
_warn_unused_ int write_all(int fd, const void *buf, size_t len);

/* Copies a regular file, keeping holes (SEEK_DATA/SEEK_HOLE + copy_file_range),
 * to `to` (created with mode, replaced atomically). */
_warn_unused_ int copy_file_sparse(const char *from, const char *to, mode_t mode);

/* Bytes below path (recursive, no symlinks followed, one filesystem):
 * allocated blocks when `allocated`, else apparent sizes. */
uint64_t dir_size(const char *path, bool allocated);

/* A companion program: $env when set, else next to this executable, else
 * <exe dir>/../lib/banger/, else PATH. malloc'd path or NULL. */
char *find_companion(const char *env, const char *name);
