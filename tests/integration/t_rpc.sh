#!/usr/bin/env bash
# The wire protocol against a real daemon: every error code, bounds, and
# that nothing a client sends can crash or hang the daemon.
. "$(dirname "$0")/lib.sh"
begin
"$BANGER" daemon start >/dev/null

code_of() { raw_rpc "$1" | jq -r '.error.code // "none"'; }

good() { raw_rpc '{"v":1,"id":41,"method":"ping"}' | jq -e '.id == 41 and .result.pid > 0' >/dev/null; }
t "a good request gets its id back with a result" good

bad() { # description request expected-code
        local got; got=$(code_of "$2")
        t "$1 -> $3" expect_eq "$got" "$3"
}
bad "malformed JSON" '{"v":1,"id":1,' bad_request
bad "not an object" '[1,2,3]' bad_request
bad "missing id" '{"v":1,"method":"ping"}' bad_request
bad "unknown top-level field" '{"v":1,"id":1,"method":"ping","x":1}' bad_request
bad "params not an object" '{"v":1,"id":1,"method":"ping","params":"x"}' bad_request
bad "unknown parameter" '{"v":1,"id":1,"method":"daemon.operations.list","params":{"nope":1}}' bad_request
bad "wrong parameter type" '{"v":1,"id":1,"method":"daemon.operations.list","params":{"running_only":"yes"}}' bad_request
bad "unknown method" '{"v":1,"id":1,"method":"vm.nope"}' unknown_method
bad "protocol version 2" '{"v":2,"id":1,"method":"ping"}' bad_version
bad "missing version" '{"id":1,"method":"ping"}' bad_version

op_ids() {
        raw_rpc '{"v":1,"id":1,"method":"vm.nope"}' | jq -e '.error.op_id | test("^op-[0-9a-f]{6}$")' >/dev/null || return 1
        local op; op=$(raw_rpc '{"v":1,"id":1,"method":"vm.nope"}' | jq -r .error.op_id)
        grep -q "op_id=$op msg=\"rpc unknown method 'vm.nope'\"" "$LOG"
}
t "errors carry an op_id that is on the daemon's log line" op_ids

oversized() {
        local out
        out=$( { printf '{"v":1,"id":1,"method":"ping","params":{"x":"'; head -c 1100000 /dev/zero | tr '\0' a; printf '"}}\n'; } |
               rpc_send)
        echo "$out" | jq -e '.error.code == "bad_request" and (.error.message | test("1 MiB"))' >/dev/null
}
t "an oversized request is refused with bad_request" oversized

pipelined() {
        local n; n=$(printf '%s\n' '{"v":1,"id":1,"method":"ping"}' 'garbage' '{"v":1,"id":3,"method":"ping"}' |
                     socat -t 5 - "UNIX-CONNECT:$SOCK" | jq -sc 'map(.id)')
        expect_eq "$n" '[1,null,3]'
}
t "requests on one connection are answered in order, a bad one in between" pipelined

t "blank lines and a half request closed early do not upset it" sh -c "
  printf '\n\n{\"v\":1,\"id\"' | socat -t 2 - 'UNIX-CONNECT:$SOCK' >/dev/null; '$BANGER' ping >/dev/null"

binary_noise() {
        head -c 65536 /dev/urandom | socat -t 2 - "UNIX-CONNECT:$SOCK" >/dev/null 2>&1
        "$BANGER" ping >/dev/null
}
t "random bytes do not crash the daemon" binary_noise

full() { raw_rpc '{"v":1,"id":1,"method":"ping"}' | jq -e '.error.message == "too many connections to the daemon"'; }

conn_limit() {
        local pids=() i
        # each client holds its connection open for 20 s (its stdin)
        for i in $(seq 64); do sleep 20 | socat - "UNIX-CONNECT:$SOCK" >/dev/null 2>&1 & pids+=($!); done
        wait_for 10 "the daemon to hold 64 connections" full
        local rc=$?
        kill "${pids[@]}" 2>/dev/null; pkill -P $$ sleep 2>/dev/null
        wait 2>/dev/null
        [ "$rc" = 0 ] || return 1
        wait_for 5 "the daemon to answer again" "$BANGER" ping
}
t "the 65th concurrent connection is refused and the daemon recovers" conn_limit

finish
