/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The guest agent protocol, version 1 (docs/GUEST.md). One JSON object per
 * line in each direction:
 *   request   {"v":1,"id":N,"method":"health"}
 *   response  {"v":1,"id":N,"result":{...}}
 *          or {"v":1,"id":N,"error":{"code":"...","message":"..."}}
 * The agent is static and libc-only, so this is a small strict reader for
 * exactly that request shape, and a writer helper. Pure: fuzzed.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_PROTOCOL 1
#define AGENT_MAX_LINE 4096

struct agent_request {
        long long id;
        char method[32];
};

enum agent_parse_error {
        AGENT_OK = 0,
        AGENT_ERR_SYNTAX,  /* not a JSON object of the expected shape */
        AGENT_ERR_VERSION, /* "v" missing or not 1 */
        AGENT_ERR_FIELD,   /* missing/wrong id or method, unknown key */
};

/* Parses one line; *ret_id_known tells whether the id was read (for the reply). */
enum agent_parse_error agent_request_parse(const char *line, size_t len, struct agent_request *ret,
                                           bool *ret_id_known);
const char *agent_parse_error_to_string(enum agent_parse_error e);

/* Appends s as a JSON string literal (quoted, escaped) to buf[*pos..n). Returns
 * false when it does not fit. */
bool json_put_string(char *buf, size_t n, size_t *pos, const char *s);
bool json_put_raw(char *buf, size_t n, size_t *pos, const char *s);
