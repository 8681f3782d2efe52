#!/usr/bin/env bash
# Boots the slim image N times with each kernel, the Debian cloud kernel
# (debian-cloud-6.1) and banger's own (microvm-6.1, `banger kernel build`),
# alternating, under raw qemu-system-x86_64 -M microvm as bangerd starts it
# (PVH vmlinux, banger's initramfs for that kernel, the rootfs on
# virtio-blk), and measures from the QEMU start to banger-init's first
# marker (`banger-init: stage=start`: the kernel's own boot) and to
# `stage=init-started` (fast mode: disks mounted, sshd and the agent
# started). Prints the medians and the ratio microvm/debian of each.
#
#   bench/kernel-boot.sh [N]      (root; its own XDG dirs; N defaults to 7)
#
# The kernel build is taken from the build cache ($BANGER_TEST_KERNEL_CACHE,
# default /var/cache/banger-test/kernel-builds, as the tests keep it) or
# built cold, which takes tens of minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-7}"
BUILD="${BANGER_BUILD:-build}"
BANGER="$PWD/$BUILD/banger"
export BANGER_BANGERD="$PWD/$BUILD/bangerd" NO_COLOR=1
W=$(mktemp -d /tmp/banger-bench.XXXXXX)
export HOME="$W/home" XDG_CONFIG_HOME="$W/config" XDG_STATE_HOME="$W/state" XDG_CACHE_HOME="$W/cache" XDG_RUNTIME_DIR="$W/run"
export BANGER_IMAGE_CACHE="${BANGER_TEST_IMAGE_CACHE:-/var/cache/banger-test/image-builds}"
# the caches the tests keep: kernel pulls beside the image builds, kernel builds apart
PULLS="$(dirname "$BANGER_IMAGE_CACHE")/kernel-pulls"
BUILDS="${BANGER_TEST_KERNEL_CACHE:-/var/cache/banger-test/kernel-builds}"
mkdir -p "$HOME" "$XDG_RUNTIME_DIR" "$XDG_CONFIG_HOME/banger" && chmod 700 "$XDG_RUNTIME_DIR"
cleanup() {
        "$BANGER" daemon stop >/dev/null 2>&1 || true
        rm -rf "$W"
}
trap cleanup EXIT
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }

echo "# preparing the kernels and the slim image" >&2
export BANGER_KERNEL_CACHE="$PULLS"
"$BANGER" kernel pull debian-cloud-6.1 >/dev/null 2>&1
"$BANGER" image pull debian-bookworm-slim >/dev/null 2>&1
"$BANGER" daemon stop >/dev/null
export BANGER_KERNEL_CACHE="$BUILDS"
"$BANGER" --progress plain kernel build microvm-6.1 2>&1 | grep -E '^==> (cache|compile)' >&2 || true
ROOTFS=$("$BANGER" --json image show debian-bookworm-slim | jq -r .rootfs_path)
declare -A VMLINUX INITRD RELEASE
for k in debian-cloud-6.1 microvm-6.1; do
        j=$("$BANGER" --json kernel show "$k")
        VMLINUX[$k]=$(jq -r .vmlinux <<<"$j")
        INITRD[$k]=$(ls -t "$(jq -r .dir <<<"$j")"/initramfs-*.cpio | head -1)
        RELEASE[$k]=$(jq -r .kernel_version <<<"$j")
done
"$BANGER" daemon stop >/dev/null
TSC=$(awk -F: '/^cpu MHz/ {printf "%d\n", $2 * 1000; exit}' /proc/cpuinfo)

# boot KERNEL I: appends "<to stage=start> <to init-started>" to $W/<kernel>
boot() {
        local k="$1" log="$W/$1-$2.log" t0 t1="" t2="" q
        : >"$log"
        t0=$(now)
        qemu-system-x86_64 -M microvm -accel tcg,tb-size=128 -m 512 -smp 1 -nodefaults -no-user-config -nographic \
                -no-reboot -kernel "${VMLINUX[$k]}" -initrd "${INITRD[$k]}" \
                -append "console=ttyS0 tsc_early_khz=$TSC cryptomgr.notests quiet panic=-1 banger.mode=fast banger.root=rootfs" \
                -serial stdio -device virtio-rng-device \
                -drive "id=root,file=$ROOTFS,format=raw,if=none,snapshot=on" -device virtio-blk-device,drive=root,serial=rootfs \
                </dev/null >"$log" 2>&1 &
        q=$!
        local deadline=$((SECONDS + 120)) # a guest that halts (a FATAL) keeps QEMU running
        while kill -0 "$q" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
                [ -z "$t1" ] && grep -aq 'banger-init: stage=start' "$log" && t1=$(now)
                [ -n "$t1" ] && grep -aq 'stage=init-started' "$log" && { t2=$(now); break; }
                sleep 0.01
        done
        kill "$q" 2>/dev/null; wait "$q" 2>/dev/null || true
        [ -n "$t2" ] || { echo "$k run $2 did not reach init-started:" >&2; tail -5 "$log" >&2; exit 1; }
        echo "$(echo "$t1 - $t0" | bc) $(echo "$t2 - $t0" | bc)" >>"$W/$k"
}

echo "# raw QEMU boots of the slim image, $N per kernel, alternating" >&2
: >"$W/debian-cloud-6.1"; : >"$W/microvm-6.1"
for i in $(seq "$N"); do
        boot debian-cloud-6.1 "$i"
        boot microvm-6.1 "$i"
done

d1=$(cut -d' ' -f1 "$W/debian-cloud-6.1" | median) d2=$(cut -d' ' -f2 "$W/debian-cloud-6.1" | median)
m1=$(cut -d' ' -f1 "$W/microvm-6.1" | median) m2=$(cut -d' ' -f2 "$W/microvm-6.1" | median)
printf '%-18s %-28s %10s %14s\n' kernel release "to start" "to init-started"
printf '%-18s %-28s %9.3fs %13.3fs\n' debian-cloud-6.1 "${RELEASE[debian-cloud-6.1]}" "$d1" "$d2"
printf '%-18s %-28s %9.3fs %13.3fs\n' microvm-6.1 "${RELEASE[microvm-6.1]}" "$m1" "$m2"
printf 'ratio microvm/debian (medians of %d, TCG): to start %.2fx, to init-started %.2fx\n' "$N" \
        "$(echo "$m1 / $d1" | bc -l)" "$(echo "$m2 / $d2" | bc -l)"
