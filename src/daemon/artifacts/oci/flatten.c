/* SPDX-License-Identifier: MIT */
#include "flatten.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <ext2fs/ext2fs.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk/workdisk.h"
#include "macro.h"
#include "proc_spawn.h"
#include "strbuf.h"

#define PATH_BYTES 4096
#define NAME_BYTES 255
#define MIB (UINT64_C(1) << 20)
#define FLOOR_BYTES (256 * MIB)
#define BLOCK 4096u           /* the image's block size (mkfs -b) */
#define INODE_BYTES 256u      /* the image's inode size (mkfs -I) */
#define MAX_LAYERS 4096u
#define REPORT_EVERY (8 * MIB) /* progress and cancel inside a large file */
/* nodes ever made (implicit parents included): replacing a deep path again
 * and again must not grow memory without end */
#define MAX_NODES_MADE (2 * (uint64_t) OCI_FLATTEN_MAX_ENTRIES)

/* ---- the tree (pass 1) ---------------------------------------------------------- */

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

struct arena {
        struct arena *prev;
        size_t used;
        char data[];
};
#define ARENA_CHUNK ((size_t) 1 << 20)

struct sink;

struct layer_in {
        struct archive *a;
        int fd;
};

/* Builds the directory blocks of one directory. */
struct dirbuf {
        char *buf; /* owned; whole blocks */
        size_t cap, blocks;
        unsigned off, last; /* in the current block: the next free byte, the last entry */
};

struct flat {
        const char *const *layers;
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
};

static int flat_fail(struct flat *f, int r, const char *fmt, ...) _printf_(3, 4);
static int flat_fail(struct flat *f, int r, const char *fmt, ...) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        va_list ap;
        va_start(ap, fmt);
        strbuf_vaddf(&sb, fmt, ap);
        va_end(ap);
        if (f->path[0]) /* a path of 4096 bytes is no message */
                return op_fail(f->e, r, "layer %zu, entry '%.200s%s': %s", f->layer, f->path,
                               strlen(f->path) > 200 ? "..." : "", sb.buf);
        if (f->layer)
                return op_fail(f->e, r, "layer %zu (%s): %s", f->layer, f->layers[f->layer - 1], sb.buf);
        return op_fail(f->e, r, "%s", sb.buf);
}

static int fs_fail(struct flat *f, errcode_t err, const char *what) {
        int r = err == EXT2_ET_BLOCK_ALLOC_FAIL || err == EXT2_ET_INODE_ALLOC_FAIL || err == EXT2_ET_DIR_NO_SPACE
                        ? -ENOSPC
                        : -EIO;
        if (r == -ENOSPC)
                return flat_fail(f, r, "%s: the image is too small (%llu MiB): %s", what,
                                 (unsigned long long) ((ext2fs_blocks_count(f->fs->super) * BLOCK) >> 20),
                                 error_message(err));
        return flat_fail(f, r, "%s: %s", what, error_message(err));
}

static bool cancelled(const struct flat *f) {
        return f->o->cancel && f->o->cancel(f->o->ud);
}

static void *arena_alloc(struct flat *f, size_t n) {
        n = (n + 7) & ~(size_t) 7;
        if (!f->arena || f->arena->used + n > ARENA_CHUNK) {
                struct arena *c = xmalloc(sizeof(*c) + ARENA_CHUNK);
                c->prev = f->arena;
                c->used = 0;
                f->arena = c;
        }
        void *p = f->arena->data + f->arena->used;
        f->arena->used += n;
        return memset(p, 0, n);
}

static uint64_t name_hash(const struct node *parent, const char *name, size_t len) {
        uint64_t h = UINT64_C(14695981039346656037) ^ ((uint64_t) (uintptr_t) parent * UINT64_C(0x9E3779B97F4A7C15));
        for (size_t i = 0; i < len; i++) {
                h ^= (unsigned char) name[i];
                h *= UINT64_C(1099511628211);
        }
        return h ^ (h >> 31);
}

static struct node *tree_lookup(const struct flat *f, const struct node *parent, const char *name, size_t len) {
        uint64_t h = name_hash(parent, name, len);
        for (size_t i = h & f->mask;; i = (i + 1) & f->mask) {
                struct node *n = f->slots[i];
                if (!n)
                        return NULL;
                if (n->hash == h && n->parent == parent && n->name_len == len && memcmp(n->name, name, len) == 0)
                        return n;
        }
}

static void slots_put(struct node **slots, size_t mask, struct node *n) {
        size_t i = n->hash & mask;
        while (slots[i])
                i = (i + 1) & mask;
        slots[i] = n;
}

static void slots_grow(struct flat *f) {
        size_t size = (f->mask + 1) * 2;
        struct node **slots = xcalloc(size, sizeof(*slots));
        for (size_t i = 0; i <= f->mask; i++)
                if (f->slots[i])
                        slots_put(slots, size - 1, f->slots[i]);
        free(f->slots);
        f->slots = slots;
        f->mask = size - 1;
}

/* Linear probing without tombstones: the entries after the hole move back
 * when their home slot allows. */
static void slots_remove(struct flat *f, const struct node *n) {
        size_t i = n->hash & f->mask, j;
        while (f->slots[i] != n)
                i = (i + 1) & f->mask;
        f->slots[i] = NULL;
        for (j = (i + 1) & f->mask; f->slots[j]; j = (j + 1) & f->mask) {
                size_t k = f->slots[j]->hash & f->mask;
                bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
                if (!stays) {
                        f->slots[i] = f->slots[j];
                        f->slots[j] = NULL;
                        i = j;
                }
        }
        f->used--;
}

/* A new child of parent; NULL past the limits. */
static struct node *node_add(struct flat *f, struct node *parent, const char *name, size_t len, uint8_t ft) {
        if (f->used >= OCI_FLATTEN_MAX_ENTRIES || f->nodes_made >= MAX_NODES_MADE)
                return NULL;
        struct node *n = arena_alloc(f, sizeof(*n) + len + 1);
        memcpy(n->name, name, len);
        n->name_len = (uint16_t) len;
        n->ft = ft;
        n->layer = (uint32_t) f->layer;
        n->parent = parent;
        n->hash = name_hash(parent, name, len);
        n->next = parent->first_child;
        if (n->next)
                n->next->prev = n;
        parent->first_child = n;
        if ((f->used + 1) * 2 > f->mask + 1)
                slots_grow(f);
        slots_put(f->slots, f->mask, n);
        f->used++;
        f->nodes_made++;
        return n;
}

static struct rec *rec_new(struct flat *f, uint32_t idx, uint8_t ft) {
        struct rec *r = arena_alloc(f, sizeof(*r));
        r->layer = (uint32_t) f->layer;
        r->idx = idx;
        r->ft = ft;
        if (f->n_recs == f->cap_recs) {
                f->cap_recs = f->cap_recs ? f->cap_recs * 2 : 1024;
                f->recs = xrealloc(f->recs, f->cap_recs * sizeof(*f->recs));
        }
        f->recs[f->n_recs++] = r;
        return r;
}

static void rec_link(struct rec *r, struct node *n) {
        n->rec = r;
        n->prev_link = NULL;
        n->next_link = r->links;
        if (r->links)
                r->links->prev_link = n;
        r->links = n;
        r->nlink++;
}

static void rec_unlink(struct node *n) {
        struct rec *r = n->rec;
        if (!r)
                return;
        if (n->prev_link)
                n->prev_link->next_link = n->next_link;
        else
                r->links = n->next_link;
        if (n->next_link)
                n->next_link->prev_link = n->prev_link;
        r->nlink--;
        n->rec = NULL;
}

/* Takes a childless node out of the tree (its memory stays in the arena). */
static void node_remove(struct flat *f, struct node *n) {
        if (n->prev)
                n->prev->next = n->next;
        else
                n->parent->first_child = n->next;
        if (n->next)
                n->next->prev = n->prev;
        slots_remove(f, n);
        rec_unlink(n);
}

static void drop_subtree(struct flat *f, struct node *top) {
        struct node *n = top;
        for (;;) {
                while (n->first_child)
                        n = n->first_child;
                struct node *up = n->parent;
                bool last = n == top;
                node_remove(f, n);
                if (last)
                        return;
                n = up;
        }
}

/* The first node of top's subtree in post-order, not entering subtrees this
 * layer pruned already (nothing lower is left in them). */
static struct node *leftmost(struct node *n, uint32_t layer) {
        while (n->pruned != layer && n->first_child)
                n = n->first_child;
        return n;
}

/* Removes what the layers below put under top (and top when with_top): a node
 * stays when this layer declared it or when something that stays is under it. */
static void prune_lower(struct flat *f, struct node *top, bool with_top) {
        uint32_t layer = (uint32_t) f->layer;
        if (top->pruned == layer)
                return;
        struct node *n = top->first_child ? leftmost(top->first_child, layer) : top;
        while (n != top) {
                struct node *succ = n->next ? leftmost(n->next, layer) : n->parent;
                if (n->layer < layer && !n->first_child)
                        node_remove(f, n);
                else
                        n->pruned = layer;
                n = succ;
        }
        if (with_top && top->layer < layer && !top->first_child)
                node_remove(f, top);
        else
                top->pruned = layer;
}

/* Pre-order successor inside top's subtree. */
static struct node *preorder_next(struct node *n, const struct node *top) {
        if (n->first_child)
                return n->first_child;
        for (; n != top; n = n->parent)
                if (n->next)
                        return n->next;
        return NULL;
}

/* ---- entry paths ------------------------------------------------------------------ */

/* raw as a relative path without ".", empty components or trailing "/" into
 * out ("" for the root); why says what is wrong otherwise. */
static int norm_path(const char *raw, char out[PATH_BYTES + 1], const char **why) {
        size_t n = 0;
        if (!raw)
                return *why = "no path", -EINVAL;
        if (strlen(raw) > PATH_BYTES)
                return *why = "path longer than 4096 bytes", -ENAMETOOLONG;
        if (raw[0] == '/')
                return *why = "absolute path", -EPERM;
        for (const char *c = raw; *c;) {
                size_t len = strcspn(c, "/");
                if (len == 2 && c[0] == '.' && c[1] == '.')
                        return *why = "'..' in the path", -EPERM;
                if (len > NAME_BYTES)
                        return *why = "a path component longer than 255 bytes", -ENAMETOOLONG;
                if (len && !(len == 1 && c[0] == '.')) {
                        if (n)
                                out[n++] = '/';
                        memcpy(out + n, c, len);
                        n += len;
                }
                c += len + (c[len] == '/');
        }
        out[n] = '\0';
        return 0;
}

static void set_raw_path(struct flat *f, const char *raw) {
        snprintf(f->path, sizeof(f->path), "%s", raw ? raw : "");
}

static const char *ft_name(uint8_t ft) {
        static const char *const names[] = {
                [EXT2_FT_REG_FILE] = "a regular file", [EXT2_FT_DIR] = "a directory",
                [EXT2_FT_CHRDEV] = "a character device", [EXT2_FT_BLKDEV] = "a block device",
                [EXT2_FT_FIFO] = "a FIFO", [EXT2_FT_SOCK] = "a socket", [EXT2_FT_SYMLINK] = "a symlink",
        };
        return ft < ELEMENTSOF(names) && names[ft] ? names[ft] : "not a directory";
}

/* The directory holding the last component of path, made (this layer) when
 * missing and create; -ENOENT when missing otherwise. */
static int walk_parent(struct flat *f, const char *path, bool create, struct node **ret, const char **ret_base) {
        struct node *dir = f->root;
        const char *c = path, *slash;
        while ((slash = strchr(c, '/'))) {
                size_t len = (size_t) (slash - c);
                struct node *n = tree_lookup(f, dir, c, len);
                if (!n && !create)
                        return -ENOENT;
                if (!n && !(n = node_add(f, dir, c, len, EXT2_FT_DIR)))
                        return flat_fail(f, -E2BIG, "more than %u entries", OCI_FLATTEN_MAX_ENTRIES);
                if (n->ft != EXT2_FT_DIR)
                        return flat_fail(f, -ENOTDIR, "'%.*s' is %s, not a directory", (int) (slash - path), path,
                                         ft_name(n->ft));
                dir = n;
                c = slash + 1;
        }
        *ret = dir;
        *ret_base = c;
        return 0;
}

/* ---- pass 1: the tree ------------------------------------------------------------- */

static int entry_ft(struct archive_entry *e) {
        switch (archive_entry_filetype(e)) {
        case AE_IFREG: return EXT2_FT_REG_FILE;
        case AE_IFDIR: return EXT2_FT_DIR;
        case AE_IFLNK: return EXT2_FT_SYMLINK;
        case AE_IFCHR: return EXT2_FT_CHRDEV;
        case AE_IFBLK: return EXT2_FT_BLKDEV;
        case AE_IFIFO: return EXT2_FT_FIFO;
        case AE_IFSOCK: return EXT2_FT_SOCK;
        default: return -1;
        }
}

/* What an entry sets on its inode. */
struct meta {
        uint16_t mode; /* type and permission bits */
        uint32_t uid, gid;
        int64_t mtime;
        long nsec;
        uint32_t major, minor;
        const char *target; /* symlinks; borrowed from the entry */
};

static const uint16_t ft_mode[] = {
        [EXT2_FT_REG_FILE] = LINUX_S_IFREG, [EXT2_FT_DIR] = LINUX_S_IFDIR, [EXT2_FT_CHRDEV] = LINUX_S_IFCHR,
        [EXT2_FT_BLKDEV] = LINUX_S_IFBLK, [EXT2_FT_FIFO] = LINUX_S_IFIFO, [EXT2_FT_SOCK] = LINUX_S_IFSOCK,
        [EXT2_FT_SYMLINK] = LINUX_S_IFLNK,
};

static int entry_meta(struct flat *f, struct archive_entry *e, int ft, struct meta *m) {
        int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
        if (uid < 0 || uid > UINT32_MAX || gid < 0 || gid > UINT32_MAX)
                return flat_fail(f, -ERANGE, "owner %lld:%lld out of range", (long long) uid, (long long) gid);
        *m = (struct meta) { .mode = (uint16_t) (ft_mode[ft] | (archive_entry_perm(e) & 07777)),
                             .uid = (uint32_t) uid, .gid = (uint32_t) gid,
                             .mtime = archive_entry_mtime(e), .nsec = archive_entry_mtime_nsec(e) };
        if (m->nsec < 0 || m->nsec > 999999999)
                m->nsec = 0;
        if (ft == EXT2_FT_CHRDEV || ft == EXT2_FT_BLKDEV) {
                uint64_t ma = archive_entry_rdevmajor(e), mi = archive_entry_rdevminor(e);
                if (ma > 0xfff || mi > 0xfffff)
                        return flat_fail(f, -ERANGE, "device %llu:%llu out of range", (unsigned long long) ma,
                                         (unsigned long long) mi);
                m->major = (uint32_t) ma;
                m->minor = (uint32_t) mi;
        }
        if (ft == EXT2_FT_SYMLINK) {
                m->target = archive_entry_symlink(e);
                if (!m->target || !m->target[0])
                        return flat_fail(f, -EINVAL, "symlink with an empty target");
                if (strlen(m->target) >= BLOCK)
                        return flat_fail(f, -ENAMETOOLONG, "symlink target longer than %u bytes", BLOCK - 1);
        }
        return 0;
}

/* Bytes the entry's data, long symlink target and xattrs take beside its inode. */
static void rec_estimate(struct rec *r, struct archive_entry *e) {
        r->size = (uint64_t) archive_entry_size(e);
        if (r->ft == EXT2_FT_REG_FILE) {
                int regions = archive_entry_sparse_reset(e);
                la_int64_t off, len;
                r->data = regions > 0 ? 0 : r->size;
                r->alloc = regions > 0 ? 0 : (r->size + BLOCK - 1) / BLOCK * BLOCK;
                while (regions > 0 && archive_entry_sparse_next(e, &off, &len) == ARCHIVE_OK) {
                        r->data += (uint64_t) len;
                        r->alloc += ((uint64_t) len + 2 * BLOCK - 1) / BLOCK * BLOCK;
                }
                r->alloc += BLOCK * (uint64_t) (regions / 256); /* extent tree blocks */
        } else if (r->ft == EXT2_FT_SYMLINK && strlen(archive_entry_symlink(e)) >= 60) {
                r->alloc = BLOCK;
        }
        size_t xbytes = 0, size;
        const char *name;
        const void *value;
        archive_entry_xattr_reset(e);
        while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK)
                xbytes += 16 + strlen(name) + size;
        if (xbytes > 96) /* does not fit in the inode */
                r->alloc += BLOCK * (1 + xbytes / BLOCK);
}

/* Puts the entry at parent/base: a directory over a directory only takes the
 * new metadata (children stay); anything else replaces what was there. */
static int node_put(struct flat *f, struct node *parent, const char *base, int ft, uint32_t idx,
                    struct archive_entry *e, struct rec *link_to) {
        size_t len = strlen(base);
        struct node *old = tree_lookup(f, parent, base, len);
        struct rec *r = link_to;
        if (!r) {
                r = rec_new(f, idx, (uint8_t) ft);
                rec_estimate(r, e);
        }
        if (old && old->ft == EXT2_FT_DIR && ft == EXT2_FT_DIR) {
                rec_unlink(old);
                rec_link(r, old);
                old->layer = (uint32_t) f->layer;
                return 0;
        }
        if (old && link_to && old->rec == link_to) /* a hard link to itself */
                return 0;
        if (old)
                drop_subtree(f, old);
        struct node *n = node_add(f, parent, base, len, (uint8_t) ft);
        if (!n)
                return flat_fail(f, -E2BIG, "more than %u entries", OCI_FLATTEN_MAX_ENTRIES);
        rec_link(r, n);
        return 0;
}

/* The rec a hard link entry shares: its target must be a non-directory
 * already in the tree. */
static int link_target(struct flat *f, const char *raw, struct rec **ret) {
        char target[PATH_BYTES + 1];
        const char *why = NULL, *base;
        struct node *dir, *n = NULL;
        int r = norm_path(raw, target, &why);
        if (r < 0)
                return flat_fail(f, -EPERM, "hard link target '%.200s' outside the image (%s)", raw, why);
        if (!target[0])
                return flat_fail(f, -EPERM, "hard link to the root directory");
        r = walk_parent(f, target, false, &dir, &base);
        if (r < 0 && r != -ENOENT)
                return r;
        if (r == 0)
                n = tree_lookup(f, dir, base, strlen(base));
        if (!n)
                return flat_fail(f, -ENOENT, "hard link target '%s' is not in the image", target);
        if (n->ft == EXT2_FT_DIR)
                return flat_fail(f, -EPERM, "hard link target '%s' is a directory", target);
        *ret = n->rec;
        return 0;
}

/* ".wh.NAME" hides NAME of the layers below; ".wh..wh..opq" all they put in
 * the directory; other ".wh..wh." names are aufs bookkeeping. */
static int whiteout(struct flat *f, const char *base) {
        struct node *dir;
        const char *b;
        if (strcmp(base, ".wh..wh..opq") != 0 && strncmp(base, ".wh..wh.", 8) == 0)
                return 0;
        const char *name = base + 4;
        if (!name[0] || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
                return flat_fail(f, -EINVAL, "invalid whiteout");
        int r = walk_parent(f, f->path, false, &dir, &b);
        if (r == -ENOENT)
                return 0; /* nothing below to hide */
        if (r < 0)
                return r;
        if (strcmp(base, ".wh..wh..opq") == 0) {
                prune_lower(f, dir, false);
                return 0;
        }
        struct node *n = tree_lookup(f, dir, name, strlen(name));
        if (n)
                prune_lower(f, n, true);
        return 0;
}

static int scan_entry(struct flat *f, struct archive_entry *e, uint32_t idx) {
        const char *raw = archive_entry_pathname(e), *why = NULL, *base, *hl = archive_entry_hardlink(e);
        struct node *parent;
        struct rec *link_to = NULL;
        struct meta m;
        int ft = entry_ft(e), r = norm_path(raw, f->path, &why);
        if (r < 0) {
                set_raw_path(f, raw);
                return flat_fail(f, r, "%s", why);
        }
        base = strrchr(f->path, '/') ? strrchr(f->path, '/') + 1 : f->path;
        if (strncmp(base, ".wh.", 4) == 0)
                return whiteout(f, base);
        if (strncmp(f->path, ".wh..wh.", 8) == 0 || strstr(f->path, "/.wh..wh."))
                return 0; /* inside aufs bookkeeping (.wh..wh.plnk/...) */
        if (hl && (r = link_target(f, hl, &link_to)) < 0)
                return r;
        if (link_to)
                ft = link_to->ft;
        if (ft < 0)
                return flat_fail(f, -EINVAL, "unsupported entry type 0%o", (unsigned) archive_entry_filetype(e));
        if (!link_to && (r = entry_meta(f, e, ft, &m)) < 0)
                return r;
        if (!f->path[0]) {
                if (ft != EXT2_FT_DIR)
                        return flat_fail(f, -EINVAL, "the root is %s, not a directory", ft_name((uint8_t) ft));
                rec_unlink(f->root);
                rec_link(rec_new(f, idx, EXT2_FT_DIR), f->root);
                f->root->layer = (uint32_t) f->layer;
                return 0;
        }
        if ((r = walk_parent(f, f->path, true, &parent, &base)) < 0)
                return r;
        return node_put(f, parent, base, ft, idx, e, link_to);
}

static void layer_close(struct layer_in *in) {
        archive_read_free(in->a);
        in->a = NULL;
        if (in->fd >= 0)
                close(in->fd);
        in->fd = -1;
}

static int layer_open(struct flat *f, struct layer_in *in) {
        const char *path = f->layers[f->layer - 1];
        f->path[0] = '\0';
        in->fd = open(path, O_RDONLY | O_CLOEXEC);
        if (in->fd < 0)
                return flat_fail(f, -errno, "cannot open: %s", strerror(errno));
        in->a = archive_read_new();
        archive_read_support_filter_gzip(in->a);
        archive_read_support_filter_zstd(in->a);
        archive_read_support_format_tar(in->a);
        archive_read_support_format_empty(in->a); /* a layer of nothing (some builders write gzip of "") */
        if (archive_read_open_fd(in->a, in->fd, 1 << 20) != ARCHIVE_OK) {
                int r = flat_fail(f, -EBADMSG, "not a tar layer: %s", archive_error_string(in->a));
                layer_close(in);
                return r;
        }
        return 0;
}

/* The next header; 1 at the end of the layer. */
static int layer_next(struct flat *f, struct layer_in *in, uint32_t idx, struct archive_entry **ret) {
        if (cancelled(f))
                return op_fail(f->e, -ECANCELED, "flattening cancelled");
        f->path[0] = '\0';
        int r = archive_read_next_header(in->a, ret);
        if (r == ARCHIVE_EOF)
                return 1;
        if (r < ARCHIVE_WARN && idx == 0)
                return flat_fail(f, -EBADMSG, "not a tar layer: %s", archive_error_string(in->a));
        if (r < ARCHIVE_WARN)
                return flat_fail(f, -EBADMSG, "unreadable after %u entries: %s", idx, archive_error_string(in->a));
        return 0;
}

static int scan_layer(struct flat *f) {
        struct layer_in in = { .fd = -1 };
        struct archive_entry *e;
        int r = layer_open(f, &in);
        if (r == 0 && f->o->progress)
                f->o->progress(f->o->ud, f->layer, f->n_layers, 0, 0);
        for (uint32_t idx = 0; r == 0; idx++) {
                r = layer_next(f, &in, idx, &e);
                if (r == 1) {
                        r = 0;
                        break;
                }
                if (r == 0 && ++f->headers > OCI_FLATTEN_MAX_ENTRIES)
                        r = flat_fail(f, -E2BIG, "more than %u entries", OCI_FLATTEN_MAX_ENTRIES);
                if (r == 0)
                        r = scan_entry(f, e, idx);
                if (r == 0 && archive_read_data_skip(in.a) != ARCHIVE_OK)
                        r = flat_fail(f, -EBADMSG, "truncated: %s", archive_error_string(in.a));
        }
        layer_close(&in);
        return r;
}

/* ---- sizing and mkfs -------------------------------------------------------------- */

/* The content estimate: data, directory entries and blocks, inode tables. */
static int plan(struct flat *f) {
        struct node *lf = tree_lookup(f, f->root, "lost+found", 10);
        f->path[0] = '\0';
        f->layer = 0;
        if (lf && lf->ft != EXT2_FT_DIR)
                return op_fail(f->e, -EINVAL, "'lost+found' in the image is %s: it must be a directory",
                               ft_name(lf->ft));
        for (struct node *n = f->root; n; n = preorder_next(n, f->root)) {
                if (n != f->root) {
                        f->names++;
                        f->content += 8 + ((n->name_len + 3u) & ~3u);
                }
                if (n->ft == EXT2_FT_DIR) {
                        f->inodes++;
                        f->content += BLOCK;
                }
                if (n->rec && !n->rec->counted) {
                        n->rec->counted = true;
                        f->content += n->rec->alloc;
                        f->data += n->rec->data;
                        f->inodes += n->ft != EXT2_FT_DIR;
                }
        }
        f->content += (f->inodes + f->inodes / 4 + 1024) * INODE_BYTES;
        return 0;
}

static int make_fs(struct flat *f, const char *path, uint64_t size, bool *created) {
        uint64_t inodes = f->inodes + f->inodes / 4 + 1024;
        char n_arg[32], size_arg[32];
        if (inodes < size / 16384) /* room for what the guest will add (mkfs's own ratio) */
                inodes = size / 16384;
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
        char *argv[] = { (char *) "mkfs.ext4", (char *) "-q", (char *) "-F", (char *) "-L", (char *) "banger-root",
                         (char *) "-I", (char *) "256", (char *) "-E",
                         (char *) "lazy_itable_init=1,root_owner=0:0", (char *) "-N", n_arg, (char *) "-b",
                         (char *) "4096", (char *) path, size_arg, NULL };
        _cleanup_free_ char *msg = NULL;
        return op_take_msg(f->e, spawn_run_checked(argv, 10 * 60 * 1000, 0, "apt-get install e2fsprogs", &msg), &msg);
}

static int image_size(struct flat *f, uint64_t *ret) {
        uint64_t size = f->o->size_bytes;
        if (size && size < f->content)
                return op_fail(f->e, -ENOSPC, "the image size (%llu MiB) is smaller than its content (%llu MiB)",
                               (unsigned long long) (size >> 20), (unsigned long long) ((f->content + MIB - 1) >> 20));
        if (!size) {
                size = f->content + f->content / 2;
                if (size < FLOOR_BYTES)
                        size = FLOOR_BYTES;
                size = (size + MIB - 1) / MIB * MIB;
        }
        *ret = size;
        return 0;
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

/* Inode numbers for every directory and every rec; parents first. */
static int assign_inodes(struct flat *f) {
        f->root->ino = EXT2_ROOT_INO;
        if (f->root->rec)
                f->root->rec->ino = EXT2_ROOT_INO;
        for (struct node *n = f->root->first_child; n; n = preorder_next(n, f->root)) {
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
static errcode_t write_all(struct flat *f, ext2_ino_t ino, const void *buf, size_t len) {
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
        if (d == f->root && f->lost_found && !tree_lookup(f, f->root, "lost+found", 10)) {
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
                err = write_all(f, d->ino, f->dir.buf, f->dir.blocks * BLOCK);
        return err ? fs_fail(f, err, "writing a directory") : 0;
}

static int write_dirs(struct flat *f) {
        for (struct node *n = f->root; n; n = preorder_next(n, f->root)) {
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
 * hands a block over in pieces (its data blocks need not be block-aligned). */
struct sink {
        ext2_file_t file;
        uint64_t size;    /* the file's; a staged last block is written up to it */
        uint64_t base;    /* the staged block's offset */
        bool pending;
        char blk[BLOCK];
};

static bool zero_block(const char *p) {
        return p[0] == 0 && memcmp(p, p + 1, BLOCK - 1) == 0;
}

static errcode_t sink_write(struct sink *s, uint64_t off, const char *p, size_t len) {
        unsigned got = 0;
        errcode_t err = ext2fs_file_llseek(s->file, off, EXT2_SEEK_SET, NULL);
        if (!err)
                err = ext2fs_file_write(s->file, p, (unsigned) len, &got);
        if (!err && got != len)
                err = EXT2_ET_SHORT_READ;
        return err;
}

static errcode_t sink_flush(struct sink *s) {
        if (!s->pending)
                return 0;
        s->pending = false;
        if (zero_block(s->blk))
                return 0;
        return sink_write(s, s->base, s->blk, s->size - s->base < BLOCK ? (size_t) (s->size - s->base) : BLOCK);
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

static errcode_t sink_put(struct sink *s, uint64_t off, const char *p, size_t len) {
        while (len) {
                size_t in = (size_t) (off % BLOCK), n;
                errcode_t err = s->pending && s->base != off - in ? sink_flush(s) : 0;
                if (!err && (in || len < BLOCK || s->pending)) { /* part of a block: staged */
                        if (!s->pending) {
                                memset(s->blk, 0, BLOCK);
                                s->base = off - in;
                                s->pending = true;
                        }
                        n = BLOCK - in < len ? BLOCK - in : len;
                        memcpy(s->blk + in, p, n);
                        if (in + n == BLOCK)
                                err = sink_flush(s);
                } else {
                        n = len - len % BLOCK;
                        if (!err)
                                err = sink_blocks(s, off, p, n);
                }
                if (err)
                        return err;
                off += n;
                p += n;
                len -= n;
        }
        return 0;
}

static int report(struct flat *f, size_t n) {
        f->done += n;
        if (f->done < f->next_report)
                return 0;
        f->next_report = f->done + REPORT_EVERY;
        if (f->o->progress)
                f->o->progress(f->o->ud, f->layer, f->n_layers, f->done, f->data);
        return cancelled(f) ? op_fail(f->e, -ECANCELED, "flattening cancelled") : 0;
}

static int copy_data(struct flat *f, struct archive *a, struct sink *s) {
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
                errcode_t err = sink_put(s, (uint64_t) off, buf, len);
                if (err)
                        return fs_fail(f, err, "writing");
                if ((r = report(f, len)) < 0)
                        return r;
        }
}

/* The file's data from the tar (or, for a long symlink, its target). */
static int write_data(struct flat *f, struct archive *a, ext2_ino_t ino, const struct meta *m, uint64_t size) {
        struct sink *s = f->sink;
        int r = 0;
        *s = (struct sink) { .size = size };
        errcode_t err = ext2fs_file_open(f->fs, ino, EXT2_FILE_WRITE, &s->file);
        if (!err)
                err = ext2fs_file_set_size2(s->file, size); /* first: no growing on each write */
        if (!err && m->target)
                err = sink_put(s, 0, m->target, (size_t) size);
        else if (!err)
                r = copy_data(f, a, s);
        if (!err && r == 0)
                err = sink_flush(s);
        if (s->file) {
                errcode_t err2 = ext2fs_file_close(s->file);
                if (!err)
                        err = err2;
        }
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
        int ft = entry_ft(e), rc = norm_path(archive_entry_pathname(e), f->path, &why);
        if (rc < 0 || ft != r->ft || archive_entry_hardlink(e) || (uint64_t) archive_entry_size(e) != r->size) {
                set_raw_path(f, archive_entry_pathname(e));
                return flat_fail(f, -ESTALE, "the layer changed while it was flattened");
        }
        rc = entry_meta(f, e, ft, &m);
        if (rc == 0)
                rc = ft == EXT2_FT_DIR ? update_dir(f, r, &m) : write_inode(f, a, r, &m);
        if (rc == 0)
                rc = put_xattrs(f, e, r->ino);
        return rc;
}

static int write_layer(struct flat *f, size_t *cursor) {
        struct layer_in in = { .fd = -1 };
        struct archive_entry *e;
        int r = layer_open(f, &in);
        for (uint32_t idx = 0; r == 0; idx++) {
                while (*cursor < f->n_recs && f->recs[*cursor]->nlink == 0)
                        (*cursor)++;
                const struct rec *rec = *cursor < f->n_recs ? f->recs[*cursor] : NULL;
                if (!rec || rec->layer != f->layer)
                        break; /* nothing more wins in this layer */
                r = layer_next(f, &in, idx, &e);
                if (r == 1)
                        r = flat_fail(f, -ESTALE, "the layer changed while it was flattened");
                else if (r == 0 && rec->idx == idx) {
                        r = write_entry(f, in.a, e, rec);
                        (*cursor)++;
                }
        }
        layer_close(&in);
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
        f->sink = xmalloc(sizeof(*f->sink));
        if (ext2fs_lookup(f->fs, EXT2_ROOT_INO, "lost+found", 10, NULL, &f->lost_found))
                f->lost_found = 0;
        return 0;
}

static int fill(struct flat *f, const char *path) {
        size_t cursor = 0;
        int r = fs_open(f, path);
        if (r == 0)
                r = assign_inodes(f);
        if (r == 0)
                r = write_dirs(f);
        for (f->layer = 1; r == 0 && f->layer <= f->n_layers; f->layer++)
                r = write_layer(f, &cursor);
        if (r == 0) {
                errcode_t err = ext2fs_write_bitmaps(f->fs);
                if (!err)
                        err = ext2fs_close_free(&f->fs);
                if (err)
                        r = op_fail(f->e, -EIO, "closing the new image %s: %s", path, error_message(err));
        }
        if (f->fs) /* failed: the file goes anyway, nothing to flush */
                ext2fs_free(f->fs);
        f->fs = NULL;
        return r;
}

static void flat_done(struct flat *f) {
        while (f->arena) {
                struct arena *prev = f->arena->prev;
                free(f->arena);
                f->arena = prev;
        }
        free(f->slots);
        free(f->recs);
        free(f->ibuf);
        free(f->sink);
        free(f->dir.buf);
}

int oci_flatten(const char *const *layers, size_t n_layers, const char *out_path, const struct oci_flatten_opts *o,
                struct oci_flatten_stats *ret, struct op_error *e) {
        static const struct oci_flatten_opts defaults = { 0 };
        _cleanup_(flat_done) struct flat f = { .layers = layers, .n_layers = n_layers, .o = o ? o : &defaults, .e = e };
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
        f.mask = 1023;
        f.slots = xcalloc(f.mask + 1, sizeof(*f.slots));
        f.root = arena_alloc(&f, sizeof(*f.root));
        f.root->ft = EXT2_FT_DIR;
        for (f.layer = 1, r = 0; r == 0 && f.layer <= n_layers; f.layer++)
                r = scan_layer(&f);
        if (r == 0)
                r = plan(&f);
        if (r == 0)
                r = image_size(&f, &size);
        if (r == 0)
                r = make_fs(&f, out_path, size, &created);
        if (r == 0)
                r = fill(&f, out_path);
        if (r < 0) {
                if (created)
                        unlink(out_path);
                return r;
        }
        if (ret)
                *ret = (struct oci_flatten_stats) { .content_bytes = f.content, .size_bytes = size, .entries = f.names };
        return 0;
}
