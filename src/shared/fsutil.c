/* SPDX-License-Identifier: MIT */
#include "fsutil.h"

#include <dirent.h>
#define _XOPEN_SOURCE_EXTENDED 1
#include <ftw.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"
#include "strbuf.h"

int mkdir_p(const char *path, mode_t mode) {
        _cleanup_free_ char *p = xstrdup(path);

        for (char *s = p + 1; *s; s++) {
                if (*s != '/')
                        continue;
                *s = '\0';
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *s = '/';
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

static int read_open(const char *path, int flags, size_t max, char **ret, size_t *ret_len) {
        /* O_NONBLOCK: a FIFO or a device must never block us; only regular
         * files are read */
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | flags);
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        struct stat st;
        char buf[8192];

        if (fd < 0)
                return errno == ELOOP && (flags & O_NOFOLLOW) ? -ELOOP : -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if (fcntl(fd, F_SETFL, 0) < 0)
                return -errno;
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                if (sb.len + (size_t) n > max)
                        return -EFBIG;
                strbuf_add(&sb, buf, (size_t) n);
        }
        *ret = strbuf_detach(&sb, ret_len);
        return 0;
}

int read_file(const char *path, size_t max, char **ret, size_t *ret_len) {
        return read_open(path, 0, max, ret, ret_len);
}

int read_file_nofollow(const char *path, size_t max, char **ret, size_t *ret_len) {
        return read_open(path, O_NOFOLLOW, max, ret, ret_len);
}

char *file_last_line(const char *path, size_t max_len) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
        struct stat st;
        char buf[8192];
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return NULL;
        off_t at = st.st_size > (off_t) sizeof(buf) ? st.st_size - (off_t) sizeof(buf) : 0;
        ssize_t n = pread(fd, buf, sizeof(buf), at);
        if (n <= 0)
                return NULL;
        size_t end = (size_t) n;
        while (end > 0 && (buf[end - 1] == '\n' || buf[end - 1] == '\r' || buf[end - 1] == ' '))
                end--;
        size_t start = end;
        while (start > 0 && buf[start - 1] != '\n')
                start--;
        if (start == end || (start == 0 && at > 0)) /* none, or longer than the window */
                return NULL;
        if (end - start > max_len)
                end = start + max_len;
        return str_defuse(xstrndup(buf + start, end - start), '?');
}

int write_all(int fd, const void *buf, size_t len) {
        const char *p = buf;

        while (len) {
                ssize_t n = write(fd, p, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode) {
        _cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", path, (int) getpid());
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        int r;

        if (fd < 0)
                return -errno;
        r = write_all(fd, data, len);
        if (r == 0 && fchmod(fd, mode) < 0)
                r = -errno;
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                unlink(tmp);
        return r;
}

int ensure_private_dir(const char *path, uid_t uid, bool create, char **ret_why) {
        struct stat st;

        if (lstat(path, &st) < 0) {
                if (errno != ENOENT || !create)
                        return -errno;
                if (mkdir(path, 0700) < 0 && errno != EEXIST)
                        return -errno;
                if (lstat(path, &st) < 0)
                        return -errno;
        }
        if (S_ISLNK(st.st_mode)) {
                *ret_why = xasprintf("%s is a symlink", path);
                return -EPERM;
        }
        if (!S_ISDIR(st.st_mode)) {
                *ret_why = xasprintf("%s is not a directory", path);
                return -EPERM;
        }
        if (st.st_uid != uid) {
                *ret_why = xasprintf("%s is owned by uid %u, not %u", path, (unsigned) st.st_uid, (unsigned) uid);
                return -EPERM;
        }
        if ((st.st_mode & 07777) != 0700) {
                *ret_why = xasprintf("%s has mode %04o, want 0700", path, (unsigned) (st.st_mode & 07777));
                return -EPERM;
        }
        return 0;
}

char *path_join(const char *a, const char *b) {
        size_t n = strlen(a);
        return xasprintf("%s%s%s", a, n && a[n - 1] == '/' ? "" : "/", b);
}

/* [*src, end) of in to *dst of out: copy_file_range, or read/write where
 * the kernel cannot (across filesystems on older kernels, some sandboxes). */
static int copy_range(int in, off_t *src, off_t end, int out, off_t *dst) {
        bool plain = false;
        while (*src < end) {
                if (!plain) {
                        ssize_t n = copy_file_range(in, src, out, dst, (size_t) (end - *src), 0);
                        if (n > 0)
                                continue;
                        if (n == 0)
                                return 0;
                        if (errno != EXDEV && errno != ENOSYS && errno != EOPNOTSUPP && errno != EINVAL)
                                return -errno;
                        plain = true;
                }
                char buf[65536];
                size_t want = end - *src < (off_t) sizeof(buf) ? (size_t) (end - *src) : sizeof(buf);
                ssize_t n = pread(in, buf, want, *src);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return n < 0 ? -errno : 0;
                for (ssize_t done = 0; done < n;) {
                        ssize_t w = pwrite(out, buf + done, (size_t) (n - done), *dst);
                        if (w < 0 && errno == EINTR)
                                continue;
                        if (w <= 0)
                                return w < 0 ? -errno : -EIO;
                        done += w;
                        *dst += w;
                }
                *src += n;
        }
        return 0;
}

bool path_below(const char *path, const char *dir) {
        size_t n = dir ? strlen(dir) : 0;
        return path && n && strncmp(path, dir, n) == 0 && (path[n] == '/' || path[n] == '\0');
}

int copy_file_sparse(const char *from, const char *to, mode_t mode) {
        _cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", to, (int) getpid());
        _cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC);
        _cleanup_close_ int out = -1;
        struct stat st;
        off_t data = 0, hole;
        int r = 0;

        if (in < 0 || fstat(in, &st) < 0)
                return -errno;
        out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
        if (out < 0)
                return -errno;
        while (data < st.st_size) {
                data = lseek(in, data, SEEK_DATA);
                if (data < 0) {
                        if (errno == ENXIO)
                                break; /* only a hole is left */
                        r = -errno;
                        break;
                }
                hole = lseek(in, data, SEEK_HOLE);
                if (hole < 0) {
                        r = -errno;
                        break;
                }
                off_t src = data, dst = data;
                if ((r = copy_range(in, &src, hole, out, &dst)) < 0)
                        break;
                data = hole;
        }
        if (r == 0 && ftruncate(out, st.st_size) < 0)
                r = -errno;
        if (r == 0 && fchmod(out, mode) < 0)
                r = -errno;
        if (r == 0 && fsync(out) < 0)
                r = -errno;
        if (r == 0 && rename(tmp, to) < 0)
                r = -errno;
        if (r < 0)
                unlink(tmp);
        return r;
}

static uint64_t dir_size_at(int dfd, dev_t dev, bool allocated, int depth) {
        DIR *d = fdopendir(dfd);
        struct dirent *de;
        uint64_t total = 0;

        if (!d) {
                close(dfd);
                return 0;
        }
        while ((de = readdir(d))) {
                struct stat st;
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_dev != dev)
                        continue;
                total += allocated ? (uint64_t) st.st_blocks * 512 : (uint64_t) st.st_size;
                if (S_ISDIR(st.st_mode) && depth < 256) {
                        int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
                        if (sub >= 0)
                                total += dir_size_at(sub, dev, allocated, depth + 1);
                }
        }
        closedir(d);
        return total;
}

uint64_t dir_size(const char *path, bool allocated) {
        struct stat st;
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);

        if (fd < 0 || fstat(fd, &st) < 0) {
                if (fd >= 0)
                        close(fd);
                return 0;
        }
        return dir_size_at(fd, st.st_dev, allocated, 0);
}

char *find_companion(const char *env, const char *name) {
        const char *e = env ? getenv(env) : NULL;
        char self[4096];
        char *p = NULL;
        ssize_t n;

        if (e && *e)
                return xstrdup(e);
        n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        if (n > 0) {
                self[n] = '\0';
                char *slash = strrchr(self, '/');
                if (slash) {
                        *slash = '\0';
                        const char *const subdirs[] = { "", "/../lib/banger" };
                        for (size_t i = 0; i < 2; i++) {
                                p = xasprintf("%s%s/%s", self, subdirs[i], name);
                                if (access(p, X_OK) == 0)
                                        return p;
                                free(p);
                        }
                }
        }
        /* PATH lookup (what find_executable does, without linking spawn here) */
        const char *path = getenv("PATH");
        for (const char *s = path ? path : "/usr/local/bin:/usr/bin:/bin"; *s;) {
                size_t len = strcspn(s, ":");
                p = xasprintf("%.*s/%s", (int) len, len ? s : ".", name);
                struct stat st;
                if (stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0)
                        return p;
                free(p);
                s += len + (s[len] == ':');
        }
        return NULL;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        (void) st;
        (void) ftw;
        if (type == FTW_DP)
                rmdir(path);
        else
                unlink(path);
        return 0;
}

int rm_rf(const char *path) {
        struct stat st;
        if (lstat(path, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return unlink(path) < 0 ? -errno : 0;
        return nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0 ? -errno : 0;
}
