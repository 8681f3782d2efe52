#!/usr/bin/env bash
# The CLI and the daemon, end to end: auto-start, version, ping, socket
# security, one daemon per state dir, clean stops, version-mismatch restart.
. "$(dirname "$0")/lib.sh"
begin

version_line() {
        local v; v=$("$BANGER" --version)
        expect_match "$v" '^banger v[0-9]+\.[0-9]+\.[0-9]+ \(commit ([0-9a-f]{8}|unknown), built [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z\)$'
}
t "--version prints one line in the documented form" version_line

long_version() {
        local v; v=$("$BANGER" version)
        expect_match "$v" 'commit:' && expect_match "$v" 'protocol: 1'
        "$BANGER" --json version | jq -e '.version and .commit and .built_at' >/dev/null
}
t "version prints the long form and --json" long_version

t "no daemon runs before the first command" test ! -e "$SOCK"

autostart() {
        "$BANGER" ping >"$TMP/ping.out" || return 1
        grep -q '^bangerd v' "$TMP/ping.out" && grep -q '^vmm: ' "$TMP/ping.out" && grep -q '^accel: ' "$TMP/ping.out"
}
t "ping auto-starts bangerd and reports vmm and accel" autostart

socket_modes() {
        expect_eq "$(stat -c %a "$SOCK")" 600 && expect_eq "$(stat -c %a "$(dirname "$SOCK")")" 700 &&
        expect_eq "$(stat -c %a "$STATE")" 700 && expect_eq "$(stat -c %a "$DB")" 600
}
t "socket is 0600 in a 0700 runtime dir; state dir 0700, db 0600" socket_modes

ping_json() {
        "$BANGER" --json ping | jq -e '
          (.version|type)=="string" and (.commit|type)=="string" and (.pid|type)=="number" and
          (.uptime_ms|type)=="number" and (.vmm=="qemu" or .vmm=="firecracker") and
          (.accel=="tcg" or .accel=="kvm") and (.accel_reason|length>0) and (.vmm_reason|length>0)' >/dev/null
}
t "ping --json has the documented shape" ping_json

t "daemon status --json reports running" sh -c "'$BANGER' --json daemon status | jq -e '.running == true' >/dev/null"

second_daemon() {
        local rc=0
        "$BANGERD" >"$TMP/second.out" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q 'another bangerd (pid [0-9]*) is already running' "$TMP/second.out"
}
t "a second bangerd for the same state dir is refused" second_daemon

t "the refused daemon left the running one answering" "$BANGER" ping

concurrent_clients() {
        local pids=() i rc=0
        for i in $(seq 24); do "$BANGER" --json ping >"$TMP/c$i" 2>&1 & pids+=($!); done
        for i in "${pids[@]}"; do wait "$i" || rc=1; done
        [ "$rc" = 0 ] && [ "$(cat "$TMP"/c* | jq -s 'map(.pid) | unique | length')" = 1 ]
}
t "24 concurrent clients are all answered by one daemon" concurrent_clients

ops_list() {
        "$BANGER" --json daemon operations | jq -e '.operations == [] and .running == 0' >/dev/null &&
        "$BANGER" --json daemon operations --running | jq -e '.operations == []' >/dev/null &&
        "$BANGER" daemon operations | grep -q '^no operations$'
}
t "daemon operations lists (no) operations in both forms" ops_list

other_uid() {
        [ "$(id -u)" = 0 ] || return 0
        local out
        # nobody keeps CAP_DAC_OVERRIDE so it can reach the 0700 dir and 0600
        # socket: only SO_PEERCRED stands between it and the daemon.
        out=$(printf '{"v":1,"id":1,"method":"ping"}\n' |
              setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=+dac_override \
                      --ambient-caps=+dac_override "$TMP/bin/rpc-send" "$SOCK")
        echo "$out" | jq -e '.error.code == "unauthorized" and (.error.op_id|startswith("op-"))' >/dev/null &&
        grep -q 'refusing connection from uid=65534' "$LOG"
}
if [ "$(id -u)" = 0 ]; then
        t "a peer with another uid is refused (SO_PEERCRED)" other_uid
else
        skip "a peer with another uid is refused (SO_PEERCRED)" "needs root for setpriv"
fi

stop_daemon() {
        local pid; pid=$("$BANGER" --json ping | jq .pid)
        "$BANGER" daemon stop | grep -q 'bangerd stopped' || return 1
        ! alive "$pid" && [ ! -e "$SOCK" ] && grep -q 'stopping on request' "$LOG"
}
t "daemon stop ends the process and removes the socket" stop_daemon

t "daemon status exits 3 when not running" sh -c "'$BANGER' daemon status >/dev/null; [ \$? = 3 ]"

sigterm() {
        "$BANGER" daemon start | grep -q 'bangerd started' || return 1
        local pid; pid=$("$BANGER" --json ping | jq .pid)
        kill -TERM "$pid"
        wait_for 5 "bangerd to exit" not alive "$pid" || return 1
        [ ! -e "$SOCK" ] && grep -q 'received Terminated' "$LOG"
}
t "SIGTERM stops the daemon cleanly" sigterm

mismatch() {
        BANGERD_TEST_COMMIT=deadbeef "$BANGER" daemon start >/dev/null || return 1
        local old; old=$("$BANGER" --socket "$SOCK" --json ping | jq -r '"\(.pid) \(.commit)"')
        expect_match "$old" ' deadbeef$' || return 1
        "$BANGER" ping >"$TMP/mm.out" 2>&1 || { cat "$TMP/mm.out"; return 1; }
        grep -q 'restarting bangerd v.* (commit deadbeef)' "$TMP/mm.out" || { cat "$TMP/mm.out"; return 1; }
        local new; new=$("$BANGER" --json ping | jq -r '"\(.pid) \(.commit)"')
        [ "${old%% *}" != "${new%% *}" ] && ! expect_match "$new" deadbeef >/dev/null
}
t "a daemon of another build is restarted when idle" mismatch

runtime_refused() {
        "$BANGER" daemon stop >/dev/null
        chmod 755 "$XDG_RUNTIME_DIR/banger"
        local rc=0; "$BANGER" ping >"$TMP/rt.out" 2>&1 || rc=$?
        chmod 700 "$XDG_RUNTIME_DIR/banger"
        expect_eq "$rc" 1 && grep -q 'refusing runtime dir: .* has mode 0755, want 0700' "$TMP/rt.out"
}
t "a runtime dir with the wrong mode is refused, not fixed" runtime_refused

finish
