/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * Does KVM really work? On nested hosts /dev/kvm can open and create VMs yet
 * only run specially built guests (a stock kernel hangs after the BIOS), so
 * the answer is a boot: the guest kernel with banger's initramfs under
 * -accel kvm must print banger-init's first marker within a timeout.
 * Verdicts are cached per (host kernel release, guest kernel SHA-256) in
 * <cache>/accel-probe.json.
 */

#include <stdbool.h>

struct accel_verdict {
        bool probed;
        bool kvm_works;
        char detail[256];
        char host_kernel[128];
        char guest_sha[65];
};

/* The cache file; false when there is no verdict for this pair. */
bool accel_cached(const char *cache_dir, const char *guest_vmlinux, struct accel_verdict *ret);

/* Boots and decides (seconds), then caches. cancel() is polled. */
int accel_probe(const char *cache_dir, const char *qemu_bin, const char *vmlinux, const char *initramfs,
                unsigned tsc_khz, int timeout_ms, bool (*cancel)(void *), void *ud, struct accel_verdict *ret);

/* A probe a dead daemon left running (its pid is in <cache_dir>/accel-probe.pid
 * while it runs; probes die with their daemon, this is the backstop): killed.
 * true when there was one. One file read, no /proc scan. */
bool accel_kill_stale_probe(const char *cache_dir);

/* Host TSC frequency in kHz (for tsc_early_khz=), 0 when unknown. */
unsigned host_tsc_khz(void);
