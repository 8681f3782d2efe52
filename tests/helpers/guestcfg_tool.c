/* SPDX-License-Identifier: MIT */
/*
 * Test helper: makes a VM's guest configuration the way bangerd does
 * (host key, cpio, known_hosts pin, user key) so a test can boot a guest
 * with it before the VM lifecycle exists.
 *   guestcfg_tool NAME IP|- STATE_DIR HOSTS_PATTERN OUT_CPIO [WORK_DISK SEED|-]
 * STATE_DIR gets ssh/id_ed25519, ssh/known_hosts and hostkeys/NAME/. With
 * WORK_DISK, a 2 GiB work disk is made from SEED and gets authorized_keys
 * and a .gitconfig written with libext2fs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fsutil.h"
#include "macro.h"
#include "op_error.h"
#include "strbuf.h"
#include "vm/guestcfg.h"
#include "disk/workdisk.h"

int main(int argc, char **argv) {
        _cleanup_free_ char *pub = NULL, *ak = NULL;
        struct op_error err = OP_ERROR_INIT;
        size_t len;

        if (argc != 6 && argc != 8) {
                fprintf(stderr, "usage: guestcfg_tool NAME IP|- STATE_DIR HOSTS_PATTERN OUT_CPIO [WORK_DISK SEED|-]\n");
                return 2;
        }
        _cleanup_free_ char *userkey = xasprintf("%s/ssh/id_ed25519", argv[3]);
        _cleanup_free_ char *userpub = xasprintf("%s.pub", userkey);
        _cleanup_free_ char *keydir = xasprintf("%s/hostkeys/%s", argv[3], argv[1]);
        _cleanup_free_ char *khpath = xasprintf("%s/ssh/known_hosts", argv[3]);
        _cleanup_free_ char *hostpub = xasprintf("%s/ssh_host_ed25519_key.pub", keydir);
        _cleanup_free_ char *comment = xasprintf("banger-vm-%s", argv[1]);
        if (ssh_user_key_ensure(userkey, &err) < 0 || ssh_host_key_ensure(keydir, comment, &err) < 0) {
                fprintf(stderr, "guestcfg_tool: %s\n", op_error_message(&err));
                return 1;
        }
        if (read_file(userpub, 1 << 16, &ak, &len) < 0 || read_file(hostpub, 1 << 16, &pub, &len) < 0 ||
            known_hosts_set(khpath, argv[4], pub) < 0) {
                fprintf(stderr, "guestcfg_tool: keys or known_hosts failed\n");
                return 1;
        }
        struct guestcfg g = { .hostname = argv[1], .ip = strcmp(argv[2], "-") ? argv[2] : NULL, .dns = "10.0.2.3",
                              .host_key_dir = keydir, .authorized_keys = ak };
        if (guestcfg_write(&g, argv[5], &err) < 0) {
                fprintf(stderr, "guestcfg_tool: %s\n", op_error_message(&err));
                return 1;
        }
        if (argc == 8) {
                const char *git = "[user]\n\tname = Banger Test\n\temail = test@banger.invalid\n";
                if (workdisk_create(argv[6], 2ULL << 30, strcmp(argv[7], "-") ? argv[7] : NULL, &err) < 0 ||
                    workdisk_write_file(argv[6], "/.ssh/authorized_keys", ak, strlen(ak), 0600, 0, 0, &err) < 0 ||
                    workdisk_write_file(argv[6], "/.gitconfig", git, strlen(git), 0644, 0, 0, &err) < 0) {
                        fprintf(stderr, "guestcfg_tool: %s\n", op_error_message(&err));
                        return 1;
                }
        }
        return 0;
}
