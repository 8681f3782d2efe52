/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The client end of one exec channel (src/agent/frame.h, channel 1): local
 * fds in, frames out, with the credit rules. Used by the CLI after vm.exec
 * upgraded its connection, and by bangerd for its own execs (workspaces)
 * over a socketpair to the link.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EXEC_CLIENT_CHAN 1

struct exec_client_opts {
        int in_fd;       /* -1: empty stdin */
        int out_fd;      /* -1: discard */
        int err_fd;      /* -1: discard */
        int signal_fd;   /* a signalfd: INT/TERM/HUP/QUIT are sent to the guest, WINCH resizes; -1 none */
        int tty_fd;      /* where the window size is read (PTY), -1 none */
        int cancel_fd;   /* readable: close the exec (the guest kills it); -1 none */
        int timeout_ms;  /* then the same as a cancel; 0 none */
        const uint8_t *pre; /* bytes of frames already read from fd (after the RPC answer) */
        size_t pre_len;
};

struct exec_client_result {
        int code;       /* exit code, or 128+signal */
        int signal;     /* the signal that ended it, or 0 */
        bool exited;    /* an EXIT arrived */
        bool cancelled; /* cancel_fd, or our stdout went away (EPIPE) */
        char *error;    /* malloc'd: an ERROR frame's text, or why the stream ended */
};

/* Runs until EXIT, an ERROR, the connection's end or a cancel. 0 when the
 * exec ended with an EXIT, -EIO otherwise (r->error says why). */
int exec_client_run(int fd, const struct exec_client_opts *o, struct exec_client_result *r);
void exec_client_result_done(struct exec_client_result *r);
