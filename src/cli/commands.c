/* SPDX-License-Identifier: MIT */
/* The command table: the single source for parsing, help and completion. */
#include <stddef.h>
#include <stdio.h>

#include "cli.h"

const struct cli_flag cli_global_flags[] = {
        { "json", 0, NULL, "machine-readable JSON output" },
        { "socket", 0, "PATH", "talk to the daemon on PATH (no auto-start)" },
        { "verbose", 'v', NULL, "more detail" },
        { "quiet", 'q', NULL, "no progress output (errors still go to stderr)" },
        { "progress", 0, "MODE", "auto (live on a terminal), plain (a line per stage) or tty" },
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
static const struct cli_flag build_flags[] = {
        { "force", 0, NULL, "build again even when present, never from the cache of earlier builds" },
        { 0 },
};
static const struct cli_flag force_flags[] = {
        { "force", 0, NULL, "pull again even when present, from the mirror (never from the cache of earlier pulls)" },
        { 0 },
};
static const struct cli_flag kernel_import_flags[] = {
        { "from", 0, "DIR", "directory with vmlinux or vmlinuz, optional initrd.img and modules/" },
        { "force", 0, NULL, "replace an existing kernel of that name" },
        { "distro", 0, "NAME", "the distribution it comes from, recorded and shown (e.g. debian, ubuntu-24.04)" },
        { "arch", 0, "ARCH", "its architecture, recorded and shown: x86_64 (default) or aarch64 (amd64, arm64 too)" },
        { 0 },
};

static const struct cli_flag image_list_flags[] = {
        { "available", 0, NULL, "also list catalog images not pulled yet" },
        { 0 },
};
static const struct cli_flag image_pull_flags[] = {
        { "name", 0, "NAME", "register under this name (default: from the bundle or the reference)" },
        { "kernel-ref", 0, "KERNEL", "OCI images: boot with this kernel (default: the default image's)" },
        { "size", 0, "SIZE", "OCI images: root filesystem size (default: content x 1.5, at least 256M)" },
        { "platform", 0, "OS/ARCH", "OCI images: the platform to pick from an index (default linux/amd64)" },
        { 0 },
};
static const struct cli_flag image_cache_flags[] = {
        { "dry-run", 0, NULL, "only say what would be freed" },
        { 0 },
};
static const struct cli_flag image_register_flags[] = {
        { "name", 0, "NAME", "image name (a DNS label)" },
        { "rootfs", 0, "FILE", "ext4 root filesystem" },
        { "work-seed", 0, "FILE", "ext4 image with the initial /root" },
        { "kernel", 0, "FILE", "kernel image (vmlinux or bzImage)" },
        { "initrd", 0, "FILE", "initrd for --kernel" },
        { "kernel-ref", 0, "NAME", "a pulled or imported kernel instead of --kernel" },
        { "modules", 0, "DIR", "with --kernel: its module tree (e.g. lib/modules/VERSION); the kernel and the "
                               "modules are imported as a kernel named like the image (kernel import does the same "
                               "with DIR/modules) and VMs boot banger's initramfs with the modules they need" },
        { "init-mode", 0, "MODE", "systemd (default) or fast" },
        { 0 },
};
static const struct cli_flag image_export_flags[] = {
        { "output", 'o', "FILE", "the .tar.zst bundle to write" },
        { 0 },
};

static const struct cli_flag vm_create_flags[] = {
        { "name", 0, "NAME", "VM name (a DNS label; default: generated adjective-noun)" },
        { "image", 0, "IMAGE", "image to boot (default: config default_image_name; pulled if missing)" },
        { "vcpu", 0, "N", "virtual CPUs" },
        { "memory", 0, "SIZE", "memory (2048 = MiB, or 2G, 512MiB)" },
        { "disk-size", 0, "SIZE", "work disk (/root) size, e.g. 8G" },
        { "system-overlay-size", 0, "SIZE", "virtual size of the copy-on-write root overlay" },
        { "nat", 0, NULL, "give the VM outbound network access (NAT)" },
        { "isolate", 0, NULL, "no traffic between this VM and other guests on the bridge" },
        { "net", 0, "MODE", "bridge (a TAP on banger's bridge; needs root or the system install) or user "
                            "(user-mode networking, no root; the default of a rootless daemon)" },
        { "vmm", 0, "VMM", "qemu or firecracker (default: the daemon's choice, `vmm` in config.toml); kept by the VM" },
        { "no-start", 0, NULL, "create the VM and its disks but do not boot it" },
        { "cold", 0, NULL, "boot from scratch, not from a warm-start template" },
        { "from-snapshot", 0, "VM:NAME", "a fork: another VM's snapshot (disks and memory) with a new identity" },
        { "publish", 'p', "SPEC",
          "[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]: relay a host port (on 127.0.0.1 unless HOSTIP) to a guest port; "
          "repeatable",
          .repeat = true },
        { 0 },
};
static const struct cli_flag vm_list_flags[] = {
        { "quiet", 'q', NULL, "print VM ids only" },
        { 0 },
};
static const struct cli_flag vm_ps_flags[] = {
        { "quiet", 'q', NULL, "print VM ids only" },
        { "all", 'a', NULL, "also VMs that are not running" },
        { 0 },
};
static const struct cli_flag vm_kill_flags[] = {
        { "signal", 's', "SIG", "signal for the VMM (default KILL)" },
        { 0 },
};
static const struct cli_flag vm_set_flags[] = {
        { "vcpu", 0, "N", "virtual CPUs" },
        { "memory", 0, "SIZE", "memory (2048 = MiB, or 2G)" },
        { "disk-size", 0, "SIZE", "grow the work disk to SIZE (shrinking is refused)" },
        { "nat", 0, NULL, "enable NAT" },
        { "no-nat", 0, NULL, "disable NAT" },
        { "isolate", 0, NULL, "cut the VM off from other guests on the bridge" },
        { "no-isolate", 0, NULL, "let the VM and other guests reach each other (the default)" },
        { 0 },
};
static const struct cli_flag vm_logs_flags[] = {
        { "follow", 'f', NULL, "keep printing as the console writes" },
        { "vmm", 0, NULL, "the VMM's log instead (QEMU's or Firecracker's output, Firecracker's own log: API errors)" },
        { 0 },
};
static const struct cli_flag vm_prune_flags[] = {
        { "force", 'f', NULL, "do not ask for confirmation" },
        { 0 },
};
static const struct cli_flag template_prune_flags[] = {
        { "all", 0, NULL, "every template, not only those whose image or kernel changed" },
        { 0 },
};
static const struct cli_flag vm_run_flags[] = {
        { "name", 0, "NAME", "VM name (default: generated)" },
        { "image", 0, "IMAGE", "image (default: config default_image_name; pulled if missing)" },
        { "vcpu", 0, "N", "virtual CPUs" },
        { "memory", 0, "SIZE", "memory (2048 = MiB, or 2G)" },
        { "disk-size", 0, "SIZE", "work disk (/root) size" },
        { "nat", 0, NULL, "outbound network access (NAT)" },
        { "isolate", 0, NULL, "no traffic between this VM and other guests" },
        { "net", 0, "MODE", "bridge or user (user-mode networking, no root)" },
        { "vmm", 0, "VMM", "qemu or firecracker (default: the daemon's choice)" },
        { "rm", 0, NULL, "delete the VM when the command or session ends" },
        { "detach", 'd', NULL, "create and prepare, then exit" },
        { "include-untracked", 0, NULL, "also ship untracked files that are not ignored" },
        { "dry-run", 0, NULL, "list the files that would be shipped, then exit (no VM)" },
        { "branch", 0, "NAME", "create and check out a guest-only branch" },
        { "from", 0, "REF", "base --branch on REF" },
        { "no-bootstrap", 0, NULL, "skip the mise tooling bootstrap (a mise project without --nat needs it)" },
        { "timings", 0, NULL, "print each stage's duration at the end" },
        { "ssh", 0, NULL, "run the command over ssh instead of the agent (waits for sshd)" },
        { "cold", 0, NULL, "boot from scratch, not from a warm-start template" },
        { "publish", 'p', "SPEC",
          "[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]: relay a host port (on 127.0.0.1 unless HOSTIP) to a guest port; "
          "repeatable",
          .repeat = true },
        { 0 },
};
static const struct cli_flag vm_forward_flags[] = {
        { "list", 'l', NULL, "list the forwards of VM, or of every VM" },
        { "rm", 0, NULL, "remove the forwards of VM that each KEY matches (no HOSTIP: any address; no PROTO: both)" },
        { 0 },
};
static const struct cli_flag vm_exec_flags[] = {
        { "guest-path", 0, "DIR", "working directory in the guest" },
        { "auto-prepare", 0, NULL, "ship the workspace again when the host's HEAD moved" },
        { "ssh", 0, NULL, "run the command over ssh instead of the agent" },
        { 0 },
};
static const struct cli_flag vm_workspace_flags[] = {
        { "include-untracked", 0, NULL, "prepare: also ship untracked files that are not ignored" },
        { "dry-run", 0, NULL, "prepare: list the files that would be shipped" },
        { "branch", 0, "NAME", "prepare: create and check out a guest-only branch" },
        { "from", 0, "REF", "prepare: base --branch on REF" },
        { "base-commit", 0, "C", "export: diff against C (default: the prepared head commit)" },
        { "output", 'o', "FILE", "export: write the patch to FILE (default: stdout)" },
        { 0 },
};
static const struct cli_flag system_install_flags[] = {
        { "owner", 0, "USER", "who runs banger (default: $SUDO_USER); the daemon runs as them" },
        { "root", 0, "DIR", "install everything below DIR (tests, side-by-side installs; no systemd units)" },
        { "no-start", 0, NULL, "install only; print the two start commands" },
        { "force", 0, NULL, "take over an install of another user's" },
        { 0 },
};
static const struct cli_flag system_uninstall_flags[] = {
        { "purge", 0, NULL, "also remove state (VM disks, images, kernels), cache and config" },
        { "force", 0, NULL, "stop running VMs instead of refusing" },
        { 0 },
};
static const struct cli_flag update_flags[] = {
        { "check", 0, NULL, "only say whether an update is available (no root needed)" },
        { "to", 0, "VERSION", "install this release instead of the latest stable one" },
        { "dry-run", 0, NULL, "download, verify and stage the release, then stop" },
        { "force", 0, NULL, "update even while daemon operations are in flight" },
        { "manifest-url", 0, "URL", "test only: the manifest to read instead of <update_url>/manifest.json", true },
        { "pubkey-file", 0, "PEM", "test only: verify with this public key instead of the compiled-in one", true },
        { 0 },
};
static const struct cli_flag ssh_config_flags[] = {
        { "install", 0, NULL, "add a marker-fenced Include to ~/.ssh/config" },
        { "uninstall", 0, NULL, "remove it again" },
        { 0 },
};

const struct cli_command cli_commands[] = {
        { NULL, "version", "", "print version, commit and build time", no_flags, 0, 0, cmd_version },
        { NULL, "ping", "", "check that the daemon answers (starts it if needed)", no_flags, 0, 0, cmd_ping },
        { NULL, "doctor", "", "check this host for everything banger needs", no_flags, 0, 0, cmd_doctor },
        { NULL, "completion", "bash|zsh|fish|powershell",
          "print a shell completion script (it asks banger for VM, image, kernel and snapshot names as you type)",
          no_flags, 1, 1, cmd_completion },
        { NULL, "help", "[COMMAND...]", "show help for a command", no_flags, 0, 2, cmd_help },
        { "daemon", "status", "", "show whether bangerd runs, and its version", no_flags, 0, 0, cmd_daemon_status },
        { "daemon", "start", "", "start bangerd if it is not running", no_flags, 0, 0, cmd_daemon_start },
        { "daemon", "stop", "", "stop bangerd (running VMs keep running)", no_flags, 0, 0, cmd_daemon_stop },
        { "daemon", "reload", "", "re-read config.toml (as SIGHUP does): log level, intervals and VM defaults "
          "change now; the bridge, VMM, TAP pool, DNS listener and ssh key wait for a restart; a file that does "
          "not load changes nothing", no_flags, 0, 0, cmd_daemon_reload },
        { "daemon", "operations", "", "list in-flight and recent operations", ops_flags, 0, 0,
          cmd_daemon_operations },
        { "system", "install", "", "install banger system-wide: a root helper and a daemon that runs as --owner",
          system_install_flags, 0, 0, cmd_system_install },
        { "system", "status", "", "show the system install and whether its two services answer", no_flags, 0, 0,
          cmd_system_status },
        { "system", "restart", "", "restart the root helper and the daemon (VMs keep running)", no_flags, 0, 0,
          cmd_system_restart },
        { "system", "uninstall", "", "stop and remove the system install (state stays unless --purge)",
          system_uninstall_flags, 0, 0, cmd_system_uninstall },
        { NULL, "update", "", "update the system install to a newer signed release (root)", update_flags, 0, 0,
          cmd_update },
        { "kernel", "list", "", "list pulled kernels", kernel_list_flags, 0, 0, cmd_kernel_list },
        { "kernel", "show", "NAME", "show a kernel's manifest", no_flags, 1, 1, cmd_kernel_show },
        { "kernel", "pull", "NAME", "download a catalog kernel from the Debian mirror (verified)", force_flags, 1, 1,
          cmd_kernel_pull },
        { "kernel", "build", "NAME", "build a catalog kernel from its Debian source package and banger's config "
                                     "(microvm-6.1; cached)", build_flags, 1, 1, cmd_kernel_build },
        { "kernel", "rm", "NAME", "remove a kernel no image uses", no_flags, 1, 1, cmd_kernel_rm },
        { "kernel", "import", "NAME", "import a kernel from a local directory", kernel_import_flags, 1, 1,
          cmd_kernel_import },
        { "image", "list", "", "list images", image_list_flags, 0, 0, cmd_image_list },
        { "image", "show", "NAME", "show an image", no_flags, 1, 1, cmd_image_show },
        { "image", "pull", "NAME|BUNDLE|URL|OCI-REF|oci:DIR[:TAG]",
          "build a catalog image, import a .tar.zst bundle, or pull an OCI image", image_pull_flags, 1, 1,
          cmd_image_pull },
        { "image", "cache", "prune", "empty the OCI blob cache (pulled images stay)", image_cache_flags, 1, 1,
          cmd_image_cache },
        { "image", "delete", "NAME", "delete an image no VM uses", no_flags, 1, 1, cmd_image_delete },
        { "image", "register", "", "register an image made elsewhere (files stay in place)", image_register_flags, 0, 0,
          cmd_image_register },
        { "image", "promote", "NAME", "copy a registered image into managed storage", no_flags, 1, 1,
          cmd_image_promote },
        { "image", "export", "NAME", "write an image as a .tar.zst bundle", image_export_flags, 1, 1,
          cmd_image_export },
        { "vm", "run", "[PATH] [-- CMD...]", "create a VM, ship PATH's repo, run CMD or a shell", vm_run_flags, 0, 256,
          cmd_vm_run },
        { "vm", "exec", "VM -- CMD...", "run a command in a VM (in its workspace)", vm_exec_flags, 2, 256, cmd_vm_exec },
        { "vm", "workspace", "prepare VM PATH | export VM", "ship a repo into a VM, or export its changes as a patch",
          vm_workspace_flags, 2, 3, cmd_vm_workspace },
        { "vm", "create", "", "create a VM (and boot it unless --no-start)", vm_create_flags, 0, 0, cmd_vm_create },
        { "vm", "list", "", "list VMs", vm_list_flags, 0, 0, cmd_vm_list },
        { "vm", "ps", "", "list running VMs", vm_ps_flags, 0, 0, cmd_vm_ps },
        { "vm", "show", "VM", "show a VM", no_flags, 1, 1, cmd_vm_show },
        { "vm", "start", "VM...", "start VMs", no_flags, 1, 64, cmd_vm_start },
        { "vm", "stop", "VM...", "stop VMs (guest sync and poweroff, then force)", no_flags, 1, 64, cmd_vm_stop },
        { "vm", "restart", "VM...", "stop and start VMs", no_flags, 1, 64, cmd_vm_restart },
        { "vm", "kill", "VM...", "signal the VMM of VMs (default KILL)", vm_kill_flags, 1, 64, cmd_vm_kill },
        { "vm", "delete", "VM...", "delete VMs (stopping them first) and their disks", no_flags, 1, 64,
          cmd_vm_delete },
        { "vm", "set", "VM...", "change stopped VMs' vcpu, memory, disk size or NAT", vm_set_flags, 1, 64, cmd_vm_set },
        { "vm", "ssh", "VM [-- SSH-ARGS...]", "ssh into a VM as root", no_flags, 1, 256, cmd_vm_ssh },
        { "vm", "proxy", "VM PORT", "join stdin/stdout to a running VM's TCP port (ssh's ProxyCommand; VM may be NAME.vm)",
          no_flags, 2, 2, cmd_vm_proxy },
        { "vm", "logs", "VM", "print a VM's serial console log (or, --vmm, its VMM's)", vm_logs_flags, 1, 1, cmd_vm_logs },
        { "vm", "health", "VM", "ask a VM's guest agent how it is", no_flags, 1, 1, cmd_vm_health },
        { "vm", "ports", "VM", "list the guest's listening ports", no_flags, 1, 1, cmd_vm_ports },
        { "vm", "forward", "VM SPEC... | --list [VM] | --rm VM KEY...",
          "relay host ports to a VM (SPEC [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp], KEY [HOSTIP:]HOSTPORT[/PROTO])",
          vm_forward_flags, 0, 64, cmd_vm_forward },
        { "vm", "stats", "VM", "guest CPU/memory, VMM RSS and CPU time, disk usage (JSON)", no_flags, 1, 1,
          cmd_vm_stats },
        { "vm", "snapshot", "VM [NAME] | list VM | rm VM NAME",
          "save a running VM's RAM, device state and disks; list or remove its snapshots", no_flags, 1, 3,
          cmd_vm_snapshot },
        { "vm", "restore", "VM NAME", "put a VM back to a snapshot (its running state is replaced)", no_flags, 2, 2,
          cmd_vm_restore },
        { "template", "list", "", "list the warm-start templates", no_flags, 0, 0, cmd_template_list },
        { "template", "rm", "KEY", "remove a warm-start template (a unique key prefix)", no_flags, 1, 1,
          cmd_template_rm },
        { "template", "prune", "", "remove stale warm-start templates (--all: every one)", template_prune_flags, 0, 0,
          cmd_template_prune },
        { "vm", "prune", "", "delete every VM that is not running", vm_prune_flags, 0, 0, cmd_vm_prune },
        { NULL, "ssh-config", "", "write banger's ssh config for <name>.vm, reached through 'banger vm proxy' (and include it)",
          ssh_config_flags, 0, 0, cmd_ssh_config },
        { "config", "show", "", "show the resolved configuration and where each value came from", no_flags, 0, 0,
          cmd_config_show },
        { 0 },
};

const struct cli_group cli_groups[] = {
        { NULL, "banger doctor\n"
                "banger completion bash > ~/.local/share/bash-completion/completions/banger\n"
                "banger help vm create\n"
                "banger ssh-config --install" },
        { "daemon", "banger daemon status\n"
                    "banger --json daemon operations --running" },
        { "system", "sudo banger system install --owner \"$USER\"\n"
                    "banger system status\n"
                    "sudo banger system uninstall --purge" },
        { "kernel", "banger kernel list --available\n"
                    "banger kernel build microvm-6.1\n"
                    "banger kernel import mykernel --from ./out --distro ubuntu-24.04 --arch x86_64" },
        { "image", "banger image pull debian-bookworm\n"
                   "banger image pull docker.io/library/alpine:3.20 --name alpine\n"
                   "banger image export alpine -o alpine.tar.zst" },
        { "vm", "banger vm run . -- make test\n"
                "banger vm create --name dev --memory 4G --nat\n"
                "banger vm ssh dev\n"
                "banger vm snapshot dev before-upgrade\n"
                "banger vm delete dev" },
        { "template", "banger template list\n"
                      "banger template prune --all" },
        { "config", "banger config show\n"
                    "banger --json config show" },
        { NULL, NULL },
};
