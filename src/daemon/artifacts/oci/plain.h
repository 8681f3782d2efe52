/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A layer's decompressed tar, as the flattener's two passes read it: in
 * memory while a process-wide budget lasts (no write and read back through
 * the page cache: a third of a pull's CPU went there), spilled into a temp
 * file beside the image once the budget is spent. Concurrent pulls share the
 * budget; each plain gives its share back when it is done.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

struct plain {
        char *path;   /* owned: the temp file's name (made only on a spill) */
        int fd;       /* the temp file, open for writing; -1 until a spill */
        bool spilled; /* the data is in path, not in mem */
        uint8_t *mem; /* mmap'd, cap bytes (len used) */
        size_t len, cap;
};

/* An empty plain that spills (if it must) into path (taken). */
void plain_init(struct plain *p, char *path);
/* Appends n bytes; 0 or a negative errno (*ret_why says what failed). */
_warn_unused_ int plain_write(struct plain *p, const void *buf, size_t n, char **ret_why);
/* Written whole: a spilled plain's file is closed (its path stays). */
_warn_unused_ int plain_finish(struct plain *p, char **ret_why);
/* Frees the memory (and its budget) and removes a spilled file. */
void plain_done(struct plain *p);
/* The budget's size in bytes (an eighth of RAM, at most 4 GiB; tests set it). */
uint64_t plain_budget(void);
void plain_set_budget(uint64_t bytes);
