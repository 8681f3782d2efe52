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
