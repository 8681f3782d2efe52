#!/usr/bin/env bash
# Warm starts against cold boots, measured in one run (TCG here):
#  - the median of N `banger vm run --rm -- true`, warm (from the template)
#    and cold (--cold), alternating, and their ratio (goal: warm <= 0.25 x
#    cold and under 1 s);
#  - from `vm create` to an answered `vm exec -- true`, warm and cold;
#  - the template's build time (in the background, after the first cold
#    start of its kind);
#  - the VMM's RSS of a warm and of a cold VM after 60 s idle.
#
#   bench/warm-start.sh [N] [IMAGE]      (root; its own XDG dirs and netns)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-5}"
IMAGE="${2:-debian-bookworm-slim}"
BUILD="${BANGER_BUILD:-build}"
BANGER="$PWD/$BUILD/banger"
export BANGER_BANGERD="$PWD/$BUILD/bangerd" NO_COLOR=1
W=$(mktemp -d /tmp/banger-bench.XXXXXX)
NS="banger-bench$$"
export HOME="$W/home" XDG_CONFIG_HOME="$W/config" XDG_STATE_HOME="$W/state" XDG_CACHE_HOME="$W/cache" XDG_RUNTIME_DIR="$W/xdg-run"
export BANGER_IMAGE_CACHE="${BANGER_TEST_IMAGE_CACHE:-/var/cache/banger-test/image-builds}"
mkdir -p "$HOME" "$XDG_RUNTIME_DIR" "$XDG_CONFIG_HOME/banger" && chmod 700 "$XDG_RUNTIME_DIR"
printf 'accel = "tcg"\nwarm_start = "on"\n' >"$XDG_CONFIG_HOME/banger/config.toml"
cleanup() {
        "$BANGER" daemon stop >/dev/null 2>&1 || true
        for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns delete "$NS" 2>/dev/null || true
        rm -rf "$W"
}
trap cleanup EXIT
B() { ip netns exec "$NS" "$BANGER" "$@"; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
S=(--image "$IMAGE" --vcpu 1 --memory 512)  # as bench/vm-run.sh
rows() { B --json vm list | jq length; }
settle() { for _ in $(seq 300); do [ "$(rows)" = 0 ] && return 0; sleep 0.1; done; }

echo "# preparing the kernel and $IMAGE (host namespace)" >&2
"$BANGER" image pull "$IMAGE" >/dev/null 2>&1
"$BANGER" daemon stop >/dev/null
ip netns add "$NS" && ip netns exec "$NS" ip link set lo up
B ping >/dev/null

echo "# the first run boots cold and builds the template" >&2
B vm run --rm "${S[@]}" -- true >/dev/null 2>&1
for _ in $(seq 600); do
        [ "$(B --json template list | jq '[.[] | select(.state == "ready")] | length')" -ge 1 ] && break
        sleep 0.5
done
BUILD_MS=$(B --json template list | jq '[.[] | select(.state == "ready")][0].build_ms')
STATE_BYTES=$(B --json template list | jq '[.[] | select(.state == "ready")][0].state_bytes')
settle

echo "# $N x vm run --rm -- true, warm and cold, alternating" >&2
: >"$W/warm" && : >"$W/cold"
for i in $(seq "$N"); do
        t0=$(now); B vm run --rm "${S[@]}" -- true >/dev/null 2>"$W/w.err"; t1=$(now)
        grep -q 'warm .*from template' "$W/w.err" || { echo "run $i was not warm:" >&2; cat "$W/w.err" >&2; exit 1; }
        echo "$t1 - $t0" | bc >>"$W/warm"; settle
        t0=$(now); B vm run --rm --cold "${S[@]}" -- true >/dev/null 2>"$W/c.err" || { cat "$W/c.err" >&2; exit 1; }; t1=$(now)
        echo "$t1 - $t0" | bc >>"$W/cold"; settle
done
WARM=$(median <"$W/warm"); COLD=$(median <"$W/cold")

echo "# vm create -> an answered vm exec -- true, warm and cold" >&2
to_exec() { # name extra-flags...
        local n="$1"; shift
        local t0 t1; t0=$(now)
        B vm create --name "$n" "${S[@]}" "$@" >/dev/null 2>&1 && B vm exec "$n" -- true
        t1=$(now); echo "$t1 - $t0" | bc
}
CW=$(to_exec cw); CC=$(to_exec cc --cold)

echo "# 60 s idle, then the VMMs' RSS" >&2
sleep 60
rss() { awk '/^VmRSS/ {print $2}' "/proc/$(B --json vm show "$1" | jq -r .pid)/status"; }
RW=$(rss cw); RC=$(rss cc)
B vm delete cw cc >/dev/null 2>&1 || true

printf '\nimage %s, 1 vCPU, 512 MiB (TCG), N=%s\n' "$IMAGE" "$N"
printf '%-44s %8.3f s\n' "vm run --rm -- true, warm (median)" "$WARM"
printf '%-44s %8.3f s\n' "vm run --rm -- true, cold (median)" "$COLD"
printf '%-44s %8.2f x\n' "warm / cold" "$(echo "$WARM / $COLD" | bc -l)"
printf '%-44s %8.3f s\n' "vm create -> vm exec answered, warm" "$CW"
printf '%-44s %8.3f s\n' "vm create -> vm exec answered, cold" "$CC"
printf '%-44s %8.3f s\n' "template build (background)" "$(echo "$BUILD_MS / 1000" | bc -l)"
printf '%-44s %8d MiB\n' "template state (RAM and devices)" "$((STATE_BYTES >> 20))"
printf '%-44s %8d KiB\n' "VMM RSS after 60 s idle, warm" "$RW"
printf '%-44s %8d KiB\n' "VMM RSS after 60 s idle, cold" "$RC"
