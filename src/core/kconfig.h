/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Kernel config fragments against the .config a kernel build ended with
 * (pure: no I/O, no globals). A fragment holds "CONFIG_X=value" and
 * "# CONFIG_X is not set" lines; other comments and blank lines are
 * ignored. Kconfig drops a setting whose dependencies are not met without
 * a word, so a build checks every one survived (`banger kernel build`).
 */

#include <stddef.h>

struct kconfig_check {
        size_t options; /* settings in the fragment */
        size_t dropped; /* of them, not what the config ended with */
        char *report;   /* malloc'd, never NULL: "CONFIG_X=y (got: not set), ..." ("" when none),
                         * or the offending line when the fragment is malformed */
};

/* 0 (see ret->dropped), or -EBADMSG for a fragment line that is neither a
 * setting nor a comment (ret->report names it). A "not set" (or "=n")
 * setting holds when the config does not set the symbol, or says it is
 * not set; any other must appear with the same value. */
int kconfig_check_fragment(const char *fragment, size_t flen, const char *config, size_t clen,
                           struct kconfig_check *ret);
void kconfig_check_done(struct kconfig_check *c);
