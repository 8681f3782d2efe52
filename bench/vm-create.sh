#!/usr/bin/env bash
# Measures `banger vm create` on the slim image, from the command to a
# working `vm ssh` (median of N), against a baseline measured in the same
# run: raw qemu-system-x86_64 booting the same kernel, initramfs and rootfs
# to banger-init's "init-started" marker. Also: QEMU RSS per idle VM and the
# median time of each create stage.
#
#   bench/vm-create.sh [N]        (root; uses its own XDG dirs and netns)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-5}"
BUILD="${BANGER_BUILD:-build}"
BANGER="$PWD/$BUILD/banger"
export BANGER_BANGERD="$PWD/$BUILD/bangerd" NO_COLOR=1
W=$(mktemp -d /tmp/banger-bench.XXXXXX)
NS="banger-bench$$"
export HOME="$W/home" XDG_CONFIG_HOME="$W/config" XDG_STATE_HOME="$W/state" XDG_CACHE_HOME="$W/cache" XDG_RUNTIME_DIR="$W/run"
export BANGER_IMAGE_CACHE="${BANGER_TEST_IMAGE_CACHE:-/var/cache/banger-test/image-builds}"
mkdir -p "$HOME" "$XDG_RUNTIME_DIR" "$XDG_CONFIG_HOME/banger" && chmod 700 "$XDG_RUNTIME_DIR"
# cold creates against raw boots (bench/warm-start.sh measures warm ones),
# under TCG as the baseline is (and no KVM boot probe beside the timings)
printf 'accel = "tcg"\nwarm_start = "off"\n' >"$XDG_CONFIG_HOME/banger/config.toml"
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

echo "# preparing kernel and image (host namespace)" >&2
"$BANGER" kernel pull debian-cloud-6.1 >/dev/null 2>&1
"$BANGER" image pull debian-bookworm-slim >/dev/null 2>&1
K=$("$BANGER" --json kernel show debian-cloud-6.1)
IMG=$("$BANGER" --json image show debian-bookworm-slim)
"$BANGER" daemon stop >/dev/null
ip netns add "$NS" && ip netns exec "$NS" ip link set lo up

VMLINUX=$(echo "$K" | jq -r .vmlinux)
INITRD=$(ls "$(echo "$K" | jq -r .dir)"/initramfs-*.cpio | head -1)
ROOTFS=$(echo "$IMG" | jq -r .rootfs_path)
TSC=$(awk -F: '/^cpu MHz/ {printf "%d\n", $2 * 1000; exit}' /proc/cpuinfo)

echo "# baseline: raw QEMU boot to init-started, $N runs" >&2
: >"$W/raw"
for i in $(seq "$N"); do
        log="$W/raw-$i.log"
        : >"$log"
        t0=$(now)
        qemu-system-x86_64 -M microvm -accel tcg,tb-size=128 -m 512 -smp 1 -nodefaults -no-user-config -nographic \
                -no-reboot -kernel "$VMLINUX" -initrd "$INITRD" \
                -append "console=ttyS0 tsc_early_khz=$TSC cryptomgr.notests quiet panic=-1 banger.mode=fast banger.root=rootfs" \
                -serial stdio -device virtio-rng-device \
                -drive "id=root,file=$ROOTFS,format=raw,if=none,snapshot=on" -device virtio-blk-device,drive=root,serial=rootfs \
                </dev/null >"$log" 2>&1 &
        q=$!
        while ! grep -aq 'stage=init-started' "$log"; do kill -0 "$q" 2>/dev/null || break; sleep 0.01; done
        t1=$(now)
        kill "$q" 2>/dev/null; wait "$q" 2>/dev/null || true
        echo "$t1 - $t0" | bc >>"$W/raw"
done

echo "# banger vm create -> vm ssh true, $N runs (one VM at a time; RSS after 3 s idle)" >&2
: >"$W/create"; : >"$W/ssh"; : >"$W/stages"; : >"$W/rss"
B ping >/dev/null
for i in $(seq "$N"); do
        t0=$(now)
        B vm create --name "bench-$i" --image debian-bookworm-slim --vcpu 1 --memory 512 >"$W/create-$i.out" 2>&1
        t1=$(now)
        until B vm ssh "bench-$i" -- true 2>/dev/null; do sleep 0.02; done
        t2=$(now)
        echo "$t1 - $t0" | bc >>"$W/create"
        echo "$t2 - $t0" | bc >>"$W/ssh"
        sed -nE 's/^  (.{16}) +([0-9.]+)s.*/\1\t\2/p' "$W/create-$i.out" | sed -E 's/ +\t/\t/' >>"$W/stages"
        sleep 3
        awk '/^VmRSS/ {print $2}' "/proc/$(B --json vm show "bench-$i" | jq -r .pid)/status" >>"$W/rss"
        B vm delete "bench-$i" >/dev/null
done
rss=$(median <"$W/rss")

raw=$(median <"$W/raw"); create=$(median <"$W/create"); ssh=$(median <"$W/ssh")
printf 'raw qemu boot to init-started (median of %d):  %6.3f s\n' "$N" "$raw"
printf 'vm create (CLI returns, sshd listening):         %6.3f s\n' "$create"
printf 'vm create to first successful vm ssh:           %6.3f s\n' "$ssh"
printf 'ratio (vm create to ssh) / (raw boot to init-started): %.2fx\n' "$(echo "$ssh / $raw" | bc -l)"
printf 'QEMU RSS per idle VM (median):                  %6d MiB\n' "$((rss / 1024))"
echo "create stages (median):"
cut -f1 "$W/stages" | awk '!seen[$0]++' | while read -r s; do
        printf '  %-16s %6.3f s\n' "$s" "$(awk -F'\t' -v s="$s" '$1 == s {print $2}' "$W/stages" | median)"
done
