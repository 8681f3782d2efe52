/* SPDX-License-Identifier: MIT */
#pragma once

/* Every RPC method name, defined once (docs/PROTOCOL.md documents each). */

#define RPC_METHOD_PING "ping"
#define RPC_METHOD_CONFIG_SHOW "config.show"
#define RPC_METHOD_DAEMON_OPERATIONS_LIST "daemon.operations.list"
#define RPC_METHOD_DAEMON_SHUTDOWN "daemon.shutdown"
