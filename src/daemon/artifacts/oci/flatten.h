/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * OCI image layers -> one new ext4 image, written with libext2fs only: no
 * mount, no root, nothing of the layers is ever extracted on the host (a
 * symlink in a layer is data, never followed; a device is an inode, never
 * opened).
 *
 * Layers are tar files (plain, gzip or zstd: gzip through ISA-L's igzip
 * where the build has it, gunzip.h; the rest through libarchive, which tells
 * the filter; any other filter or archive format is refused; a layer that is
 * empty once decompressed has no entries), applied oldest first with the OCI whiteout
 * rules: ".wh.NAME" hides NAME (and all under it) of the layers below;
 * ".wh..wh..opq" in a directory hides what the layers below put in it
 * (entries of its own layer stay, in whatever order they come). Whiteouts
 * never appear in the image, nor do the other ".wh..wh.*" (aufs) names and
 * what is under them. A directory declared again takes the new metadata and
 * keeps its children; anything else replaces what was at its path (a
 * directory with all under it). Parents missing from a tar are made 0755
 * root:root. A hard link shares the inode of its target as that target was
 * written (a later layer replacing the target does not change the link).
 *
 * Kept: regular files (holes stay holes, also runs of zero blocks),
 * directories, symlinks, hard links, devices, FIFOs, sockets; mode with
 * setuid/setgid/sticky, 32-bit uid/gid, mtime with nanoseconds (atime, ctime
 * and crtime take it too), xattrs from pax headers (security.capability,
 * system.posix_acl_* in their xattr form). Not kept: ACLs that only come as
 * SCHILY.acl.* records, the data of a hard link entry that carries some.
 *
 * Two passes: the first reads every header (skipping data) and builds the
 * final tree in memory; the image is sized from it and made with mkfs.ext4;
 * the second reads the layers again, writes every directory whole (entries
 * packed into blocks, no htree) and then only the entries that won. With
 * opts.next the data moves to the first pass, which then runs while the
 * layers are still being decompressed (see there).
 *
 * Refused, each a clear error naming the layer (1-based) and the entry: an
 * absolute path, a ".." component, a component over 255 bytes or a path over
 * 4096, an entry under a symlink or a non-directory, a hard link to a missing
 * entry, a directory or outside the tree, more than OCI_FLATTEN_MAX_ENTRIES
 * entries, a layer that is not a tar, a truncated layer, a non-directory
 * 'lost+found' at the root. On any failure nothing is left at out_path.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"
#include "op_error.h"

/* tar headers over all layers, and names alive in the tree at any time */
#define OCI_FLATTEN_MAX_ENTRIES 2000000u

struct oci_flatten_opts {
        /* 0: the content estimate x 1.5, at least 256 MiB, rounded up to 1 MiB.
         * Otherwise the image's size; smaller than the content estimate fails
         * (-ENOSPC) before anything is written. */
        uint64_t size_bytes;
        /* layer is 1-based. While the layers are read the first time,
         * bytes_total is 0; while the image is written, bytes_* count the
         * file data (the sum of what the image's regular files hold).
         * May be NULL. */
        void (*progress)(void *ud, size_t layer, size_t n_layers, uint64_t bytes_done, uint64_t bytes_total);
        /* polled between entries (and every few MiB of a large file); true
         * stops with -ECANCELED. May be NULL. */
        bool (*cancel)(void *ud);
        void *ud; /* borrowed; handed to both callbacks */
        /* 0: 256 MiB. The least size_bytes 0 makes. */
        uint64_t floor_bytes;
        /* A part of the tree only (NULL: all), a relative path such as
         * "root": subtree takes what is below it, rebased to the image's
         * root (the directory's own entry gives the root its metadata);
         * without leaves out what is below it (its own entry stays). A hard
         * link to a name outside the part is refused. */
        const char *subtree, *without;
        /* NULL, or (with neither subtree nor without) the layers' plain tars
         * are still being decompressed by the caller: next(ud, i, &buf) gives
         * layer i's (0-based) next piece at *buf, valid until the next call
         * for that layer; its length (> 0), 0 at the end of a whole tar, or
         * negative (-ECANCELED: cancelled; else it will not be whole); buf
         * NULL: the flatten reads no more of layer i. tar_bytes: what they
         * will hold together (0: next is not used). The image is then made
         * first, at the size the rule gives for tar_bytes of content (or
         * size_bytes; an inode per 8 KiB of tar at least) and without a
         * journal, the first pass writes every non-directory whole (inode,
         * data, xattrs) as its piece comes, the second frees what later
         * layers replaced and writes the directories and link counts (what
         * it has to read again, a directory with xattrs, it reads from
         * layers[i], decompressing it itself); then the free blocks are
         * punched out of the file, the journal made for the final size, and
         * the image resized to the rule's size (resize2fs). When that cannot
         * be done (the first image has too few blocks or inodes, a tar stops
         * short, mkfs or resize2fs fails) the call fails with -EAGAIN and
         * nothing at out_path: the caller calls again without next. next
         * with subtree, without or tar_bytes 0 is -EINVAL: two passes would
         * take a tar cut short for a whole one. */
        ssize_t (*next)(void *ud, size_t layer, const void **buf);
        uint64_t tar_bytes;
};

struct oci_flatten_stats {
        uint64_t content_bytes; /* estimated bytes the content takes in ext4 (data, metadata, inodes) */
        uint64_t size_bytes;    /* the image file's size */
        uint64_t entries;       /* names in the image, the root not counted */
};

/* Flattens layers[0..n_layers) (oldest first) into a new ext4 image at
 * out_path, which must not exist (-EEXIST, and the file there is left
 * alone). o may be NULL (defaults); ret (may be NULL) is written only on
 * success. 0 or a negative errno with e set (op_error.h). */
_warn_unused_ int oci_flatten(const char *const *layers, size_t n_layers, const char *out_path,
                              const struct oci_flatten_opts *o, struct oci_flatten_stats *ret, struct op_error *e);
