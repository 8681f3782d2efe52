/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Guest side (banger-init and banger-agent, libc only): the guest's network
 * over rtnetlink. All return 0 or -errno (the kernel's).
 */

/* lo up. */
int guestnet_lo_up(void);
/* iface (waited for, at most 3 s) up with ip_cidr ("a.b.c.d/N") and, when
 * gw is set, a default route through it. */
int guestnet_up(const char *iface, const char *ip_cidr, const char *gw);
/* The IPv4 address ip_cidr off iface (0 when it was not there). */
int guestnet_del_addr(const char *iface, const char *ip_cidr);
/* iface's MAC address ("aa:bb:cc:dd:ee:ff"). */
int guestnet_set_mac(const char *iface, const char *mac);
