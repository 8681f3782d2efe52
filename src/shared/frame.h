/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The agent protocol, version 2 (docs/GUEST.md): binary frames after an
 * "upgrade" request on the version 1 line protocol. Every frame is a
 * 12-byte little-endian header and a payload:
 *
 *   u32 channel   0 for the link itself, else one exec (the host picks ids)
 *   u8  type      enum frame_type
 *   u8  stream    FRAME_STDIN/STDOUT/STDERR for DATA, EOF and CREDIT
 *   u16 zero
 *   u32 length    of the payload, at most FRAME_MAX_PAYLOAD
 *
 * Flow control is per stream and credit-based: a sender may have at most
 * FRAME_WINDOW bytes of DATA on a stream that the receiver has not given back
 * with CREDIT. Nothing grows without bound on either side.
 *
 * The same frames carry an exec between the CLI and bangerd after the
 * vm.exec RPC upgrades that connection (docs/PROTOCOL.md). Pure C, libc
 * only (the agent is static): shared by the agent, bangerd and the CLI,
 * and fuzzed.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FRAME_HDR 12
#define FRAME_MAX_PAYLOAD 65536
#define FRAME_DATA_CHUNK 32768 /* what a sender puts in one DATA frame */
#define FRAME_WINDOW (256u * 1024u)
#define FRAME_MAX_ARGS 4096
#define FRAME_MAX_CHANNELS 64 /* open execs on one link */

enum frame_type {
        FRAME_OPEN = 1,    /* host: start an exec; payload: the spec below */
        FRAME_OPENED = 2,  /* agent: started; payload: u32 pid */
        FRAME_ERROR = 3,   /* either: the channel failed and is gone; payload: a message */
        FRAME_DATA = 4,    /* bytes of `stream` */
        FRAME_EOF = 5,     /* `stream` ended */
        FRAME_CREDIT = 6,  /* payload u32: the receiver took that many bytes of `stream` */
        FRAME_SIGNAL = 7,  /* host: payload u32 signal for the process group */
        FRAME_RESIZE = 8,  /* host: payload u16 rows, u16 cols (PTY) */
        FRAME_EXIT = 9,    /* agent: payload i32 code, i32 signal (0: exited); the channel is done */
        FRAME_CLOSE = 10,  /* host: kill the process group and forget the channel */
        FRAME_CALL = 11,   /* host: payload one version 1 request line; channel = call id */
        FRAME_REPLY = 12,  /* agent: payload the answer line to FRAME_CALL on that channel */
        FRAME_BYE = 13,    /* host: back to version 1 lines (channels are killed) */
};
#define FRAME_TYPE_MAX FRAME_BYE

enum { FRAME_STDIN = 0, FRAME_STDOUT = 1, FRAME_STDERR = 2 };

struct frame {
        uint32_t chan;
        uint8_t type, stream;
        uint32_t len;
        const uint8_t *payload; /* into the parsed buffer */
};

/* One frame at the start of buf: > 0 bytes it took with *f filled, 0 when
 * more bytes are needed, -1 when the bytes are not a valid frame (unknown
 * type, a stream out of range, a nonzero reserved field, a payload over
 * the limit or of the wrong size for its type). */
int frame_parse(const uint8_t *buf, size_t len, struct frame *f);

/* Every whole frame at the start of buf[0..*len) to fn, in order, until fn
 * returns false; what was taken is dropped from buf (a partial frame moves
 * to the front). 0, or -1 at bytes that are not a frame (the frames before
 * them are taken, the bad bytes stay at the front). */
typedef bool (*frame_fn)(void *ud, const struct frame *f);
int frame_consume(uint8_t *buf, size_t *len, frame_fn fn, void *ud);

void frame_header(uint8_t out[FRAME_HDR], uint32_t chan, uint8_t type, uint8_t stream, uint32_t len);
uint32_t frame_u32(const uint8_t *p);
void frame_put_u32(uint8_t *p, uint32_t v);

/* ---- the exec spec: the payload of FRAME_OPEN -------------------------------- *
 * Records of u8 tag, u32 length, bytes. Strings carry no NUL. */
enum spec_tag {
        SPEC_ARG = 1,  /* repeated, in order */
        SPEC_ENV = 2,  /* repeated, "NAME=value" */
        SPEC_CWD = 3,  /* absolute */
        SPEC_UID = 4,  /* u32 */
        SPEC_GID = 5,  /* u32 */
        SPEC_PTY = 6,  /* u16 rows, u16 cols: run on a PTY */
        SPEC_KIND = 7, /* u8 enum spec_kind */
};

enum spec_kind {
        SPEC_KIND_EXEC = 0,
        SPEC_KIND_TAR_IN = 1,  /* stdin: a tar stream, extracted into cwd (made if missing) */
        SPEC_KIND_TAR_OUT = 2, /* stdout: a tar stream of the args (default ".") below cwd */
};

struct exec_spec {
        uint8_t kind;
        char **argv; /* NULL-terminated; the strings point into `mem` */
        size_t argc;
        char **env;  /* NULL-terminated */
        size_t envc;
        char *cwd;   /* NULL: the user's home */
        uint32_t uid, gid;
        bool pty;
        uint16_t rows, cols;
        char *mem;   /* owned */
};

/* Parses and validates; 0, or -1 with *why set (a static string). */
int exec_spec_parse(const uint8_t *p, size_t n, struct exec_spec *s, const char **why);
void exec_spec_free(struct exec_spec *s);

/* Encoding: appends a record to buf[*pos..cap); false when it does not fit. */
bool spec_put(uint8_t *buf, size_t cap, size_t *pos, uint8_t tag, const void *data, size_t len);
bool spec_put_str(uint8_t *buf, size_t cap, size_t *pos, uint8_t tag, const char *s);
bool spec_put_u32(uint8_t *buf, size_t cap, size_t *pos, uint8_t tag, uint32_t v);
