/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>

/*
 * Archive entry path validation (pure, fuzzed). A safe path is relative, has
 * no ".." component, no empty components after normalising a leading "./",
 * no NUL/control characters and at most 4096 bytes. On success *ret is the
 * normalised path (leading "./" and trailing "/" removed; "" for the root).
 */
int archive_path_normalize(const char *path, char **ret);

/* A symlink at `path` pointing at `target` stays inside the tree. */
bool archive_symlink_is_safe(const char *path, const char *target);
