/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Program logging (daemon and CLI). Library code never logs: it returns an
 * error and the program logs it once.
 *
 * Lines are structured key=value:
 *   ts=2026-11-21T21:00:00.123Z level=info op_id=op-1a2b3c msg="vm started" vm='dev'
 * The op_id is thread-local: set it when a request starts, clear it after.
 */

#include <stdarg.h>
#include <stdbool.h>

#include "macro.h"

enum log_level {
        LOG_LEVEL_ERROR,
        LOG_LEVEL_WARN,
        LOG_LEVEL_INFO,
        LOG_LEVEL_DEBUG,
        _LOG_LEVEL_MAX,
};

const char *log_level_to_string(enum log_level l);
int log_level_from_string(const char *s); /* level or -EINVAL */

/* fd: where lines go (-1 for none). stderr_too: also copy to stderr. */
void log_setup(int fd, enum log_level max, bool stderr_too);
void log_set_level(enum log_level max);
enum log_level log_get_level(void);

void log_set_op_id(const char *op_id); /* copies; NULL clears */
const char *log_get_op_id(void);       /* "" when unset */

void log_full(enum log_level level, const char *fmt, ...) _printf_(2, 3);

#define log_error(...) log_full(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_full(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...) log_full(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) log_full(LOG_LEVEL_DEBUG, __VA_ARGS__)

/* Logs and returns r (a negative errno), for `return log_error_errno(r, ...)`. */
int log_error_errno(int r, const char *fmt, ...) _printf_(2, 3);
