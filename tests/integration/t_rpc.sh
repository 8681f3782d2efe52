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

# A client that connects, sends $1 (maybe nothing, maybe half a request) and
# waits; it exits when the daemon closes the connection.
idle_client() { # (run in the background: exec makes $! the client itself)
        exec /usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode())
s.settimeout(300)
try:
    while s.recv(4096): pass
except OSError: pass' "$SOCK" "${1:-}"
}

# Zombie-aware: the clients are this shell's children until it reaps them.
none_alive() { local p; for p in "$@"; do alive "$p" && return 1; done; return 0; }
all_alive() { local p; for p in "$@"; do alive "$p" || return 1; done; return 0; }

# A client gets an answer, and the daemon has made room for one by now.
served_by_eviction() { "$BANGER" ping >/dev/null && grep -q 'to make room' "$LOG"; }

conn_limit() {
        local pids=() i rc=0
        for i in $(seq 64); do idle_client & pids+=($!); done
        # every ping is served; once the 64 idle ones are all in, one makes room
        wait_for 30 "a client served by closing the idlest connection" served_by_eviction || rc=1
        [ "$rc" = 0 ] && { wait_for 5 "an idle client to have been closed" not all_alive "${pids[@]}" || rc=1; }
        kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null
        return $rc
}
t "64 idle connections do not lock clients out: the idlest is closed for the 65th" conn_limit

idle_timeout() {
        idle_client & local idle=$!
        idle_client '{"v":1,"id":1,"met' & local half=$!   # half a request, then silence
        wait_for 45 "the idle and the half-sent connections to be closed" none_alive "$idle" "$half"
        local rc=$?
        kill "$idle" "$half" 2>/dev/null; wait 2>/dev/null
        return $rc
}
t "an idle connection and a half-sent request are closed after 30 s" idle_timeout

# A client that sends requests and never reads the answers: the daemon's
# writes to it fill the socket; others are served meanwhile, and after 15 s
# of no reading the daemon closes it (the client then finds fewer answers
# than requests, and the end of the connection).
slow_reader() {
        "$PY" -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
req = b"{\"v\":1,\"id\":1,\"method\":\"ping\",\"params\":{}}\n"
s.settimeout(2); sent = 0
try:
    while sent < 100000: s.sendall(req); sent += 1
except OSError: pass
print("stuck", sent, flush=True)
time.sleep(22)
s.settimeout(5); got = 0
try:
    while True:
        d = s.recv(65536)
        if not d: print("closed", sent, got, flush=True); break
        got += d.count(b"\n")
except ConnectionResetError: print("closed", sent, got, flush=True)  # closed with requests unread
except OSError: print("open", sent, got, flush=True)' "$SOCK" >"$TMP/slow.out" 2>&1 &
        local client=$! rc=0
        wait_for 20 "the slow client to be stuck" grep -q stuck "$TMP/slow.out" || rc=1
        # the daemon serves others meanwhile
        [ "$rc" = 0 ] && { "$BANGER" ping >/dev/null || { echo "a ping was not served while a client was stuck"; rc=1; }; }
        wait "$client"
        local st sent got; read -r st sent got < <(tail -1 "$TMP/slow.out")
        [ "$st" = closed ] && [ "$got" -lt "$sent" ] || { echo "the slow client: $(cat "$TMP/slow.out")"; rc=1; }
        grep -q "read nothing of its answers" "$LOG" || { echo "no log line:"; tail -5 "$LOG"; rc=1; }
        return $rc
}
t "a client that never reads its answers is closed after 15 s; others are served meanwhile" slow_reader

finish
