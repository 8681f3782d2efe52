/* SPDX-License-Identifier: MIT */
#pragma once

/* Random identifiers: one implementation for the whole tree (time is in clock.h). */

#include <stddef.h>
#include <stdint.h>

/* Fills buf from getrandom(2) (retrying EINTR; aborts if the kernel has none). */
void random_bytes(void *buf, size_t n);
/* 2*nbytes lowercase hex digits. */
char *random_hex(size_t nbytes);
