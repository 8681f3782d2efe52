/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The per-kernel modules disk (docs/GUEST.md, "The modules disk"): the
 * kernel's whole module tree with depmod's indexes, as a small read-only ext4
 * (`modules.ext4` in the kernel's dir) that every VM of the kernel gets as a
 * read-only virtio disk and banger-init mounts on /lib/modules/<release>.
 */

#include <stdbool.h>
#include <stddef.h>

#include "op_error.h"

#define MODULES_DISK_FILE "modules.ext4"
#define MODULES_DISK_LABEL "banger-modules"
/* Far above any distribution kernel's tree (Debian's cloud kernel: ~60 MiB). */
#define MODULES_TREE_MAX (2ull << 30)

/* A module tree's release ("6.1.0-28-cloud-amd64"): one path component, no
 * dot first, nothing a path could climb with. */
bool modules_release_valid(const char *release);

/* Builds `out` (an ext4 holding the contents of `<modroot>/lib/modules/<release>` at its
 * root, after `depmod -b <modroot> <release>` wrote the indexes there). On
 * failure `out` is removed; modroot is the caller's. */
_warn_unused_ int modules_disk_build(const char *modroot, const char *release, const char *out, struct op_error *err);
