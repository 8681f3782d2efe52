/* SPDX-License-Identifier: MIT */
#include "store.h"

/*
 * Forward-only. Never edit a migration that has shipped: add a new one.
 *
 * vms: durable intent only. Spec (vcpu, memory, disks, nat, isolate), identity (id,
 * name, guest_ip, mac), derived paths (vm_dir) and the workspace record.
 * Transient handles (pid, tap device) live in <vm_dir>/handles.json; the
 * teardown identity needed to clean up after a crash (tap name, nft handle)
 * is mirrored in `teardown_json` and cleared on stop.
 */
static const struct migration migrations[] = {
        { 1, "baseline",
          "CREATE TABLE kernels ("
          "  name TEXT PRIMARY KEY,"
          "  distro TEXT NOT NULL DEFAULT '',"
          "  arch TEXT NOT NULL DEFAULT 'x86_64',"
          "  kernel_version TEXT NOT NULL DEFAULT '',"
          "  dir TEXT NOT NULL,"
          "  source TEXT NOT NULL,"
          "  imported_at TEXT NOT NULL"
          ");"
          "CREATE TABLE images ("
          "  id TEXT PRIMARY KEY,"
          "  name TEXT NOT NULL UNIQUE,"
          "  managed INTEGER NOT NULL CHECK (managed IN (0, 1)),"
          "  rootfs_path TEXT NOT NULL,"
          "  work_seed_path TEXT,"
          "  kernel_name TEXT REFERENCES kernels(name) ON DELETE RESTRICT,"
          "  kernel_path TEXT,"
          "  initrd_path TEXT,"
          "  init_mode TEXT NOT NULL DEFAULT 'systemd' CHECK (init_mode IN ('systemd', 'fast')),"
          "  rootfs_size_bytes INTEGER NOT NULL DEFAULT 0,"
          "  source TEXT NOT NULL DEFAULT '',"
          "  created_at TEXT NOT NULL"
          ");"
          "CREATE TABLE vms ("
          "  id TEXT PRIMARY KEY,"
          "  name TEXT NOT NULL UNIQUE,"
          "  image_id TEXT NOT NULL REFERENCES images(id) ON DELETE RESTRICT,"
          "  state TEXT NOT NULL CHECK (state IN ('created', 'running', 'stopped', 'error')),"
          "  vcpu INTEGER NOT NULL CHECK (vcpu > 0),"
          "  memory_mib INTEGER NOT NULL CHECK (memory_mib > 0),"
          "  disk_size_bytes INTEGER NOT NULL,"
          "  system_overlay_size_bytes INTEGER NOT NULL,"
          "  nat INTEGER NOT NULL DEFAULT 0 CHECK (nat IN (0, 1)),"
          "  guest_ip TEXT UNIQUE,"
          "  mac TEXT UNIQUE,"
          "  vm_dir TEXT NOT NULL,"
          "  teardown_json TEXT,"
          "  workspace_json TEXT,"
          "  last_error TEXT,"
          "  created_at TEXT NOT NULL,"
          "  updated_at TEXT NOT NULL,"
          "  last_touched_at TEXT"
          ");"
          "CREATE INDEX vms_image ON vms(image_id);" },
        { 2, "operations",
          "CREATE TABLE operations ("
          "  id TEXT PRIMARY KEY,"
          "  kind TEXT NOT NULL,"
          "  target TEXT NOT NULL DEFAULT '',"
          "  state TEXT NOT NULL CHECK (state IN ('running', 'done', 'failed', 'cancelled')),"
          "  stage TEXT NOT NULL DEFAULT '',"
          "  error TEXT,"
          "  started_at TEXT NOT NULL,"
          "  finished_at TEXT"
          ");" },
        /* The lifecycle's transient states ('starting', 'stopping') are
         * recorded too, so a daemon that dies mid-operation reconciles them
         * on its next start. SQLite cannot alter a CHECK: rebuild. */
        { 3, "vm_states",
          "CREATE TABLE vms_new ("
          "  id TEXT PRIMARY KEY,"
          "  name TEXT NOT NULL UNIQUE,"
          "  image_id TEXT NOT NULL REFERENCES images(id) ON DELETE RESTRICT,"
          "  state TEXT NOT NULL CHECK (state IN ('created', 'starting', 'running', 'stopping', 'stopped', 'error')),"
          "  vcpu INTEGER NOT NULL CHECK (vcpu > 0),"
          "  memory_mib INTEGER NOT NULL CHECK (memory_mib > 0),"
          "  disk_size_bytes INTEGER NOT NULL,"
          "  system_overlay_size_bytes INTEGER NOT NULL,"
          "  nat INTEGER NOT NULL DEFAULT 0 CHECK (nat IN (0, 1)),"
          "  guest_ip TEXT UNIQUE,"
          "  mac TEXT UNIQUE,"
          "  vm_dir TEXT NOT NULL,"
          "  teardown_json TEXT,"
          "  workspace_json TEXT,"
          "  last_error TEXT,"
          "  created_at TEXT NOT NULL,"
          "  updated_at TEXT NOT NULL,"
          "  last_touched_at TEXT"
          ");"
          "INSERT INTO vms_new SELECT * FROM vms;"
          "DROP TABLE vms;"
          "ALTER TABLE vms_new RENAME TO vms;"
          "CREATE INDEX vms_image ON vms(image_id);" },
        /* `vm create|set --isolate`: no traffic between the VM and other guests. */
        { 4, "vm_isolate", "ALTER TABLE vms ADD COLUMN isolate INTEGER NOT NULL DEFAULT 0 CHECK (isolate IN (0, 1));" },
        /* `--publish` / `vm forward`: a host port relayed to a guest port. A
         * host (proto, address, port) belongs to one VM; the VM's delete
         * takes its forwards along. */
        { 5, "vm_forwards",
          "CREATE TABLE vm_forwards ("
          "  vm_id TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,"
          "  proto TEXT NOT NULL CHECK (proto IN ('tcp', 'udp')),"
          "  host_ip TEXT NOT NULL,"
          "  host_port INTEGER NOT NULL CHECK (host_port BETWEEN 1 AND 65535),"
          "  guest_port INTEGER NOT NULL CHECK (guest_port BETWEEN 1 AND 65535),"
          "  created_at TEXT NOT NULL,"
          "  PRIMARY KEY (proto, host_ip, host_port)"
          ");"
          "CREATE INDEX vm_forwards_vm ON vm_forwards(vm_id);" },
        /* `--net bridge|user`: a user-mode VM has no TAP, no bridge address
         * and no MAC of banger's (guest_ip and mac stay NULL). */
        { 6, "vm_net",
          "ALTER TABLE vms ADD COLUMN net TEXT NOT NULL DEFAULT 'bridge' CHECK (net IN ('bridge', 'user'));" },
        /* `vm create --vmm`: the backend a VM boots with is its own (its root
         * disk's format and its agent's transport depend on it). */
        { 7, "vm_vmm",
          "ALTER TABLE vms ADD COLUMN vmm TEXT NOT NULL DEFAULT 'qemu' CHECK (vmm IN ('qemu', 'firecracker'));" },
};

const struct migration *store_migrations(size_t *ret_n) {
        *ret_n = sizeof(migrations) / sizeof(migrations[0]);
        return migrations;
}
