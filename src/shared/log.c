/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "strbuf.h"

static const char *const level_names[_LOG_LEVEL_MAX] = {
        [LOG_LEVEL_ERROR] = "error",
        [LOG_LEVEL_WARN] = "warn",
        [LOG_LEVEL_INFO] = "info",
        [LOG_LEVEL_DEBUG] = "debug",
};

/* Written once at start-up before threads exist; read-only afterwards. */
static int log_fd = -1;
static bool log_stderr = true;
static _Atomic enum log_level log_max = LOG_LEVEL_INFO; /* a reload changes it */
static pthread_mutex_t log_write_mu = PTHREAD_MUTEX_INITIALIZER; /* leaf */

static _Thread_local char op_id_buf[32];

const char *log_level_to_string(enum log_level l) {
        return l >= 0 && l < _LOG_LEVEL_MAX ? level_names[l] : "unknown";
}

int log_level_from_string(const char *s) {
        for (int i = 0; i < _LOG_LEVEL_MAX; i++)
                if (s && strcasecmp(s, level_names[i]) == 0)
                        return i;
        return -EINVAL;
}

void log_setup(int fd, enum log_level max, bool stderr_too) {
        log_fd = fd;
        log_max = max;
        log_stderr = stderr_too;
}

void log_set_level(enum log_level max) {
        log_max = max;
}

enum log_level log_get_level(void) {
        return log_max;
}

void log_set_op_id(const char *op_id) {
        if (!op_id)
                op_id_buf[0] = '\0';
        else
                snprintf(op_id_buf, sizeof(op_id_buf), "%s", op_id);
}

const char *log_get_op_id(void) {
        return op_id_buf;
}

_printf_(2, 0) static void log_vfull(enum log_level level, const char *fmt, va_list ap) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        struct timespec ts;
        struct tm tm;
        char tbuf[32];
        int saved = errno;

        if (level > log_max)
                return;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);
        strbuf_addf(&sb, "ts=%s.%03ldZ level=%s pid=%d", tbuf, ts.tv_nsec / 1000000,
                    log_level_to_string(level), (int) getpid());
        if (op_id_buf[0])
                strbuf_addf(&sb, " op_id=%s", op_id_buf);
        strbuf_addstr(&sb, " msg=\"");
        strbuf_vaddf(&sb, fmt, ap);
        strbuf_addstr(&sb, "\"\n");

        pthread_mutex_lock(&log_write_mu);
        if (log_fd >= 0 && write(log_fd, sb.buf, sb.len) < 0) {
                /* nowhere else to report it */
        }
        if (log_stderr && log_fd != STDERR_FILENO && write(STDERR_FILENO, sb.buf, sb.len) < 0) {
        }
        pthread_mutex_unlock(&log_write_mu);
        errno = saved;
}

void log_full(enum log_level level, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        log_vfull(level, fmt, ap);
        va_end(ap);
}

int log_error_errno(int r, const char *fmt, ...) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        va_list ap;

        va_start(ap, fmt);
        strbuf_vaddf(&sb, fmt, ap);
        va_end(ap);
        log_full(LOG_LEVEL_ERROR, "%s: %s", sb.buf, strerror(r < 0 ? -r : r));
        return r < 0 ? r : -r;
}
