/* SPDX-License-Identifier: MIT */
#include "version.h"

#include "version_gen.h"

const char *banger_version(void) {
        return BANGER_VERSION;
}

const char *banger_commit(void) {
        return BANGER_COMMIT;
}

const char *banger_built_at(void) {
        return BANGER_BUILT_AT;
}
