/* SPDX-License-Identifier: MIT */
#include "artifacts/oci/blobcache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsutil.h"
#include "strbuf.h"

char *oci_blob_dir(const struct artifacts *a) {
        return xasprintf("%s/oci/blobs/sha256", a->layout->cache_dir);
}

/* Every blob (and any half-written one) goes; pulls in progress are waited for. */
int oci_cache_prune(struct artifacts *a, bool dry_run, json_t **ret, struct op_error *err) {
        _cleanup_free_ char *dir = oci_blob_dir(a);
        uint64_t bytes = 0, blobs = 0;
        pthread_rwlock_wrlock(&a->oci_cache_lock);
        _cleanup_(closedirp) DIR *d = opendir(dir);
        struct dirent *de;
        int rc = 0;
        while (d && (de = readdir(d))) {
                struct stat st;
                if (de->d_name[0] == '.' || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (!dry_run && unlinkat(dirfd(d), de->d_name, 0) < 0) {
                        rc = op_fail(err, -errno, "removing %s/%s: %s", dir, de->d_name, strerror(errno));
                        break;
                }
                bytes += (uint64_t) st.st_blocks * 512;
                blobs++;
        }
        pthread_rwlock_unlock(&a->oci_cache_lock);
        if (rc == 0)
                *ret = json_pack("{s:I, s:I, s:b, s:s}", "blobs", (json_int_t) blobs, "bytes", (json_int_t) bytes,
                                 "dry_run", dry_run, "dir", dir);
        return rc;
}
