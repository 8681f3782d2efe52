/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A gzip layer decompressed while it is downloaded (or copied from a
 * layout): the writer reports each piece it puts in its file (fetch.h's
 * written hook), and a thread reads the file right behind it and inflates
 * it (gunzip.h) into a plain tar, which oci_flatten then takes instead of
 * decompressing the layer itself (flatten.h, plain). The decompression
 * then runs beside the download instead of after it.
 *
 * Only a shortcut, never the only way: anything out of the ordinary (data
 * that is not gzip or is damaged, a download retried after it had written
 * data, a writer that failed or whose blob did not verify, a cancel, a
 * build without ISA-L) drops the plain tar, and the flatten decompresses
 * the verified blob as it would have anyway, with its own errors. A plain
 * tar is kept only when the writer said its blob was whole and verified
 * (layer_stream_end) and the thread inflated those bytes to the end of
 * their gzip data (what follows the last member is ignored, as gunzip.h
 * does for a file). Before that word the plain tar is bounded (at most
 * about 32 times the compressed bytes read plus 32 MiB): past it the
 * thread waits, so a gzip bomb in an unverified blob fills no disk.
 */

#include <stdbool.h>
#include <stdint.h>

#include "macro.h"

struct layer_stream;

/* A stream into a new file at plain_path (created O_EXCL, 0600), its thread
 * started; NULL when there is none to be had (no ISA-L, the file, the
 * thread: nothing left behind). */
struct layer_stream *layer_stream_new(const char *plain_path);

/* The writer's fetch_written_fn, with the stream as ud: bytes 0 when a try
 * opens its file (a second try that had data before drops the stream),
 * then the bytes in the file so far. */
void layer_stream_written(void *ud, int fd, uint64_t bytes);

/* The writer is done; ok: what it wrote is the whole blob, verified. The
 * thread goes on to the end of the data by itself. NULL s: nothing. */
void layer_stream_end(struct layer_stream *s, bool ok);

/* The thread has ended (layer_stream_join will not wait). */
bool layer_stream_finished(struct layer_stream *s);

/* For a reader of the plain tar while it is written (the flatten, with
 * oci_flatten_opts.follow): waits until the plain tar holds more than pos
 * bytes (1), or the thread has ended: 0 when the plain tar is whole (all of
 * it is in the file), a negative errno when it will not be (it is removed
 * at the join). cancel (may be NULL) is polled every 100 ms: true gives
 * -ECANCELED. */
int layer_stream_wait(struct layer_stream *s, uint64_t pos, bool (*cancel)(void *ud), void *ud);

/* Waits for the thread (polling cancel, which may be NULL, every 100 ms: true
 * stops it), then frees s. true: the plain tar is whole and stays at its
 * path; false: it was removed. NULL s: false. */
bool layer_stream_join(struct layer_stream *s, bool (*cancel)(void *ud), void *ud);
