/* SPDX-License-Identifier: MIT */
#include "agent_transport.h"

#include <errno.h>
#include <string.h>

#include "agent_client.h"
#include "strbuf.h"

static const char *const names[_AGENT_TRANSPORT_MAX] = {
        [AGENT_TRANSPORT_VIRTIO_SERIAL] = "virtio-serial",
        [AGENT_TRANSPORT_VSOCK] = "vsock",
};

const char *agent_transport_to_string(enum agent_transport t) {
        return t < _AGENT_TRANSPORT_MAX ? names[t] : "unknown";
}

int agent_transport_from_string(const char *s, enum agent_transport *ret) {
        for (size_t i = 0; s && i < _AGENT_TRANSPORT_MAX; i++)
                if (strcmp(s, names[i]) == 0) {
                        *ret = (enum agent_transport) i;
                        return 0;
                }
        return -EINVAL;
}

bool agent_transport_warm_ok(const char *config) {
        return !config || strcmp(config, "vsock") != 0;
}

static int no_device(const struct agent_transport_ask *q, const char *what, char **ret_why) {
        *ret_why = xasprintf("%s needs a vsock for the agent, and this host has none usable (%s)", what,
                             q->device_why ? q->device_why : "no /dev/vhost-vsock");
        return -EOPNOTSUPP;
}

int agent_transport_decide(const struct agent_transport_ask *q, enum agent_transport *ret, char **ret_why) {
        *ret_why = NULL;
        switch (q->kind) {
        case VM_BOOT_TEMPLATE:
        case VM_BOOT_WARM:
                /* a template's state serves many VMs, each needing its own
                 * CID: its agent stays on the port, which names no one */
                *ret = AGENT_TRANSPORT_VIRTIO_SERIAL;
                return 0;
        case VM_BOOT_STATE:
                if (q->saved == AGENT_TRANSPORT_VSOCK && !q->device)
                        return no_device(q, "the saved state (taken with a vhost-vsock device)", ret_why);
                *ret = q->saved;
                return 0;
        case VM_BOOT_COLD:
        default:
                break;
        }
        const char *c = q->config ? q->config : "auto";
        if (strcmp(c, "virtio-serial") == 0) {
                *ret = AGENT_TRANSPORT_VIRTIO_SERIAL;
                return 0;
        }
        if (strcmp(c, "vsock") == 0 && !q->device)
                return no_device(q, "qemu_agent_transport = \"vsock\"", ret_why);
        *ret = q->device ? AGENT_TRANSPORT_VSOCK : AGENT_TRANSPORT_VIRTIO_SERIAL;
        return 0;
}

unsigned vsock_cid_pick(const unsigned *used, size_t n, unsigned from) {
        unsigned cid = from < AGENT_VSOCK_CID_MIN ? AGENT_VSOCK_CID_MIN : from;
        /* at most n+1 candidates: one of them is free */
        for (size_t tries = 0; tries <= n && cid <= AGENT_VSOCK_CID_MAX; tries++, cid++) {
                bool taken = false;
                for (size_t i = 0; i < n && !taken; i++)
                        taken = used[i] == cid;
                if (!taken)
                        return cid;
                if (cid == AGENT_VSOCK_CID_MAX)
                        break;
        }
        return 0;
}
