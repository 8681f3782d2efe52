/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * What banger-init (fast mode, PID 1) and the agent agree on in the guest.
 *
 * GUEST_INIT_SSHD_FILE: "<generation> <pid>\n", replaced (rename) each time
 * fast init starts sshd: 1 at boot, one more per restart. Its presence says
 * PID 1 is banger-init in fast mode, which restarts sshd on SIGUSR1 (the
 * agent's identity step, after it wrote the VM's host key); the agent waits
 * for the generation to change: the old listener is gone, the new one started.
 */
#define GUEST_INIT_SSHD_FILE "/run/banger-init.sshd"
