/* SPDX-License-Identifier: MIT */
#pragma once

const char *banger_version(void);  /* "0.1.0" */
const char *banger_commit(void);   /* 8 hex digits or "unknown" */
const char *banger_built_at(void); /* RFC 3339 UTC */
