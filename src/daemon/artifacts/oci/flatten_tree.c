/* SPDX-License-Identifier: MIT */
/* Pass 1 of flatten.c: the layers' headers into the final tree, in memory. */
#include "flatten_internal.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"
#include "strbuf.h"

#define NAME_BYTES 255
#define INODE_BYTES 256u /* the image's inode size (mkfs -I) */
/* nodes ever made (implicit parents included): replacing a deep path again
 * and again must not grow memory without end */
#define MAX_NODES_MADE (2 * (uint64_t) OCI_FLATTEN_MAX_ENTRIES)

struct arena {
        struct arena *prev;
        size_t used;
        char data[];
};
#define ARENA_CHUNK ((size_t) 1 << 20)

/* ---- the tree ------------------------------------------------------------------- */

int flat_fail(struct flat *f, int r, const char *fmt, ...) {
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        va_list ap;
        va_start(ap, fmt);
        strbuf_vaddf(&sb, fmt, ap);
        va_end(ap);
        if (f->path[0]) /* a path of 4096 bytes is no message */
                return op_fail(f->e, r, "layer %zu, entry '%.200s%s': %s", f->layer, f->path,
                               strlen(f->path) > 200 ? "..." : "", sb.buf);
        if (f->layer)
                return op_fail(f->e, r, "layer %zu (%s): %s", f->layer, f->shown[f->layer - 1], sb.buf);
        return op_fail(f->e, r, "%s", sb.buf);
}

bool flat_cancelled(const struct flat *f) {
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

struct node *flat_tree_lookup(const struct flat *f, const struct node *parent, const char *name, size_t len) {
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
struct node *flat_preorder_next(struct node *n, const struct node *top) {
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
int flat_norm_path(const char *raw, char out[PATH_BYTES + 1], const char **why) {
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

/* o->subtree and o->without on a normalised path (rebased in place): true
 * when it is not in the part of the tree taken. */
static bool below(const char *path, const char *dir, bool self) {
        size_t n = strlen(dir);
        return strncmp(path, dir, n) == 0 && (path[n] == '/' || (self && !path[n]));
}

static bool left_out(const struct flat *f, char *path) {
        const char *sub = f->o->subtree, *without = f->o->without;
        if (without && below(path, without, false))
                return true;
        if (!sub)
                return false;
        if (!below(path, sub, true))
                return true;
        size_t n = strlen(sub);
        memmove(path, path + n + (path[n] == '/'), strlen(path + n + (path[n] == '/')) + 1);
        return false;
}

void flat_set_raw_path(struct flat *f, const char *raw) {
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
                struct node *n = flat_tree_lookup(f, dir, c, len);
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

int flat_entry_ft(struct archive_entry *e) {
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

static const uint16_t ft_mode[] = {
        [EXT2_FT_REG_FILE] = LINUX_S_IFREG, [EXT2_FT_DIR] = LINUX_S_IFDIR, [EXT2_FT_CHRDEV] = LINUX_S_IFCHR,
        [EXT2_FT_BLKDEV] = LINUX_S_IFBLK, [EXT2_FT_FIFO] = LINUX_S_IFIFO, [EXT2_FT_SOCK] = LINUX_S_IFSOCK,
        [EXT2_FT_SYMLINK] = LINUX_S_IFLNK,
};

int flat_entry_meta(struct flat *f, struct archive_entry *e, int ft, struct meta *m) {
        int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
        if (uid < 0 || uid > UINT32_MAX || gid < 0 || gid > UINT32_MAX)
                return flat_fail(f, -ERANGE, "owner %lld:%lld out of range", (long long) uid, (long long) gid);
        *m = (struct meta) { .mode = (uint16_t) (ft_mode[ft] | (archive_entry_perm(e) & 07777)),
                             .uid = (uint32_t) uid, .gid = (uint32_t) gid,
                             .mtime = archive_entry_mtime(e), .nsec = archive_entry_mtime_nsec(e) };
        if (m->nsec < 0 || m->nsec > 999999999)
                m->nsec = 0;
        /* extents address 32-bit logical blocks (a sparse file may claim any size) */
        if (ft == EXT2_FT_REG_FILE && (archive_entry_size(e) < 0 ||
                                       (uint64_t) archive_entry_size(e) > UINT64_C(0xffffffff) * BLOCK))
                return flat_fail(f, -EFBIG, "a file of %lld bytes: more than ext4 holds",
                                 (long long) archive_entry_size(e));
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
        struct node *old = flat_tree_lookup(f, parent, base, len);
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
        int r = flat_norm_path(raw, target, &why);
        if (r < 0)
                return flat_fail(f, -EPERM, "hard link target '%.200s' outside the image (%s)", raw, why);
        if (left_out(f, target))
                return flat_fail(f, -EPERM, "hard link target '%.200s' is outside the part of the tree taken", raw);
        if (!target[0])
                return flat_fail(f, -EPERM, "hard link to the root directory");
        r = walk_parent(f, target, false, &dir, &base);
        if (r < 0 && r != -ENOENT)
                return r;
        if (r == 0)
                n = flat_tree_lookup(f, dir, base, strlen(base));
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
        struct node *n = flat_tree_lookup(f, dir, name, strlen(name));
        if (n)
                prune_lower(f, n, true);
        return 0;
}

static int scan_entry(struct flat *f, struct archive_entry *e, uint32_t idx) {
        const char *raw = archive_entry_pathname(e), *why = NULL, *base, *hl = archive_entry_hardlink(e);
        struct node *parent;
        struct rec *link_to = NULL;
        struct meta m;
        int ft = flat_entry_ft(e), r = flat_norm_path(raw, f->path, &why);
        if (r < 0) {
                flat_set_raw_path(f, raw);
                return flat_fail(f, r, "%s", why);
        }
        if (left_out(f, f->path))
                return 0;
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
        if (!link_to && (r = flat_entry_meta(f, e, ft, &m)) < 0)
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

void flat_layer_close(struct layer_in *in) {
        archive_read_free(in->a);
        in->a = NULL;
        if (in->layer) /* opts.next: the flatten is done with it */
                in->f->o->next(in->f->o->ud, in->layer - 1, NULL);
        in->layer = 0;
        if (in->fd >= 0)
                close(in->fd);
        in->fd = -1;
}

/* libarchive's read callback for a tar that comes in pieces (opts.next). */
static la_ssize_t next_read(struct archive *a, void *ud, const void **buf) {
        struct layer_in *in = ud;
        struct flat *f = in->f;
        ssize_t n = f->o->next(f->o->ud, f->layer - 1, buf);
        if (n < 0) {
                f->again = n != -ECANCELED;
                f->follow_cancelled = n == -ECANCELED;
                archive_set_error(a, (int) -n, "its decompression stopped: %s", strerror((int) -n));
                return -1;
        }
        return n;
}

int flat_layer_open(struct flat *f, struct layer_in *in) {
        const char *path = f->layers[f->layer - 1];
        bool pieces = f->following;
        f->path[0] = '\0';
        in->fd = pieces ? -1 : open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (in->fd < 0 && !pieces)
                return flat_fail(f, -errno, "cannot open: %s", strerror(errno));
        in->a = archive_read_new();
        archive_read_support_filter_gzip(in->a);
        archive_read_support_filter_zstd(in->a);
        archive_read_support_format_tar(in->a);
        archive_read_support_format_empty(in->a); /* a layer of nothing (some builders write gzip of "") */
        int r = ARCHIVE_OK;
        if (pieces) {
                *in = (struct layer_in) { .a = in->a, .fd = -1, .f = f, .layer = f->layer };
                r = archive_read_open(in->a, in, NULL, next_read, NULL);
        } else {
                r = archive_read_open_fd(in->a, in->fd, 1 << 20);
        }
        if (r != ARCHIVE_OK) {
                int rc = flat_fail(f, -EBADMSG, "not a tar layer: %s", archive_error_string(in->a));
                flat_layer_close(in);
                return rc;
        }
        return 0;
}

/* The next header; 1 at the end of the layer. */
int flat_layer_next(struct flat *f, struct layer_in *in, uint32_t idx, struct archive_entry **ret) {
        if (flat_cancelled(f))
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

/* Early: what pass 2 would have read again of an entry with a new rec. */
static int early_entry(struct flat *f, struct archive *a, struct archive_entry *e, struct rec *r) {
        if (r->ft != EXT2_FT_DIR)
                return flat_early_inode(f, a, e, r);
        if (archive_entry_xattr_count(e) > 0)
                return 0; /* pass 2 reads it again */
        r->dmeta = arena_alloc(f, sizeof(*r->dmeta));
        return flat_entry_meta(f, e, EXT2_FT_DIR, r->dmeta);
}

static int scan_layer(struct flat *f) {
        struct layer_in in = { .fd = -1 };
        struct archive_entry *e;
        f->again = f->follow_cancelled = false; /* a read error libarchive let pass (past an earlier end) is gone */
        int r = flat_layer_open(f, &in);
        if (r == 0 && f->o->progress) /* done: the data written so far (early), else 0 */
                f->o->progress(f->o->ud, f->layer, f->n_layers, f->done, 0);
        for (uint32_t idx = 0; r == 0; idx++) {
                r = flat_layer_next(f, &in, idx, &e);
                if (r == 1) {
                        r = 0;
                        break;
                }
                if (r == 0 && ++f->headers > OCI_FLATTEN_MAX_ENTRIES)
                        r = flat_fail(f, -E2BIG, "more than %u entries", OCI_FLATTEN_MAX_ENTRIES);
                size_t had = f->n_recs;
                if (r == 0)
                        r = scan_entry(f, e, idx);
                if (r == 0 && f->following && f->n_recs > had)
                        r = early_entry(f, in.a, e, f->recs[f->n_recs - 1]);
                if (r == 0 && archive_read_data_skip(in.a) != ARCHIVE_OK)
                        r = flat_fail(f, -EBADMSG, "truncated: %s", archive_error_string(in.a));
        }
        flat_layer_close(&in);
        return r;
}

/* ---- sizing ----------------------------------------------------------------------- */

/* The content estimate: data, directory entries and blocks, inode tables. */
static int plan(struct flat *f) {
        struct node *lf = flat_tree_lookup(f, f->root, "lost+found", 10);
        f->path[0] = '\0';
        f->layer = 0;
        if (lf && lf->ft != EXT2_FT_DIR)
                return op_fail(f->e, -EINVAL, "'lost+found' in the image is %s: it must be a directory",
                               ft_name(lf->ft));
        for (struct node *n = f->root; n; n = flat_preorder_next(n, f->root)) {
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

static int image_size(struct flat *f, uint64_t *ret) {
        uint64_t size = f->o->size_bytes;
        if (size && size < f->content)
                return op_fail(f->e, -ENOSPC, "the image size (%llu MiB) is smaller than its content (%llu MiB)",
                               (unsigned long long) (size >> 20), (unsigned long long) ((f->content + MIB - 1) >> 20));
        if (!size) {
                size = f->content + f->content / 2;
                uint64_t floor = f->o->floor_bytes ? f->o->floor_bytes : FLOOR_BYTES;
                if (size < floor)
                        size = floor;
                size = (size + MIB - 1) / MIB * MIB;
        }
        *ret = size;
        return 0;
}

/* ---- the whole pass ---------------------------------------------------------------- */

int flat_tree_build(struct flat *f, uint64_t *ret_size) {
        int r = 0;
        f->mask = 1023;
        f->slots = xcalloc(f->mask + 1, sizeof(*f->slots));
        f->root = arena_alloc(f, sizeof(*f->root));
        f->root->ft = EXT2_FT_DIR;
        for (f->layer = 1; r == 0 && f->layer <= f->n_layers; f->layer++)
                r = scan_layer(f);
        if (r == 0)
                r = plan(f);
        if (r == 0)
                r = image_size(f, ret_size);
        return r;
}

void flat_tree_free(struct flat *f) {
        while (f->arena) {
                struct arena *prev = f->arena->prev;
                free(f->arena);
                f->arena = prev;
        }
        free(f->slots);
        free(f->recs);
}
