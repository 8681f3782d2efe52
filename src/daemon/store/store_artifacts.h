/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/* Rows of the kernels and images tables. All return 0 or -errno
 * (-ENOENT for a missing row, -EEXIST for a taken name). */

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

struct kernel_row {
        char *name, *distro, *arch, *kernel_version, *dir, *source, *imported_at;
};

struct image_row {
        char *id, *name;
        bool managed;
        char *rootfs_path, *work_seed_path, *kernel_name, *kernel_path, *initrd_path;
        char *init_mode;
        int64_t rootfs_size_bytes;
        char *source, *created_at;
};

void kernel_row_done(struct kernel_row *r);
void image_row_done(struct image_row *r);

_warn_unused_ int store_kernel_put(struct store *s, const struct kernel_row *r); /* insert or replace */
_warn_unused_ int store_kernel_get(struct store *s, const char *name, struct kernel_row *ret);
_warn_unused_ int store_kernel_list(struct store *s, struct kernel_row **ret, size_t *ret_n);
_warn_unused_ int store_kernel_delete(struct store *s, const char *name);
_warn_unused_ int store_kernel_image_refs(struct store *s, const char *name, char **ret_first_image, int *ret_count);

_warn_unused_ int store_image_insert(struct store *s, const struct image_row *r);
_warn_unused_ int store_image_update(struct store *s, const struct image_row *r); /* by id */
_warn_unused_ int store_image_get(struct store *s, const char *name_or_id, struct image_row *ret);
_warn_unused_ int store_image_list(struct store *s, struct image_row **ret, size_t *ret_n);
_warn_unused_ int store_image_delete(struct store *s, const char *id);
_warn_unused_ int store_image_vm_refs(struct store *s, const char *id, int *ret_count);
