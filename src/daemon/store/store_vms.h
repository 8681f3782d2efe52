/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/* Rows of the vms table: durable intent (spec, identity, derived paths,
 * teardown mirror, workspace). All return 0 or -errno (-ENOENT missing,
 * -EEXIST a taken name/address, -ENOTUNIQ an ambiguous id prefix). */

#include <stdbool.h>
#include <stdint.h>

#include "portspec.h"
#include "store.h"

struct vm_row {
        char *id, *name, *image_id, *state;
        int64_t vcpu, memory_mib;
        int64_t disk_size_bytes, system_overlay_size_bytes;
        bool nat;
        bool isolate; /* no traffic with other guests (the guard's) */
        bool user_net; /* user-mode networking (no TAP; guest_ip and mac NULL) */
        bool firecracker; /* booted by Firecracker (raw root disk, hybrid vsock), else QEMU */
        char *guest_ip, *mac, *vm_dir;
        char *teardown_json;  /* what cleanup needs if handles.json is lost */
        char *workspace_json;
        char *last_error;
        char *created_at, *updated_at, *last_touched_at;
};

void vm_row_done(struct vm_row *r);
void vm_rows_free(struct vm_row *rows, size_t n);

_warn_unused_ int store_vm_insert(struct store *s, const struct vm_row *r);
/* Every column but id and created_at; updated_at is set to now. */
_warn_unused_ int store_vm_update(struct store *s, const struct vm_row *r);
_warn_unused_ int store_vm_set_state(struct store *s, const char *id, const char *state, const char *last_error);
_warn_unused_ int store_vm_set_teardown(struct store *s, const char *id, const char *teardown_json);
_warn_unused_ int store_vm_touch(struct store *s, const char *id);
_warn_unused_ int store_vm_set_workspace(struct store *s, const char *id, const char *workspace_json);
_warn_unused_ int store_vm_delete(struct store *s, const char *id);
/* By exact id, exact name, then unique id prefix. */
_warn_unused_ int store_vm_get(struct store *s, const char *ref, struct vm_row *ret);
_warn_unused_ int store_vm_list(struct store *s, struct vm_row **ret, size_t *ret_n);

/* Port forwards of VMs (vm_forwards). Insert: -EEXIST when that host
 * (proto, address, port) is any VM's already (*ret_owner then names it,
 * malloc'd, when asked). Delete: every forward of vm_id that matches the
 * key (any_ip / any_proto widen it); -ENOENT when none did. */
_warn_unused_ int store_forward_insert(struct store *s, const char *vm_id, const struct port_spec *f, char **ret_owner);
_warn_unused_ int store_forward_delete(struct store *s, const char *vm_id, const struct port_spec *key, bool any_ip,
                                       bool any_proto, struct port_spec **ret_gone, size_t *ret_n);
/* vm_id NULL: every VM's (ret_vm_ids then parallel to ret, malloc'd strings). */
_warn_unused_ int store_forward_list(struct store *s, const char *vm_id, struct port_spec **ret, char ***ret_vm_ids,
                                     size_t *ret_n);
