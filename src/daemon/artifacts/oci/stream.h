/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * A gzip layer decompressed while it is downloaded (or copied from a
 * layout): the writer reports each piece it puts in its file (fetch.h's
 * written hook), and a thread reads the file right behind it and inflates
 * it (gunzip.h) into memory, which the flatten reads as it comes
 * (oci_flatten_opts.next): the plain tar is never written to a file, nor
 * read back from one. The decompression then runs beside the download
 * instead of after it.
 *
 * Only a shortcut, never the only way: anything out of the ordinary (data
 * that is not gzip or is damaged, a download retried after it had written
 * data, a writer that failed or whose blob did not verify, a cancel, a
 * build without ISA-L) ends the stream short, and the flatten decompresses
 * the verified blob as it would have anyway, with its own errors. A stream
 * is whole only when the writer said its blob was whole and verified
 * (layer_stream_end) and the thread inflated those bytes to the end of
 * their gzip data (what follows the last member is ignored, as gunzip.h
 * does for a file).
 *
 * Memory is bounded. The data waits in 1 MiB chunks from a pool the pull's
 * streams share (layer_pool): a stream stops inflating while the pool holds
 * its cap in chunks not yet read, unless it is the one being read, which
 * stops at the cap of its own. Before the writer's word the output is
 * bounded too (at most about 32 times the compressed bytes read plus 16
 * MiB), so a gzip bomb in an unverified blob is not even inflated. Once the
 * reader is done with a layer (or it is joined), what the thread still
 * inflates (to check the gzip trailer) is counted and dropped.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

struct layer_stream;
struct layer_pool;

/* A pool for a pull's streams: at most cap_bytes of data not yet read
 * (rounded up to whole chunks; at least one). */
struct layer_pool *layer_pool_new(uint64_t cap_bytes);
/* After every stream that used it is joined. NULL: nothing. */
void layer_pool_free(struct layer_pool *p);

/* This build has streams (ISA-L). */
bool layer_stream_supported(void);

/* A stream with its thread started; NULL when there is none to be had (no
 * ISA-L, the thread: nothing left behind). */
struct layer_stream *layer_stream_new(struct layer_pool *p);

/* The writer's fetch_written_fn, with the stream as ud: bytes 0 when a try
 * opens its file (a second try that had data before ends the stream), then
 * the bytes in the file so far. */
void layer_stream_written(void *ud, int fd, uint64_t bytes);

/* The writer is done; ok: what it wrote is the whole blob, verified. The
 * thread goes on to the end of the data by itself. NULL s: nothing. */
void layer_stream_end(struct layer_stream *s, bool ok);

/* The thread has ended (its input closed, its thread joined). NULL: true. */
bool layer_stream_finished(struct layer_stream *s);

/* The plain tar's size: 1 when the thread has ended with it whole (*bytes
 * exact), 0 while it runs (*bytes: inflated so far), negative when it ended
 * short. */
int layer_stream_size(struct layer_stream *s, uint64_t *bytes);

/* For the one reader: the next piece of the plain tar, at *buf until the
 * next call (which gives its chunk back). >0: its length; 0: the tar is
 * whole and all of it was read; negative: it will not be (-ECANCELED when
 * cancel, polled every 100 ms, said so while it waited). */
ssize_t layer_stream_next(struct layer_stream *s, const void **buf, bool (*cancel)(void *ud), void *ud);

/* The reader is done with it: what is left, and what the thread inflates
 * from now on, is dropped as it comes (counted, never held). */
void layer_stream_discard(struct layer_stream *s);

/* Waits for the thread (polling cancel, which may be NULL, every 100 ms:
 * true stops it), then frees s. true: the plain tar was whole. NULL s:
 * false. */
bool layer_stream_join(struct layer_stream *s, bool (*cancel)(void *ud), void *ud);
