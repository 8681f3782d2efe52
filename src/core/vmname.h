/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * VM names are DNS labels: they become the hostname, /etc/hosts entries,
 * `<name>.vm`, kernel command line values and paths. 1-63 bytes of
 * [a-z0-9-], no leading or trailing '-', no normalisation. The error texts
 * are the reference tool's, word for word.
 */

#include <stdbool.h>
#include <stddef.h>

#define VM_NAME_MAX 63

/* 0 when valid; else -EINVAL and *ret_err (malloc'd) says why. */
int vm_name_validate(const char *name, char **ret_err);

/* A random "adjective-noun" name (valid by construction). */
char *vm_name_generate(void);

/* Is s a 16-hex-digit VM id, or a prefix of one (for lookups)? */
bool vm_id_like(const char *s);
/* A new random VM id: 16 lowercase hex digits. */
char *vm_id_generate(void);
