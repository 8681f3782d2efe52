/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Checked number parsing. Pure functions: no I/O, no globals.
 * All return 0 or a negative errno (-EINVAL malformed, -ERANGE out of range)
 * and write *ret only on success.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int parse_int64(const char *s, int64_t *ret);
int parse_uint64(const char *s, uint64_t *ret);
int parse_int_range(const char *s, int64_t min, int64_t max, int64_t *ret);

/*
 * Sizes: "4G", "4GiB", "4GB" (binary: G == GiB), "512M", "512MiB", "4K",
 * "4KiB", "10B". A bare number is MiB (so "2048" is 2 GiB). Result in bytes.
 */
int parse_size(const char *s, uint64_t *ret_bytes);

/* Durations: "0", "30s", "5m", "1h", "1h30m", "250ms". A bare number is
 * seconds. Result in milliseconds. */
int parse_duration_ms(const char *s, uint64_t *ret_ms);

/* Formats bytes as "8 GiB", "512 MiB", "1.5 GiB" into buf. */
const char *format_size(uint64_t bytes, char *buf, size_t n);
/* Formats milliseconds as "10s", "1m30s", "250ms", "0". */
const char *format_duration_ms(uint64_t ms, char *buf, size_t n);

bool string_is_dns_label(const char *s);
