/* SPDX-License-Identifier: MIT */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Append the result object of each method to buf[*pos..n); false if it did not fit. */
bool agent_health(char *buf, size_t n, size_t *pos);
bool agent_ports(char *buf, size_t n, size_t *pos);
bool agent_stats(char *buf, size_t n, size_t *pos);
/* True when something listens on TCP port 22 (IPv4 or IPv6). */
bool agent_sshd_listening(void);
