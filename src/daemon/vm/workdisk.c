/* SPDX-License-Identifier: MIT */
#include "workdisk.h"

#include <errno.h>
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

static int run(char *const argv[], char **ret_err) {
        /* e2fsck: 1 means "errors corrected", which is fine here */
        int max_ok = strcmp(argv[0], "e2fsck") == 0 ? 1 : 0;
        return spawn_run_checked(argv, 10 * 60 * 1000, max_ok, "apt-get install e2fsprogs", ret_err);
}

int workdisk_grow(const char *path, uint64_t size_bytes, char **ret_err) {
        struct stat st;
        char size_arg[32];

        if (stat(path, &st) < 0) {
                *ret_err = xasprintf("%s: %s", path, strerror(errno));
                return -errno;
        }
        if ((uint64_t) st.st_size > size_bytes) {
                *ret_err = xasprintf("shrinking the work disk is not supported (%llu MiB now, %llu MiB asked)",
                                     (unsigned long long) (st.st_size >> 20), (unsigned long long) (size_bytes >> 20));
                return -EINVAL;
        }
        if ((uint64_t) st.st_size == size_bytes)
                return 0;
        if (truncate(path, (off_t) size_bytes) < 0) {
                *ret_err = xasprintf("cannot grow %s: %s", path, strerror(errno));
                return -errno;
        }
        /* resize2fs wants a freshly checked filesystem */
        char *fsck[] = { (char *) "e2fsck", (char *) "-fy", (char *) path, NULL };
        snprintf(size_arg, sizeof(size_arg), "%lluK", (unsigned long long) (size_bytes >> 10));
        char *resize[] = { (char *) "resize2fs", (char *) path, size_arg, NULL };
        int r = run(fsck, ret_err);
        return r < 0 ? r : run(resize, ret_err);
}

int workdisk_create(const char *path, uint64_t size_bytes, const char *seed, char **ret_err) {
        int r;

        if (seed) {
                struct stat st;
                if (stat(seed, &st) < 0) {
                        *ret_err = xasprintf("work seed %s: %s", seed, strerror(errno));
                        return -errno;
                }
                if ((uint64_t) st.st_size > size_bytes) {
                        *ret_err = xasprintf("the disk size (%llu MiB) is smaller than the image's work seed (%llu MiB)",
                                             (unsigned long long) (size_bytes >> 20),
                                             (unsigned long long) (st.st_size >> 20));
                        return -EINVAL;
                }
                r = copy_file_sparse(seed, path, 0600);
                if (r < 0) {
                        *ret_err = xasprintf("copying the work seed: %s", strerror(-r));
                        return r;
                }
                r = workdisk_grow(path, size_bytes, ret_err);
        } else {
                _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
                if (fd < 0 || ftruncate(fd, (off_t) size_bytes) < 0) {
                        *ret_err = xasprintf("cannot create %s: %s", path, strerror(errno));
                        return -errno;
                }
                char *mkfs[] = { (char *) "mkfs.ext4", (char *) "-q", (char *) "-F", (char *) "-L", (char *) "banger-work",
                                 (char *) "-E", (char *) "root_owner=0:0", (char *) "-m", (char *) "0", (char *) path,
                                 NULL };
                r = run(mkfs, ret_err);
        }
        if (r < 0)
                unlink(path);
        return r;
}

static int fail(char **ret_err, errcode_t e, const char *what, const char *path) {
        *ret_err = xasprintf("%s %s: %s", what, path, error_message(e));
        return -EIO;
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

int workdisk_write_file(const char *image, const char *fs_path, const void *data, size_t len, mode_t mode,
                        uid_t uid, gid_t gid, char **ret_err) {
        ext2_filsys fs = NULL;
        ext2_file_t file = NULL;
        ext2_ino_t dir = EXT2_ROOT_INO, ino = 0;
        _cleanup_free_ char *p = xstrdup(fs_path);
        errcode_t e;
        int r = 0;

        if (fs_path[0] != '/' || strstr(fs_path, "/../") || strstr(fs_path, "/./") || fs_path[strlen(fs_path) - 1] == '/') {
                *ret_err = xasprintf("invalid path '%s' on the work disk", fs_path);
                return -EINVAL;
        }
        e = ext2fs_open(image, EXT2_FLAG_RW | EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &fs);
        if (e)
                return fail(ret_err, e, "opening", image);
        e = ext2fs_read_bitmaps(fs);
        if (e) {
                r = fail(ret_err, e, "reading bitmaps of", image);
                goto out;
        }
        char *save = NULL, *comp = strtok_r(p + 1, "/", &save);
        while (comp) {
                char *next = strtok_r(NULL, "/", &save);
                if (!next)
                        break; /* comp is the file name */
                if (strcmp(comp, "..") == 0 || strcmp(comp, ".") == 0) {
                        r = -EINVAL;
                        *ret_err = xasprintf("invalid path '%s'", fs_path);
                        goto out;
                }
                ext2_ino_t child;
                e = ext2fs_lookup(fs, dir, comp, (int) strlen(comp), NULL, &child);
                if (e == EXT2_ET_FILE_NOT_FOUND) {
                        e = ext2fs_mkdir(fs, dir, 0, comp);
                        if (e == EXT2_ET_DIR_NO_SPACE && !(e = ext2fs_expand_dir(fs, dir)))
                                e = ext2fs_mkdir(fs, dir, 0, comp);
                        if (!e)
                                e = ext2fs_lookup(fs, dir, comp, (int) strlen(comp), NULL, &child);
                        if (!e)
                                e = set_owner(fs, child, 0700, LINUX_S_IFDIR, uid, gid);
                }
                if (e) {
                        r = fail(ret_err, e, "making the directory for", fs_path);
                        goto out;
                }
                dir = child;
                comp = next;
        }
        e = ext2fs_lookup(fs, dir, comp, (int) strlen(comp), NULL, &ino);
        if (e == EXT2_ET_FILE_NOT_FOUND)
                e = new_file(fs, dir, comp, &ino);
        else if (!e) {
                struct ext2_inode inode;
                if (!(e = ext2fs_read_inode(fs, ino, &inode)) && !LINUX_S_ISREG(inode.i_mode)) {
                        *ret_err = xasprintf("%s exists on the work disk and is not a regular file", fs_path);
                        r = -EEXIST;
                        goto out;
                }
        }
        if (e) {
                r = fail(ret_err, e, "creating", fs_path);
                goto out;
        }
        e = ext2fs_file_open(fs, ino, EXT2_FILE_WRITE, &file);
        if (!e)
                e = ext2fs_file_set_size2(file, 0); /* replace, do not append */
        unsigned written = 0;
        if (!e && len)
                e = ext2fs_file_write(file, data, (unsigned) len, &written);
        if (!e && written != len)
                e = EXT2_ET_SHORT_READ;
        if (file) {
                errcode_t e2 = ext2fs_file_close(file);
                if (!e)
                        e = e2;
        }
        if (!e)
                e = set_owner(fs, ino, mode, LINUX_S_IFREG, uid, gid);
        if (e)
                r = fail(ret_err, e, "writing", fs_path);
out:
        e = ext2fs_close_free(&fs);
        if (e && r == 0)
                r = fail(ret_err, e, "closing", image);
        return r;
}
