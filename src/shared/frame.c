/* SPDX-License-Identifier: MIT */
#include "frame.h"

#include <stdlib.h>
#include <string.h>

uint32_t frame_u32(const uint8_t *p) {
        return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

void frame_put_u32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) v;
        p[1] = (uint8_t) (v >> 8);
        p[2] = (uint8_t) (v >> 16);
        p[3] = (uint8_t) (v >> 24);
}

int frame_consume(uint8_t *buf, size_t *len, frame_fn fn, void *ud) {
        size_t used = 0;
        int r = 0;
        for (;;) {
                struct frame f;
                int k = frame_parse(buf + used, *len - used, &f);
                if (k <= 0) {
                        r = k < 0 ? -1 : 0;
                        break;
                }
                used += (size_t) k;
                if (!fn(ud, &f))
                        break;
        }
        memmove(buf, buf + used, *len - used);
        *len -= used;
        return r;
}

void frame_header(uint8_t out[FRAME_HDR], uint32_t chan, uint8_t type, uint8_t stream, uint32_t len) {
        frame_put_u32(out, chan);
        out[4] = type;
        out[5] = stream;
        out[6] = out[7] = 0;
        frame_put_u32(out + 8, len);
}

/* The payload size a type must have (-1: any up to the limit). */
static long fixed_len(uint8_t type) {
        switch (type) {
        case FRAME_OPENED:
        case FRAME_CREDIT:
        case FRAME_SIGNAL:
        case FRAME_RESIZE:
                return 4;
        case FRAME_EXIT:
                return 8;
        case FRAME_EOF:
        case FRAME_CLOSE:
        case FRAME_BYE:
                return 0;
        default:
                return -1;
        }
}

int frame_parse(const uint8_t *buf, size_t len, struct frame *f) {
        if (len < FRAME_HDR)
                return 0;
        uint8_t type = buf[4], stream = buf[5];
        uint32_t plen = frame_u32(buf + 8);
        if (type < FRAME_OPEN || type > FRAME_TYPE_MAX || buf[6] || buf[7] || plen > FRAME_MAX_PAYLOAD ||
            stream > FRAME_STDERR)
                return -1;
        if ((type != FRAME_DATA && type != FRAME_EOF && type != FRAME_CREDIT) && stream != 0)
                return -1;
        long fl = fixed_len(type);
        if (fl >= 0 && plen != (uint32_t) fl)
                return -1;
        if (len - FRAME_HDR < plen)
                return 0;
        *f = (struct frame) { .chan = frame_u32(buf), .type = type, .stream = stream, .len = plen,
                              .payload = buf + FRAME_HDR };
        return (int) (FRAME_HDR + plen);
}

/* ---- the exec spec ------------------------------------------------------------ */

bool spec_put(uint8_t *buf, size_t cap, size_t *pos, uint8_t tag, const void *data, size_t len) {
        if (len > FRAME_MAX_PAYLOAD || *pos > cap || cap - *pos < 5 + len)
                return false;
        buf[*pos] = tag;
        frame_put_u32(buf + *pos + 1, (uint32_t) len);
        if (len)
                memcpy(buf + *pos + 5, data, len);
        *pos += 5 + len;
        return true;
}

bool spec_put_str(uint8_t *buf, size_t cap, size_t *pos, uint8_t tag, const char *s) {
        return spec_put(buf, cap, pos, tag, s, strlen(s));
}

bool spec_put_u32(uint8_t *buf, size_t cap, size_t *pos, uint8_t tag, uint32_t v) {
        uint8_t b[4];
        frame_put_u32(b, v);
        return spec_put(buf, cap, pos, tag, b, 4);
}

void exec_spec_free(struct exec_spec *s) {
        free(s->argv);
        free(s->env);
        free(s->mem);
        *s = (struct exec_spec) { 0 };
}

/* Env names: what a shell can export ([A-Za-z_][A-Za-z0-9_]*). */
static bool env_ok(const char *e) {
        const char *eq = strchr(e, '=');
        if (!eq || eq == e)
                return false;
        for (const char *p = e; p < eq; p++) {
                bool alpha = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || *p == '_';
                if (!alpha && !(p > e && *p >= '0' && *p <= '9'))
                        return false;
        }
        return true;
}

int exec_spec_parse(const uint8_t *p, size_t n, struct exec_spec *s, const char **why) {
        size_t nargs = 0, nenv = 0, pos = 0;
        bool have_kind = false, have_uid = false, have_gid = false, have_pty = false, have_cwd = false;

        *s = (struct exec_spec) { 0 };
        *why = "malformed exec spec";
        if (n > FRAME_MAX_PAYLOAD)
                return -1;
        /* pass 1: shape, counts and fixed fields */
        while (pos < n) {
                if (n - pos < 5)
                        return -1;
                uint8_t tag = p[pos];
                uint32_t len = frame_u32(p + pos + 1);
                if (len > n - pos - 5)
                        return -1;
                const uint8_t *d = p + pos + 5;
                switch (tag) {
                case SPEC_ARG:
                case SPEC_ENV:
                case SPEC_CWD:
                        if (memchr(d, '\0', len)) {
                                *why = "a string of the exec spec holds a NUL byte";
                                return -1;
                        }
                        if (tag == SPEC_ARG && ++nargs > FRAME_MAX_ARGS) {
                                *why = "too many arguments";
                                return -1;
                        }
                        if (tag == SPEC_ENV && ++nenv > FRAME_MAX_ARGS) {
                                *why = "too many environment variables";
                                return -1;
                        }
                        if (tag == SPEC_CWD && (have_cwd || len == 0 || d[0] != '/')) {
                                *why = "the working directory must be one absolute path";
                                return -1;
                        }
                        have_cwd |= tag == SPEC_CWD;
                        break;
                case SPEC_UID:
                case SPEC_GID:
                        if (len != 4 || (tag == SPEC_UID ? have_uid : have_gid))
                                return -1;
                        if (tag == SPEC_UID) {
                                s->uid = frame_u32(d);
                                have_uid = true;
                        } else {
                                s->gid = frame_u32(d);
                                have_gid = true;
                        }
                        break;
                case SPEC_PTY:
                        if (len != 4 || have_pty)
                                return -1;
                        have_pty = s->pty = true;
                        s->rows = (uint16_t) (d[0] | d[1] << 8);
                        s->cols = (uint16_t) (d[2] | d[3] << 8);
                        break;
                case SPEC_KIND:
                        if (len != 1 || have_kind || d[0] > SPEC_KIND_TAR_OUT)
                                return -1;
                        have_kind = true;
                        s->kind = d[0];
                        break;
                default:
                        *why = "unknown record in the exec spec";
                        return -1;
                }
                pos += 5 + len;
        }
        if (s->kind == SPEC_KIND_EXEC && nargs == 0) {
                *why = "exec needs a command";
                return -1;
        }
        if (s->kind != SPEC_KIND_EXEC && (!have_cwd || have_pty)) {
                *why = "a tar stream needs a directory and no PTY";
                return -1;
        }
        if (have_uid != have_gid) {
                *why = "uid and gid go together";
                return -1;
        }
        /* pass 2: copy the strings, NUL-terminated */
        s->mem = malloc(n + nargs + nenv + 2);
        s->argv = calloc(nargs + 1, sizeof(char *));
        s->env = calloc(nenv + 1, sizeof(char *));
        if (!s->mem || !s->argv || !s->env) {
                exec_spec_free(s);
                *why = "out of memory";
                return -1;
        }
        char *m = s->mem;
        for (pos = 0; pos < n;) {
                uint8_t tag = p[pos];
                uint32_t len = frame_u32(p + pos + 1);
                if (tag == SPEC_ARG || tag == SPEC_ENV || tag == SPEC_CWD) {
                        memcpy(m, p + pos + 5, len);
                        m[len] = '\0';
                        if (tag == SPEC_ARG)
                                s->argv[s->argc++] = m;
                        else if (tag == SPEC_ENV) {
                                if (!env_ok(m)) {
                                        exec_spec_free(s);
                                        *why = "an environment entry is not NAME=value";
                                        return -1;
                                }
                                s->env[s->envc++] = m;
                        } else
                                s->cwd = m;
                        m += len + 1;
                }
                pos += 5 + len;
        }
        return 0;
}
