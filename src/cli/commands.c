/* SPDX-License-Identifier: MIT */
/* The command table: the single source for parsing, help and completion. */
#include <stddef.h>
#include <stdio.h>

#include "cli.h"

const struct cli_flag cli_global_flags[] = {
        { "json", 0, NULL, "machine-readable JSON output" },
        { "socket", 0, "PATH", "talk to the daemon on PATH (no auto-start)" },
        { "verbose", 'v', NULL, "more detail" },
        { "version", 0, NULL, "print the version line and exit" },
        { "help", 'h', NULL, "show help" },
        { 0 },
};

static const struct cli_flag no_flags[] = { { 0 } };
static const struct cli_flag ops_flags[] = {
        { "running", 0, NULL, "only operations still in flight" },
        { 0 },
};

static const struct cli_flag kernel_list_flags[] = {
        { "available", 0, NULL, "also list catalog kernels not pulled yet" },
        { 0 },
};
static const struct cli_flag force_flags[] = {
        { "force", 0, NULL, "pull again even when present" },
        { 0 },
};
static const struct cli_flag kernel_import_flags[] = {
        { "from", 0, "DIR", "directory with vmlinux or vmlinuz, optional initrd.img and modules/" },
        { "force", 0, NULL, "replace an existing kernel of that name" },
        { 0 },
};

static const struct cli_flag image_list_flags[] = {
        { "available", 0, NULL, "also list catalog images not pulled yet" },
        { 0 },
};
static const struct cli_flag image_pull_flags[] = {
        { "name", 0, "NAME", "register under this name (bundles)" },
        { 0 },
};
static const struct cli_flag image_register_flags[] = {
        { "name", 0, "NAME", "image name (a DNS label)" },
        { "rootfs", 0, "FILE", "ext4 root filesystem" },
        { "work-seed", 0, "FILE", "ext4 image with the initial /root" },
        { "kernel", 0, "FILE", "kernel image (vmlinux or bzImage)" },
        { "initrd", 0, "FILE", "initrd for --kernel" },
        { "kernel-ref", 0, "NAME", "a pulled or imported kernel instead of --kernel" },
        { "init-mode", 0, "MODE", "systemd (default) or fast" },
        { 0 },
};
static const struct cli_flag image_export_flags[] = {
        { "output", 'o', "FILE", "the .tar.zst bundle to write" },
        { 0 },
};

const struct cli_command cli_commands[] = {
        { NULL, "version", "", "print version, commit and build time", no_flags, 0, 0, cmd_version },
        { NULL, "ping", "", "check that the daemon answers (starts it if needed)", no_flags, 0, 0, cmd_ping },
        { NULL, "doctor", "", "check this host for everything banger needs", no_flags, 0, 0, cmd_doctor },
        { NULL, "completion", "bash|zsh|fish", "print a shell completion script", no_flags, 1, 1, cmd_completion },
        { NULL, "help", "[COMMAND...]", "show help for a command", no_flags, 0, 2, cmd_help },
        { "daemon", "status", "", "show whether bangerd runs, and its version", no_flags, 0, 0, cmd_daemon_status },
        { "daemon", "start", "", "start bangerd if it is not running", no_flags, 0, 0, cmd_daemon_start },
        { "daemon", "stop", "", "stop bangerd (running VMs keep running)", no_flags, 0, 0, cmd_daemon_stop },
        { "daemon", "operations", "", "list in-flight and recent operations", ops_flags, 0, 0,
          cmd_daemon_operations },
        { "kernel", "list", "", "list pulled kernels", kernel_list_flags, 0, 0, cmd_kernel_list },
        { "kernel", "show", "NAME", "show a kernel's manifest", no_flags, 1, 1, cmd_kernel_show },
        { "kernel", "pull", "NAME", "download a catalog kernel from the Debian mirror (verified)", force_flags, 1, 1,
          cmd_kernel_pull },
        { "kernel", "rm", "NAME", "remove a kernel no image uses", no_flags, 1, 1, cmd_kernel_rm },
        { "kernel", "import", "NAME", "import a kernel from a local directory", kernel_import_flags, 1, 1,
          cmd_kernel_import },
        { "image", "list", "", "list images", image_list_flags, 0, 0, cmd_image_list },
        { "image", "show", "NAME", "show an image", no_flags, 1, 1, cmd_image_show },
        { "image", "pull", "NAME|BUNDLE|URL", "build a catalog image from Debian, or import a .tar.zst bundle",
          image_pull_flags, 1, 1, cmd_image_pull },
        { "image", "delete", "NAME", "delete an image no VM uses", no_flags, 1, 1, cmd_image_delete },
        { "image", "register", "", "register an image made elsewhere (files stay in place)", image_register_flags, 0, 0,
          cmd_image_register },
        { "image", "promote", "NAME", "copy a registered image into managed storage", no_flags, 1, 1,
          cmd_image_promote },
        { "image", "export", "NAME", "write an image as a .tar.zst bundle", image_export_flags, 1, 1,
          cmd_image_export },
        { "config", "show", "", "show the resolved configuration and where each value came from", no_flags, 0, 0,
          cmd_config_show },
        { 0 },
};
