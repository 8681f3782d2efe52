/* SPDX-License-Identifier: MIT */
#include "disk/workdisk.h"

#include <errno.h>
#include <pthread.h>
#include <ext2fs/ext2fs.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "macro.h"
#include "proc_spawn.h"
#include "strbuf.h"

static int run(char *const argv[], struct op_error *err) {
        /* e2fsck: 1 means "errors corrected", which is fine here */
        int max_ok = strcmp(argv[0], "e2fsck") == 0 ? 1 : 0;
        _cleanup_free_ char *msg = NULL;
        return op_take_msg(err, spawn_run_checked(argv, 10 * 60 * 1000, max_ok, "apt-get install e2fsprogs", &msg), &msg);
}

int workdisk_grow(const char *path, uint64_t size_bytes, struct op_error *err) {
        struct stat st;
        char size_arg[32];

        if (stat(path, &st) < 0) {
                return op_fail(err, -errno, "%s: %s", path, strerror(errno));
        }
        if ((uint64_t) st.st_size > size_bytes) {
                return op_fail(err, -EINVAL, "shrinking the work disk is not supported (%llu MiB now, %llu MiB asked)",
                                     (unsigned long long) (st.st_size >> 20), (unsigned long long) (size_bytes >> 20));
        }
        if ((uint64_t) st.st_size == size_bytes)
                return 0;
        if (truncate(path, (off_t) size_bytes) < 0) {
                return op_fail(err, -errno, "cannot grow %s: %s", path, strerror(errno));
        }
        /* resize2fs wants a freshly checked filesystem */
        char *fsck[] = { (char *) "e2fsck", (char *) "-fy", (char *) path, NULL };
        snprintf(size_arg, sizeof(size_arg), "%lluK", (unsigned long long) (size_bytes >> 10));
        char *resize[] = { (char *) "resize2fs", (char *) path, size_arg, NULL };
        int r = run(fsck, err);
        return r < 0 ? r : run(resize, err);
}

int workdisk_create(const char *path, uint64_t size_bytes, const char *seed, struct op_error *err) {
        int r;

        if (seed) {
                struct stat st;
                if (stat(seed, &st) < 0) {
                        return op_fail(err, -errno, "work seed %s: %s", seed, strerror(errno));
                }
                if ((uint64_t) st.st_size > size_bytes) {
                        return op_fail(err, -EINVAL, "the disk size (%llu MiB) is smaller than the image's work seed (%llu MiB)",
                                             (unsigned long long) (size_bytes >> 20),
                                             (unsigned long long) (st.st_size >> 20));
                }
                r = copy_file_sparse(seed, path, 0600);
                if (r < 0) {
                        return op_fail(err, r, "copying the work seed: %s", strerror(-r));
                }
                r = workdisk_grow(path, size_bytes, err);
        } else {
                _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0 || ftruncate(fd, (off_t) size_bytes) < 0) {
                        return op_fail(err, -errno, "cannot create %s: %s", path, strerror(errno));
                }
                char *mkfs[] = { (char *) "mkfs.ext4", (char *) "-q", (char *) "-F", (char *) "-L", (char *) "banger-work",
                                 (char *) "-E", (char *) "root_owner=0:0", (char *) "-m", (char *) "0", (char *) path,
                                 NULL };
                r = run(mkfs, err);
        }
        if (r < 0)
                unlink(path);
        return r;
}

static void ext2_error_table_once(void) {
        initialize_ext2_error_table();
}

void ext2_errors_init(void) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, ext2_error_table_once);
}

static int fail(struct op_error *err, errcode_t e, const char *what, const char *path) {
        ext2_errors_init();
        return op_fail(err, -EIO, "%s %s: %s", what, path, error_message(e));
}

/* Links name -> ino in dir, growing the directory when it is full. */
static errcode_t link_in(ext2_filsys fs, ext2_ino_t dir, const char *name, ext2_ino_t ino, int type) {
        errcode_t e = ext2fs_link(fs, dir, name, ino, type);
        if (e == EXT2_ET_DIR_NO_SPACE) {
                e = ext2fs_expand_dir(fs, dir);
                if (!e)
                        e = ext2fs_link(fs, dir, name, ino, type);
        }
        return e;
}

static errcode_t set_owner(ext2_filsys fs, ext2_ino_t ino, unsigned mode_bits, unsigned type, uid_t uid, gid_t gid) {
        struct ext2_inode inode;
        errcode_t e = ext2fs_read_inode(fs, ino, &inode);
        if (e)
                return e;
        inode.i_mode = (uint16_t) (type | (mode_bits & 07777));
        inode.i_uid = (uint16_t) uid;
        ext2fs_set_i_uid_high(inode, uid >> 16);
        inode.i_gid = (uint16_t) gid;
        ext2fs_set_i_gid_high(inode, gid >> 16);
        inode.i_mtime = inode.i_ctime = (uint32_t) time(NULL);
        return ext2fs_write_inode(fs, ino, &inode);
}

static errcode_t new_file(ext2_filsys fs, ext2_ino_t dir, const char *name, ext2_ino_t *ret) {
        struct ext2_inode inode;
        ext2_ino_t ino;
        errcode_t e = ext2fs_new_inode(fs, dir, LINUX_S_IFREG | 0600, NULL, &ino);
        if (e)
                return e;
        e = link_in(fs, dir, name, ino, EXT2_FT_REG_FILE);
        if (e)
                return e;
        ext2fs_inode_alloc_stats2(fs, ino, +1, 0);
        memset(&inode, 0, sizeof(inode));
        inode.i_mode = LINUX_S_IFREG | 0600;
        inode.i_links_count = 1;
        inode.i_atime = inode.i_ctime = inode.i_mtime = (uint32_t) time(NULL);
        if (ext2fs_has_feature_extents(fs->super)) {
                /* an empty extent tree in the inode, as create_inode.c does */
                ext2_extent_handle_t h;
                e = ext2fs_extent_open2(fs, ino, &inode, &h);
                if (e)
                        return e;
                ext2fs_extent_free(h);
        }
        e = ext2fs_write_new_inode(fs, ino, &inode);
        if (!e)
                *ret = ino;
        return e;
}

/* The directory one component down from dir, made (0700, uid:gid) when missing. */
static errcode_t subdir_mode(ext2_filsys fs, ext2_ino_t dir, const char *comp, unsigned mode, uid_t uid, gid_t gid,
                             ext2_ino_t *ret) {
        errcode_t e = ext2fs_lookup(fs, dir, comp, (int) strlen(comp), NULL, ret);
        if (!e) { /* a symlink or a file where a directory should be is never walked through */
                struct ext2_inode inode;
                e = ext2fs_read_inode(fs, *ret, &inode);
                return e ? e : LINUX_S_ISDIR(inode.i_mode) ? 0 : EXT2_ET_NO_DIRECTORY;
        }
        if (e != EXT2_ET_FILE_NOT_FOUND)
                return e;
        e = ext2fs_mkdir(fs, dir, 0, comp);
        if (e == EXT2_ET_DIR_NO_SPACE && !(e = ext2fs_expand_dir(fs, dir)))
                e = ext2fs_mkdir(fs, dir, 0, comp);
        if (!e)
                e = ext2fs_lookup(fs, dir, comp, (int) strlen(comp), NULL, ret);
        if (!e)
                e = set_owner(fs, *ret, mode, LINUX_S_IFDIR, uid, gid);
        return e;
}

static errcode_t subdir(ext2_filsys fs, ext2_ino_t dir, const char *comp, uid_t uid, gid_t gid, ext2_ino_t *ret) {
        return subdir_mode(fs, dir, comp, 0700, uid, gid, ret);
}

/* The parent directories of fs_path (made as needed): the last one's inode,
 * and the file name inside it. */
static int walk_dirs(ext2_filsys fs, const char *fs_path, char *p, uid_t uid, gid_t gid, ext2_ino_t *ret_dir,
                     char **ret_name, struct op_error *err) {
        ext2_ino_t dir = EXT2_ROOT_INO;
        char *save = NULL, *comp = strtok_r(p + 1, "/", &save);
        for (char *next; comp && (next = strtok_r(NULL, "/", &save)); comp = next) {
                if (strcmp(comp, "..") == 0 || strcmp(comp, ".") == 0)
                        return op_fail(err, -EINVAL, "invalid path '%s'", fs_path);
                errcode_t e = subdir(fs, dir, comp, uid, gid, &dir);
                if (e)
                        return fail(err, e, "making the directory for", fs_path);
        }
        if (!comp)
                return op_fail(err, -EINVAL, "invalid path '%s'", fs_path);
        *ret_dir = dir;
        *ret_name = comp;
        return 0;
}

/* The regular file name in dir: found, or made. */
static int file_inode(ext2_filsys fs, ext2_ino_t dir, const char *name, const char *fs_path, ext2_ino_t *ret,
                      struct op_error *err) {
        struct ext2_inode inode;
        errcode_t e = ext2fs_lookup(fs, dir, name, (int) strlen(name), NULL, ret);
        if (e == EXT2_ET_FILE_NOT_FOUND)
                e = new_file(fs, dir, name, ret);
        else if (!e && !(e = ext2fs_read_inode(fs, *ret, &inode)) && !LINUX_S_ISREG(inode.i_mode))
                return op_fail(err, -EEXIST, "%s exists on the work disk and is not a regular file", fs_path);
        return e ? fail(err, e, "creating", fs_path) : 0;
}

static errcode_t write_contents(ext2_filsys fs, ext2_ino_t ino, const void *data, size_t len) {
        ext2_file_t file = NULL;
        unsigned written = 0;
        errcode_t e = ext2fs_file_open(fs, ino, EXT2_FILE_WRITE, &file);
        if (!e)
                e = ext2fs_file_set_size2(file, 0); /* replace, do not append */
        if (!e && len)
                e = ext2fs_file_write(file, data, (unsigned) len, &written);
        if (!e && written != len)
                e = EXT2_ET_SHORT_READ;
        if (file) {
                errcode_t e2 = ext2fs_file_close(file);
                if (!e)
                        e = e2;
        }
        return e;
}

int workdisk_write_file(const char *image, const char *fs_path, const void *data, size_t len, mode_t mode,
                        uid_t uid, gid_t gid, struct op_error *err) {
        ext2_filsys fs = NULL;
        ext2_ino_t dir = EXT2_ROOT_INO, ino = 0;
        _cleanup_free_ char *p = xstrdup(fs_path);
        char *name = NULL;
        errcode_t e;
        int r;

        if (fs_path[0] != '/' || strstr(fs_path, "/../") || strstr(fs_path, "/./") || fs_path[strlen(fs_path) - 1] == '/')
                return op_fail(err, -EINVAL, "invalid path '%s' on the work disk", fs_path);
        e = ext2fs_open(image, EXT2_FLAG_RW | EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs);
        if (e)
                return fail(err, e, "opening", image);
        if ((e = ext2fs_read_bitmaps(fs)))
                r = fail(err, e, "reading bitmaps of", image);
        else if ((r = walk_dirs(fs, fs_path, p, uid, gid, &dir, &name, err)) == 0 &&
                 (r = file_inode(fs, dir, name, fs_path, &ino, err)) == 0) {
                e = write_contents(fs, ino, data, len);
                if (!e)
                        e = set_owner(fs, ino, mode, LINUX_S_IFREG, uid, gid);
                if (e)
                        r = fail(err, e, "writing", fs_path);
        }
        e = ext2fs_close_free(&fs);
        if (e && r == 0)
                r = fail(err, e, "closing", image);
        return r;
}

/* ---- many files in one session (a workspace before boot) ------------------------ */

#define WORKDISK_BUF (1u << 20)

struct workdisk {
        ext2_filsys fs;
        char *buf;           /* 1 MiB copy buffer */
        char *image;
        char *last_dir;      /* the parent of the last put, and its inode: files come grouped */
        ext2_ino_t last_ino;
        uint64_t bytes;
};

int workdisk_open(const char *image, struct workdisk **ret, struct op_error *err) {
        ext2_filsys fs = NULL;
        errcode_t e = ext2fs_open(image, EXT2_FLAG_RW | EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs);
        if (e)
                return fail(err, e, "opening", image);
        if ((e = ext2fs_read_bitmaps(fs))) {
                ext2fs_close_free(&fs);
                return fail(err, e, "reading bitmaps of", image);
        }
        struct workdisk *w = xcalloc(1, sizeof(*w));
        *w = (struct workdisk) { .fs = fs, .image = xstrdup(image), .buf = xmalloc(WORKDISK_BUF) };
        *ret = w;
        return 0;
}

int workdisk_close(struct workdisk *w, struct op_error *err) {
        if (!w)
                return 0;
        errcode_t e = ext2fs_close_free(&w->fs);
        int r = e ? fail(err, e, "closing", w->image) : 0;
        free(w->image);
        free(w->last_dir);
        free(w->buf);
        free(w);
        return r;
}

void workdisk_set_label(struct workdisk *w, const char *label) {
        memset(w->fs->super->s_volume_name, 0, sizeof(w->fs->super->s_volume_name));
        size_t n = strlen(label), max = sizeof(w->fs->super->s_volume_name);
        memcpy(w->fs->super->s_volume_name, label, n < max ? n : max);
        ext2fs_mark_super_dirty(w->fs);
}

int repodisk_create(const char *path, uint64_t size_bytes, struct op_error *err) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 || ftruncate(fd, (off_t) size_bytes) < 0) {
                int r = op_fail(err, -errno, "cannot create %s: %s", path, strerror(errno));
                if (fd >= 0)
                        unlink(path);
                return r;
        }
        return 0;
}

int repodisk_reset(const char *path, const char *label, struct op_error *err) {
        _cleanup_close_ int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0)
                return op_fail(err, -errno, "%s: %s", path, strerror(errno));
        if (!S_ISREG(st.st_mode) || st.st_size < (off_t) (64u << 20))
                return op_fail(err, -EINVAL, "%s is not a repo disk (a regular file of 64 MiB or more)", path);
        /* the same file (the VMM holds it open), every block given back:
         * nothing of the last workspace survives, and it reads as zeros */
        if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, st.st_size) < 0 &&
            (ftruncate(fd, 0) < 0 || ftruncate(fd, st.st_size) < 0))
                return op_fail(err, -errno, "cannot empty %s: %s", path, strerror(errno));
        /* lazy_journal_init: the journal's blocks read as zeros already; no
         * lost+found, which would show in the guest's `ls` and `git status` */
        char *mkfs[] = { (char *) "mkfs.ext4", (char *) "-q", (char *) "-F", (char *) "-L", (char *) label,
                         (char *) "-E", (char *) "root_owner=0:0,nodiscard,lazy_journal_init=1", (char *) "-m",
                         (char *) "0", (char *) path, NULL };
        char *rmlf[] = { (char *) "debugfs", (char *) "-w", (char *) "-R", (char *) "rmdir lost+found", (char *) path,
                         NULL };
        int r = run(mkfs, err);
        return r < 0 ? r : run(rmlf, err);
}

uint64_t workdisk_bytes(const struct workdisk *w) {
        return w->bytes;
}

/* The inode of directory dir_path (absolute), made 0755 root-owned where missing. */
static int dir_of(struct workdisk *w, const char *dir_path, uid_t uid, gid_t gid, ext2_ino_t *ret, struct op_error *err) {
        if (w->last_dir && strcmp(w->last_dir, dir_path) == 0) {
                *ret = w->last_ino;
                return 0;
        }
        _cleanup_free_ char *p = xstrdup(dir_path);
        ext2_ino_t dir = EXT2_ROOT_INO;
        char *save = NULL;
        for (char *comp = strtok_r(p, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
                if (strcmp(comp, "..") == 0 || strcmp(comp, ".") == 0)
                        return op_fail(err, -EINVAL, "invalid path '%s'", dir_path);
                errcode_t e = subdir_mode(w->fs, dir, comp, 0755, uid, gid, &dir);
                if (e)
                        return fail(err, e, "making the directory", dir_path);
        }
        free(w->last_dir);
        w->last_dir = xstrdup(dir_path);
        w->last_ino = dir;
        *ret = dir;
        return 0;
}

static errcode_t set_stat(ext2_filsys fs, ext2_ino_t ino, const struct stat *st, unsigned type, uid_t uid, gid_t gid) {
        struct ext2_inode inode;
        errcode_t e = ext2fs_read_inode(fs, ino, &inode);
        if (e)
                return e;
        inode.i_mode = (uint16_t) (type | (st->st_mode & 07777));
        inode.i_uid = (uint16_t) uid;
        ext2fs_set_i_uid_high(inode, uid >> 16);
        inode.i_gid = (uint16_t) gid;
        ext2fs_set_i_gid_high(inode, gid >> 16);
        inode.i_mtime = (uint32_t) st->st_mtime;
        inode.i_atime = inode.i_ctime = (uint32_t) time(NULL);
        return ext2fs_write_inode(fs, ino, &inode);
}

static errcode_t copy_contents(struct workdisk *w, ext2_ino_t ino, int fd, const char *src) {
        ext2_file_t file = NULL;
        errcode_t e = ext2fs_file_open(w->fs, ino, EXT2_FILE_WRITE, &file);
        ssize_t n = 0;
        if (!e)
                e = ext2fs_file_set_size2(file, 0); /* replace, never keep an old tail */
        while (!e && (n = read(fd, w->buf, WORKDISK_BUF)) > 0) {
                unsigned written = 0;
                e = ext2fs_file_write(file, w->buf, (unsigned) n, &written);
                if (!e && written != (unsigned) n)
                        e = EXT2_ET_SHORT_READ;
                w->bytes += written;
        }
        if (!e && n < 0)
                e = (errcode_t) errno;
        (void) src;
        if (file) {
                errcode_t e2 = ext2fs_file_close(file);
                if (!e)
                        e = e2;
        }
        return e;
}

int workdisk_put(struct workdisk *w, const char *fs_path, const char *src, uid_t uid, gid_t gid, struct op_error *err) {
        struct stat st;
        if (fs_path[0] != '/' || strstr(fs_path, "/../") || strstr(fs_path, "/./") || fs_path[strlen(fs_path) - 1] == '/')
                return op_fail(err, -EINVAL, "invalid path '%s' on the work disk", fs_path);
        if (lstat(src, &st) < 0)
                return op_fail(err, -errno, "%s: %s", src, strerror(errno));
        _cleanup_free_ char *parent = xstrdup(fs_path);
        char *slash = strrchr(parent, '/');
        const char *name = fs_path + (slash - parent) + 1;
        *slash = '\0';
        ext2_ino_t dir = EXT2_ROOT_INO, ino = 0;
        int r = dir_of(w, parent, 0, 0, &dir, err);
        if (r < 0)
                return r;
        errcode_t e;
        if (S_ISDIR(st.st_mode)) {
                if ((e = subdir_mode(w->fs, dir, name, st.st_mode & 07777, uid, gid, &ino)) ||
                    (e = set_stat(w->fs, ino, &st, LINUX_S_IFDIR, uid, gid)))
                        return fail(err, e, "making the directory", fs_path);
                return 0;
        }
        if (S_ISLNK(st.st_mode)) {
                char target[4096];
                ssize_t n = readlink(src, target, sizeof(target) - 1);
                if (n < 0)
                        return op_fail(err, -errno, "readlink %s: %s", src, strerror(errno));
                target[n] = '\0';
                e = ext2fs_symlink(w->fs, dir, 0, name, target);
                if (e == EXT2_ET_DIR_NO_SPACE && !(e = ext2fs_expand_dir(w->fs, dir)))
                        e = ext2fs_symlink(w->fs, dir, 0, name, target);
                return e ? fail(err, e, "making the symlink", fs_path) : 0;
        }
        if (!S_ISREG(st.st_mode))
                return 0; /* sockets, FIFOs and devices do not travel (as in the tar stream) */
        _cleanup_close_ int fd = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return op_fail(err, -errno, "%s: %s", src, strerror(errno));
        if ((r = file_inode(w->fs, dir, name, fs_path, &ino, err)) < 0)
                return r;
        if ((e = copy_contents(w, ino, fd, src)) || (e = set_stat(w->fs, ino, &st, LINUX_S_IFREG, uid, gid)))
                return fail(err, e, "writing", fs_path);
        return 0;
}

/* fs_path split into its parent's inode (made 0755 where missing) and its name. */
static int parent_of(struct workdisk *w, const char *fs_path, ext2_ino_t *ret_dir, const char **ret_name,
                     struct op_error *err) {
        if (fs_path[0] != '/' || !fs_path[1] || strstr(fs_path, "/../") || strstr(fs_path, "/./") ||
            fs_path[strlen(fs_path) - 1] == '/')
                return op_fail(err, -EINVAL, "invalid path '%s' in the image", fs_path);
        _cleanup_free_ char *parent = xstrdup(fs_path);
        char *slash = strrchr(parent, '/');
        *ret_name = fs_path + (slash - parent) + 1;
        slash[slash == parent ? 1 : 0] = '\0';
        return dir_of(w, parent, 0, 0, ret_dir, err);
}

int workdisk_mkdir(struct workdisk *w, const char *fs_path, mode_t mode, struct op_error *err) {
        ext2_ino_t dir, ino;
        const char *name;
        int r = parent_of(w, fs_path, &dir, &name, err);
        if (r < 0)
                return r;
        errcode_t e = subdir_mode(w->fs, dir, name, mode & 07777, 0, 0, &ino);
        return e ? fail(err, e, "making the directory", fs_path) : 0;
}

int workdisk_put_data(struct workdisk *w, const char *fs_path, const void *data, size_t len, mode_t mode,
                      struct op_error *err) {
        ext2_ino_t dir, ino;
        const char *name;
        int r = parent_of(w, fs_path, &dir, &name, err);
        if (r == 0)
                r = file_inode(w->fs, dir, name, fs_path, &ino, err);
        if (r < 0)
                return r;
        errcode_t e = write_contents(w->fs, ino, data, len);
        if (!e)
                e = set_owner(w->fs, ino, mode, LINUX_S_IFREG, 0, 0);
        if (e)
                return fail(err, e, "writing", fs_path);
        w->bytes += len;
        return 0;
}

int workdisk_read(struct workdisk *w, const char *fs_path, size_t max, char **ret, size_t *ret_len, struct op_error *err) {
        ext2_ino_t ino;
        struct ext2_inode inode;
        /* namei without following the last component: a symlink is no file */
        errcode_t e = ext2fs_namei(w->fs, EXT2_ROOT_INO, EXT2_ROOT_INO, fs_path, &ino);
        if (e)
                return op_fail(err, -ENOENT, "%s: not in the image", fs_path);
        if ((e = ext2fs_read_inode(w->fs, ino, &inode)))
                return fail(err, e, "reading", fs_path);
        uint64_t size = EXT2_I_SIZE(&inode);
        if (!LINUX_S_ISREG(inode.i_mode) || size > max)
                return op_fail(err, -EFBIG, "%s: not a regular file of at most %zu bytes", fs_path, max);
        ext2_file_t f = NULL;
        char *buf = xmalloc(size + 1);
        unsigned got = 0;
        if (!(e = ext2fs_file_open(w->fs, ino, 0, &f)))
                e = ext2fs_file_read(f, buf, (unsigned) size, &got);
        if (f)
                ext2fs_file_close(f);
        if (e || got != size) {
                free(buf);
                return fail(err, e ? e : EXT2_ET_SHORT_READ, "reading", fs_path);
        }
        buf[size] = '\0';
        *ret = buf;
        *ret_len = size;
        return 0;
}
