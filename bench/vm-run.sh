#!/usr/bin/env bash
# One run prints:
#  - median of N `banger vm run --rm -- true` (slim image), against the median
#    of N raw qemu-system-x86_64 boots of the same kernel + initramfs + rootfs
#    to banger-init's init-started marker followed by a poweroff, and the ratio;
#  - shipping a generated ~100 MB repository with `vm workspace prepare`
#    against `git archive HEAD | ssh root@guest tar -x -C /root/repo` to the
#    same VM, and the ratio.
#
#   bench/vm-run.sh [N]        (root; its own XDG dirs and netns)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-5}"
BUILD="${BANGER_BUILD:-build}"
BANGER="$PWD/$BUILD/banger"
export BANGER_BANGERD="$PWD/$BUILD/bangerd" NO_COLOR=1
W=$(mktemp -d /tmp/banger-bench.XXXXXX)
NS="banger-bench$$"
export HOME="$W/home" XDG_CONFIG_HOME="$W/config" XDG_STATE_HOME="$W/state" XDG_CACHE_HOME="$W/cache" XDG_RUNTIME_DIR="$W/xdg-run"
export BANGER_IMAGE_CACHE="${BANGER_TEST_IMAGE_CACHE:-/var/cache/banger-test/image-builds}"
mkdir -p "$HOME" "$XDG_RUNTIME_DIR" "$XDG_CONFIG_HOME/banger" && chmod 700 "$XDG_RUNTIME_DIR"
echo 'accel = "tcg"' >"$XDG_CONFIG_HOME/banger/config.toml"
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
S=(--image debian-bookworm-slim --vcpu 1 --memory 512)

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

echo "# baseline: raw QEMU boot to init-started, then poweroff; $N runs" >&2
: >"$W/raw"
for i in $(seq "$N"); do
        log="$W/raw-$i.log"; : >"$log"
        t0=$(now)
        qemu-system-x86_64 -M microvm -accel tcg,tb-size=128 -m 512 -smp 1 -nodefaults -no-user-config -nographic \
                -no-reboot -kernel "$VMLINUX" -initrd "$INITRD" \
                -append "console=ttyS0 tsc_early_khz=$TSC cryptomgr.notests quiet panic=-1 banger.mode=fast banger.root=rootfs" \
                -serial stdio -device virtio-rng-device \
                -drive "id=root,file=$ROOTFS,format=raw,if=none,snapshot=on" -device virtio-blk-device,drive=root,serial=rootfs \
                </dev/null >"$log" 2>&1 &
        q=$!
        while ! grep -aq 'stage=init-started' "$log"; do kill -0 "$q" 2>/dev/null || break; sleep 0.01; done
        kill -TERM "$q" 2>/dev/null; wait "$q" 2>/dev/null || true # QEMU's own poweroff path
        t1=$(now)
        echo "$t1 - $t0" | bc >>"$W/raw"
done

echo "# banger vm run --rm -- true; $N runs" >&2
B ping >/dev/null
: >"$W/runs.txt"
for i in $(seq "$N"); do
        t0=$(now)
        B vm run --rm "${S[@]}" -- true 2>/dev/null
        t1=$(now)
        echo "$t1 - $t0" | bc >>"$W/runs.txt"
done
raw=$(median <"$W/raw"); run=$(median <"$W/runs.txt")
printf 'raw qemu boot to init-started + poweroff (median of %d): %7.3f s\n' "$N" "$raw"
printf 'banger vm run --rm -- true (median of %d):               %7.3f s\n' "$N" "$run"
printf 'ratio:                                                  %7.2fx\n' "$(echo "$run / $raw" | bc -l)"

echo "# generating a ~100 MB repository" >&2
R="$W/bigrepo"
mkdir -p "$R" && git -C "$R" init -q && git -C "$R" config user.name b && git -C "$R" config user.email b@b
for d in $(seq 20); do
        mkdir -p "$R/d$d"
        for f in $(seq 50); do head -c 100000 /dev/urandom >"$R/d$d/f$f.bin"; done
done
git -C "$R" add -A && git -C "$R" commit -qm big
B vm create --name ship "${S[@]}" --disk-size 4G >/dev/null 2>&1
J=$(B --json vm show ship)
SSH=(ssh -i "$(echo "$J" | jq -r .ssh.key)" -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes
     -o UserKnownHostsFile="$(echo "$J" | jq -r .ssh.known_hosts)" -o HostKeyAlias=ship.vm -o BatchMode=yes -o LogLevel=ERROR
     "root@$(echo "$J" | jq -r .ip)")
: >"$W/prep"; : >"$W/arch"
for i in 1 2 3; do
        t0=$(now); B vm workspace prepare ship "$R" >/dev/null 2>&1; t1=$(now)
        echo "$t1 - $t0" | bc >>"$W/prep"
        t0=$(now)
        git -C "$R" archive HEAD | ip netns exec "$NS" "${SSH[@]}" 'rm -rf /root/repo && mkdir -p /root/repo && tar -x -C /root/repo'
        t1=$(now)
        echo "$t1 - $t0" | bc >>"$W/arch"
done
B vm ssh ship -- du -sh /root/repo >&2
prep=$(median <"$W/prep"); arch=$(median <"$W/arch")
printf 'workspace prepare, %s repo, random bytes (median of 3):  %7.3f s\n' "$(du -sh --exclude=.git "$R" | cut -f1)" "$prep"
printf 'git archive HEAD | ssh tar -x, same VM (median of 3):     %7.3f s\n' "$arch"
printf 'ratio:                                                     %7.2fx\n' "$(echo "$prep / $arch" | bc -l)"

# the same with text (base64), which git packs compress
T="$W/textrepo"
mkdir -p "$T" && git -C "$T" init -q && git -C "$T" config user.name b && git -C "$T" config user.email b@b
for d in $(seq 20); do
        mkdir -p "$T/d$d"
        for f in $(seq 50); do head -c 75000 /dev/urandom | base64 >"$T/d$d/f$f.txt"; done
done
git -C "$T" add -A && git -C "$T" commit -qm text
: >"$W/prep2"; : >"$W/arch2"
for i in 1 2 3; do
        t0=$(now); B vm workspace prepare ship "$T" >/dev/null 2>&1; t1=$(now)
        echo "$t1 - $t0" | bc >>"$W/prep2"
        t0=$(now)
        git -C "$T" archive HEAD | ip netns exec "$NS" "${SSH[@]}" 'rm -rf /root/repo && mkdir -p /root/repo && tar -x -C /root/repo'
        t1=$(now)
        echo "$t1 - $t0" | bc >>"$W/arch2"
done
prep=$(median <"$W/prep2"); arch=$(median <"$W/arch2")
printf 'workspace prepare, %s repo, base64 text (median of 3):   %7.3f s\n' "$(du -sh --exclude=.git "$T" | cut -f1)" "$prep"
printf 'git archive HEAD | ssh tar -x, same VM (median of 3):     %7.3f s\n' "$arch"
printf 'ratio:                                                     %7.2fx\n' "$(echo "$prep / $arch" | bc -l)"
B vm delete ship >/dev/null 2>&1
