/* SPDX-License-Identifier: MIT */
#include "proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cur {
        const char *p, *end;
};

static void ws(struct cur *c) {
        while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || *c->p == '\n'))
                c->p++;
}

static bool eat(struct cur *c, char ch) {
        ws(c);
        if (c->p < c->end && *c->p == ch) {
                c->p++;
                return true;
        }
        return false;
}

/* A string without escapes other than \" \\ \/ (keys and method names are
 * plain ASCII); anything fancier is a syntax error. */
static bool string(struct cur *c, char *out, size_t n) {
        size_t k = 0;

        if (!eat(c, '"'))
                return false;
        while (c->p < c->end && *c->p != '"') {
                char ch = *c->p++;
                if ((unsigned char) ch < 0x20)
                        return false;
                if (ch == '\\') {
                        if (c->p >= c->end || (*c->p != '"' && *c->p != '\\' && *c->p != '/'))
                                return false;
                        ch = *c->p++;
                }
                if (k + 1 >= n)
                        return false;
                out[k++] = ch;
        }
        if (c->p >= c->end)
                return false;
        c->p++;
        out[k] = '\0';
        return true;
}

static bool integer(struct cur *c, long long *ret) {
        char buf[24];
        size_t k = 0;

        ws(c);
        if (c->p < c->end && *c->p == '-')
                buf[k++] = *c->p++;
        while (c->p < c->end && *c->p >= '0' && *c->p <= '9' && k < sizeof(buf) - 1)
                buf[k++] = *c->p++;
        buf[k] = '\0';
        if (k == 0 || (k == 1 && buf[0] == '-') || (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E')))
                return false;
        if (c->p < c->end && *c->p >= '0' && *c->p <= '9')
                return false; /* too long */
        char *end;
        errno = 0;
        *ret = strtoll(buf, &end, 10);
        return *end == '\0' && errno != ERANGE;
}

enum agent_parse_error agent_request_parse(const char *line, size_t len, struct agent_request *ret,
                                           bool *ret_id_known) {
        struct cur c = { line, line + len };
        bool have_v = false, have_id = false, have_method = false;
        long long v = 0;
        char key[16];

        *ret = (struct agent_request) { 0 };
        *ret_id_known = false;
        if (len > AGENT_MAX_LINE || memchr(line, '\0', len) || !eat(&c, '{'))
                return AGENT_ERR_SYNTAX;
        if (!eat(&c, '}')) {
                do {
                        if (!string(&c, key, sizeof(key)) || !eat(&c, ':'))
                                return AGENT_ERR_SYNTAX;
                        if (strcmp(key, "v") == 0 && !have_v) {
                                if (!integer(&c, &v))
                                        return AGENT_ERR_VERSION;
                                have_v = true;
                        } else if (strcmp(key, "id") == 0 && !have_id) {
                                if (!integer(&c, &ret->id))
                                        return AGENT_ERR_FIELD;
                                have_id = true;
                                *ret_id_known = true;
                        } else if (strcmp(key, "method") == 0 && !have_method) {
                                if (!string(&c, ret->method, sizeof(ret->method)))
                                        return AGENT_ERR_FIELD;
                                have_method = true;
                        } else
                                return AGENT_ERR_FIELD; /* unknown or repeated key */
                } while (eat(&c, ','));
                if (!eat(&c, '}'))
                        return AGENT_ERR_SYNTAX;
        }
        ws(&c);
        if (c.p != c.end)
                return AGENT_ERR_SYNTAX;
        if (!have_v || v != AGENT_PROTOCOL)
                return AGENT_ERR_VERSION;
        if (!have_id || !have_method || !ret->method[0])
                return AGENT_ERR_FIELD;
        return AGENT_OK;
}

const char *agent_parse_error_to_string(enum agent_parse_error e) {
        switch (e) {
        case AGENT_OK:
                return "ok";
        case AGENT_ERR_SYNTAX:
                return "bad_request";
        case AGENT_ERR_VERSION:
                return "bad_version";
        case AGENT_ERR_FIELD:
                return "bad_request";
        }
        return "bad_request";
}

bool json_put_raw(char *buf, size_t n, size_t *pos, const char *s) {
        size_t k = strlen(s);
        if (*pos + k >= n)
                return false;
        memcpy(buf + *pos, s, k + 1);
        *pos += k;
        return true;
}

bool json_put_string(char *buf, size_t n, size_t *pos, const char *s) {
        char esc[8];

        if (!json_put_raw(buf, n, pos, "\""))
                return false;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if (*p == '"' || *p == '\\') {
                        esc[0] = '\\';
                        esc[1] = (char) *p;
                        esc[2] = '\0';
                } else if (*p < 0x20 || *p == 0x7f)
                        snprintf(esc, sizeof(esc), "\\u%04x", *p);
                else {
                        esc[0] = (char) *p;
                        esc[1] = '\0';
                }
                if (!json_put_raw(buf, n, pos, esc))
                        return false;
        }
        return json_put_raw(buf, n, pos, "\"");
}
