#!/usr/bin/env bash
# Port forwards: bytes/s host -> guest and connection setup through a
# forward in bridge mode (bangerd's relay on 127.0.0.1) and in user mode
# (the VMM's slirp hostfwd, what a rootless daemon gets), against the
# baseline measured in the same run: the bridge guest reached directly on
# its address. Medians of N runs, SIZE MiB per transfer, alternating.
#
#   bench/forward.sh [N] [SIZE_MIB]   (root; its own XDG dirs and netns)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-5}"
SIZE="${2:-64}"
BUILD="${BANGER_BUILD:-build}"
BANGER="$PWD/$BUILD/banger"
export BANGER_BANGERD="$PWD/$BUILD/bangerd" NO_COLOR=1
W=$(mktemp -d /tmp/banger-bench.XXXXXX)
NS="banger-bench$$"
export HOME="$W/home" XDG_CONFIG_HOME="$W/config" XDG_STATE_HOME="$W/state" XDG_CACHE_HOME="$W/cache" XDG_RUNTIME_DIR="$W/run"
export BANGER_IMAGE_CACHE="${BANGER_TEST_IMAGE_CACHE:-/var/cache/banger-test/image-builds}"
mkdir -p "$HOME" "$XDG_RUNTIME_DIR" "$XDG_CONFIG_HOME/banger" && chmod 700 "$XDG_RUNTIME_DIR"
# TCG: no KVM boot probe beside the timings where /dev/kvm opens but hangs
printf 'accel = "tcg"\nwarm_start = "off"\n' >"$XDG_CONFIG_HOME/banger/config.toml"
cleanup() {
        "$BANGER" daemon stop >/dev/null 2>&1 || true
        for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns delete "$NS" 2>/dev/null || true
        rm -rf "$W"
}
trap cleanup EXIT
B() { ip netns exec "$NS" "$BANGER" "$@"; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.6f\n", (a[NR/2]+a[NR/2+1])/2}'; }

echo "# preparing kernel and image (host namespace)" >&2
"$BANGER" kernel pull debian-cloud-6.1 >/dev/null 2>&1
"$BANGER" image pull debian-bookworm-slim >/dev/null 2>&1
"$BANGER" daemon stop >/dev/null
ip netns add "$NS" && ip netns exec "$NS" ip link set lo up

echo "# two VMs (bridge, user-mode) with a sink (7000: reads all, answers the count) and an echo (7001)" >&2
B vm create --name fwdbench --image debian-bookworm-slim --vcpu 1 --memory 512 \
        --publish 17000:7000 --publish 17001:7001 >/dev/null
B vm create --name fwduser --net user --image debian-bookworm-slim --vcpu 1 --memory 512 \
        --publish 27000:7000 --publish 27001:7001 >/dev/null
IP=$(B --json vm show fwdbench | jq -r .ip)
for vm in fwdbench fwduser; do
B vm ssh "$vm" -- "nohup perl -MIO::Socket::INET -e '\$s = IO::Socket::INET->new(LocalPort => 7000, Listen => 5, ReuseAddr => 1) or die;
        while (\$c = \$s->accept) { my (\$t, \$b, \$n) = (0); \$t += \$n while (\$n = sysread(\$c, \$b, 1 << 20)) > 0; print \$c \"\$t\\n\"; close \$c }' >/dev/null 2>&1 </dev/null &
        nohup perl -MIO::Socket::INET -e '\$s = IO::Socket::INET->new(LocalPort => 7001, Listen => 64, ReuseAddr => 1) or die;
        while (\$c = \$s->accept) { sysread(\$c, my \$b, 1); syswrite(\$c, \$b); close \$c }' >/dev/null 2>&1 </dev/null &"
until B vm ssh "$vm" -- 'ss -ltn | grep -q :7000 && ss -ltn | grep -q :7001' 2>/dev/null; do sleep 0.2; done
done

# send HOST PORT: seconds to push SIZE MiB and hear the guest count them
send() {
        ip netns exec "$NS" python3 - "$1" "$2" "$SIZE" <<'PY'
import socket, sys, time
host, port, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
buf = b"\0" * (1 << 20)
t0 = time.monotonic()
c = socket.create_connection((host, port))
for _ in range(mib):
    c.sendall(buf)
c.shutdown(socket.SHUT_WR)
got = c.makefile().readline().strip()
t1 = time.monotonic()
assert int(got) == mib << 20, got
print("%.6f" % (t1 - t0))
PY
}
# rtt HOST PORT: median seconds of 50 connect + 1 byte echoed + close
rtt() {
        ip netns exec "$NS" python3 - "$1" "$2" <<'PY'
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
ts = []
for _ in range(50):
    t0 = time.monotonic()
    c = socket.create_connection((host, port)); c.sendall(b"x"); assert c.recv(1) == b"x"; c.close()
    ts.append(time.monotonic() - t0)
ts.sort()
print("%.6f" % ts[len(ts) // 2])
PY
}

echo "# $N runs of $SIZE MiB each way, alternating" >&2
: >"$W/direct"; : >"$W/fwd"; : >"$W/user"; : >"$W/rtt-direct"; : >"$W/rtt-fwd"; : >"$W/rtt-user"
for i in $(seq "$N"); do
        send "$IP" 7000 >>"$W/direct"
        send 127.0.0.1 17000 >>"$W/fwd"
        send 127.0.0.1 27000 >>"$W/user"
        rtt "$IP" 7001 >>"$W/rtt-direct"
        rtt 127.0.0.1 17001 >>"$W/rtt-fwd"
        rtt 127.0.0.1 27001 >>"$W/rtt-user"
done
d=$(median <"$W/direct"); f=$(median <"$W/fwd"); u=$(median <"$W/user")
rd=$(median <"$W/rtt-direct"); rf=$(median <"$W/rtt-fwd"); ru=$(median <"$W/rtt-user")
printf '%-44s %10s %14s %12s\n' "host -> guest (TCG guest)" "direct" "bridge+relay" "user-mode"
printf '%-44s %10.1f %14.1f %12.1f\n' "throughput, MiB/s (median of $N x $SIZE MiB)" "$(echo "$SIZE / $d" | bc -l)" \
        "$(echo "$SIZE / $f" | bc -l)" "$(echo "$SIZE / $u" | bc -l)"
printf '%-44s %10.2f %14.2f %12.2f\n' "connect + 1-byte echo, ms (median)" "$(echo "$rd * 1000" | bc -l)" \
        "$(echo "$rf * 1000" | bc -l)" "$(echo "$ru * 1000" | bc -l)"
printf "bridge forward / direct: throughput %.2fx, connection setup time %.2fx\n" "$(echo "$d / $f" | bc -l)" "$(echo "$rf / $rd" | bc -l)"
printf "user-mode forward / direct: throughput %.2fx, connection setup time %.2fx\n" "$(echo "$d / $u" | bc -l)" "$(echo "$ru / $rd" | bc -l)"
