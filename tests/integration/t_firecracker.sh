#!/usr/bin/env bash
# The Firecracker backend through the daemon, against tests/fc/fake_firecracker.py
# (Firecracker cannot run here: no binary, no KVM). The fake validates every
# API call against Firecracker's OpenAPI file; its hybrid vsock relays the
# agent's port to a `banger-agent --stdio` on the host, so the daemon's whole
# path runs: vm run --vmm firecracker (raw root disk, the API sequence, the
# agent over CONNECT 1024), vm show, a daemon restart (the VM re-identified by
# pid + argv), stop (Ctrl-Alt-Del), start, delete leaving nothing; a refused
# API call fails the create with Firecracker's fault_message and nothing
# left; doctor's version window. First, the fake's own self-test.
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
        calls | head -11 >"$TMP/boot.calls"
        diff <(printf '%s\n' "PUT /machine-config 204" "PUT /boot-source 204" "PUT /drives/rootfs 204" "PUT /drives/work 204" \
                "PUT /drives/repo 204" "PUT /drives/modules 204" "PUT /network-interfaces/net0 204" "PUT /vsock 204" "PUT /entropy 204" "PUT /serial 204" "PUT /actions 204") \
                "$TMP/boot.calls" || return 1
        jq -e 'select(.event == "vsock") | select(.result == "ok")' "$TMP/record.jsonl" >/dev/null
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
        expect_eq "$(fake_pids)" "" && expect_eq "$(ns_taps)" ""
}
t "a refused API call fails the boot with Firecracker's fault_message; no VMM or TAP left" refused
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
finish
