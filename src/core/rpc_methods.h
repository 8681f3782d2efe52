/* SPDX-License-Identifier: MIT */
#pragma once

/* Every RPC method name, defined once (docs/PROTOCOL.md documents each). */

#define RPC_METHOD_PING "ping"
#define RPC_METHOD_CONFIG_SHOW "config.show"
#define RPC_METHOD_DAEMON_OPERATIONS_LIST "daemon.operations.list"
#define RPC_METHOD_DAEMON_SHUTDOWN "daemon.shutdown"

#define RPC_METHOD_KERNEL_LIST "kernel.list"
#define RPC_METHOD_KERNEL_SHOW "kernel.show"
#define RPC_METHOD_KERNEL_PULL "kernel.pull"
#define RPC_METHOD_KERNEL_IMPORT "kernel.import"
#define RPC_METHOD_KERNEL_DELETE "kernel.delete"

#define RPC_METHOD_IMAGE_LIST "image.list"
#define RPC_METHOD_IMAGE_SHOW "image.show"
#define RPC_METHOD_IMAGE_PULL "image.pull"
#define RPC_METHOD_IMAGE_REGISTER "image.register"
#define RPC_METHOD_IMAGE_PROMOTE "image.promote"
#define RPC_METHOD_IMAGE_DELETE "image.delete"
#define RPC_METHOD_IMAGE_EXPORT "image.export"
#define RPC_METHOD_IMAGE_CACHE_PRUNE "image.cache.prune"

#define RPC_METHOD_VM_CREATE_BEGIN "vm.create.begin"
#define RPC_METHOD_VM_CREATE_STATUS "vm.create.status"
#define RPC_METHOD_VM_CREATE_CANCEL "vm.create.cancel"
#define RPC_METHOD_VM_LIST "vm.list"
#define RPC_METHOD_VM_SHOW "vm.show"
#define RPC_METHOD_VM_START "vm.start"
#define RPC_METHOD_VM_STOP "vm.stop"
#define RPC_METHOD_VM_RESTART "vm.restart"
#define RPC_METHOD_VM_KILL "vm.kill"
#define RPC_METHOD_VM_DELETE "vm.delete"
#define RPC_METHOD_VM_SET "vm.set"
#define RPC_METHOD_VM_HEALTH "vm.health"
#define RPC_METHOD_VM_PORTS "vm.ports"
#define RPC_METHOD_VM_TOUCH "vm.touch"
#define RPC_METHOD_VM_EXEC "vm.exec" /* upgrades the connection to exec frames */
#define RPC_METHOD_WORKSPACE_PREPARE "workspace.prepare"
#define RPC_METHOD_WORKSPACE_EXPORT "workspace.export"
#define RPC_METHOD_VM_STATS "vm.stats"
#define RPC_METHOD_VM_SNAPSHOT "vm.snapshot"
#define RPC_METHOD_VM_RESTORE "vm.restore"
#define RPC_METHOD_VM_SNAPSHOT_LIST "vm.snapshot.list"
#define RPC_METHOD_VM_SNAPSHOT_DELETE "vm.snapshot.delete"
#define RPC_METHOD_TEMPLATE_LIST "template.list"
#define RPC_METHOD_TEMPLATE_RM "template.rm"
