/* SPDX-License-Identifier: MIT */
#pragma once

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

#include <jansson.h>
#include <stdbool.h>

int nat_enable(const char *vm_id, const char *tap, const char *ip, const char *bridge, char **ret_err);
/* Idempotent: 0 also when there was nothing to remove. */
int nat_disable(const char *vm_id, char **ret_err);
/* Every VM, NAT or not: table `bridge banger`, chain prerouting: frames
 * from the VM's TAP carrying IPv4 or ARP with another source address are
 * dropped, so the address the inet rules key on is the VM's own. Same
 * comment identity. */
int antispoof_enable(const char *vm_id, const char *tap, const char *ip, char **ret_err);
int antispoof_disable(const char *vm_id, char **ret_err);
/* VM ids that have rules in the table (new reference: a JSON array). */
json_t *nat_vm_ids(void);
/* The table as nft prints it (for doctor and tests), or NULL. */
char *nat_table_text(void);
