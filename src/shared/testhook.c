/* SPDX-License-Identifier: MIT */
#include <stdbool.h>

#include "testhook.h"

#ifdef BANGER_TEST_HOOKS
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

void test_crash_point(const char *where) {
        const char *at = getenv("BANGER_TEST_CRASH_AT");
        if (!at || !where || strcmp(at, where) != 0)
                return;
        log_warn("test hook: crashing at '%s'", where);
        kill(getpid(), SIGKILL);
}
#endif
