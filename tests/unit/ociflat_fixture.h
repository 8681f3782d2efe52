/* SPDX-License-Identifier: MIT */
#pragma once
/* What the OCI flatten tests share (test_ociflat.c, test_ocigzip.c): layer
 * tarballs made with libarchive's writer in a temp dir, the image read back
 * with libext2fs, e2fsck. Include after cmocka.h. */
#include <archive.h>
#include <archive_entry.h>
#include <ext2fs/ext2fs.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "artifacts/oci/flatten.h"

#define MIB (UINT64_C(1) << 20)
#define HARDLINK 1u /* ent.type: a hard link to ent.data */

extern char dir[64]; /* the tests' temp dir */

struct ent {
        const char *path;
        unsigned type;    /* AE_IF*, or HARDLINK */
        unsigned mode;    /* permission bits; 0: 0755 for directories, 0644 otherwise */
        const char *data; /* file content, symlink or hard link target */
        size_t len;       /* data bytes for files; 0: strlen(data) */
        unsigned uid, gid, major, minor;
        int64_t mtime;
        const char *xname;
        const void *xval;
        size_t xlen;
};

int setup(void **s);    /* dir: a fresh temp dir */
int teardown(void **s); /* and it goes */
double now(void);
void fill_random(char *buf, size_t len, uint64_t seed);

/* ---- layers ---- */
void put(struct archive *a, const struct ent *en);
struct archive *layer_begin(const char *path, const char *filter); /* filter: NULL, "gzip" or "zstd" */
void layer_end(struct archive *a);
/* dir/name, a layer holding ents. */
char *layer(const char *name, const char *filter, const struct ent *ents, size_t n);
/* buf as one gzip member appended to fd. */
void put_gzip_member(int fd, const char *buf, size_t len);
char *out_path(const char *name); /* dir/name, nothing there */
bool exists(const char *p);
void free_layers(char **layers, size_t n);

/* ---- the image ---- */
void assert_fsck_clean(const char *img);
ext2_filsys img_open(const char *img);
/* The inode at path (not following a last symlink); 0 when there is none. */
ext2_ino_t img_stat(ext2_filsys fs, const char *path, struct ext2_inode_large *in);
ext2_ino_t img_must(ext2_filsys fs, const char *path, struct ext2_inode_large *in);
uint32_t uid_of(const struct ext2_inode_large *in);
uint32_t gid_of(const struct ext2_inode_large *in);
/* len bytes of ino at off into buf; the count read. */
unsigned img_read(ext2_filsys fs, ext2_ino_t ino, uint64_t off, void *buf, unsigned len);
void assert_content(ext2_filsys fs, const char *path, const char *want);
void assert_absent(ext2_filsys fs, const char *path);

/* ---- flatten ---- */
/* flatten_mode 1: flatten() runs as a pull does with streams (flatten.h,
 * next): each layer decompressed beside, its plain tar given a few KiB at a
 * time as the flatten asks, and the call made again without next when it
 * says -EAGAIN (counted in early_fallbacks). early_fail_at: the Nth next
 * fails (0: never); early_tar_bytes: the estimate given (0: right). */
extern int flatten_mode;
extern unsigned early_runs, early_fallbacks;
extern long early_fail_at;
extern uint64_t early_tar_bytes;
int flatten(char **layers, size_t n, const char *out, const struct oci_flatten_opts *o, struct oci_flatten_stats *st,
            struct op_error *err);
/* Must fail with want (and a message holding frag) and leave nothing at out. */
void assert_refused(char **layers, size_t n, const struct oci_flatten_opts *o, int want, const char *frag);
