/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Shared by flatten.c (mkfs, pass 2, oci_flatten) and flatten_tree.c (the
 * tree and pass 1); not for other files. Pass 1 builds the tree in struct
 * flat; pass 2 reads it and only writes the pass-2 fields.
 */

#include <ext2fs/ext2fs.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "flatten.h"
#include "macro.h"

struct archive;
struct archive_entry;

#define PATH_BYTES 4096
#define MIB (UINT64_C(1) << 20)
#define BLOCK 4096u /* the image's block size (mkfs -b) */
#define FLOOR_BYTES (256 * MIB) /* the least image, unless opts.floor_bytes */

/* One inode of the image: the tar entry that wins it, and its names. */
struct rec {
        struct node *links;  /* the names, through node->next_link */
        uint64_t size;       /* archive_entry_size of the entry (checked again in pass 2) */
        uint64_t data;       /* regular files: the data bytes the tar holds (sparse: the regions) */
        uint64_t alloc;      /* estimated bytes on disk beside the inode */
        uint32_t layer, idx; /* layer (1-based) and header index in it */
        uint32_t nlink;      /* names; 0: lost (replaced or whited out) */
        ext2_ino_t ino;      /* pass 2 */
        uint8_t ft;          /* EXT2_FT_* */
        bool counted;        /* plan() saw it */
        bool done;           /* early: the inode is written whole (but for its links count) */
        struct meta *dmeta;  /* early: a directory's metadata from pass 1 (NULL: read it again) */
};

/* One name of the tree. Directories have children; a directory no tar entry
 * declared (a missing parent) has no rec. */
struct node {
        struct node *parent, *first_child, *next, *prev; /* siblings: doubly linked */
        struct node *next_link, *prev_link;              /* the other names of rec */
        struct rec *rec;
        uint64_t hash;
        ext2_ino_t ino;  /* directories, pass 2 */
        uint32_t layer;  /* the layer that declared it last (or made it as a parent) */
        uint32_t pruned; /* the last layer whose whiteouts pruned below it */
        uint16_t name_len;
        uint8_t ft;
        char name[];
};

struct arena; /* flatten_tree.c */
struct sink;  /* flatten.c */

struct layer_in {
        struct archive *a;
        int fd;          /* -1: the tar comes from opts.next */
        struct flat *f;
        size_t layer;    /* opts.next: the layer (1-based) it reads; 0: none */
};

/* Builds the directory blocks of one directory. */
struct dirbuf {
        char *buf; /* owned; whole blocks */
        size_t cap, blocks;
        unsigned off, last; /* in the current block: the next free byte, the last entry */
};

struct flat {
        const char *const *layers;  /* what the passes read (the plain tars, once decompressed) */
        const char *const *shown;   /* the caller's layers, for messages */
        size_t n_layers;
        const struct oci_flatten_opts *o;
        struct op_error *e;
        size_t layer;             /* 1-based, while a layer is read */
        char path[PATH_BYTES + 1]; /* the entry being handled (normalised when valid) */

        struct arena *arena;      /* owned: nodes and recs */
        struct node **slots;      /* owned: (parent, name) -> node, linear probing */
        size_t mask, used;
        struct node *root;
        struct rec **recs;        /* owned: every rec, in (layer, idx) order */
        size_t n_recs, cap_recs;
        uint64_t headers, nodes_made;

        uint64_t content, data, inodes, names; /* plan() */

        ext2_filsys fs;           /* pass 2 */
        char *ibuf;               /* owned: one on-disk inode */
        struct sink *sink;        /* owned */
        unsigned isize;
        ext2_ino_t lost_found;
        struct dirbuf dir;
        uint64_t done, next_report;
        int wb_fd;                /* the image, to start its writeback early; -1: none */
        struct syncer *syncer;    /* pass 2: makes the image durable while it is filled; NULL: none */
        bool early;               /* opts.next: pass 1 writes the data, into an image made first */
        bool following;           /* pass 1 of early: the tars are read as they come (opts.next) */
        bool again;               /* early: failed where the two passes would not (flatten.h, next) */
        bool follow_cancelled;    /* early: next said -ECANCELED */
};

/* What an entry sets on its inode. */
struct meta {
        uint16_t mode; /* type and permission bits */
        uint32_t uid, gid;
        int64_t mtime;
        long nsec;
        uint32_t major, minor;
        const char *target; /* symlinks; borrowed from the entry */
};

/* ---- pass 1 (flatten_tree.c) ---- */
/* Reads every layer's headers into the tree, estimates the content and sizes
 * the image (o->size_bytes or from the estimate) into *ret_size. */
int flat_tree_build(struct flat *f, uint64_t *ret_size);
/* Frees the tree (arena, slots, recs); the rest of f is the caller's. */
void flat_tree_free(struct flat *f);

/* Early (flatten.c): r (not a directory, the entry pass 1 just read) as a
 * new inode with its data, in the image made already. */
int flat_early_inode(struct flat *f, struct archive *a, struct archive_entry *e, struct rec *r);

/* ---- used by both passes (flatten_tree.c) ---- */
/* op_fail naming the layer and the entry (f->path) when there is one. */
int flat_fail(struct flat *f, int r, const char *fmt, ...) _printf_(3, 4);
bool flat_cancelled(const struct flat *f);
struct node *flat_tree_lookup(const struct flat *f, const struct node *parent, const char *name, size_t len);
/* Pre-order successor inside top's subtree. */
struct node *flat_preorder_next(struct node *n, const struct node *top);
/* raw as a relative path without ".", empty components or trailing "/" into
 * out ("" for the root); why says what is wrong otherwise. */
int flat_norm_path(const char *raw, char out[PATH_BYTES + 1], const char **why);
void flat_set_raw_path(struct flat *f, const char *raw);
int flat_entry_ft(struct archive_entry *e); /* EXT2_FT_*, -1 for other types */
int flat_entry_meta(struct flat *f, struct archive_entry *e, int ft, struct meta *m);
/* Layer f->layer; the next header (1 at the end of the layer); close takes
 * a closed one too. */
int flat_layer_open(struct flat *f, struct layer_in *in);
int flat_layer_next(struct flat *f, struct layer_in *in, uint32_t idx, struct archive_entry **ret);
void flat_layer_close(struct layer_in *in);

/* flatten_unpack.c: every compressed layer decompressed once (by up to one
 * thread per CPU) into a plain tar beside out_path; *ret_paths: the tar to
 * read per layer. *ret (set even on failure) goes to flat_unpack_done, which
 * removes the temp tars. */
struct unpack;
int flat_unpack(struct flat *f, const char *out_path, struct unpack **ret, const char *const **ret_paths);
void flat_unpack_done(struct unpack *u);
