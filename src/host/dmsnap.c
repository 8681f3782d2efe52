/* SPDX-License-Identifier: MIT */
#include "dmsnap.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libdevmapper.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "ids.h"
#include "strbuf.h"

#define LOOP_TRIES 8 /* another process may take the free loop we were given */

/* ---- pure ----------------------------------------------------------------- */

char *dmsnap_name(const char *vm_id) {
        return xasprintf(DMSNAP_PREFIX "%s", vm_id);
}

const char *dmsnap_name_vm_id(const char *name) {
        size_t l = strlen(DMSNAP_PREFIX);
        if (!name || strncmp(name, DMSNAP_PREFIX, l) != 0 || !is_hex_id(name + l, 8))
                return NULL;
        return name + l;
}

static bool majmin(const char *s) {
        unsigned a, b;
        char tail;
        return s && sscanf(s, "%u:%u%c", &a, &b, &tail) == 2 && strspn(s, "0123456789:") == strlen(s);
}

char *dmsnap_table(uint64_t origin_sectors, const char *origin_dev, const char *cow_dev) {
        if (origin_sectors == 0 || !majmin(origin_dev) || !majmin(cow_dev) || strcmp(origin_dev, cow_dev) == 0)
                return NULL;
        return xasprintf("%s %s P %d", origin_dev, cow_dev, DMSNAP_CHUNK_SECTORS);
}

/* ---- libdevmapper: one caller at a time, its last error kept ---------------- */

static pthread_mutex_t dm_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t dm_once = PTHREAD_ONCE_INIT;
static char dm_said[256]; /* guarded by dm_mu: libdevmapper's last error */

static void dm_capture(int level, const char *file, int line, int dm_errno_or_class, const char *f, ...)
        _printf_(5, 6);
static void dm_capture(int level, const char *file, int line, int dm_errno_or_class, const char *f, ...) {
        (void) file;
        (void) line;
        (void) dm_errno_or_class;
        if ((level & 7) > 3) /* _LOG_ERR and worse only */
                return;
        va_list ap;
        va_start(ap, f);
        vsnprintf(dm_said, sizeof(dm_said), f, ap);
        va_end(ap);
}

static void dm_setup(void) {
        dm_log_with_errno_init(dm_capture);
}

static void dm_lock(void) {
        pthread_once(&dm_once, dm_setup);
        pthread_mutex_lock(&dm_mu);
        dm_said[0] = '\0';
}

/* libdevmapper's control fd is not ours to keep (nor to leak into children). */
static void dm_unlock(void) {
        dm_lib_release();
        pthread_mutex_unlock(&dm_mu);
}

static const char *said(int err) {
        return dm_said[0] ? dm_said : strerror(err);
}

/* Before libdevmapper is asked anything: as root it would make a missing
 * /dev/mapper/control itself, which is not ours to add to a host's /dev. */
static int control_check(struct op_error *e) {
        int fd = open("/dev/mapper/control", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return op_fail(e, errno == ENOENT ? -EOPNOTSUPP : -errno,
                               "device-mapper is not usable here: /dev/mapper/control: %s", strerror(errno));
        close(fd);
        return 0;
}

bool dmsnap_available(void) {
        if (control_check(NULL) < 0)
                return false;
        char version[64];
        dm_lock();
        bool ok = dm_driver_version(version, sizeof(version)) != 0;
        dm_unlock();
        return ok;
}

/* ---- loops ----------------------------------------------------------------------- */

/* A free loop bound to file_fd with autoclear: *ret_fd keeps it until the
 * DM device holds it; closing it (the only opener) detaches it. */
static int loop_attach(int file_fd, bool read_only, int *ret_fd, char ret_dev[32], struct op_error *e) {
        _cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
        if (ctl < 0)
                return op_fail(e, -errno, "/dev/loop-control: %s", strerror(errno));
        for (int tries = 0; tries < LOOP_TRIES; tries++) {
                int n = ioctl(ctl, LOOP_CTL_GET_FREE);
                if (n < 0)
                        return op_fail(e, -errno, "no free loop device: %s", strerror(errno));
                char path[32];
                snprintf(path, sizeof(path), "/dev/loop%d", n);
                _cleanup_close_ int fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
                if (fd < 0)
                        return op_fail(e, -errno, "%s: %s", path, strerror(errno));
                struct loop_config c = { .fd = (uint32_t) file_fd };
                c.info.lo_flags = LO_FLAGS_AUTOCLEAR | (read_only ? LO_FLAGS_READ_ONLY : 0);
                if (ioctl(fd, LOOP_CONFIGURE, &c) < 0) {
                        if (errno == EBUSY)
                                continue; /* taken meanwhile: another */
                        return op_fail(e, -errno, "%s: LOOP_CONFIGURE: %s", path, strerror(errno));
                }
                struct stat st;
                if (fstat(fd, &st) < 0 || !S_ISBLK(st.st_mode))
                        return op_fail(e, -EIO, "%s is not a block device", path);
                snprintf(ret_dev, 32, "%u:%u", major(st.st_rdev), minor(st.st_rdev));
                *ret_fd = TAKE_FD(fd);
                return 0;
        }
        return op_fail(e, -EBUSY, "no free loop device after %d tries", LOOP_TRIES);
}

/* ---- the device ---------------------------------------------------------------------- */

/* dm_lock held. 1 exists (*ret its info), 0 not, <0 error. */
static int dm_info_of(const char *name, struct dm_info *ret, struct op_error *e) {
        struct dm_task *t = dm_task_create(DM_DEVICE_INFO);
        if (!t)
                return op_fail(e, -ENOMEM, "device-mapper: no task");
        int r = dm_task_set_name(t, name) && dm_task_run(t) && dm_task_get_info(t, ret) ? (ret->exists ? 1 : 0)
                                                                                      : -EIO;
        if (r < 0)
                op_fail(e, -EIO, "device-mapper: info of %s: %s", name, said(EIO));
        dm_task_destroy(t);
        return r;
}

/* dm_lock held: DM_DEVICE_CREATE (load and resume) or DM_DEVICE_REMOVE,
 * waiting for udev (or libdevmapper's own node handling without it). */
static int dm_run(int type, const char *name, const char *table, uint64_t sectors, uid_t uid, gid_t gid,
                  struct dm_info *ret, struct op_error *e) {
        struct dm_task *t = dm_task_create(type);
        uint32_t cookie = 0;
        if (!t)
                return op_fail(e, -ENOMEM, "device-mapper: no task");
        bool ok = dm_task_set_name(t, name);
        if (ok && table)
                ok = dm_task_add_target(t, 0, sectors, "snapshot", table) && dm_task_set_uid(t, uid) &&
                     dm_task_set_gid(t, gid) && dm_task_set_mode(t, 0600);
        if (ok && type == DM_DEVICE_REMOVE)
                ok = dm_task_retry_remove(t); /* a udev scan may hold it a moment */
        bool waited_for = ok && dm_task_set_cookie(t, &cookie, 0);
        int err = 0;
        if (waited_for && !dm_task_run(t))
                err = dm_task_get_errno(t) > 0 ? dm_task_get_errno(t) : EIO;
        else if (!waited_for)
                err = EIO;
        /* also with cookie 0 (no udev): libdevmapper makes or removes the
         * node itself in here */
        if (waited_for)
                (void) dm_udev_wait(cookie);
        if (err == 0 && ret && !dm_task_get_info(t, ret))
                err = EIO;
        dm_task_destroy(t);
        if (err)
                return op_fail(e, -err, "device-mapper: %s %s: %s", type == DM_DEVICE_CREATE ? "creating" : "removing",
                               name, said(err));
        return 0;
}

/* The node udev (or libdevmapper) made: the device we made, given to uid.
 * Under udev /dev/mapper/<name> is a symlink to ../dm-N (root's /dev, so
 * followed): what counts is that the device opened is the one made. */
static int own_node(const char *path, const struct dm_info *info, uid_t uid, gid_t gid, struct op_error *e) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0)
                return op_fail(e, -errno, "%s: %s", path, strerror(errno));
        if (!S_ISBLK(st.st_mode) || st.st_rdev != makedev((unsigned) info->major, (unsigned) info->minor))
                return op_fail(e, -EIO, "%s is not the device just made (%u:%u)", path, (unsigned) info->major,
                               (unsigned) info->minor);
        if (fchown(fd, uid, gid) < 0 || fchmod(fd, 0600) < 0)
                return op_fail(e, -errno, "%s: %s", path, strerror(errno));
        return 0;
}

static int create_locked(const char *name, int origin_fd, int cow_fd, uid_t uid, gid_t gid, char **ret_dev,
                         struct op_error *e) {
        _cleanup_close_ int oloop = -1, cloop = -1; /* autoclear: closing them undoes them */
        char odev[32], cdev[32];
        uint64_t bytes = 0;
        struct dm_info info;
        int r = dm_info_of(name, &info, e);
        if (r > 0)
                return op_fail(e, -EEXIST, "device-mapper: %s exists", name);
        if (r < 0 || (r = loop_attach(origin_fd, true, &oloop, odev, e)) < 0 ||
            (r = loop_attach(cow_fd, false, &cloop, cdev, e)) < 0)
                return r;
        if (ioctl(oloop, BLKGETSIZE64, &bytes) < 0 || bytes < 512)
                return op_fail(e, -EIO, "the origin loop has no size");
        _cleanup_free_ char *table = dmsnap_table(bytes >> 9, odev, cdev);
        if (!table)
                return op_fail(e, -EINVAL, "no snapshot table for %s and %s", odev, cdev);
        if ((r = dm_run(DM_DEVICE_CREATE, name, table, bytes >> 9, uid, gid, &info, e)) < 0)
                return r;
        _cleanup_free_ char *path = xasprintf("%s/%s", dm_dir(), name);
        if ((r = own_node(path, &info, uid, gid, e)) < 0) {
                (void) dm_run(DM_DEVICE_REMOVE, name, NULL, 0, 0, 0, NULL, NULL);
                return r;
        }
        *ret_dev = TAKE_PTR(path);
        return 0; /* our loop fds close: the device holds them now */
}

int dmsnap_create(const char *vm_id, int origin_fd, int cow_fd, uid_t uid, gid_t gid, char **ret_dev,
                  struct op_error *e) {
        _cleanup_free_ char *name = dmsnap_name(vm_id);
        int r = control_check(e);
        if (r < 0)
                return r;
        dm_lock();
        r = create_locked(name, origin_fd, cow_fd, uid, gid, ret_dev, e);
        dm_unlock();
        return r;
}

int dmsnap_remove(const char *vm_id, struct op_error *e) {
        _cleanup_free_ char *name = dmsnap_name(vm_id);
        struct dm_info info;
        int r = control_check(NULL);
        if (r == -EOPNOTSUPP) /* no device-mapper at all: no device either */
                return 0;
        if (r < 0)
                return control_check(e);
        dm_lock();
        r = dm_info_of(name, &info, e);
        if (r > 0)
                r = dm_run(DM_DEVICE_REMOVE, name, NULL, 0, 0, 0, NULL, e);
        dm_unlock();
        return r < 0 ? r : 0; /* its loops (autoclear) go with it */
}

int dmsnap_list(char ***ret_vm_ids, struct op_error *e) {
        int r = control_check(e);
        if (r < 0)
                return r;
        dm_lock();
        struct dm_task *t = dm_task_create(DM_DEVICE_LIST);
        struct dm_names *n = t && dm_task_run(t) ? dm_task_get_names(t) : NULL;
        if (!n) {
                r = op_fail(e, -EIO, "device-mapper: listing devices: %s", said(EIO));
                if (t)
                        dm_task_destroy(t);
                dm_unlock();
                return r;
        }
        size_t k = 0, cap = 8;
        char **ids = xcalloc(cap + 1, sizeof(char *));
        for (bool more = n->dev != 0; more; n = (struct dm_names *) ((char *) n + n->next)) {
                const char *id = dmsnap_name_vm_id(n->name);
                if (id && k == cap) {
                        ids = xrealloc(ids, (2 * cap + 1) * sizeof(char *));
                        cap *= 2;
                }
                if (id)
                        ids[k++] = xstrdup(id);
                ids[k] = NULL;
                more = n->next != 0;
        }
        dm_task_destroy(t);
        dm_unlock();
        *ret_vm_ids = ids;
        return 0;
}
