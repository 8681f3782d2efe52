/* SPDX-License-Identifier: MIT */
/*
 * banger-agent: the guest agent. This is the placeholder of the foundation
 * issue; the protocol (health, ports, sync, poweroff over virtio-serial)
 * arrives with the VM lifecycle. It is built statically so it runs in any
 * guest rootfs.
 */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
        if (argc > 1 && strcmp(argv[1], "--version") == 0) {
                puts("banger-agent (protocol not implemented yet)");
                return 0;
        }
        fputs("banger-agent: the guest protocol is not implemented yet\n", stderr);
        return 1;
}
