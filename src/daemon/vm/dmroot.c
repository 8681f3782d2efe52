/* SPDX-License-Identifier: MIT */
/*
 * A Firecracker VM's root disk as a device-mapper snapshot, where the priv
 * ops say device-mapper is usable: the VM owns a sparse COW file, root.cow
 * (its system overlay size), and each start makes banger-<id> over the
 * image's read-only rootfs with it; the VMM boots from the device. Stop,
 * kill, a failed start, the exit watcher, delete and reconcile remove the
 * device once the VMM is gone (vms_release_host); reconcile also removes
 * every banger-* device no running VM uses. Elsewhere, and for images
 * outside banger's own directories (the priv ops refuse those), the root
 * disk is the backend's copy, root.raw. A VM keeps the kind it was created
 * with: the file it has says which (vm_paths_init).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "ids.h"
#include "log.h"
#include "strbuf.h"
#include "vms_internal.h"

static bool dm_ops(const struct priv_ops *pv) {
        return pv->dm_available && pv->dm_snapshot_create && pv->dm_snapshot_remove && pv->dm_snapshot_list;
}

/* A new Firecracker VM gets a DM root: device-mapper usable, and the image
 * one of banger's own (the priv ops take no origin outside its dirs). */
static bool dm_root_wanted(struct vms *v, const struct vm_row *r, const char *rootfs) {
        const struct priv_ops *pv = v->deps.priv;
        const struct layout *l = v->deps.layout;
        if (!dm_ops(pv) || !pv->dm_available(pv->ud))
                return false;
        if (path_below(rootfs, l->state_dir) || path_below(rootfs, l->cache_dir))
                return true;
        log_info("vm %s: its image's rootfs %s is outside banger's directories: its root disk is a copy", r->name,
                 rootfs);
        return false;
}

/* The sparse COW file, size bytes (at least the origin's: the priv ops
 * refuse less). */
static int cow_create(struct vm_paths *p, uint64_t size, struct op_error *e) {
        free(p->overlay);
        p->overlay = path_join(p->dir, VM_ROOT_COW);
        p->dm_root = true;
        _cleanup_close_ int fd = open(p->overlay, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
                return op_fail(e, -errno, "cannot create %s: %s", p->overlay, strerror(errno));
        if (ftruncate(fd, (off_t) size) < 0) {
                int err = errno;
                unlink(p->overlay);
                return op_fail(e, -err, "%s: %s", p->overlay, strerror(err));
        }
        return 0;
}

int vms_root_disk_create(struct vms *v, const struct vm_row *r, struct vm_paths *p, const struct boot_files *bf,
                         struct op_error *e) {
        uint64_t size = (uint64_t) r->system_overlay_size_bytes;
        /* a persistent COW holds the chunks and their table (16 bytes per
         * 4 KiB chunk): never so small that rewriting the whole origin
         * would fill it (the kernel then drops the snapshot) */
        uint64_t need = bf->rootfs_size + bf->rootfs_size / 128 + (1u << 20);
        if (r->firecracker && dm_root_wanted(v, r, bf->rootfs))
                return cow_create(p, size > need ? size : need, e);
        return vms_vmm_by_name(v, r->firecracker ? "firecracker" : "qemu")
                ->backend->root_disk_create(p->overlay, bf->rootfs, size, e);
}

int vms_dm_root_attach(struct vms *v, const struct vm_row *r, const struct vm_paths *p, const char *rootfs,
                       char **ret_dev, struct op_error *e) {
        const struct priv_ops *pv = v->deps.priv;
        _cleanup_op_error_ struct op_error le = OP_ERROR_INIT;
        if (!dm_ops(pv))
                return op_fail(e, -EOPNOTSUPP,
                               "vm %s's root disk is a device-mapper snapshot (%s) and this daemon's privileged "
                               "operations have no device-mapper",
                               r->name, p->overlay);
        /* a device a crash left (the VM is not running: we hold its lock) */
        int rc = pv->dm_snapshot_remove(pv->ud, r->id, &le);
        if (rc < 0)
                return op_fail(e, rc, "root disk: removing the leftover device of vm %s: %s", r->name,
                               op_error_message(&le));
        rc = pv->dm_snapshot_create(pv->ud, r->id, rootfs, p->overlay, ret_dev, e);
        return rc < 0 ? op_prefix(e, "root disk (a device-mapper snapshot of %s)", rootfs) : 0;
}

void vms_dm_root_release(struct vms *v, const struct vm_row *r, const struct vm_paths *p) {
        const struct priv_ops *pv = v->deps.priv;
        struct vm_handles h;
        bool recorded = handle_get(v, r->id, &h) && h.dm[0];
        if ((!p->dm_root && !recorded) || !pv->dm_snapshot_remove)
                return;
        _cleanup_op_error_ struct op_error err = OP_ERROR_INIT;
        if (pv->dm_snapshot_remove(pv->ud, r->id, &err) < 0)
                log_warn("vm %s: removing its root disk's device banger-%s: %s (the next daemon start retries)",
                         r->name, r->id, op_error_message(&err));
}

void vms_dm_sweep(struct vms *v) {
        const struct priv_ops *pv = v->deps.priv;
        _cleanup_strv_free_ char **ids = NULL;
        _cleanup_op_error_ struct op_error err = OP_ERROR_INIT;
        if (!dm_ops(pv) || !pv->dm_available(pv->ud))
                return;
        if (pv->dm_snapshot_list(pv->ud, &ids, &err) < 0) {
                log_warn("reconcile: listing device-mapper devices: %s", op_error_message(&err));
                return;
        }
        for (char **id = ids; *id; id++) {
                if (!is_hex_id(*id, 8))
                        continue;
                struct vm_lock *l = vms_lock(v, *id);
                struct vm_handles h;
                if (!(handle_get(v, *id, &h) && h.pid > 0)) {
                        _cleanup_op_error_ struct op_error re = OP_ERROR_INIT;
                        if (pv->dm_snapshot_remove(pv->ud, *id, &re) < 0)
                                log_warn("reconcile: removing device banger-%s: %s", *id, op_error_message(&re));
                        else
                                log_info("reconcile: removed device banger-%s: no running VM uses it", *id);
                }
                vms_unlock(v, l);
        }
}
