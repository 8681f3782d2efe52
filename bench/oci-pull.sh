#!/usr/bin/env bash
# Measures `banger image pull` of a ~100 MB OCI image (busybox plus the
# host's /usr files, in 3 layers: ~60 MiB of gzip blobs, ~210 MiB of files;
# the exact sizes are printed) from Debian's docker-registry
# on loopback, against a baseline measured in the same run: `skopeo copy` of
# the same image from the same registry into a local directory (downloads and
# verifies the blobs, builds no filesystem). Median of N, cold caches each
# time (banger's blob cache pruned, the image deleted, skopeo's dir removed).
# Also: the same pull from an oci: layout; from a registry that holds each
# blob answer 0.1 s (tests/integration/oci_fake.py --mode plain; skopeo copy
# from it is that line's baseline); a second pull (a no-op), and one
# more cold pull split by its stage lines (fetch; what comes before the
# flatten; the flatten into ext4, which runs beside the decompression still
# going on when the blobs are in, with its fsync; agent and register).
#
#   bench/oci-pull.sh [N]        (root; its own XDG dirs and netns)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-3}"
BUILD="${BANGER_BUILD:-build}"
BANGER="$PWD/$BUILD/banger"
export BANGER_BANGERD="$PWD/$BUILD/bangerd" NO_COLOR=1
W=$(mktemp -d /tmp/banger-bench.XXXXXX)
NS="banger-bench$$"
export HOME="$W/home" XDG_CONFIG_HOME="$W/config" XDG_STATE_HOME="$W/state" XDG_CACHE_HOME="$W/cache" XDG_RUNTIME_DIR="$W/run"
mkdir -p "$HOME" "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
# no KVM boot probe: where /dev/kvm is there, a new daemon would boot a VM
# under KVM to see whether it works, a CPU taken for up to 10 s beside the
# pulls timed (a pull needs no accelerator)
mkdir -p "$XDG_CONFIG_HOME/banger" && printf 'accel = "tcg"\n' >"$XDG_CONFIG_HOME/banger/config.toml"
. tests/integration/oci_fixtures.sh
cleanup() {
        oci_registry_stop >/dev/null 2>&1 || true
        "$BANGER" daemon stop >/dev/null 2>&1 || true
        for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
        ip netns delete "$NS" 2>/dev/null || true
        rm -rf "$W"
}
trap cleanup EXIT
B() { ip netns exec "$NS" "$BANGER" "$@"; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }

echo "# kernel (host namespace), the image built with umoci" >&2
"$BANGER" kernel pull debian-cloud-6.1 >/dev/null 2>&1
"$BANGER" daemon stop >/dev/null
L="$W/oci"
umoci init --layout "$L" >/dev/null
umoci new --image "$L:big" >/dev/null
umoci unpack --rootless --image "$L:big" "$W/b" >/dev/null 2>&1
mkdir -p "$W/b/rootfs/bin" && cp /bin/busybox "$W/b/rootfs/bin/" && ln -s busybox "$W/b/rootfs/bin/sh"
umoci repack --image "$L:big" "$W/b" >/dev/null
# two more layers of real files (a repack adds one layer to the image the
# bundle was unpacked from: each layer needs a fresh unpack)
for part in share/doc lib/x86_64-linux-gnu; do
        rm -rf "$W/b" && umoci unpack --rootless --image "$L:big" "$W/b" >/dev/null 2>&1
        mkdir -p "$W/b/rootfs/usr/$part"
        (cd "/usr/$part" && find . -type f -size -2M | sort | awk 'NR <= 2500' | tar -cf - -T -) | tar -xf - -C "$W/b/rootfs/usr/$part"
        umoci repack --image "$L:big" "$W/b" >/dev/null
done
LAYERS=$(jq -r '.manifests[0].digest' "$L/index.json" | sed 's/^sha256://' | xargs -I{} jq '.layers | length' "$L/blobs/sha256/{}")
[ "$LAYERS" = 3 ] || { echo "the bench image has $LAYERS layers, not 3" >&2; exit 1; }
umoci config --image "$L:big" --config.cmd /bin/sh >/dev/null
BYTES=$(du -sb "$W/b/rootfs" | cut -f1)
ip netns add "$NS" && ip netns exec "$NS" ip link set lo up
oci_registry_start "$NS" "$W/reg" 5000 >/dev/null
oci_push "$NS" "oci:$L:big" 127.0.0.1:5000/bench/big:1
BLOBS=$(du -sb "$L/blobs" | cut -f1)
echo "# image: $((BYTES / 1048576)) MiB of files, $((BLOBS / 1048576)) MiB of blobs, $LAYERS layers" >&2
B ping >/dev/null

# a registry that takes its time: the same image from oci_fake.py (no auth,
# each blob answer held 0.1 s before its first byte, as a remote registry's
# round trips and redirects do), banger against skopeo copy from it
ip netns exec "$NS" python3 tests/integration/oci_fake.py --mode plain --addr 127.0.0.1 --port 5001 \
        --log "$W/fake.log" --layout "$L" --tag big --blob-delay 0.1 >/dev/null 2>&1 &
FAKE=$!
for _ in $(seq 50); do ip netns exec "$NS" ss -ltn | grep -q ':5001 ' && break; sleep 0.1; done

# skopeo_time REGISTRY FILE; pull_time SOURCE NAME FILE (cold: the cache
# pruned first, the image deleted after): the seconds appended to FILE
skopeo_time() {
        rm -rf "$W/dir"
        local t0; t0=$(now)
        ip netns exec "$NS" skopeo --insecure-policy copy -q --src-tls-verify=false "docker://$1/bench/big:1" "dir:$W/dir"
        echo "$(now) - $t0" | bc >>"$2"
}
pull_time() {
        B image cache prune >/dev/null
        local t0; t0=$(now)
        B image pull "$1" --name "$2" >/dev/null 2>&1
        echo "$(now) - $t0" | bc >>"$3"
        B image delete "$2" >/dev/null
}
: >"$W/skopeo"; : >"$W/pull"; : >"$W/layout"; : >"$W/slow-skopeo"; : >"$W/slow-pull"
for _ in $(seq "$N"); do
        skopeo_time 127.0.0.1:5000 "$W/skopeo"
        pull_time 127.0.0.1:5000/bench/big:1 big-1 "$W/pull"
        pull_time "oci:$L:big" big-layout "$W/layout"
        skopeo_time 127.0.0.1:5001 "$W/slow-skopeo"
        pull_time 127.0.0.1:5001/bench/big:1 slow "$W/slow-pull"
done
kill "$FAKE" 2>/dev/null || true
wait "$FAKE" 2>/dev/null || true

# one more cold pull, its stage lines timestamped: where the time goes
B image cache prune >/dev/null
B image pull 127.0.0.1:5000/bench/big:1 2>&1 | while IFS= read -r l; do echo "$(now) $l"; done >"$W/stages"
t0=$(now)
B image pull 127.0.0.1:5000/bench/big:1 >/dev/null 2>&1
AGAIN=$(echo "$(now) - $t0" | bc)

S=$(median <"$W/skopeo"); P=$(median <"$W/pull"); LO=$(median <"$W/layout")
printf 'skopeo copy docker:// -> dir:      %6.3f s (median of %d; baseline)\n' "$S" "$N"
printf 'banger image pull (registry)       %6.3f s  %.2fx\n' "$P" "$(echo "$P / $S" | bc -l)"
printf 'banger image pull oci:DIR          %6.3f s  %.2fx\n' "$LO" "$(echo "$LO / $S" | bc -l)"
printf 'banger image pull again (no-op)    %6.3f s\n' "$AGAIN"
SS=$(median <"$W/slow-skopeo"); SP=$(median <"$W/slow-pull")
printf 'a slow registry (0.1 s a blob): skopeo %.3f s, banger %.3f s  %.2fx\n' "$SS" "$SP" "$(echo "$SP / $SS" | bc -l)"
# stage lines: "==> NAME: ..." as a stage starts, "    layers: BYTES" as the blobs arrive
awk '$2 == "==>" && !t0 { t0 = $1 }
     $2 == "layers:" { fetched = $1 }
     $2 == "==>" && $3 == "flatten:" { flat = $1 }
     $2 == "==>" && $3 == "inject:" { inj = $1 }
     { end = $1 }
     END {
        if (!t0 || !flat || !inj) { print "where the time goes: stage lines not found" > "/dev/stderr"; exit 1 }
        if (!fetched) fetched = flat
        printf "one pull, by stage (s):             fetch %.3f, then to the flatten %.3f, flatten (beside the decompression left, with its fsync) %.3f, agent and register %.3f\n", fetched - t0, flat - fetched, inj - flat, end - inj
     }' "$W/stages"
