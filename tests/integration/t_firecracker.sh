#!/usr/bin/env bash
# The Firecracker backend through the daemon, against tests/fc/fake_firecracker.py
# (Firecracker cannot run here: no binary, no KVM). The fake validates every
# API call against Firecracker's OpenAPI file; its hybrid vsock relays the
# agent's port to a `banger-agent --stdio` on the host, so the daemon's whole
# path runs: vm run --vmm firecracker (raw root disk, the API sequence, the
# agent over CONNECT 1024), vm show, a daemon restart (the VM re-identified by
# pid + argv), stop (Ctrl-Alt-Del), start, delete leaving nothing; a refused
# API call fails the create with Firecracker's fault_message and nothing
# left; doctor's version window. Then the same under tests/fc/fake_jailer.py
# (a real chroot, the jailer's documented command line); last a real
# Firecracker where one and KVM exist (skipped here, with the reason).
# First, the fake's own self-test.
. "$(dirname "$0")/lib.sh"
begin
vm_begin
FAKE="$(cd "$(dirname "$0")/../fc" && pwd)/fake_firecracker.py"
AGENT="${BANGER_AGENT:-$BANGER_BUILD/banger-agent}"

t "the fake Firecracker's self-test (its validation, state machine, vsock relay)" sh -c \
  "bash '$(dirname "$FAKE")/test_fake_firecracker.sh' >'$TMP/self.log' 2>&1 || { grep -v '^ok' '$TMP/self.log' | head -20; exit 1; }"

t "kernel and slim image pulled (host namespace)" vm_prepare
printf 'firecracker_bin = "%s"\n' "$FAKE" >>"$CONF"
SPEC=(--image debian-bookworm-slim --vcpu 1 --memory 512)

# the guest's agent: every vsock connection gets an agent of its own
socat UNIX-LISTEN:"$TMP/guest.sock",fork EXEC:"$AGENT --stdio" 2>/dev/null &
SOCAT=$!
trap 'kill $SOCAT 2>/dev/null; vm_cleanup; cleanup' EXIT
export FC_FAKE_VSOCK_1024="$TMP/guest.sock" FC_FAKE_RECORD="$TMP/record.jsonl"

fake_pids() { local p; for p in $(ip netns pids "$NS" 2>/dev/null); do alive "$p" && grep -qa fake_firecracker "/proc/$p/cmdline" && echo "$p"; done; true; }
calls() { jq -r 'select(.method) | "\(.method) \(.path) \(.status)"' "$TMP/record.jsonl"; }

net_user_refused() {
        ! B vm create --name u --vmm firecracker --net user "${SPEC[@]}" >"$TMP/u.out" 2>&1 &&
        grep -q 'firecracker has no user-mode networking' "$TMP/u.out" &&
        expect_eq "$(B --json vm list | jq length)" 0 || { cat "$TMP/u.out"; return 1; }
}
t "--vmm firecracker --net user is refused before any row" net_user_refused
t "--vmm bogus is a usage error" sh -c "! '$BANGER' vm create --vmm bogus >'$TMP/bogus.out' 2>&1 && grep -q 'not a VMM' '$TMP/bogus.out'"

run_fc() {
        B vm run --vmm firecracker --name fc "${SPEC[@]}" -- true >"$TMP/run.out" 2>&1 || { cat "$TMP/run.out"; tail -5 "$LOG"; return 1; }
        local j; j=$(B --json vm show fc)
        expect_eq "$(echo "$j" | jq -r .vmm)" firecracker || return 1
        expect_eq "$(echo "$j" | jq -r .state)" running || return 1
        local dir; dir=$(echo "$j" | jq -r .vm_dir)
        [ -f "$dir/root.raw" ] && [ ! -e "$dir/root.qcow2" ] || { ls -la "$dir"; return 1; }
        # the API calls, in order, each one valid (204)
        calls | head -13 >"$TMP/boot.calls"
        diff <(printf '%s\n' "PUT /logger 204" "PUT /metrics 204" "PUT /machine-config 204" "PUT /boot-source 204" "PUT /drives/rootfs 204" "PUT /drives/work 204" \
                "PUT /drives/repo 204" "PUT /drives/modules 204" "PUT /network-interfaces/net0 204" "PUT /vsock 204" "PUT /entropy 204" "PUT /serial 204" "PUT /actions 204") \
                "$TMP/boot.calls" || return 1
        jq -se 'any(.[]; .event == "vsock" and .result == "ok")' "$TMP/record.jsonl" >/dev/null
}
t "vm run --vmm firecracker: raw root disk, the API sequence, the agent answers over the hybrid vsock" run_fc

identity() {
        local pid id; pid=$(vm_pid fc); id=$(vm_id fc)
        expect_eq "$(fake_pids)" "$pid" || return 1
        tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qx "banger-$id" &&
        [ "$(ps -o sid= -p "$pid" | tr -d ' ')" = "$pid" ]
}
t "one VMM, carrying --id banger-<id>, in its own session" identity

restart() {
        local pid; pid=$(vm_pid fc)
        B daemon stop >/dev/null 2>&1 && alive "$pid" || return 1
        expect_eq "$(B --json vm show fc | jq -r '.state + " " + (.pid|tostring) + " " + .vmm')" "running $pid firecracker"
}
t "the daemon restarts: the Firecracker VM runs on, re-identified" restart

stop_start() {
        local pid; pid=$(vm_pid fc)
        B vm stop fc >"$TMP/stop.out" 2>&1 || { cat "$TMP/stop.out"; return 1; }
        state_is fc stopped && ! alive "$pid" || return 1
        calls | grep -q '^PUT /actions 204$' || return 1
        B vm start fc >"$TMP/start.out" 2>&1 || { cat "$TMP/start.out"; return 1; }
        state_is fc running && [ -n "$(fake_pids)" ]
}
t "vm stop (Ctrl-Alt-Del ends Firecracker), vm start boots it again" stop_start

delete_all() {
        local dir; dir=$(B --json vm show fc | jq -r .vm_dir)
        B vm delete fc >/dev/null 2>&1 || return 1
        expect_eq "$(fake_pids)" "" && [ ! -e "$dir" ] && expect_eq "$(ns_taps)" "" &&
        expect_eq "$(B --json vm list | jq length)" 0
}
t "vm delete: no VMM, file, TAP or row left" delete_all

refused() {
        B daemon stop >/dev/null 2>&1
        FC_FAKE_FAIL="PUT /drives/rootfs" B vm run --vmm firecracker --name bad "${SPEC[@]}" -- true >"$TMP/bad.out" 2>&1 && return 1
        grep -q 'firecracker refused PUT /drives/rootfs (HTTP 400): injected failure' "$TMP/bad.out" || { cat "$TMP/bad.out"; return 1; }
        expect_eq "$(fake_pids)" "" && expect_eq "$(ns_taps)" "" || return 1
        # and Firecracker's own log (its /logger) says it too
        B vm logs --vmm bad >"$TMP/badlog.out" 2>&1 && grep -q 'Received Error.*injected failure' "$TMP/badlog.out" ||
                { cat "$TMP/badlog.out"; return 1; }
}
t "a refused API call fails the boot with Firecracker's fault_message (the error, vm logs --vmm); no VMM or TAP left" refused
B daemon stop >/dev/null 2>&1
B vm delete bad >/dev/null 2>&1

doctor_window() {
        local v want
        for v in "1.14.1 PASS" "1.15.0 WARN" "1.4.0 FAIL"; do
                set -- $v
                FC_FAKE_VERSION="$1" "$BANGER" doctor >"$TMP/doc.out" 2>&1
                grep -qE "^$2	firecracker$" "$TMP/doc.out" || { echo "version $1: want $2"; cat "$TMP/doc.out"; return 1; }
        done
}
t "doctor: Firecracker 1.14 PASS, 1.15 WARN, 1.4 FAIL" doctor_window

# ---- under the jailer: tests/fc/fake_jailer.py takes the jailer's documented
# command line and makes a real chroot (own mount namespace, device nodes,
# uid/gid drop) before it execs the fake Firecracker copied into it ----
JAILER="$(dirname "$FAKE")/fake_jailer.py"
REAL_FC=$(realpath "$FAKE")
export FC_FAKE_SPEC="$(realpath "$(dirname "$REAL_FC")/../../../shared/reference/firecracker-api-v1.14.1.yaml")"
export FC_FAKE_JAILER_RECORD="$TMP/jailer.jsonl"
: >"$TMP/record.jsonl"
B daemon stop >/dev/null 2>&1
printf 'jailer_bin = "%s"\n' "$JAILER" >>"$CONF"
jail_of() { echo "$STATE/jail/$(basename "$REAL_FC")/banger-$(vm_id "$1")"; }

jailed_run() {
        B vm run --vmm firecracker --name jf "${SPEC[@]}" -- true >"$TMP/jrun.out" 2>&1 || { cat "$TMP/jrun.out"; tail -5 "$LOG"; return 1; }
        state_is jf running || { B vm show jf; return 1; }
        local id dir jail; id=$(vm_id jf); dir=$(B --json vm show jf | jq -r .vm_dir); jail=$(jail_of jf)
        # the jailer's argv: the real Firecracker as exec file, the owner's ids, our chroot base, no --id after "--"
        jq -se --arg fc "$REAL_FC" --arg id "banger-$id" --arg base "$(dirname "$(dirname "$jail")")" \
                'length == 1 and (.[0] | .argv[1:] as $a | ($a | index("--")) as $i |
                 $a[$i + 1:] == ["--api-sock", "/api.sock"] and
                 ($a | index("--exec-file")) as $e | $a[$e + 1] == $fc and
                 ($a | index("--id")) as $d | $a[$d + 1] == $id and
                 ($a | index("--chroot-base-dir")) as $c | $a[$c + 1] == $base and .uid == 0)' \
                "$TMP/jailer.jsonl" >/dev/null || { cat "$TMP/jailer.jsonl"; return 1; }
        # cgroup limits exactly where the host's cgroup2 root offers the controller
        local cg2 want=0; cg2=$(awk '$3 == "cgroup2" {print $2; exit}' /proc/mounts)
        grep -qw memory "$cg2/cgroup.controllers" 2>/dev/null && want=1
        jq -se --argjson w "$want" '(.[0].argv | map(select(startswith("memory.max="))) | length) == $w' \
                "$TMP/jailer.jsonl" >/dev/null || { echo "memory limit expected: $want"; cat "$TMP/jailer.jsonl"; return 1; }
        # Firecracker saw chroot names, each one a file of the jail
        jq -se 'any(.[]; .method == "PUT" and .path == "/drives/rootfs" and .body.path_on_host == "/root.raw")' \
                "$TMP/record.jsonl" >/dev/null || { grep drives "$TMP/record.jsonl"; return 1; }
        [ "$(stat -c %i "$jail/root/root.raw")" = "$(stat -c %i "$dir/root.raw")" ] || { ls -la "$jail/root"; return 1; }
        [ -c "$jail/root/dev/kvm" ] && [ -S "$jail/root/api.sock" ] || { ls -laR "$jail/root" | head -30; return 1; }
        # the daemon reaches the jail's sockets by links at the run dir's short paths
        expect_eq "$(readlink "$XDG_RUNTIME_DIR/banger/vms/$id/api.sock")" "$jail/root/api.sock" || return 1
        jq -se 'any(.[]; .event == "vsock" and .result == "ok")' "$TMP/record.jsonl" >/dev/null ||
                { echo "no vsock connection relayed:"; grep event "$TMP/record.jsonl"; return 1; }
}
t "jailed: vm run boots under the jailer (its argv, chroot names, hard links, device nodes); the agent answers" jailed_run

jailed_identity() {
        local pid id jail; pid=$(vm_pid jf); id=$(vm_id jf); jail=$(jail_of jf)
        expect_eq "$(fake_pids)" "$pid" || return 1
        # the jailer exec'd in place: the pid banger watches is Firecracker's, chrooted, one --id
        expect_eq "$(readlink "/proc/$pid/root")" "$jail/root" || return 1
        expect_eq "$(tr '\0' '\n' <"/proc/$pid/cmdline" | grep -cx -- --id)" 1 || return 1
        tr '\0' '\n' <"/proc/$pid/cmdline" | grep -qx "banger-$id"
}
t "jailed: one VMM, chrooted into the VM's jail, carrying the jailer's --id only" jailed_identity

jailed_restart() {
        local pid; pid=$(vm_pid jf)
        B daemon stop >/dev/null 2>&1 && alive "$pid" || return 1
        expect_eq "$(B --json vm show jf | jq -r '.state + " " + (.pid|tostring)')" "running $pid"
}
t "jailed: the daemon restarts, the VM runs on, re-identified by the exec file's name" jailed_restart

jailed_stop_start() {
        local jail; jail=$(jail_of jf)
        B vm stop jf >"$TMP/jstop.out" 2>&1 || { cat "$TMP/jstop.out"; return 1; }
        state_is jf stopped && [ ! -e "$jail" ] || { echo "jail left: $jail"; return 1; }
        B vm start jf >"$TMP/jstart.out" 2>&1 || { cat "$TMP/jstart.out"; return 1; }
        state_is jf running && [ -d "$jail/root" ]
}
t "jailed: vm stop removes the jail; vm start makes it again" jailed_stop_start

jailed_crash() {
        local pid jail base p; pid=$(vm_pid jf); jail=$(jail_of jf); base=$(dirname "$(dirname "$jail")")
        for p in $(ip netns pids "$NS"); do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = bangerd ] && kill -9 "$p"; done
        kill -9 "$pid"
        mkdir -p "$base/firecracker/banger-0123456789abcdef/root" # a jail no VM holds
        wait_for 10 "the killed VMM gone" not alive "$pid" || return 1
        expect_eq "$(B --json vm show jf | jq -r .state)" stopped || return 1
        [ ! -e "$jail" ] && [ ! -e "$base/firecracker/banger-0123456789abcdef" ] || { find "$base" -maxdepth 2; return 1; }
}
t "jailed: daemon and VMM killed; the next daemon removes the VM's jail and an orphan one" jailed_crash

jailed_delete() {
        local base; base=$(dirname "$(dirname "$(jail_of jf)")")
        B vm start jf >/dev/null 2>&1 && B vm delete jf >/dev/null 2>&1 || return 1
        expect_eq "$(fake_pids)" "" && expect_eq "$(find "$base" -mindepth 1 | wc -l)" 0 || { find "$base"; return 1; }
}
t "jailed: vm delete leaves no jail, no VMM" jailed_delete

jail_doctor() {
        "$BANGER" doctor >"$TMP/jdoc.out" 2>&1
        grep -qE "^PASS	jailer$" "$TMP/jdoc.out" || { cat "$TMP/jdoc.out"; return 1; }
        cp "$JAILER" "$TMP/loose_jailer" && chmod 0777 "$TMP/loose_jailer" || return 1
        B daemon stop >/dev/null 2>&1
        sed -i "s|^jailer_bin = .*|jailer_bin = \"$TMP/loose_jailer\"|" "$CONF"
        "$BANGER" doctor >"$TMP/jdoc2.out" 2>&1
        grep -qE "^FAIL	jailer$" "$TMP/jdoc2.out" || { cat "$TMP/jdoc2.out"; return 1; }
        B vm run --vmm firecracker --name loose "${SPEC[@]}" -- true >"$TMP/loose.out" 2>&1 && return 1
        grep -q 'writable by others than root' "$TMP/loose.out" || { cat "$TMP/loose.out"; return 1; }
        expect_eq "$(fake_pids)" "" && expect_eq "$(B --json vm list | jq length)" 0
}
t "doctor: a trusted jailer PASS; one others can write FAIL, and Firecracker VMs are refused with the reason" jail_doctor

# ---- a real Firecracker, where one and a working KVM exist (never here) ----
real_fc_missing() { # prints why not, or nothing
        local fc v; fc=$(command -v firecracker) || { echo "no firecracker on PATH"; return; }
        v=$(firecracker --version 2>/dev/null | head -1)
        grep -q 'fake_firecracker' "$(realpath "$fc")" 2>/dev/null && { echo "firecracker on PATH is the fake"; return; }
        [ -c /dev/kvm ] && [ -r /dev/kvm ] && [ -w /dev/kvm ] || { echo "no usable /dev/kvm"; return; }
        python3 -c 'import fcntl, os; fd = os.open("/dev/kvm", os.O_RDWR); fcntl.ioctl(fd, 0xAE01, 0)' 2>/dev/null ||
                { echo "KVM_CREATE_VM fails on /dev/kvm"; return; }
        [ "$BANGER_SUITE" = std ] || { echo "runs in the normal build only ($v)"; return; }
}
real_fc() {
        B daemon stop >/dev/null 2>&1
        unset FC_FAKE_SPEC FC_FAKE_JAILER_RECORD FC_FAKE_VSOCK_1024 FC_FAKE_RECORD
        # the real binaries from PATH (the jailer when installed), KVM
        sed -i -e '/^firecracker_bin/d' -e '/^jailer_bin/d' -e 's/^accel = .*/accel = "kvm"/' "$CONF"
        "$BANGER" kernel build microvm-6.1 >"$TMP/kb.out" 2>&1 || { tail -5 "$TMP/kb.out"; return 1; }
        local img; img=$("$BANGER" --json image show debian-bookworm-slim) || return 1
        B image register --name slim-fc --rootfs "$(jq -r .rootfs_path <<<"$img")" \
                --work-seed "$(jq -r .work_seed_path <<<"$img")" --kernel-ref microvm-6.1 --init-mode fast >/dev/null || return 1
        B vm run --rm --vmm firecracker --image slim-fc --vcpu 1 --memory 512 -- cat /etc/os-release >"$TMP/real.out" 2>&1 ||
                { cat "$TMP/real.out"; tail -20 "$LOG"; return 1; }
        grep -q bookworm "$TMP/real.out" || { cat "$TMP/real.out"; return 1; }
        # --rm deletes in the daemon after the CLI has its exit status: a moment
        wait_for 30 "the VM to be gone" real_fc_gone || real_fc_gone
}
real_fc_gone() { expect_eq "$(B --json vm list | jq length)" 0 && expect_eq "$(ns_taps)" ""; }
why=$(real_fc_missing)
if [ -n "$why" ]; then
        skip "a real Firecracker boots the slim image on microvm-6.1 and runs a command through the agent" "$why"
else
        t "a real Firecracker boots the slim image on microvm-6.1 and runs a command through the agent" real_fc
fi
finish
