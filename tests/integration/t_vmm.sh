#!/usr/bin/env bash
# The QEMU backend: a VM started through it (qcow2 overlay over the shared
# image, work disk, guest config, its own session) outlives its starter, is
# recognised by pid + cmdline, answers QMP and SSH, and stops through QMP.
. "$(dirname "$0")/lib.sh"
begin
export BANGER_IMAGE_CACHE="${BANGER_TEST_IMAGE_CACHE:-$TMP/image-builds}"
TOOL="$BANGER_BUILD/tests/vm_tool"
VMDIR="$TMP/vm"; mkdir -p "$VMDIR"
ID=5eed1234
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PID=

prepare() {
        "$BANGER" kernel pull debian-cloud-6.1 >/dev/null 2>&1 &&
        "$BANGER" --json image pull debian-bookworm-slim >"$TMP/img.json" 2>"$TMP/img.err" || { cat "$TMP/img.err"; return 1; }
}
t "kernel and slim image are ready" prepare
K_JSON=$("$BANGER" --json kernel show debian-cloud-6.1 2>/dev/null)
ROOTFS=$(jq -r .rootfs_path "$TMP/img.json" 2>/dev/null)
ROOT_SHA=$(sha256sum "$ROOTFS" 2>/dev/null | cut -d' ' -f1)

PID=$("$TOOL" start "$VMDIR" vmm-test "$ID" "$PORT" "$(echo "$K_JSON" | jq -r .vmlinux 2>/dev/null)" \
        "$(ls "$(echo "$K_JSON" | jq -r .dir 2>/dev/null)"/initramfs-*.cpio 2>/dev/null | head -1)" "$ROOTFS" \
        "$(jq -r .work_seed_path "$TMP/img.json" 2>/dev/null)" 2>"$TMP/start.err")
t "the backend starts QEMU, and QEMU outlives the process that started it" sh -c "[ -n '$PID' ] && kill -0 '$PID'"

t "reconcile identity: pid + cmdline name this VM, and only it" sh -c \
  "'$TOOL' owns '$PID' '$ID' && ! '$TOOL' owns '$PID' 0ther000 && ! '$TOOL' owns \$\$ '$ID'"

t "it runs in its own session" sh -c "[ \"\$(ps -o sid= -p '$PID' | tr -d ' ')\" = '$PID' ]"

qmp_status() {
        local out; out=$("$TOOL" qmp "$VMDIR/qmp.sock" query-status) || return 1
        echo "$out" | jq -e '.running == true and .status == "running"' >/dev/null || { echo "$out"; return 1; }
}
t "QMP answers query-status: running" qmp_status

vmm_ssh() {
        ssh -i "$VMDIR/ssh/id_ed25519" -o UserKnownHostsFile="$VMDIR/ssh/known_hosts" -o StrictHostKeyChecking=yes \
                -o BatchMode=yes -o ConnectTimeout=1 -o LogLevel=ERROR -p "$PORT" root@127.0.0.1 "$@"
}

ssh_in() {
        # retried as a whole: a TCG guest under load can miss a 1 s connect
        wait_for 60 "ssh into the VM" to "$TMP/host.out" vmm_ssh 'hostname; echo data > /var/tmp/in-overlay; sync' ||
                return 1
        expect_eq "$(cat "$TMP/host.out")" vmm-test
}
t "ssh into the backend's VM (pinned host key) and write to its root" ssh_in

overlay() {
        qemu-img info -U --output=json "$VMDIR/root.qcow2" | jq -e '.format == "qcow2" and (."backing-filename" | endswith("/rootfs.ext4"))' >/dev/null &&
        expect_eq "$(sha256sum "$ROOTFS" | cut -d' ' -f1)" "$ROOT_SHA"
}
t "the root is a qcow2 overlay: writes went there, the shared image is unchanged" overlay

t "the serial console goes to the VM's log" sh -c "grep -aq 'banger-init: stage=init-started' '$VMDIR/console.log'"

stop_vm() {
        "$TOOL" stop "$VMDIR" "$ID" "$PID" || return 1
        local p
        for p in $(pgrep -f "banger-$ID"); do alive "$p" && { echo "still running: $p"; return 1; }; done
        ! alive "$PID"
}
t "stop through QMP ends the process; nothing of the VM is left running" stop_vm

[ -n "$PID" ] && [ "$PID" -gt 0 ] 2>/dev/null && kill -9 "$PID" 2>/dev/null
pkill -9 -f "process=banger-$ID" 2>/dev/null   # whatever a failed step left behind
finish
