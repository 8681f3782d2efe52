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
/*
 * The guard, every VM, NAT or not. Same comment identity; the chains are
 * created when missing and left in place (empty) when the last VM goes.
 *
 *   bridge banger  prerouting (filter, -200), per VM, frames from its TAP:
 *                    ether saddr != <mac> drop
 *                    ether type != { ip, arp } drop          (no IPv6 at all)
 *                    ip saddr != <ip> drop
 *                    arp saddr ip != <ip> drop
 *                    arp saddr ether != <mac> drop
 *                  postrouting (filter, -200), frames to its TAP:
 *                    ether daddr != <mac> ether daddr & 01:.. == 00:.. drop
 *                    (unicast for another MAC, flooded by the bridge)
 *                  forward (filter, -200), isolated VMs only:
 *                    iifname <tap> drop; oifname <tap> drop
 *   inet banger    input (filter, 0): guest -> host, any host address:
 *                    iifname <bridge> ip saddr <ip> ct state new,invalid,untracked drop
 *                  isolate (filter, forward, 0), isolated VMs only, routed
 *                  bridge -> bridge (hairpin through the host):
 *                    iifname <bridge> oifname <bridge> ip saddr|daddr <ip> drop
 *
 * Guest to guest on the bridge is allowed unless one of them is isolated.
 * The inet rules key on the guest's IPv4 source address, which the bridge
 * rules make the VM's own. nft_nat_disable never touches the guard's
 * chains, nor nft_guard_disable NAT's.
 */
struct nft_guard {
        const char *vm_id, *tap, *ip, *mac; /* checked by the caller (hostops) */
        const char *bridge;
        bool isolate;
};
_warn_unused_ int nft_guard_enable(const struct nft_guard *g, struct op_error *e);
/* Idempotent: 0 also when there was nothing to remove. */
int nft_guard_disable(const char *vm_id, struct op_error *e);
