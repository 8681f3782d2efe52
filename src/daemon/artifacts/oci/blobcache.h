/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The blob cache shared by every pull: <cache>/oci/blobs/sha256/<hex>, a
 * blob only once its digest matched (pull.c writes it, under
 * a->oci_cache_lock read-held); oci_cache_prune (artifacts.h) empties it
 * with the lock write-held, so no pull is half-way through it.
 */

#include "artifacts/artifacts.h"

/* The cache's directory (the caller frees it). */
char *oci_blob_dir(const struct artifacts *a);
