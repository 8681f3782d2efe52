/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * banger-init: PID 1 of every banger guest (docs/GUEST.md is the contract).
 * Static, libc only. Every stage prints one marker line on the console:
 *   banger-init: stage=<name> t=<seconds since boot> [detail]
 * and any failure prints "banger-init: FATAL: ..." and powers the VM off.
 */

#include <stdbool.h>
#include <stddef.h>

#define INIT_MAX_PARAM 256

struct init_params {
        char hostname[64];
        char root_serial[32];  /* banger.root (virtio serial), default "rootfs" */
        char work_serial[32];  /* banger.work, empty: no work disk */
        char repo_serial[32];  /* banger.repo, empty: no repo disk */
        char modules_serial[32]; /* banger.modules, empty: no modules disk */
        char rootfstype[16];
        char mode[16];         /* "systemd" or "fast" */
        char init[INIT_MAX_PARAM];
        char iface[16];
        char ip[32];           /* a.b.c.d/prefix, empty: no network */
        char gw[16];
        bool debug;
};

/* cmdline.c (pure) */
int init_parse_cmdline(const char *cmdline, struct init_params *p);

/* util.c */
void init_stage(const char *stage, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void init_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
__attribute__((noreturn)) void init_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int init_write_file(const char *path, const char *data, size_t len, unsigned mode);
int init_mkdir_p(const char *path, unsigned mode);

/* modules.c */
int init_load_modules(const char *order_file, int *ret_loaded);


/* disk.c */
int init_find_disk(const char *serial, char *ret_dev, size_t n, int timeout_ms);

/* config.c: copies /banger/root/... into the new root */
int init_apply_config(const char *src_dir, const char *dst_root, int *ret_files);

/* fast.c: the minimal init for "fast" images (never returns) */
__attribute__((noreturn)) void init_fast_main(const struct init_params *p);
__attribute__((noreturn)) void init_poweroff(bool reboot_instead);
