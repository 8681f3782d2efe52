/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Orders kernel modules so every module comes after its dependencies (pure).
 * Module names compare with '-' and '_' equal, as the kernel does.
 */

#include <stddef.h>

struct modnode {
        const char *name;    /* borrowed */
        const char *depends; /* borrowed, comma-separated */
};

/*
 * wanted: names to load; nodes: every module known (name + depends).
 * *ret_order: indexes into nodes, dependencies first, each once; *ret_n its
 * length. -ENOENT (a dependency is unknown) or -ELOOP (a cycle) with *ret_err.
 */
int modorder_resolve(const char *const *wanted, size_t n_wanted, const struct modnode *nodes, size_t n_nodes,
                     size_t **ret_order, size_t *ret_n, char **ret_err);

int modname_equal(const char *a, const char *b);
