/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * Per-VM NAT in banger's own nftables table, `inet banger`, through
 * libnftables' JSON interface (structured commands built with jansson: no
 * command strings, no shell). Called only through the privileged seam.
 *
 *   chain postrouting (nat, srcnat):  ip saddr <vm ip> oifname != <bridge> masquerade
 *   chain forward (filter):           iifname <bridge> ip saddr <vm ip> accept
 *                                     oifname <bridge> ip daddr <vm ip> ct state established,related accept
 *                                     ... then one guard: iifname <bridge> oifname != <bridge> drop
 * (routed guest packets enter through the bridge, the TAP being one of its
 * ports, so the guest's address is what tells VMs apart here).
 * Every VM rule carries the comment "banger-vm:<id>": that is the teardown
 * identity (rules are found and deleted by it, so a crash cannot orphan
 * them). The guard keeps VMs without NAT off the uplink even when another
 * VM turned IP forwarding on.
 */

#include <stdbool.h>

struct op_error;

/* The VM's NAT rules (IP forwarding is hostops' ip_forward, not this). */
_warn_unused_ int nft_nat_enable(const char *vm_id, const char *ip, const char *bridge, struct op_error *e);
/* Idempotent: 0 also when there was nothing to remove. */
int nft_nat_disable(const char *vm_id, struct op_error *e);
/* Every VM, NAT or not: table `bridge banger`, chain prerouting: frames
 * from the VM's TAP carrying IPv4 or ARP with another source address are
 * dropped, so the address the inet rules key on is the VM's own. Same
 * comment identity. */
_warn_unused_ int nft_guard_enable(const char *vm_id, const char *tap, const char *ip, struct op_error *e);
int nft_guard_disable(const char *vm_id, struct op_error *e);
