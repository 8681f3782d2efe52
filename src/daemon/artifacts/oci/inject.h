/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A flattened image made bootable by banger (pull.c calls it): the dirs
 * banger-init's fast mode mounts on, banger-agent (agent_bin) in
 * /usr/local/bin, the config's Env as /etc/profile.d/00-banger-image-env.sh
 * (and an /etc/profile that reads profile.d when the image has none), and
 * the run config (oci_config_run_json) with the config's User resolved to
 * uid, gid and home from the image's own /etc/passwd and /etc/group.
 * *ret_run is set (the caller's to free) even when this fails.
 */

#include <jansson.h>

#include "macro.h"
#include "oci.h"
#include "op_error.h"

_warn_unused_ int oci_inject(const char *rootfs, const char *agent_bin, const struct oci_config *cfg, json_t **ret_run,
                             struct op_error *e);
