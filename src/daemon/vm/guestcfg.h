/* SPDX-License-Identifier: MIT */
#pragma once

#include "macro.h"

/*
 * Per-VM guest configuration (docs/GUEST.md): the cpio that rides on the
 * per-kernel initramfs, the VM's own SSH host key, and banger's known_hosts,
 * written before the first boot so there is no trust-on-first-use window.
 */

#include <stddef.h>

#include "op_error.h"

/* The host's name inside a guest that can reach it (user-mode networking). */
#define GUEST_HOST_NAME "host.banger.internal"

struct guestcfg {
        const char *hostname;        /* a DNS label */
        const char *ip;              /* the guest's IPv4, or NULL */
        const char *dns;             /* resolv.conf nameserver */
        const char *host_key_dir;    /* holds ssh_host_ed25519_key(.pub) */
        const char *authorized_keys; /* contents for /root/.ssh/authorized_keys */
        const char *fstab;           /* contents for /etc/fstab, or NULL */
        const char *machine_id;      /* 32 hex digits for /etc/machine-id, or NULL: none written */
        const char *host_alias_ip;   /* the host as the guest reaches it (user-mode networking), named
                                      * GUEST_HOST_NAME in /etc/hosts; NULL: none */
};
struct strbuf;

/* Writes the cpio (banger/root/...) to out. */
_warn_unused_ int guestcfg_write(const struct guestcfg *g, const char *out, struct op_error *e);
/* The same files (and entropy first) as the records `banger-agent
 * --identify` reads on its stdin (docs/GUEST.md, "Re-identification"),
 * except those on the work disk (/root: the host wrote them into it). */
_warn_unused_ int guestcfg_records(const struct guestcfg *g, const void *entropy, size_t entropy_len, struct strbuf *out,
                                   struct op_error *e);

/* ssh-keygen an ed25519 host key into dir (ssh_host_ed25519_key + .pub),
 * unless it is already there. */
_warn_unused_ int ssh_host_key_ensure(const char *dir, const char *comment, struct op_error *e);

/* The user's key pair for logging into VMs (config ssh_key_path): made with
 * ssh-keygen at first need, mode 0600. */
_warn_unused_ int ssh_user_key_ensure(const char *key_path, struct op_error *e);

/* banger's known_hosts: replace the lines for `hosts` (comma-separated
 * patterns such as "dev.vm,172.16.0.2" or "[127.0.0.1]:2222") with one
 * pinning pubkey_line ("ssh-ed25519 AAAA... comment"); or drop them. Atomic
 * rewrite; callers serialise (one writer: the VM service's lock). */
_warn_unused_ int known_hosts_set(const char *path, const char *hosts, const char *pubkey_line);
_warn_unused_ int known_hosts_remove(const char *path, const char *hosts);
