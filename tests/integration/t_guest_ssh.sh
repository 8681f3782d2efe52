#!/usr/bin/env bash
# The per-VM guest configuration end to end: the slim image boots with the
# VM's cpio appended to the kernel's initramfs, and OpenSSH logs in with
# banger's key against a known_hosts pinned before the first boot (strict
# host key checking: no trust-on-first-use). Networking is QEMU user mode
# with a hostfwd on 127.0.0.1: all traffic stays on loopback.
. "$(dirname "$0")/lib.sh"
begin
export BANGER_IMAGE_CACHE="${BANGER_TEST_IMAGE_CACHE:-$TMP/image-builds}"
TOOL="$BANGER_BUILD/tests/guestcfg_tool"
NAME=ssh-test
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
KS="$TMP/keys"

prepare() {
        "$BANGER" kernel pull debian-cloud-6.1 >/dev/null 2>&1 &&
        "$BANGER" --json image pull debian-bookworm-slim >"$TMP/img.json" 2>"$TMP/img.err" || { cat "$TMP/img.err"; return 1; }
        "$TOOL" "$NAME" 10.0.2.15 "$KS" "[127.0.0.1]:$PORT" "$TMP/vm.cpio" "$TMP/work.ext4" \
                "$(jq -r .work_seed_path "$TMP/img.json")" || return 1
        e2fsck -fn "$TMP/work.ext4" >/dev/null 2>&1 || { echo "work disk not clean"; return 1; }
        grep -q "^\[127.0.0.1\]:$PORT ssh-ed25519 " "$KS/ssh/known_hosts" &&
        [ "$(stat -c %a "$KS/ssh/id_ed25519")" = 600 ]
}
t "guest configuration: VM host key, pinned known_hosts, user key, cpio, work disk (libext2fs)" prepare

K_JSON=$("$BANGER" --json kernel show debian-cloud-6.1 2>/dev/null)
INITRD=$(ls "$(echo "$K_JSON" | jq -r .dir 2>/dev/null)"/initramfs-*.cpio 2>/dev/null | head -1)
cat "$INITRD" "$TMP/vm.cpio" >"$TMP/vm-initrd" 2>/dev/null
# Every QEMU of this file (start_vm also runs inside tests, in subshells whose
# $QEMU the end of the file never sees) dies with it: they all boot $TMP/vm-initrd.
trap 'pkill -9 -f -- "-initrd $TMP/vm-initrd" 2>/dev/null; cleanup' EXIT
start_vm() {
T0=$(date +%s.%N)
qemu-system-x86_64 -M microvm -accel tcg,tb-size=128 -m 512 -smp 1 -nodefaults -no-user-config -nographic -no-reboot \
        -kernel "$(echo "$K_JSON" | jq -r .vmlinux 2>/dev/null)" -initrd "$TMP/vm-initrd" \
        -append "console=ttyS0 tsc_early_khz=$(tsc_khz) cryptomgr.notests quiet banger.mode=fast banger.root=rootfs banger.work=work banger.hostname=$NAME banger.ip=10.0.2.15/24 banger.gw=10.0.2.2" \
        -serial stdio -device virtio-rng-device \
        -drive "id=root,file=$(jq -r .rootfs_path "$TMP/img.json" 2>/dev/null),format=raw,if=none,snapshot=on" \
        -device virtio-blk-device,drive=root,serial=rootfs \
        -drive "id=work,file=$TMP/work.ext4,format=raw,if=none" -device virtio-blk-device,drive=work,serial=work \
        -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$PORT-:22" -device virtio-net-device,netdev=n0 \
        </dev/null >"$TMP/serial.log" 2>&1 &
QEMU=$!
}
start_vm

vm_ssh() { # known_hosts-file command...
        local kh="$1"; shift
        ssh -i "$KS/ssh/id_ed25519" -o UserKnownHostsFile="$kh" -o StrictHostKeyChecking=yes -o BatchMode=yes \
            -o ConnectTimeout=1 -o LogLevel=ERROR -p "$PORT" root@127.0.0.1 "$@"
}

# ssh works, or QEMU is gone (then there is nothing to wait for)
ssh_or_gone() {
        vm_ssh "$KS/ssh/known_hosts" cat /etc/hostname >"$TMP/hostname.out" 2>"$TMP/ssh.err" || ! kill -0 "$QEMU" 2>/dev/null
}

login() {
        wait_for 60 "ssh into the guest" ssh_or_gone || { grep -a banger-init "$TMP/serial.log"; return 1; }
        expect_eq "$(cat "$TMP/hostname.out")" "$NAME" || { cat "$TMP/ssh.err"; grep -a banger-init "$TMP/serial.log"; return 1; }
        awk -v a="$(date +%s.%N)" -v b="$T0" 'BEGIN { printf "%.2f\n", a - b }' >"$TMP/boot-to-ssh"
        grep -aq 'stage=config-applied .*files=6' "$TMP/serial.log" && grep -aq 'stage=network .*ip=10.0.2.15/24' "$TMP/serial.log"
}
t "ssh with banger's key and pinned host key prints the VM's hostname" login
[ -f "$TMP/boot-to-ssh" ] && echo "# QEMU start to 'cat /etc/hostname' over ssh (TCG): $(cat "$TMP/boot-to-ssh") s" >&2

guest_files() {
        vm_ssh "$KS/ssh/known_hosts" 'cat /etc/resolv.conf; grep ssh-test.vm /etc/hosts; stat -c %a /etc/ssh/ssh_host_ed25519_key' \
                >"$TMP/files.out" || return 1
        grep -qx 'nameserver 10.0.2.3' "$TMP/files.out" && grep -q '^10.0.2.15 ssh-test.vm ssh-test$' "$TMP/files.out" &&
        grep -qx 600 "$TMP/files.out"
}
t "resolv.conf, /etc/hosts and the host key (0600) came from the cpio" guest_files

no_tofu() {
        : >"$TMP/empty_known_hosts"
        ! vm_ssh "$TMP/empty_known_hosts" true 2>"$TMP/tofu.err" && grep -q 'Host key verification failed' "$TMP/tofu.err" || return 1
        # a different pinned key is refused too
        ssh-keygen -q -t ed25519 -N '' -f "$TMP/other" && echo "[127.0.0.1]:$PORT $(cat "$TMP/other.pub")" >"$TMP/wrong_known_hosts"
        ! vm_ssh "$TMP/wrong_known_hosts" true 2>"$TMP/wrong.err" && grep -q 'REMOTE HOST IDENTIFICATION HAS CHANGED' "$TMP/wrong.err"
}
t "without the pin, or with another key pinned, ssh refuses (no trust on first use)" no_tofu

t "the agent runs in the guest (fast init started it)" sh -c "grep -aq 'stage=init-started .*agent=started' '$TMP/serial.log'"

work_disk() {
        vm_ssh "$KS/ssh/known_hosts" 'findmnt -no SOURCE,FSTYPE /root; cat /root/.gitconfig; test -f /root/.bashrc && echo seeded' \
                >"$TMP/work.out" || return 1
        grep -q '^/dev/vd[a-z] ext4$' "$TMP/work.out" && grep -q 'name = Banger Test' "$TMP/work.out" && grep -qx seeded "$TMP/work.out"
}
t "/root is the work disk: seeded from the image, .gitconfig written with libext2fs" work_disk

persist() {
        vm_ssh "$KS/ssh/known_hosts" 'echo kept-across-boots > /root/persist.txt && kill -TERM 1' || true
        wait_for 10 "the guest to power off" not kill -0 "$QEMU" || return 1
        grep -aq 'stage=shutdown .*poweroff' "$TMP/serial.log" || return 1
        e2fsck -fn "$TMP/work.ext4" >/dev/null 2>&1 || { echo "work disk not clean after poweroff"; return 1; }
        start_vm
        wait_for 60 "ssh after the second boot" to "$TMP/persist.out" vm_ssh "$KS/ssh/known_hosts" cat /root/persist.txt ||
                return 1
        expect_eq "$(cat "$TMP/persist.out")" kept-across-boots
}
t "a file written in /root survives a clean poweroff and a second boot" persist

kill "$QEMU" 2>/dev/null; wait "$QEMU" 2>/dev/null
pkill -f -- "-initrd $TMP/vm-initrd" 2>/dev/null
wait_for 10 "this file's QEMUs to exit" not pgrep -f -- "-initrd $TMP/vm-initrd" >/dev/null || true
finish
