/* SPDX-License-Identifier: MIT */
/* mkfs and pass 2 (the tree of flatten_tree.c written into the image). */
#include "flatten.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <ext2fs/ext2fs.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "disk/workdisk.h"
#include "flatten_internal.h"
#include "fsutil.h"
#include "macro.h"
#include "proc_spawn.h"

#define MAX_LAYERS 4096u
#define REPORT_EVERY (8 * MIB) /* progress and cancel inside a large file */

static int fs_fail(struct flat *f, errcode_t err, const char *what) {
        int r = err == EXT2_ET_BLOCK_ALLOC_FAIL || err == EXT2_ET_INODE_ALLOC_FAIL || err == EXT2_ET_DIR_NO_SPACE
                        ? -ENOSPC
                        : -EIO;
        f->again = f->again || (r == -ENOSPC && f->early); /* the first image is an estimate */
        unsigned long long mib = r == -ENOSPC ? (ext2fs_blocks_count(f->fs->super) * BLOCK) >> 20 : 0;
        if (r == -ENOSPC && f->early)
                return flat_fail(f, r, "%s: the first image (%llu MiB, sized from an estimate) is too small: %s", what,
                                 mib, error_message(err));
        if (r == -ENOSPC)
                return flat_fail(f, r, "%s: the image is too small (%llu MiB): %s", what, mib, error_message(err));
        return flat_fail(f, r, "%s: %s", what, error_message(err));
}

/* ---- mkfs ------------------------------------------------------------------------ */

/* min_inodes: what the image must have at least (else the tree's inodes
 * and a quarter more, and mkfs's own ratio: room for what the guest adds).
 * The early flatten's first image has no journal yet (early_journal). */
static int make_fs(struct flat *f, const char *path, uint64_t size, uint64_t min_inodes, bool *created) {
        uint64_t inodes = f->inodes + f->inodes / 4 + 1024;
        char n_arg[32], size_arg[32];
        if (inodes < size / 16384)
                inodes = size / 16384;
        if (inodes < min_inodes)
                inodes = min_inodes;
        if (inodes > UINT32_MAX)
                return op_fail(f->e, -E2BIG, "too many inodes for one ext4 image");
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return op_fail(f->e, -errno, "cannot create %s: %s", path, strerror(errno));
        *created = true;
        if (ftruncate(fd, (off_t) size) < 0)
                return op_fail(f->e, -errno, "cannot size %s: %s", path, strerror(errno));
        snprintf(n_arg, sizeof(n_arg), "%llu", (unsigned long long) inodes);
        snprintf(size_arg, sizeof(size_arg), "%lluk", (unsigned long long) (size >> 10));
        /* the file is new and sparse: what mkfs does not write reads as
         * zeros, so neither the inode tables nor the journal need zeroing
         * (16 MiB less to write and fsync at 320 MiB) */
        char *argv[] = { (char *) "mkfs.ext4", (char *) "-q", (char *) "-F", (char *) "-L", (char *) "banger-root",
                         (char *) "-I", (char *) "256", (char *) "-E",
                         (char *) "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0", (char *) "-N", n_arg,
                         (char *) "-b", (char *) "4096", (char *) "-O", (char *) (f->early ? "^has_journal" : "has_journal"),
                         (char *) path, size_arg, NULL };
        _cleanup_free_ char *msg = NULL;
        return op_take_msg(f->e, spawn_run_checked(argv, 10 * 60 * 1000, 0, "apt-get install e2fsprogs", &msg), &msg);
}
/* ---- pass 2: inodes --------------------------------------------------------------- */

static void put_time(uint32_t *lo, uint32_t *extra, int64_t sec, long nsec) {
        /* ext4's range: 1901 .. 2446 (32 bits and two epoch bits) */
        if (sec < INT32_MIN)
                sec = INT32_MIN;
        if (sec > (int64_t) INT32_MIN + (INT64_C(1) << 34) - 1)
                sec = (int64_t) INT32_MIN + (INT64_C(1) << 34) - 1;
        *lo = (uint32_t) sec;
        if (extra)
                *extra = (uint32_t) (((sec - (int32_t) *lo) >> 32) & 3) | ((uint32_t) nsec << 2);
}

static void inode_set_meta(struct flat *f, const struct meta *m) {
        struct ext2_inode_large *in = (struct ext2_inode_large *) f->ibuf;
        bool extra = f->isize > EXT2_GOOD_OLD_INODE_SIZE &&
                     in->i_extra_isize >= offsetof(struct ext2_inode_large, i_projid) - EXT2_GOOD_OLD_INODE_SIZE;
        in->i_mode = m->mode;
        in->i_uid = (uint16_t) m->uid;
        ext2fs_set_i_uid_high(*in, m->uid >> 16);
        in->i_gid = (uint16_t) m->gid;
        ext2fs_set_i_gid_high(*in, m->gid >> 16);
        put_time(&in->i_mtime, extra ? &in->i_mtime_extra : NULL, m->mtime, m->nsec);
        put_time(&in->i_atime, extra ? &in->i_atime_extra : NULL, m->mtime, m->nsec);
        put_time(&in->i_ctime, extra ? &in->i_ctime_extra : NULL, m->mtime, m->nsec);
        if (extra)
                put_time(&in->i_crtime, &in->i_crtime_extra, m->mtime, m->nsec);
}

/* f->ibuf as a new inode with m's metadata. */
static struct ext2_inode_large *inode_fresh(struct flat *f, const struct meta *m, uint16_t links) {
        struct ext2_inode_large *in = (struct ext2_inode_large *) f->ibuf;
        memset(f->ibuf, 0, f->isize);
        if (f->isize > EXT2_GOOD_OLD_INODE_SIZE) {
                size_t want = sizeof(*in) - EXT2_GOOD_OLD_INODE_SIZE, room = f->isize - EXT2_GOOD_OLD_INODE_SIZE;
                in->i_extra_isize = (uint16_t) (want < room ? want : room);
        }
        inode_set_meta(f, m);
        in->i_links_count = links;
        return in;
}

/* An empty extent tree, for inodes whose data goes through ext2fs_file_*. */
static errcode_t inode_extents(struct flat *f, ext2_ino_t ino) {
        ext2_extent_handle_t h;
        if (!ext2fs_has_feature_extents(f->fs->super))
                return 0;
        errcode_t err = ext2fs_extent_open2(f->fs, ino, (struct ext2_inode *) f->ibuf, &h);
        if (!err)
                ext2fs_extent_free(h);
        return err;
}

static errcode_t inode_write(struct flat *f, ext2_ino_t ino) {
        return ext2fs_write_inode_full(f->fs, ino, (struct ext2_inode *) f->ibuf, f->isize);
}

static int new_ino(struct flat *f, ext2_ino_t dir, bool is_dir, ext2_ino_t *ret) {
        errcode_t err = ext2fs_new_inode(f->fs, dir, is_dir ? LINUX_S_IFDIR : LINUX_S_IFREG, NULL, ret);
        if (err)
                return fs_fail(f, err, "allocating an inode");
        ext2fs_inode_alloc_stats2(f->fs, *ret, +1, is_dir);
        return 0;
}

/* Early: the inodes pass 1 wrote that lost (replaced, whited out) are
 * freed, with their blocks and xattr block. */
static int drop_lost(struct flat *f) {
        for (size_t i = 0; f->early && i < f->n_recs; i++) {
                struct rec *r = f->recs[i];
                struct ext2_inode *in = (struct ext2_inode *) f->ibuf;
                if (r->nlink || !r->ino || r->ft == EXT2_FT_DIR)
                        continue;
                errcode_t err = ext2fs_read_inode_full(f->fs, r->ino, in, f->isize);
                if (!err && ext2fs_inode_has_valid_blocks2(f->fs, in))
                        err = ext2fs_punch(f->fs, r->ino, in, NULL, 0, ~(blk64_t) 0);
                if (!err && ext2fs_file_acl_block(f->fs, in))
                        err = ext2fs_free_ext_attr(f->fs, r->ino, (struct ext2_inode_large *) in);
                memset(f->ibuf, 0, f->isize);
                if (!err)
                        err = inode_write(f, r->ino);
                if (err)
                        return fs_fail(f, err, "freeing a file replaced in a later layer");
                ext2fs_inode_alloc_stats2(f->fs, r->ino, -1, 0);
                r->ino = 0;
        }
        return 0;
}

/* Inode numbers for every directory and every rec; parents first. */
static int assign_inodes(struct flat *f) {
        f->root->ino = EXT2_ROOT_INO;
        if (f->root->rec)
                f->root->rec->ino = EXT2_ROOT_INO;
        for (struct node *n = f->root->first_child; n; n = flat_preorder_next(n, f->root)) {
                int r = 0;
                if (n->ft == EXT2_FT_DIR) {
                        if (n->parent == f->root && f->lost_found && strcmp(n->name, "lost+found") == 0)
                                n->ino = f->lost_found; /* mkfs made it */
                        else
                                r = new_ino(f, n->parent->ino, true, &n->ino);
                        if (n->rec)
                                n->rec->ino = n->ino;
                } else if (!n->rec->ino) {
                        r = new_ino(f, n->parent->ino, false, &n->rec->ino);
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- pass 2: directories ---------------------------------------------------------- */

static unsigned dir_usable(const struct flat *f) {
        return BLOCK - (ext2fs_has_feature_metadata_csum(f->fs->super) ? sizeof(struct ext2_dir_entry_tail) : 0);
}

static void dirbuf_close_block(struct flat *f) {
        struct dirbuf *d = &f->dir;
        char *blk = d->buf + (d->blocks - 1) * BLOCK;
        ext2fs_set_rec_len(f->fs, dir_usable(f) - d->last, (struct ext2_dir_entry *) (blk + d->last));
        if (dir_usable(f) < BLOCK)
                ext2fs_initialize_dirent_tail(f->fs, (struct ext2_dir_entry_tail *) (blk + dir_usable(f)));
}

static void dirbuf_add(struct flat *f, const char *name, size_t len, ext2_ino_t ino, uint8_t ft) {
        struct dirbuf *d = &f->dir;
        unsigned rec = (unsigned) (len + 8 + 3) & ~3u;
        if (!d->blocks || d->off + rec > dir_usable(f)) {
                if (d->blocks)
                        dirbuf_close_block(f);
                if ((d->blocks + 1) * BLOCK > d->cap) {
                        d->cap = d->cap ? d->cap * 2 : 16 * BLOCK;
                        d->buf = xrealloc(d->buf, d->cap);
                }
                memset(d->buf + d->blocks * BLOCK, 0, BLOCK);
                d->blocks++;
                d->off = 0;
        }
        struct ext2_dir_entry *de = (struct ext2_dir_entry *) (d->buf + (d->blocks - 1) * BLOCK + d->off);
        de->inode = ino;
        ext2fs_set_rec_len(f->fs, rec, de);
        ext2fs_dirent_set_name_len(de, (int) len);
        ext2fs_dirent_set_file_type(de, ext2fs_has_feature_filetype(f->fs->super) ? ft : 0);
        memcpy(de->name, name, len);
        d->last = d->off;
        d->off += rec;
}

/* Writes len bytes at offset 0 of ino (which has no blocks). */
static errcode_t write_inode_data(struct flat *f, ext2_ino_t ino, const void *buf, size_t len) {
        ext2_file_t file = NULL;
        unsigned written = 0;
        errcode_t err = ext2fs_file_open(f->fs, ino, EXT2_FILE_WRITE, &file);
        if (!err)
                err = ext2fs_file_write(file, buf, (unsigned) len, &written);
        if (!err && written != len)
                err = EXT2_ET_SHORT_READ;
        if (file) {
                errcode_t err2 = ext2fs_file_close(file);
                if (!err)
                        err = err2;
        }
        return err;
}

/* Gives back the blocks of a directory mkfs made (the root, lost+found). */
static errcode_t dir_empty(struct flat *f, ext2_ino_t ino) {
        ext2_file_t file = NULL;
        errcode_t err = ext2fs_file_open(f->fs, ino, EXT2_FILE_WRITE, &file);
        if (!err)
                err = ext2fs_file_set_size2(file, 0);
        if (file) {
                errcode_t err2 = ext2fs_file_close(file);
                if (!err)
                        err = err2;
        }
        return err;
}

/* The entries of d, and how many are directories. */
static unsigned dir_fill(struct flat *f, const struct node *d) {
        unsigned subdirs = 0;
        f->dir.blocks = 0;
        dirbuf_add(f, ".", 1, d->ino, EXT2_FT_DIR);
        dirbuf_add(f, "..", 2, d->parent ? d->parent->ino : d->ino, EXT2_FT_DIR);
        for (const struct node *c = d->first_child; c; c = c->next) {
                dirbuf_add(f, c->name, c->name_len, c->ft == EXT2_FT_DIR ? c->ino : c->rec->ino, c->ft);
                subdirs += c->ft == EXT2_FT_DIR;
        }
        if (d == f->root && f->lost_found && !flat_tree_lookup(f, f->root, "lost+found", 10)) {
                dirbuf_add(f, "lost+found", 10, f->lost_found, EXT2_FT_DIR);
                subdirs++;
        }
        dirbuf_close_block(f);
        return subdirs;
}

/* A directory inode (0755 root:root, or 0700 for mkfs's lost+found, until its
 * tar entry says otherwise) with all its entries. */
static int write_dir(struct flat *f, const struct node *d) {
        struct meta m = { .mode = LINUX_S_IFDIR | (d->ino == f->lost_found ? 0700 : 0755) };
        unsigned links = 2 + dir_fill(f, d);
        errcode_t err = 0;
        if (d->ino == EXT2_ROOT_INO || d->ino == f->lost_found)
                err = dir_empty(f, d->ino);
        if (links > EXT2_LINK_MAX) {
                links = 1; /* what the kernel does past the limit */
                ext2fs_set_feature_dir_nlink(f->fs->super);
                ext2fs_mark_super_dirty(f->fs);
        }
        inode_fresh(f, &m, (uint16_t) links);
        if (!err)
                err = inode_extents(f, d->ino);
        if (!err)
                err = inode_write(f, d->ino);
        for (size_t i = 0; !err && i < f->dir.blocks; i++)
                err = ext2fs_dir_block_csum_set(f->fs, d->ino, (struct ext2_dir_entry *) (f->dir.buf + i * BLOCK));
        if (!err)
                err = write_inode_data(f, d->ino, f->dir.buf, f->dir.blocks * BLOCK);
        return err ? fs_fail(f, err, "writing a directory") : 0;
}

static int write_dirs(struct flat *f) {
        for (struct node *n = f->root; n; n = flat_preorder_next(n, f->root)) {
                if (n->ft != EXT2_FT_DIR)
                        continue;
                int r = write_dir(f, n);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- pass 2: the entries that won ------------------------------------------------- */

/* Where a file's data goes: whole zero blocks stay holes, also when the tar
 * hands a block over in pieces (its data blocks need not be block-aligned,
 * and a tar read as it grows comes in pieces of any size). The data is
 * staged in a window of SINK_WINDOW bytes, and a full window's runs of
 * non-zero blocks are each allocated at once (ext2fs_fallocate, initialised
 * extents: one extent per run, since libext2fs does not merge them) and
 * written with one I/O per physically contiguous piece: ext2fs_file_write
 * would allocate, map and write every 4 KiB block on its own. */
#define SINK_WINDOW ((size_t) 1 << 20)

struct sink {
        ext2_filsys fs;   /* borrowed */
        ext2_ino_t ino;
        uint64_t size;    /* the file's: no data past it */
        uint64_t base;    /* the window's offset in the file (block-aligned) */
        size_t used;      /* bytes of the window up to the end of the last data (0: empty) */
        char win[SINK_WINDOW]; /* zero past used */
};

static bool zero_block(const char *p) {
        return p[0] == 0 && memcmp(p, p + 1, BLOCK - 1) == 0;
}

/* len bytes (whole blocks) at the block-aligned off: allocated, then
 * written extent by extent. */
static errcode_t sink_write(struct sink *s, uint64_t off, const char *p, size_t len) {
        blk64_t lblk = off / BLOCK, n = len / BLOCK;
        ext2_extent_handle_t h = NULL;
        errcode_t err = ext2fs_fallocate(s->fs, EXT2_FALLOCATE_FORCE_INIT | EXT2_FALLOCATE_INIT_BEYOND_EOF, s->ino,
                                         NULL, ~UINT64_C(0), lblk, n);
        if (!err)
                err = ext2fs_extent_open(s->fs, s->ino, &h);
        for (blk64_t i = 0; !err && i < n;) {
                struct ext2fs_extent ex;
                err = ext2fs_extent_goto(h, lblk + i);
                if (!err)
                        err = ext2fs_extent_get(h, EXT2_EXTENT_CURRENT, &ex);
                if (!err && (ex.e_lblk > lblk + i || ex.e_lblk + ex.e_len <= lblk + i ||
                             (ex.e_flags & EXT2_EXTENT_FLAGS_UNINIT)))
                        err = EXT2_ET_EXTENT_NOT_FOUND;
                if (err)
                        break;
                blk64_t skip = lblk + i - ex.e_lblk, run = ex.e_len - skip < n - i ? ex.e_len - skip : n - i;
                err = io_channel_write_blk64(s->fs->io, ex.e_pblk + skip, (int) run, p + i * BLOCK);
                i += run;
        }
        if (h)
                ext2fs_extent_free(h);
        return err;
}

/* n bytes of whole blocks at an aligned off: the runs of non-zero blocks. */
static errcode_t sink_blocks(struct sink *s, uint64_t off, const char *p, size_t n) {
        size_t i = 0;
        while (i < n) {
                if (zero_block(p + i)) {
                        i += BLOCK;
                        continue;
                }
                size_t start = i;
                while (i < n && (i == start || !zero_block(p + i)))
                        i += BLOCK;
                errcode_t err = sink_write(s, off + start, p + start, i - start);
                if (err)
                        return err;
        }
        return 0;
}

/* The window written (its last block padded with zeros) and emptied. */
static errcode_t sink_flush(struct sink *s) {
        size_t whole = (s->used + BLOCK - 1) / BLOCK * BLOCK;
        errcode_t err = whole ? sink_blocks(s, s->base, s->win, whole) : 0;
        memset(s->win, 0, whole);
        s->used = 0;
        return err;
}

/* len bytes at off, past what was put before. */
static errcode_t sink_put(struct sink *s, uint64_t off, const char *p, size_t len) {
        while (len) {
                errcode_t err = 0;
                if (s->used && off >= s->base + SINK_WINDOW)
                        err = sink_flush(s);
                if (err)
                        return err;
                if (!s->used)
                        s->base = off - off % BLOCK;
                size_t at = (size_t) (off - s->base), n = SINK_WINDOW - at < len ? SINK_WINDOW - at : len;
                memcpy(s->win + at, p, n);
                s->used = at + n;
                off += n;
                p += n;
                len -= n;
                if (s->used == SINK_WINDOW && (err = sink_flush(s)))
                        return err;
        }
        return 0;
}

/* The image made durable while it is filled: a thread fdatasyncs it each
 * SYNC_EVERY bytes of data, so the close's fsync waits for the tail only.
 * The flushes are the same work (on a VM, each also flushes the host's
 * cache), done beside the fill rather than after it. */
#define SYNC_EVERY (32 * MIB)

struct syncer {
        int fd; /* borrowed */
        pthread_t thread;
        pthread_mutex_t mu;
        pthread_cond_t cond;
        uint64_t written, synced;
        bool end;
};

static void *syncer_run(void *arg) {
        struct syncer *s = arg;
        pthread_mutex_lock(&s->mu);
        for (;;) {
                while (!s->end && s->written < s->synced + SYNC_EVERY)
                        pthread_cond_wait(&s->cond, &s->mu);
                if (s->end)
                        break;
                s->synced = s->written;
                pthread_mutex_unlock(&s->mu);
                (void) fdatasync(s->fd); /* a failure shows again at the close's fsync */
                pthread_mutex_lock(&s->mu);
        }
        pthread_mutex_unlock(&s->mu);
        return NULL;
}

/* NULL when no thread can be had (the close's fsync does it all then). */
static struct syncer *syncer_start(int fd) {
        if (fd < 0)
                return NULL;
        struct syncer *s = xmalloc(sizeof(*s));
        *s = (struct syncer) { .fd = fd };
        pthread_mutex_init(&s->mu, NULL);
        pthread_cond_init(&s->cond, NULL);
        if (pthread_create(&s->thread, NULL, syncer_run, s) == 0)
                return s;
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cond);
        free(s);
        return NULL;
}

static void syncer_note(struct syncer *s, uint64_t written) {
        if (!s)
                return;
        pthread_mutex_lock(&s->mu);
        s->written = written;
        if (written >= s->synced + SYNC_EVERY)
                pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->mu);
}

static void syncer_stop(struct syncer **sp) {
        struct syncer *s = *sp;
        if (!s)
                return;
        pthread_mutex_lock(&s->mu);
        s->end = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cond);
        free(s);
        *sp = NULL;
}

static int report(struct flat *f, size_t n) {
        f->done += n;
        if (f->done < f->next_report)
                return 0;
        f->next_report = f->done + REPORT_EVERY;
        /* the disk writes what is there already, on another CPU, while the
         * rest is filled: the fsync of the close then waits for the tail */
        if (f->wb_fd >= 0)
                (void) sync_file_range(f->wb_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        syncer_note(f->syncer, f->done);
        if (f->o->progress)
                f->o->progress(f->o->ud, f->layer, f->n_layers, f->done, f->data);
        return flat_cancelled(f) ? op_fail(f->e, -ECANCELED, "flattening cancelled") : 0;
}

static int copy_data(struct flat *f, struct archive *a, struct sink *s) {
        uint64_t next = 0; /* a sparse map goes forward: a block written whole is never revisited */
        for (;;) {
                const void *buf;
                size_t len;
                la_int64_t off;
                int r = archive_read_data_block(a, &buf, &len, &off);
                if (r == ARCHIVE_EOF)
                        return 0;
                if (r != ARCHIVE_OK)
                        return flat_fail(f, -EBADMSG, "truncated: %s", archive_error_string(a));
                if (off < 0 || (uint64_t) off > s->size || len > s->size - (uint64_t) off || len > UINT32_MAX)
                        return flat_fail(f, -EBADMSG, "data past the end of the file");
                if ((uint64_t) off < next)
                        return flat_fail(f, -EBADMSG, "sparse data out of order");
                next = (uint64_t) off + len;
                errcode_t err = sink_put(s, (uint64_t) off, buf, len);
                if (err)
                        return fs_fail(f, err, "writing");
                if ((r = report(f, len)) < 0)
                        return r;
        }
}

/* The file's data from the tar (or, for a long symlink, its target); the
 * inode is written already, with its size. */
static int write_data(struct flat *f, struct archive *a, ext2_ino_t ino, const struct meta *m, uint64_t size) {
        struct sink *s = f->sink;
        int r = 0;
        if (s->used) { /* what a failed file left */
                memset(s->win, 0, s->used);
                s->used = 0;
        }
        s->fs = f->fs, s->ino = ino, s->size = size;
        errcode_t err = 0;
        if (m->target)
                err = sink_put(s, 0, m->target, (size_t) size);
        else
                r = copy_data(f, a, s);
        if (!err && r == 0)
                err = sink_flush(s);
        if (r == 0 && err)
                r = fs_fail(f, err, "writing");
        return r;
}

static int put_xattrs(struct flat *f, struct archive_entry *e, ext2_ino_t ino) {
        struct ext2_xattr_handle *h = NULL;
        const char *name = NULL;
        const void *value;
        size_t size;
        if (archive_entry_xattr_reset(e) == 0)
                return 0;
        errcode_t err = ext2fs_xattrs_open(f->fs, ino, &h);
        if (!err)
                err = ext2fs_xattrs_read(h);
        while (!err && archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK)
                err = ext2fs_xattr_set(h, name, value, size);
        if (h) {
                errcode_t err2 = ext2fs_xattrs_close(&h);
                if (!err)
                        err = err2;
        }
        if (!err)
                return 0;
        _cleanup_free_ char *what = xasprintf("setting the xattr '%s'", name ? name : "");
        return fs_fail(f, err, what);
}

/* Device numbers where the kernel looks for them (old encoding when both fit a byte). */
static void put_rdev(struct ext2_inode_large *in, uint32_t major, uint32_t minor) {
        if (major < 256 && minor < 256)
                in->i_block[0] = major << 8 | minor;
        else
                in->i_block[1] = (minor & 0xff) | (major << 8) | ((minor & ~0xffu) << 12);
}

static int write_inode(struct flat *f, struct archive *a, const struct rec *r, const struct meta *m) {
        struct ext2_inode_large *in = inode_fresh(f, m, (uint16_t) r->nlink);
        size_t tlen = m->target ? strlen(m->target) : 0;
        bool data = r->ft == EXT2_FT_REG_FILE || tlen >= sizeof(in->i_block);
        errcode_t err = 0;
        if (r->nlink > EXT2_LINK_MAX)
                return flat_fail(f, -EMLINK, "more than %u hard links", EXT2_LINK_MAX);
        if (r->ft == EXT2_FT_CHRDEV || r->ft == EXT2_FT_BLKDEV)
                put_rdev(in, m->major, m->minor);
        if (m->target && !data) { /* a fast symlink: the target in i_block */
                memcpy(in->i_block, m->target, tlen);
                in->i_size = (uint32_t) tlen;
        }
        if (data)
                err = ext2fs_inode_size_set(f->fs, (struct ext2_inode *) in, m->target ? tlen : r->size);
        if (data && !err)
                err = inode_extents(f, r->ino);
        if (!err)
                err = inode_write(f, r->ino);
        if (err)
                return fs_fail(f, err, "writing the inode");
        return data ? write_data(f, a, r->ino, m, m->target ? tlen : r->size) : 0;
}

static int update_dir(struct flat *f, const struct rec *r, const struct meta *m) {
        errcode_t err = ext2fs_read_inode_full(f->fs, r->ino, (struct ext2_inode *) f->ibuf, f->isize);
        if (!err) {
                inode_set_meta(f, m);
                err = inode_write(f, r->ino);
        }
        return err ? fs_fail(f, err, "writing the directory inode") : 0;
}

static int write_entry(struct flat *f, struct archive *a, struct archive_entry *e, const struct rec *r) {
        const char *why = NULL;
        struct meta m;
        int ft = flat_entry_ft(e), rc = flat_norm_path(archive_entry_pathname(e), f->path, &why);
        if (rc < 0 || ft != r->ft || archive_entry_hardlink(e) || (uint64_t) archive_entry_size(e) != r->size) {
                flat_set_raw_path(f, archive_entry_pathname(e));
                return flat_fail(f, -ESTALE, "the layer changed while it was flattened");
        }
        rc = flat_entry_meta(f, e, ft, &m);
        if (rc == 0)
                rc = ft == EXT2_FT_DIR ? update_dir(f, r, &m) : write_inode(f, a, r, &m);
        if (rc == 0)
                rc = put_xattrs(f, e, r->ino);
        return rc;
}

int flat_early_inode(struct flat *f, struct archive *a, struct archive_entry *e, struct rec *r) {
        struct meta m;
        int rc = flat_entry_meta(f, e, r->ft, &m);
        if (rc == 0)
                rc = new_ino(f, EXT2_ROOT_INO, false, &r->ino);
        if (rc == 0)
                rc = write_inode(f, a, r, &m); /* r->nlink is 1: pass 2 sets more */
        if (rc == 0)
                rc = put_xattrs(f, e, r->ino);
        r->done = rc == 0;
        return rc;
}

/* Early: the links counts of hard-linked inodes pass 1 wrote, and the
 * directories it has the metadata of. */
static int early_finish(struct flat *f) {
        for (size_t i = 0; f->early && i < f->n_recs; i++) {
                struct rec *r = f->recs[i];
                errcode_t err = 0;
                if (!r->nlink || !(r->dmeta || (r->done && r->nlink > 1)))
                        continue;
                if (r->dmeta) {
                        int rc = update_dir(f, r, r->dmeta);
                        if (rc < 0)
                                return rc;
                        r->done = true;
                        continue;
                }
                if (r->nlink > EXT2_LINK_MAX)
                        return flat_fail(f, -EMLINK, "more than %u hard links", EXT2_LINK_MAX);
                err = ext2fs_read_inode_full(f->fs, r->ino, (struct ext2_inode *) f->ibuf, f->isize);
                if (!err) {
                        ((struct ext2_inode_large *) f->ibuf)->i_links_count = (uint16_t) r->nlink;
                        err = inode_write(f, r->ino);
                }
                if (err)
                        return fs_fail(f, err, "writing the inode");
        }
        return 0;
}

/* The next rec pass 2 writes from the layers (NULL: none). */
static const struct rec *pending(const struct flat *f, size_t *cursor) {
        while (*cursor < f->n_recs && (f->recs[*cursor]->nlink == 0 || f->recs[*cursor]->done))
                (*cursor)++;
        return *cursor < f->n_recs ? f->recs[*cursor] : NULL;
}

static int write_layer(struct flat *f, size_t *cursor) {
        struct layer_in in = { .fd = -1 };
        struct archive_entry *e;
        const struct rec *next = pending(f, cursor);
        if (!next || next->layer != f->layer)
                return 0; /* nothing (more) to write from this layer */
        int r = flat_layer_open(f, &in);
        for (uint32_t idx = 0; r == 0; idx++) {
                const struct rec *rec = pending(f, cursor);
                if (!rec || rec->layer != f->layer)
                        break; /* nothing more wins in this layer */
                r = flat_layer_next(f, &in, idx, &e);
                if (r == 1)
                        r = flat_fail(f, -ESTALE, "the layer changed while it was flattened");
                else if (r == 0 && rec->idx == idx) {
                        r = write_entry(f, in.a, e, rec);
                        (*cursor)++;
                }
        }
        flat_layer_close(&in);
        if (r == 0 && f->o->progress)
                f->o->progress(f->o->ud, f->layer, f->n_layers, f->done, f->data);
        return r;
}

/* ---- the whole ---------------------------------------------------------------------- */

static int fs_open(struct flat *f, const char *path) {
        errcode_t err = ext2fs_open(path, EXT2_FLAG_RW | EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &f->fs);
        if (!err && (err = ext2fs_read_bitmaps(f->fs))) {
                ext2fs_free(f->fs);
                f->fs = NULL;
        }
        if (err)
                return op_fail(f->e, -EIO, "opening the new image %s: %s", path, error_message(err));
        if (f->fs->blocksize != BLOCK)
                return op_fail(f->e, -EIO, "the new image has %u-byte blocks, not %u", f->fs->blocksize, BLOCK);
        f->isize = (unsigned) EXT2_INODE_SIZE(f->fs->super);
        f->ibuf = xmalloc(f->isize);
        f->sink = xcalloc(1, sizeof(*f->sink));
        if (ext2fs_lookup(f->fs, EXT2_ROOT_INO, "lost+found", 10, NULL, &f->lost_found))
                f->lost_found = 0;
        return 0;
}

/* The image opened for writing (with its syncer). */
static int fill_open(struct flat *f, const char *path) {
        f->wb_fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        f->syncer = syncer_start(f->wb_fd);
        return fs_open(f, path);
}

/* Pass 2. */
static int fill_write(struct flat *f) {
        size_t cursor = 0;
        int r = drop_lost(f);
        if (r == 0)
                r = assign_inodes(f);
        if (r == 0)
                r = write_dirs(f);
        if (r == 0)
                r = early_finish(f);
        for (f->layer = 1; r == 0 && f->layer <= f->n_layers; f->layer++)
                r = write_layer(f, &cursor);
        return r;
}

/* Closed: flushed when r is 0 (and then r is the close's), just freed otherwise. */
static int fill_close(struct flat *f, const char *path, int r) {
        syncer_stop(&f->syncer);
        if (r == 0 && f->fs) {
                errcode_t err = ext2fs_write_bitmaps(f->fs);
                if (!err)
                        err = ext2fs_close_free(&f->fs);
                if (err)
                        r = op_fail(f->e, -EIO, "closing the new image %s: %s", path, error_message(err));
        }
        if (f->fs) /* failed: the file goes anyway, nothing to flush */
                ext2fs_free(f->fs);
        f->fs = NULL;
        if (f->wb_fd >= 0)
                close(f->wb_fd);
        f->wb_fd = -1;
        return r;
}

static int fill(struct flat *f, const char *path) {
        int r = fill_open(f, path);
        if (r == 0)
                r = fill_write(f);
        return fill_close(f, path, r);
}

/* ---- early: the data while the layers are decompressed (opts.next) --------------- */

/* The first image's inodes must do for the final size (resize2fs keeps the
 * inodes per group): as many as mkfs would have been given. */
static int early_fits(struct flat *f, uint64_t size) {
        /* whole groups only: resize2fs drops a last group too small for its metadata */
        uint64_t per = f->fs->super->s_blocks_per_group, groups = size / BLOCK / per ? size / BLOCK / per : 1;
        uint64_t have = groups * f->fs->super->s_inodes_per_group, want = f->inodes + f->inodes / 4 + 1024;
        if (have >= want)
                return 0;
        f->again = true;
        return op_fail(f->e, -ENOSPC, "%llu inodes at %llu MiB, %llu wanted", (unsigned long long) have,
                       (unsigned long long) (size >> 20), (unsigned long long) want);
}

/* Early: every free block of the image punched out of the file (what
 * later layers replaced was written there, and the file stays sparse),
 * then the journal, sized for the final size as mkfs would and put in its
 * middle: on blocks that read as zeros, so it needs no zeroing. */
static int early_journal(struct flat *f, uint64_t size) {
        blk64_t end = ext2fs_blocks_count(f->fs->super) - 1, start = f->fs->super->s_first_data_block, z, set;
        errcode_t err = io_channel_flush(f->fs->io);
        f->layer = 0; /* no layer's, nor an entry's */
        f->path[0] = '\0';
        while (!err && start <= end && ext2fs_find_first_zero_block_bitmap2(f->fs->block_map, start, end, &z) == 0) {
                if (ext2fs_find_first_set_block_bitmap2(f->fs->block_map, z, end, &set) != 0)
                        set = end + 1;
                err = io_channel_discard(f->fs->io, z, set - z);
                start = set;
        }
        if (err && err != EXT2_ET_UNIMPLEMENTED)
                return flat_fail(f, -EIO, "punching the free blocks out: %s", error_message(err));
        int flags = EXT2_MKJOURNAL_NO_MNT_CHECK | (err ? 0 : EXT2_MKJOURNAL_LAZYINIT); /* else zeroed */
        struct ext2fs_journal_params jp = { 0 };
        int blocks = ext2fs_default_journal_size(size / BLOCK);
        if (blocks <= 0)
                return 0; /* too small for a journal (mkfs makes none either) */
        jp.num_journal_blocks = (blk_t) blocks;
        err = ext2fs_add_journal_inode3(f->fs, &jp, size / BLOCK / 2, flags);
        return err ? fs_fail(f, err, "making the journal") : 0;
}

/* The closed image from `from` bytes to `to` (resize2fs; the file too). */
static int early_resize(struct flat *f, const char *path, uint64_t from, uint64_t to) {
        char size_arg[32];
        snprintf(size_arg, sizeof(size_arg), "%lluK", (unsigned long long) (to >> 10));
        char *argv[] = { (char *) "resize2fs", (char *) "-f", (char *) path, size_arg, NULL };
        _cleanup_free_ char *msg = NULL;
        int r = to > from && truncate(path, (off_t) to) < 0 ? -errno : 0;
        if (r == 0)
                r = op_take_msg(f->e, spawn_run_checked(argv, 10 * 60 * 1000, 0, "apt-get install e2fsprogs", &msg),
                                &msg);
        else
                op_fail(f->e, r, "cannot size %s: %s", path, strerror(-r));
        if (r == 0 && to < from && truncate(path, (off_t) to) < 0)
                r = op_fail(f->e, -errno, "cannot size %s: %s", path, strerror(errno));
        _cleanup_close_ int fd = r == 0 ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
        if (r == 0 && (fd < 0 || fsync(fd) < 0))
                r = op_fail(f->e, -errno, "cannot sync %s: %s", path, strerror(errno));
        f->again = r < 0;
        return r;
}

/* mkfs at the size tar_bytes of content gives, pass 1 with the data, pass 2
 * with the metadata, then the rule's size. */
static int flatten_early(struct flat *f, const char *out_path, uint64_t *size, bool *created) {
        uint64_t first = f->o->size_bytes, floor = f->o->floor_bytes ? f->o->floor_bytes : FLOOR_BYTES;
        if (!first) {
                first = f->o->tar_bytes + f->o->tar_bytes / 2;
                first = (first < floor ? floor : first + MIB - 1) / MIB * MIB;
        }
        f->early = true; /* (pass 2 reads the layers themselves) */
        /* the tree is not known yet: an inode per 8 KiB of tar as well (most
         * images have more per entry; fewer falls back, early_fits), as many
         * as an image of that size can hold */
        uint64_t want = f->o->tar_bytes / 8192 < first / 4096 ? f->o->tar_bytes / 8192 : first / 4096;
        int r = make_fs(f, out_path, first, want, created);
        f->again = r < 0 && r != -ECANCELED; /* the two passes' mkfs may still do */
        if (r == 0)
                r = fill_open(f, out_path);
        f->following = true;
        if (r == 0)
                r = flat_tree_build(f, size);
        f->following = false;
        if (r == 0)
                r = early_fits(f, *size);
        f->done = f->data;
        if (r == 0)
                r = fill_write(f);
        if (r == 0)
                r = early_journal(f, *size);
        if (r == 0 && f->o->progress) /* pass 1 wrote the data */
                f->o->progress(f->o->ud, f->n_layers, f->n_layers, f->data, f->data);
        r = fill_close(f, out_path, r);
        if (r == 0 && *size != first)
                r = early_resize(f, out_path, first, *size);
        if (r < 0 && f->follow_cancelled)
                r = op_fail(f->e, -ECANCELED, "flattening cancelled");
        else if (r < 0 && f->again) {
                _cleanup_free_ char *why = f->e->msg ? xstrdup(f->e->msg) : NULL;
                op_error_done(f->e);
                r = op_fail(f->e, -EAGAIN, "not flattened while decompressed: %s", strempty(why));
        }
        return r;
}

static void flat_done(struct flat *f) {
        flat_tree_free(f);
        free(f->ibuf);
        free(f->sink);
        free(f->dir.buf);
}

/* Decompressed first, pass 1, mkfs, pass 2. */
static int flatten_two_pass(struct flat *f, const char *out_path, uint64_t *size, bool *created) {
        const char *const *plain = NULL;
        struct unpack *u = NULL;
        int r = flat_unpack(f, out_path, &u, &plain);
        if (r == 0) {
                f->layers = plain; /* both passes read the plain tars */
                r = flat_tree_build(f, size);
        }
        if (r == 0)
                r = make_fs(f, out_path, *size, 0, created);
        if (r == 0)
                r = fill(f, out_path);
        flat_unpack_done(u);
        return r;
}

int oci_flatten(const char *const *layers, size_t n_layers, const char *out_path, const struct oci_flatten_opts *o,
                struct oci_flatten_stats *ret, struct op_error *e) {
        static const struct oci_flatten_opts defaults = { 0 };
        _cleanup_(flat_done) struct flat f = { .layers = layers, .shown = layers, .n_layers = n_layers,
                                              .o = o ? o : &defaults, .e = e, .wb_fd = -1 };
        struct stat st;
        uint64_t size = 0;
        bool created = false;
        int r;

        ext2_errors_init();
        if (!layers || n_layers == 0 || n_layers > MAX_LAYERS)
                return op_fail(e, -EINVAL, "%zu layers (1 to %u)", n_layers, MAX_LAYERS);
        if (lstat(out_path, &st) == 0)
                return op_fail(e, -EEXIST, "%s exists already", out_path);
        if (errno != ENOENT)
                return op_fail(e, -errno, "%s: %s", out_path, strerror(errno));
        bool early = f.o->next && f.o->tar_bytes && !f.o->subtree && !f.o->without;
        if (f.o->next && !early) /* the tars may be cut short: two passes would take that for their end */
                return op_fail(e, -EINVAL, "next without the tars' size, or with a part of the tree");
        r = early ? flatten_early(&f, out_path, &size, &created) : flatten_two_pass(&f, out_path, &size, &created);
        f.layers = layers;
        if (r < 0) {
                if (created)
                        unlink(out_path);
                return r;
        }
        if (ret)
                *ret = (struct oci_flatten_stats) { .content_bytes = f.content, .size_bytes = size, .entries = f.names };
        return 0;
}
