/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * The agent's side of protocol version 2 (frame.h): execs on channels, their
 * streams with credit-based flow control, signals, PTYs and exit statuses.
 * One poll loop in main.c drives it; everything here is non-blocking except
 * the start of a child (until its exec).
 */

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../shared/frame.h"

/* The output queue to the host (main.c). */
void out_add(const void *p, size_t n);
void out_frame(uint32_t chan, uint8_t type, uint8_t stream, const void *payload, uint32_t len);
size_t out_pending(void);

/* A frame from the host; false when the host broke the protocol (the
 * session is reset). */
bool sess_on_frame(const struct frame *f);
/* Channel fds to poll; returns how many were added at p. */
int sess_pollfds(struct pollfd *p, int max);
/* After poll: the revents of what sess_pollfds added. */
void sess_after_poll(const struct pollfd *p, int n);
/* SIGCHLD: reap and report. */
void sess_reap(void);
/* The host went away or said BYE: every channel's process group is killed. */
void sess_reset(void);
int sess_count(void);
