/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The repo disk's two calls (docs/GUEST.md, "The repo disk"): the host
 * rewrites the disk between them, so the guest must hold nothing of it.
 */

#include <stdbool.h>
#include <stddef.h>

/* repo_detach: /root/repo unmounted (refused while anything uses it) and the
 * disk's cached blocks dropped. {"detached":true} or {"detached":false,"error":...} */
bool agent_repo_detach(char *buf, size_t n, size_t *pos);
/* repo_attach: the cached blocks dropped again, and the disk mounted on
 * /root/repo if the host marked it complete; what the work disk held under
 * /root/repo is removed first (a workspace replaces it). {"attached":...} */
bool agent_repo_attach(char *buf, size_t n, size_t *pos);
