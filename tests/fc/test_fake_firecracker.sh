#!/usr/bin/env bash
# Self-test of the fake Firecracker (tests/fc/fake_firecracker.py), TAP output.
# Drives it with curl --unix-socket through a full boot, every validation
# failure kind, the state machine, snapshots, the hybrid vsock relay, exits
# and the record file. Needs python3, python3-yaml, curl, socat. Everything
# lives in one temp dir; the fakes and listeners it started are killed on any
# exit.
set -u
here=$(cd "$(dirname "$0")" && pwd)
FAKE="$here/fake_firecracker.py"
PY=/usr/bin/python3 # Debian's, as the fake's shebang: it has python3-yaml
[ -x "$PY" ] || PY=python3

tmp=$(mktemp -d /tmp/fcfake.XXXXXX) # short: socket paths must fit sun_path
pids=()
cleanup() {
        for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
        rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
        n=$((n + 1)); failed=$((failed + 1))
        echo "not ok $n - $1"
        [ -z "${2:-}" ] || echo "$2" | sed 's/^/# /'
}
check() { # DESC COMMAND...: ok when the command succeeds
        local desc=$1; shift
        if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}

# start_fake NAME [ENV=VALUE...] -- [FLAGS...]: runs a fake on $tmp/NAME.sock,
# records to $tmp/NAME.rec; sets $sock and $pid once the socket is there.
start_fake() {
        local name=$1; shift
        local envs=()
        while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
        [ $# -gt 0 ] && shift
        sock=$tmp/$name.sock
        env FC_FAKE_RECORD="$tmp/$name.rec" "${envs[@]}" "$FAKE" --api-sock "$sock" "$@" \
                >"$tmp/$name.out" 2>&1 &
        pid=$!
        pids+=("$pid")
        for _ in $(seq 200); do
                [ -S "$sock" ] && return 0
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.05
        done
        echo "# fake $name did not start:"; sed 's/^/# /' "$tmp/$name.out"
        return 1
}

# wait_exit PID: waits up to 5 s for the process to end; sets $rc (its wait status)
wait_exit() {
        for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
        if kill -0 "$1" 2>/dev/null; then rc=running; return 1; fi
        wait "$1"; rc=$?
}

# api METHOD PATH [BODY]: sets $status and $resp
api() {
        local args=(-s -o "$tmp/resp" -w '%{http_code}' --max-time 5 --unix-socket "$sock" -X "$1")
        [ $# -lt 3 ] || args+=(-H 'Content-Type: application/json' --data-binary "$3")
        status=$(curl "${args[@]}" "http://localhost$2")
        resp=$(cat "$tmp/resp" 2>/dev/null)
}

# expect DESC STATUS FAULT-SUBSTRING METHOD PATH [BODY]: one request, its
# status, and (for errors) a fault_message containing FAULT-SUBSTRING (as it
# is written in the JSON answer: a quote is \")
expect() {
        local desc=$1 want=$2 fault=$3; shift 3
        api "$@"
        if [ "$status" != "$want" ]; then
                not_ok "$desc" "$* -> $status $resp (wanted $want)"
        elif [ -n "$fault" ] && [[ $resp != '{"fault_message": "'*"$fault"* ]]; then
                not_ok "$desc" "$* -> $status $resp (wanted a fault_message with: $fault)"
        else
                ok "$desc"
        fi
}

field() { jq -r "$1" <<<"$resp"; }
jqe() { jq -e "$@" >/dev/null; } # jqe FILTER [FILE...]: true when the filter holds

# ---------------------------------------------------------------- the CLI
out=$("$FAKE" --version); rc=$?
check "--version prints Firecracker's version line, exit 0" \
        test "$rc:$(head -1 <<<"$out")" = "0:Firecracker v1.14.1"
out=$(FC_FAKE_VERSION=1.4.0 "$FAKE" --version)
check "FC_FAKE_VERSION overrides the version" test "$(head -1 <<<"$out")" = "Firecracker v1.4.0"
out=$("$FAKE" --api-sock "$tmp/x.sock" --bogus 2>&1); rc=$?
check "an unknown flag: exit 153 (ArgParsing) with Firecracker's message" \
        test "$rc" = 153 -a -n "$(grep -F "Found argument 'bogus' which wasn't expected" <<<"$out")"
out=$("$FAKE" --id x 2>&1); rc=$?
check "no --api-sock: exit 153" test "$rc" = 153
touch "$tmp/taken.sock"
out=$("$FAKE" --api-sock "$tmp/taken.sock" 2>&1); rc=$?
check "an api socket path that exists: exit 1, not removed" \
        test "$rc" = 1 -a -f "$tmp/taken.sock" -a -n "$(grep -F 'Failed to open the API socket' <<<"$out")"

# ---------------------------------------------------------------- a full boot
printf 'kernel' >"$tmp/vmlinux"
truncate -s 1M "$tmp/rootfs.ext4"
: >"$tmp/fc.log"
: >"$tmp/fc.metrics"
socat UNIX-LISTEN:"$tmp/echo.sock" EXEC:cat 2>/dev/null &
pids+=($!)

start_fake a FC_FAKE_VSOCK_52="$tmp/echo.sock" FC_FAKE_FAIL="PUT /drives/injected" -- --id vm-a --no-seccomp ||
        { echo "Bail out! the fake does not start"; exit 1; }
a_pid=$pid

api GET /
check "GET / before boot: Not started, app_name Firecracker, the --id" \
        test "$status:$(field .state):$(field .app_name):$(field .id)" = "200:Not started:Firecracker:vm-a"
conns=$(curl -s -o /dev/null -o /dev/null -w '%{num_connects} ' --unix-socket "$sock" http://localhost/ http://localhost/version)
check "keep-alive: a second request reuses the connection" test "$conns" = "1 0 "
api GET /machine-config
check "GET /machine-config before any PUT: Firecracker's defaults (1 vCPU, 128 MiB)" \
        test "$status:$(field .vcpu_count):$(field .mem_size_mib)" = "200:1:128"

expect "PUT /logger (existing file)" 204 "" PUT /logger "{\"log_path\":\"$tmp/fc.log\",\"level\":\"info\",\"show_level\":true}"
expect "PUT /metrics (existing file)" 204 "" PUT /metrics "{\"metrics_path\":\"$tmp/fc.metrics\"}"
expect "PUT /machine-config" 204 "" PUT /machine-config '{"vcpu_count":1,"mem_size_mib":256,"smt":false}'
expect "PATCH /machine-config with a subset of the fields" 204 "" PATCH /machine-config '{"vcpu_count":2}'
expect "PUT /boot-source" 204 "" PUT /boot-source "{\"kernel_image_path\":\"$tmp/vmlinux\",\"boot_args\":\"console=ttyS0\"}"
expect "PUT /drives/rootfs" 204 "" PUT /drives/rootfs \
        "{\"drive_id\":\"rootfs\",\"path_on_host\":\"$tmp/rootfs.ext4\",\"is_root_device\":true,\"is_read_only\":false,\"cache_type\":\"Writeback\",\"rate_limiter\":{\"bandwidth\":{\"size\":1048576,\"refill_time\":100}}}"
expect "PUT /network-interfaces/eth0" 204 "" PUT /network-interfaces/eth0 \
        '{"iface_id":"eth0","host_dev_name":"tap-vm-a","guest_mac":"06:00:ac:10:00:02"}'
expect "PUT /vsock" 204 "" PUT /vsock "{\"guest_cid\":3,\"uds_path\":\"$tmp/a.vsock\"}"
check "the vsock uds_path is listening once configured" test -S "$tmp/a.vsock"
expect "PUT /entropy" 204 "" PUT /entropy '{}'
expect "PUT /mmds/config" 204 "" PUT /mmds/config '{"network_interfaces":["eth0"],"version":"V2"}'
expect "PUT /mmds" 204 "" PUT /mmds '{"latest":{"meta-data":{"instance-id":"vm-a"}}}'
check "the logger writes its lines into the configured file" grep -q 'vm-a:fc_api:INFO' "$tmp/fc.log"

# ---------------------------------------------------------------- validation
expect "unknown field: 400" 400 'unknown field `bogus`' PUT /machine-config '{"vcpu_count":1,"mem_size_mib":128,"bogus":1}'
expect "unknown field in a nested \$ref object: 400" 400 \
        'unknown field `burst`, expected one of `one_time_burst`, `refill_time`, `size` at `rate_limiter.bandwidth`.' \
        \
        PUT /drives/rootfs "{\"drive_id\":\"rootfs\",\"path_on_host\":\"$tmp/rootfs.ext4\",\"is_root_device\":true,\"rate_limiter\":{\"bandwidth\":{\"size\":1,\"refill_time\":1,\"burst\":1}}}"
expect "missing required field: 400" 400 'missing field `is_root_device`' PUT /drives/data \
        "{\"drive_id\":\"data\",\"path_on_host\":\"$tmp/rootfs.ext4\"}"
expect "wrong type (string for integer): 400" 400 'invalid type: string \"2\", expected an unsigned integer at `vcpu_count`' \
        PUT /machine-config '{"vcpu_count":"2","mem_size_mib":128}'
expect "wrong type (integer for boolean): 400" 400 'expected a boolean at `is_root_device`' PUT /drives/data \
        "{\"drive_id\":\"data\",\"path_on_host\":\"$tmp/rootfs.ext4\",\"is_root_device\":1}"
expect "null for a field: 400" 400 'invalid type: null' PUT /boot-source \
        "{\"kernel_image_path\":\"$tmp/vmlinux\",\"initrd_path\":null}"
expect "bad enum value: 400" 400 'unknown variant `Fast`' PUT /drives/data \
        "{\"drive_id\":\"data\",\"path_on_host\":\"$tmp/rootfs.ext4\",\"is_root_device\":false,\"cache_type\":\"Fast\"}"
expect "bad enum in another schema (action_type): 400" 400 'unknown variant `Reboot`' PUT /actions '{"action_type":"Reboot"}'
expect "below the schema's minimum (guest_cid 2): 400" 400 'expected an integer at least 3' PUT /vsock \
        "{\"guest_cid\":2,\"uds_path\":\"$tmp/b.vsock\"}"
expect "drive id in path and body differ: 400" 400 'The id from the path does not match the id from the body!' \
        PUT /drives/data "{\"drive_id\":\"other\",\"path_on_host\":\"$tmp/rootfs.ext4\",\"is_root_device\":false}"
expect "iface id in path and body differ: 400" 400 'The id from the path [eth1] does not match the id from the body [eth0]!' \
        PUT /network-interfaces/eth1 '{"iface_id":"eth0","host_dev_name":"tap1"}'
expect "an id with a '-': 400" 400 'alphanumeric characters and underscores' PUT /drives/a-b \
        "{\"drive_id\":\"a-b\",\"path_on_host\":\"$tmp/rootfs.ext4\",\"is_root_device\":false}"
expect "unknown path: 400" 400 'Invalid request method and/or path: PUT /nonsense.' PUT /nonsense '{}'
expect "wrong method on a known path: 400" 400 'Invalid request method and/or path: GET /drives/rootfs.' GET /drives/rootfs
expect "malformed JSON: 400" 400 'deserializing the json body' PUT /machine-config '{"vcpu_count":'
expect "empty PUT body: 400" 400 'Empty PUT request.' PUT /machine-config
api PUT /mmds "{\"k\":\"$(head -c 60000 /dev/zero | tr '\0' x)\"}"
check "a body over 51200 bytes: 400 from the HTTP layer ({\"error\": ...})" \
        test "$status:$(field '.error | contains("larger than the limit of 51200")')" = 400:true
expect "a logger file that does not exist: 400" 400 'Logger error: Failed to open target file: No such file' \
        PUT /logger "{\"log_path\":\"$tmp/missing.log\"}"
expect "a drive whose backing file does not exist: 400" 400 'Error manipulating the backing file' PUT /drives/data \
        "{\"drive_id\":\"data\",\"path_on_host\":\"$tmp/missing.ext4\",\"is_root_device\":false}"
expect "a second root drive: 400" 400 'A root block device already exists!' PUT /drives/data \
        "{\"drive_id\":\"data\",\"path_on_host\":\"$tmp/rootfs.ext4\",\"is_root_device\":true}"
expect "FC_FAKE_FAIL: an injected 400" 400 'injected failure' PUT /drives/injected \
        "{\"drive_id\":\"injected\",\"path_on_host\":\"$tmp/rootfs.ext4\",\"is_root_device\":false}"
expect "PATCH /vm before InstanceStart: 400" 400 'not supported before starting the microVM' PATCH /vm '{"state":"Paused"}'
expect "snapshot load after configuring boot resources: 400" 400 'not allowed after configuring boot-specific resources' \
        PUT /snapshot/load "{\"snapshot_path\":\"$tmp/snap\",\"mem_backend\":{\"backend_type\":\"File\",\"backend_path\":\"$tmp/mem\"}}"
check "the fake is still up after the load refused for configuration" kill -0 "$a_pid"

# ---------------------------------------------------------------- running
expect "InstanceStart" 204 "" PUT /actions '{"action_type":"InstanceStart"}'
api GET /
check "GET / after InstanceStart: Running" test "$(field .state)" = Running
expect "a pre-boot-only PUT after start: 400" 400 'The requested operation is not supported after starting the microVM.' \
        PUT /machine-config '{"vcpu_count":1,"mem_size_mib":128}'
expect "InstanceStart twice: 400" 400 'not supported after starting' PUT /actions '{"action_type":"InstanceStart"}'
expect "snapshot create while running: 400" 400 'save/restore unavailable while running' \
        PUT /snapshot/create "{\"snapshot_path\":\"$tmp/snap\",\"mem_file_path\":\"$tmp/mem\"}"

vsock_client() { # UDS PORT: CONNECT, then a line through; prints what came back
        timeout 5 "$PY" - "$1" "$2" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(4)
s.connect(sys.argv[1])
s.sendall(b"CONNECT %s\n" % sys.argv[2].encode())
got = b""
try:
    while not got.endswith(b"\n"):
        chunk = s.recv(1)
        if not chunk:
            break
        got += chunk
    if got.startswith(b"OK "):
        s.sendall(b"ping\n")
        while not got.endswith(b"ping\n"):
            chunk = s.recv(64)
            if not chunk:
                break
            got += chunk
except socket.timeout:
    got += b"<timeout>"
sys.stdout.write(got.decode() if got else "<closed>")
EOF
}
out=$(vsock_client "$tmp/a.vsock" 52)
check "vsock CONNECT 52 (FC_FAKE_VSOCK_52 set): OK <port>, bytes relayed both ways" \
        grep -qzE '^OK [0-9]+
ping
$' <<<"$out"
out=$(vsock_client "$tmp/a.vsock" 53)
check "vsock CONNECT 53 (nothing listens): closed without an answer" test "$out" = "<closed>"

expect "PATCH /vm Paused" 204 "" PATCH /vm '{"state":"Paused"}'
api GET /
check "GET / after pause: Paused" test "$(field .state)" = Paused
expect "snapshot create while paused" 204 "" PUT /snapshot/create \
        "{\"snapshot_path\":\"$tmp/snap\",\"mem_file_path\":\"$tmp/mem\",\"snapshot_type\":\"Full\"}"
check "the snapshot files exist with some bytes, mode 0600" \
        test -s "$tmp/snap" -a -s "$tmp/mem" -a "$(stat -c %a "$tmp/snap" "$tmp/mem" | tr '\n' ' ')" = "600 600 "
expect "PATCH /vm Resumed" 204 "" PATCH /vm '{"state":"Resumed"}'
expect "FlushMetrics" 204 "" PUT /actions '{"action_type":"FlushMetrics"}'
check "FlushMetrics wrote a JSON line into the metrics file" jqe .utc_timestamp_ms "$tmp/fc.metrics"
api PUT /vsock "{\"guest_cid\":3,\"uds_path\":\"$tmp/a.vsock\",\"vsock_id\":\"v\"}"
check "PUT /vsock after start: 400" test "$status" = 400
curl -s -D "$tmp/hdr" -o /dev/null --unix-socket "$sock" -X PUT --data-binary \
        "{\"snapshot_path\":\"$tmp/s2\",\"mem_file_path\":\"$tmp/m2\"}" http://localhost/snapshot/load
check "a deprecated field (mem_file_path) gets 'Deprecation: true'" grep -qi '^Deprecation: true' "$tmp/hdr"
expect "SendCtrlAltDel" 204 "" PUT /actions '{"action_type":"SendCtrlAltDel"}'
wait_exit "$a_pid"
check "after SendCtrlAltDel the process exits 0" test "$rc" = 0
check "the api socket stays on disk after exit (as Firecracker's does)" test -S "$tmp/a.sock"

rec=$tmp/a.rec
check "record: the start event has the argv" \
        jqe -s '.[0].event == "start" and (.[0].argv | index("--id")) != null' "$rec"
check "record: one line per request with method, path, body, status" \
        jqe -s '[.[] | select(.method == "PUT" and .path == "/drives/rootfs" and .status == 204 and .body.drive_id == "rootfs")] | length == 1' "$rec"
check "record: 4xx lines carry the fault_message" \
        jqe -s '[.[] | select(.path == "/drives/injected")][0] | .status == 400 and .fault_message == "injected failure"' "$rec"
check "record: vsock events" \
        jqe -s '[.[] | select(.event == "vsock") | "\(.port):\(.result)"] == ["52:ok", "53:no listener"]' "$rec"
check "record: the last line is the exit, code 0" jqe -s '.[-1] == {"event": "exit", "code": 0}' "$rec"

# ---------------------------------------------------------------- snapshot load in a fresh process
start_fake c -- --id vm-c || exit 1
c_pid=$pid
expect "snapshot load while the old vsock socket is still there: 400" 400 'Error binding to the host-side Unix socket' \
        PUT /snapshot/load "{\"snapshot_path\":\"$tmp/snap\",\"mem_backend\":{\"backend_type\":\"File\",\"backend_path\":\"$tmp/mem\"}}"
wait_exit "$c_pid"
check "a failed snapshot load is fatal: exit 1" test "$rc" = 1

rm -f "$tmp/a.vsock"
start_fake b -- --id vm-b || exit 1
b_pid=$pid
expect "snapshot load with both mem_backend and mem_file_path: 400" 400 'too many fields' PUT /snapshot/load \
        "{\"snapshot_path\":\"$tmp/snap\",\"mem_file_path\":\"$tmp/mem\",\"mem_backend\":{\"backend_type\":\"File\",\"backend_path\":\"$tmp/mem\"}}"
expect "snapshot load in a fresh process (logger first is allowed)" 204 "" PUT /logger '{"level":"Debug"}'
expect "snapshot load, resume_vm" 204 "" PUT /snapshot/load \
        "{\"snapshot_path\":\"$tmp/snap\",\"mem_backend\":{\"backend_type\":\"File\",\"backend_path\":\"$tmp/mem\"},\"resume_vm\":true}"
api GET /
check "GET / after load with resume_vm: Running" test "$(field .state)" = Running
api GET /vm/config
check "GET /vm/config: only FullVmConfiguration's keys" \
        jqe 'keys - ["balloon", "drives", "boot-source", "cpu-config", "logger", "machine-config", "metrics",
                "memory-hotplug", "mmds-config", "network-interfaces", "pmem", "vsock", "entropy"] == []' <<<"$resp"
check "GET /vm/config after load: the snapshot's drives and machine config, no boot-source" \
        test "$(field '.drives[0].drive_id'):$(field '."machine-config".mem_size_mib'):$(field '."boot-source"')" = "rootfs:256:null"
check "the restored vsock listens again" test -S "$tmp/a.vsock"
kill -TERM "$b_pid"
wait_exit "$b_pid"
check "SIGTERM: dies by the signal, like Firecracker (status 143)" test "$rc" = 143
check "record: SIGTERM recorded as the exit" jqe -s '.[-1] == {"event": "exit", "code": null, "signal": "SIGTERM"}' "$tmp/b.rec"

echo "1..$n"
[ "$failed" = 0 ]
