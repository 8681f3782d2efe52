/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * How a QEMU VM's boot reaches its guest agent: a virtio-serial port (a UNIX
 * socket on the host) or a vhost-vsock device (AF_VSOCK to the guest's CID).
 * Pure: the host's facts and the config come in, nothing is read here.
 * docs/ARCHITECTURE.md, "QEMU in detail", says which boots use which.
 */

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

enum agent_transport {
        AGENT_TRANSPORT_VIRTIO_SERIAL,
        AGENT_TRANSPORT_VSOCK,
        _AGENT_TRANSPORT_MAX,
};
const char *agent_transport_to_string(enum agent_transport t);
/* -EINVAL for anything but "virtio-serial" and "vsock" */
int agent_transport_from_string(const char *s, enum agent_transport *ret);

enum vm_boot_kind {
        VM_BOOT_COLD,     /* a VM's own kernel boot */
        VM_BOOT_TEMPLATE, /* a warm-start template's own boot (its state is saved for many VMs) */
        VM_BOOT_WARM,     /* a VM resumed from a template's state */
        VM_BOOT_STATE,    /* a VM resumed from a snapshot's state (vm restore, a fork) */
        _VM_BOOT_KIND_MAX,
};

struct agent_transport_ask {
        const char *config;      /* qemu_agent_transport: "auto" | "virtio-serial" | "vsock" */
        bool device;             /* /dev/vhost-vsock opens read-write */
        const char *device_why;  /* why not, when not (e.g. "no /dev/vhost-vsock") */
        enum vm_boot_kind kind;
        enum agent_transport saved; /* VM_BOOT_STATE: the transport the state was saved with */
};

/* The transport of a boot. A saved state's device set is fixed (QEMU loads
 * a state only into the same devices): templates and warm VMs use the
 * virtio-serial port, a snapshot's boot the transport it was taken with.
 * A cold boot follows the config ("auto": vsock when the device opens).
 * -EOPNOTSUPP with *ret_why (malloc'd) when the answer is vsock and the
 * device is not usable. */
_warn_unused_ int agent_transport_decide(const struct agent_transport_ask *q, enum agent_transport *ret,
                                         char **ret_why);
/* May a new VM resume from a template (whose agent is on virtio-serial)?
 * Not when the config insists on vsock. */
bool agent_transport_warm_ok(const char *config);

/* The lowest guest CID >= from (and >= 3) that is not in used[0..n), or 0
 * when none is left. */
unsigned vsock_cid_pick(const unsigned *used, size_t n, unsigned from);
