/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Crash points for the fault suite (tests/faults/): with the build option
 * `-Dtest_hooks=true` (the ASan test build only), a process whose
 * $BANGER_TEST_CRASH_AT names a point kills itself with SIGKILL there, as a
 * crash or `kill -9` would. Points: every progress stage by its name
 * ("prepare disks", "boot", "download", "debootstrap", ...) and the named
 * points listed in docs/ARCHITECTURE.md ("Failure model"). In other builds
 * this is nothing at all.
 */

#include <stdbool.h>

#ifdef BANGER_TEST_HOOKS
void test_crash_point(const char *where);
static inline bool test_hooks_enabled(void) {
        return true;
}
#else
static inline void test_crash_point(const char *where) {
        (void) where;
}
static inline bool test_hooks_enabled(void) {
        return false;
}
#endif
