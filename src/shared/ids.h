/* SPDX-License-Identifier: MIT */
#pragma once

/* Random identifiers: one implementation for the whole tree (time is in clock.h). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fills buf from getrandom(2) (retrying EINTR; aborts if the kernel has none). */
void random_bytes(void *buf, size_t n);
/* 2*nbytes lowercase hex digits. */
char *random_hex(size_t nbytes);
/* s is what random_hex(nbytes) makes: exactly 2*nbytes lowercase hex digits
 * (VM and image ids are random_hex(8)). */
bool is_hex_id(const char *s, size_t nbytes);
