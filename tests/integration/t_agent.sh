#!/usr/bin/env bash
# banger-agent in a real guest: the slim image under QEMU (TCG) with the
# virtio-serial port org.banger.agent on a host Unix socket.
. "$(dirname "$0")/lib.sh"
begin
export BANGER_IMAGE_CACHE="${BANGER_TEST_IMAGE_CACHE:-$TMP/image-builds}"

t "agent --stdio answers health on the host" sh -c \
  "printf '{\"v\":1,\"id\":5,\"method\":\"health\"}\n' | '${BANGER_AGENT:-$BANGER_BUILD/banger-agent}' --stdio | jq -e '.id == 5 and .result.protocol == 1 and (.result.uptime_s > 0)' >/dev/null"

t "protocol 2 over --stdio: execs, streams, signals, PTY, credit, CLOSE, reset, BYE" \
        python3 "$(dirname "$0")/../helpers/agent_v2.py" stdio "${BANGER_AGENT:-$BANGER_BUILD/banger-agent}"

# --identify checks every record before it applies anything: these are all
# refused without a change (they run on the host, as root)
identify_refuses() {
        local a="${BANGER_AGENT:-$BANGER_BUILD/banger-agent}" rc in
        for in in 'file 644 3 /tmp/x\nabc' 'file 644 3 /etc/../tmp/x\nabc' 'file 644 9 /etc/banger-test-x\nabc' \
                'entropy 4096\nabc' 'nonsense\n' 'file 99999 1 /etc/banger-test-x\na' 'file 644 1 relative\na'; do
                rc=0; printf "$in" | "$a" --identify --hostname "not applied" 2>"$TMP/id.err" || rc=$?
                expect_eq "$rc" 1 || return 1
                grep -q '^banger-agent --identify: ' "$TMP/id.err" || { cat "$TMP/id.err"; return 1; }
        done
        [ ! -e /etc/banger-test-x ] && [ "$(hostname)" != "not applied" ] &&
        # options that do not parse, and --ip without --mac
        ! "$a" --identify --bogus </dev/null 2>/dev/null && ! "$a" --identify --ip 10.0.0.2/24 </dev/null 2>/dev/null
}
t "agent --identify refuses malformed records and options before applying anything" identify_refuses

prepare() {
        "$BANGER" kernel pull debian-cloud-6.1 >/dev/null 2>&1 &&
        "$BANGER" --json image pull debian-bookworm-slim >"$TMP/img.json" 2>"$TMP/img.err" || { cat "$TMP/img.err"; return 1; }
        # the image carries this build's agent
        debugfs -R 'dump /usr/local/bin/banger-agent '"$TMP/agent.img" "$(jq -r .rootfs_path "$TMP/img.json")" >/dev/null 2>&1 &&
        cmp -s "$TMP/agent.img" "${BANGER_AGENT:-$BANGER_BUILD/banger-agent}"
}
t "kernel and slim image (with this agent) are ready" prepare
# (t runs in a subshell: what later steps need is read here)
K_JSON=$("$BANGER" --json kernel show debian-cloud-6.1 2>/dev/null)
VMLINUX=$(echo "$K_JSON" | jq -r .vmlinux 2>/dev/null)
INITRD=$(ls "$(echo "$K_JSON" | jq -r .dir 2>/dev/null)"/initramfs-*.cpio 2>/dev/null | head -1)
ROOTFS=$(jq -r .rootfs_path "$TMP/img.json" 2>/dev/null)

AGENT_SOCK="$TMP/agent.sock"
QEMU=
start_vm() {
        qemu-system-x86_64 -M microvm -accel tcg,tb-size=128 -m 512 -smp 1 -nodefaults -no-user-config \
                -nographic -no-reboot -kernel "$VMLINUX" -initrd "$INITRD" \
                -append "console=ttyS0 tsc_early_khz=$(tsc_khz) cryptomgr.notests quiet banger.mode=fast banger.root=rootfs banger.hostname=agent-test" \
                -serial stdio -device virtio-rng-device \
                -drive "id=root,file=$ROOTFS,format=raw,if=none,snapshot=on" -device virtio-blk-device,drive=root,serial=rootfs \
                -device virtio-serial-device -chardev "socket,id=agent,path=$AGENT_SOCK,server=on,wait=off" \
                -device virtserialport,chardev=agent,name=org.banger.agent </dev/null >"$TMP/serial.log" 2>&1 &
        QEMU=$!
}
start_vm
booted() {
        wait_for 60 "banger-init to start init" marker_or_gone "$TMP/serial.log" 'stage=init-started' "$QEMU" &&
                grep -aq 'stage=init-started' "$TMP/serial.log" || { tail -5 "$TMP/serial.log"; return 1; }
}
t "the guest boots with the agent port" booted

# One request, one line back. No half-close: QEMU's socket chardev takes EOF
# for a disconnect (socat would shut the write side down at stdin's end).
ask() {
        python3 - "$AGENT_SOCK" "$1" <<'PY'
import socket, sys, time
deadline = time.time() + 30
while True:  # the agent may need a moment to open its port
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    try:
        s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        if b"\n" in buf:
            print(buf.split(b"\n")[0].decode()); sys.exit(0)
    except OSError:
        pass
    finally:
        s.close()
    if time.time() > deadline:
        sys.exit(1)
    time.sleep(0.2)
PY
}

health() {
        local r; r=$(ask '{"v":1,"id":11,"method":"health"}') || return 1
        echo "$r" | jq -e '.v == 1 and .id == 11 and .result.protocol == 1 and .result.hostname == "agent-test" and
                           (.result.uptime_s > 0) and (.result.load | length == 3) and (.result.sshd_listening | type == "boolean")' >/dev/null ||
                { echo "$r"; return 1; }
}
t "health: protocol, hostname from the kernel command line, uptime, load, sshd" health

ports() {
        local r; r=$(ask '{"v":1,"id":12,"method":"ports"}') || return 1
        echo "$r" | jq -e '.id == 12 and (.result.ports | type == "array")' >/dev/null || { echo "$r"; return 1; }
}
t "ports answers with the guest's listening sockets" ports

errors() {
        local a b c
        a=$(ask '{"v":2,"id":13,"method":"health"}') && b=$(ask 'not json') &&
                c=$(ask '{"v":1,"id":14,"method":"reboot-the-planet"}') || return 1
        echo "$a" | jq -e '.id == 13 and .error.code == "bad_version"' >/dev/null &&
        echo "$b" | jq -e '.id == null and .error.code == "bad_request"' >/dev/null &&
        echo "$c" | jq -e '.error.code == "unknown_method"' >/dev/null
}
t "bad version, garbage and unknown methods get errors, not silence" errors

sync_() { local r; r=$(ask '{"v":1,"id":15,"method":"sync"}') && echo "$r" | jq -e '.id == 15 and .result.synced == true' >/dev/null; }
t "sync" sync_

v2_guest() { python3 "$(dirname "$0")/../helpers/agent_v2.py" socket "$AGENT_SOCK"; }
t "protocol 2 in the guest, through QEMU's socket: the same checks" v2_guest
sync_after() { local r; r=$(ask '{"v":1,"id":17,"method":"sync"}') && echo "$r" | jq -e '.id == 17' >/dev/null; }
t "after BYE and a new connection the agent answers lines" sync_after

poweroff() {
        local r; r=$(ask '{"v":1,"id":16,"method":"poweroff"}') || return 1
        echo "$r" | jq -e '.result.powering_off == true' >/dev/null || { echo "$r"; return 1; }
        wait_for 10 "QEMU to exit after poweroff" not kill -0 "$QEMU" || return 1
        ! grep -aq FATAL "$TMP/serial.log"
}
t "poweroff answers, then the VM powers off and QEMU exits" poweroff
[ -n "$QEMU" ] && { kill "$QEMU" 2>/dev/null; wait "$QEMU" 2>/dev/null; }

# QEMU's vsock transport: the daemon's choice follows /dev/vhost-vsock
# (doctor shows it); with the device, a guest booted with a vhost-vsock
# device and no port answers on AF_VSOCK (CID, 1024)
vsock_doctor() {
        "$BANGER" doctor >"$TMP/doctor.out" 2>&1
        if [ -r /dev/vhost-vsock ] && [ -w /dev/vhost-vsock ]; then
                grep -A1 '^PASS.vsock' "$TMP/doctor.out" | grep -q '/dev/vhost-vsock opens' || { cat "$TMP/doctor.out"; return 1; }
        else
                grep -A1 'vsock' "$TMP/doctor.out" | grep -q 'agent over virtio-serial' || { cat "$TMP/doctor.out"; return 1; }
        fi
}
t "doctor: the agent transport QEMU VMs get here (vsock, or virtio-serial without /dev/vhost-vsock)" vsock_doctor

vsock_guest() {
        local cid=$((1000 + RANDOM % 20000)) q r
        qemu-system-x86_64 -M microvm -accel tcg,tb-size=128 -m 512 -smp 1 -nodefaults -no-user-config \
                -nographic -no-reboot -kernel "$VMLINUX" -initrd "$INITRD" \
                -append "console=ttyS0 tsc_early_khz=$(tsc_khz) cryptomgr.notests quiet banger.mode=fast banger.root=rootfs banger.hostname=vsock-test" \
                -serial stdio -device virtio-rng-device \
                -drive "id=root,file=$ROOTFS,format=raw,if=none,snapshot=on" -device virtio-blk-device,drive=root,serial=rootfs \
                -device "vhost-vsock-device,guest-cid=$cid" </dev/null >"$TMP/vsock-serial.log" 2>&1 &
        q=$!
        r=$(python3 - "$cid" <<'PY'
import json, socket, sys, time
cid = int(sys.argv[1]); end = time.time() + 120
while time.time() < end:
    try:
        s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM); s.settimeout(2); s.connect((cid, 1024))
        s.sendall(b'{"v":1,"id":21,"method":"health"}\n'); buf = b""
        while b"\n" not in buf:
            d = s.recv(4096)
            if not d: raise OSError("closed")
            buf += d
        print(buf.split(b"\n")[0].decode()); sys.exit(0)
    except OSError:
        time.sleep(1)
sys.exit(1)
PY
) || { kill "$q"; wait "$q" 2>/dev/null; tail -5 "$TMP/vsock-serial.log"; return 1; }
        kill "$q"; wait "$q" 2>/dev/null
        echo "$r" | jq -e '.id == 21 and .result.hostname == "vsock-test"' >/dev/null || { echo "$r"; return 1; }
}
if [ -r /dev/vhost-vsock ] && [ -w /dev/vhost-vsock ]; then
        t "the guest agent over vhost-vsock: no port, AF_VSOCK to (CID, 1024)" vsock_guest
else
        skip "the guest agent over vhost-vsock: no port, AF_VSOCK to (CID, 1024)" "no usable /dev/vhost-vsock on this host"
fi

finish
