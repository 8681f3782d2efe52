/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * `image pull` of OCI images: from a registry (REF) or an OCI image layout
 * (oci:DIR[:tag]); blobs through the shared content-addressed cache
 * <cache>/oci/blobs/sha256/<hex>, layers flattened into ext4 (flatten.h),
 * banger's agent put in, registered as a managed image of init mode fast.
 */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "artifacts/artifacts.h"
