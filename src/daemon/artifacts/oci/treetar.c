/* SPDX-License-Identifier: MIT */
/* A Debian build's tree tar -> rootfs and work seed (artifacts.h). */
#include <unistd.h>

#include "artifacts/artifacts.h"
#include "flatten.h"

int oci_tree_tar_images(const char *tar, const char *rootfs, const char *seed, bool (*cancel)(void *ud), void *ud,
                        uint64_t *ret_rootfs_size, struct op_error *err) {
        const char *layers[] = { tar };
        struct oci_flatten_opts ro = { .without = "root", .cancel = cancel, .ud = ud };
        struct oci_flatten_opts so = { .subtree = "root", .floor_bytes = 32ULL << 20, .cancel = cancel, .ud = ud };
        struct oci_flatten_stats st;
        int r = oci_flatten(layers, 1, rootfs, &ro, &st, err);
        if (r < 0)
                return r;
        if ((r = oci_flatten(layers, 1, seed, &so, NULL, err)) < 0) {
                unlink(rootfs);
                return r;
        }
        *ret_rootfs_size = st.size_bytes;
        return 0;
}
