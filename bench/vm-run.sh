#!/usr/bin/env bash
# One run prints:
#  - median of N `banger vm run --rm -- true` (slim image), against two
#    baselines measured in the same run: banger's own QEMU command line
#    (same kernel, per-VM initrd, disks, a TAP on the same bridge) booted by
#    hand to the first successful `ssh true`, and to the agent's first
#    answer; the --rm delete (CLI wait, then until nothing is left);
#  - shipping a generated ~100 MB repository with `vm workspace prepare`
#    (written into the running VM's repo disk by the host) and with `vm run
#    PATH` (the same before boot) against `git archive HEAD | ssh root@guest
#    tar -x -C /root/arch` to the same VM (its work disk), and the ratios;
#  - 1 GiB through `vm exec -- cat >/dev/null` and back from `vm exec --
#    head -c 1G /dev/zero`, MB/s next to the same through ssh, with the peak
#    RSS of bangerd and of the CLI during each.
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
printf 'accel = "tcg"\nwarm_start = "off"\n' >"$XDG_CONFIG_HOME/banger/config.toml"  # its baselines are cold boots (bench/warm-start.sh compares)
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

# ---- baselines: banger's own QEMU command line, booted by hand -------------
# A VM is created once to learn its command line (kernel, per-VM initrd,
# overlay and work disk, kernel arguments); stopped, its disks boot again
# raw, on a TAP of our own on the same bridge, and are timed to the first
# successful `ssh true` and to the agent's first answer.
echo "# learning banger's QEMU command line" >&2
B ping >/dev/null
B vm create --name rawvm "${S[@]}" >/dev/null 2>&1
RJ=$(B --json vm show rawvm)
RPID=$(echo "$RJ" | jq -r .pid)
mapfile -d '' QARGS </proc/"$RPID"/cmdline
RIP=$(echo "$RJ" | jq -r .ip)
BRIDGE=$(ip netns exec "$NS" ip -o link show type bridge | awk -F': ' 'NR == 1 {print $2}')
for i in "${!QARGS[@]}"; do # the per-VM initrd lives in the run dir: keep a copy
        [ "${QARGS[$i]}" = -initrd ] && cp "${QARGS[$((i + 1))]}" "$W/raw-initrd.cpio" && QARGS[$((i + 1))]="$W/raw-initrd.cpio"
done
B vm stop rawvm >/dev/null 2>&1
ip netns exec "$NS" ip tuntap add benchtap mode tap
ip netns exec "$NS" ip link set benchtap master "$BRIDGE" up
for i in "${!QARGS[@]}"; do
        a="${QARGS[$i]}"
        case "$a" in
        tap,id=net0,*) QARGS[$i]="tap,id=net0,ifname=benchtap,script=no,downscript=no" ;;
        unix:*qmp*) QARGS[$i]="unix:$W/raw-qmp.sock,server=on,wait=off" ;;
        socket,id=agent,*) QARGS[$i]="socket,id=agent,path=$W/raw-agent.sock,server=on,wait=off" ;;
        file,id=console,*) QARGS[$i]="file,id=console,path=$W/raw-console.log" ;;
        esac
done
SSHR=(ssh -i "$(echo "$RJ" | jq -r .ssh.key)" -o IdentitiesOnly=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=1
      -o UserKnownHostsFile="$(echo "$RJ" | jq -r .ssh.known_hosts)" -o HostKeyAlias=rawvm.vm -o BatchMode=yes
      -o LogLevel=ERROR "root@$RIP")
agent_hello() {
        printf '{"v":1,"id":1,"method":"health"}\n' | timeout 1 socat -t 1 - "UNIX-CONNECT:$W/raw-agent.sock" 2>/dev/null |
                grep -q '"result"'
}
raw_boot() { # until-command
        rm -f "$W"/raw-*.sock
        ip netns exec "$NS" "${QARGS[@]}" </dev/null >/dev/null 2>&1 &
        local q=$! t0; t0=$(now)
        until "$@"; do kill -0 "$q" 2>/dev/null || break; sleep 0.02; done
        local t1; t1=$(now)
        kill -9 "$q" 2>/dev/null; wait "$q" 2>/dev/null || true
        echo "$t1 - $t0" | bc
}
echo "# baseline 1: raw boot of that command line to the first ssh true; $N runs" >&2
: >"$W/raw-ssh"; : >"$W/raw-agent"
for i in $(seq "$N"); do raw_boot ip netns exec "$NS" "${SSHR[@]}" true >>"$W/raw-ssh" 2>/dev/null; done
echo "# baseline 2: the same to the agent's first answer; $N runs" >&2
for i in $(seq "$N"); do raw_boot agent_hello >>"$W/raw-agent"; done
B vm delete rawvm >/dev/null 2>&1
ip netns exec "$NS" ip link delete benchtap

echo "# banger vm run --rm -- true; $N runs (and the --rm delete: CLI wait, then until nothing is left)" >&2
: >"$W/runs.txt"; : >"$W/rm-cli"; : >"$W/rm-gone"
ns_vmm() { # a VMM of this run's daemon (its netns), not another run's
        local p
        for p in $(ip netns pids "$NS" 2>/dev/null); do grep -qa 'process=banger-' "/proc/$p/cmdline" 2>/dev/null && return 0; done
        return 1
}
gone() { [ "$(B vm list -q | wc -l)" = 0 ] && ! ns_vmm; }
for i in $(seq "$N"); do
        t0=$(now)
        B vm run --rm --timings "${S[@]}" -- true 2>"$W/run-$i.err"
        t1=$(now)
        until gone; do sleep 0.01; done
        t2=$(now)
        echo "$t1 - $t0" | bc >>"$W/runs.txt"
        sed -nE 's/^timing: delete \(--rm\) +([0-9.]+) s/\1/p' "$W/run-$i.err" >>"$W/rm-cli"
        echo "$t2 - $t1" | bc >>"$W/rm-gone"
done
raw_ssh=$(median <"$W/raw-ssh"); raw_agent=$(median <"$W/raw-agent"); run=$(median <"$W/runs.txt")
printf 'raw boot of banger'"'"'s command line to the first ssh true (median of %d): %7.3f s\n' "$N" "$raw_ssh"
printf 'raw boot of banger'"'"'s command line to the agent'"'"'s answer (median of %d): %7.3f s\n' "$N" "$raw_agent"
printf 'banger vm run --rm -- true (median of %d):                          %7.3f s\n' "$N" "$run"
printf 'ratio to the raw boot to ssh (goal <= 0.90):                        %7.2fx\n' "$(echo "$run / $raw_ssh" | bc -l)"
printf 'ratio to the raw boot to the agent (goal <= 1.15):                  %7.2fx\n' "$(echo "$run / $raw_agent" | bc -l)"
printf -- '--rm: command ended -> CLI exits (the delete RPC, median):         %7.3f s\n' "$(median <"$W/rm-cli")"
printf -- '--rm: CLI exit -> nothing left (no row, no VMM; median):           %7.3f s\n' "$(median <"$W/rm-gone")"

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
        t0=$(now); B --json vm workspace prepare ship "$R" >"$W/prep.json" 2>/dev/null; t1=$(now)
        echo "$t1 - $t0" | bc >>"$W/prep"
        t0=$(now)
        git -C "$R" archive HEAD | ip netns exec "$NS" "${SSH[@]}" 'rm -rf /root/arch && mkdir -p /root/arch && tar -x -C /root/arch'
        t1=$(now)
        echo "$t1 - $t0" | bc >>"$W/arch"
done
B vm ssh ship -- du -sh /root/repo /root/arch >&2
prep=$(median <"$W/prep"); arch=$(median <"$W/arch")
printf 'workspace prepare (%s), %s repo, random bytes (median of 3):  %7.3f s\n' "$(jq -r .method "$W/prep.json")" "$(du -sh --exclude=.git "$R" | cut -f1)" "$prep"
printf 'git archive HEAD | ssh tar -x, same VM (median of 3):     %7.3f s\n' "$arch"
printf 'ratio:                                                     %7.2fx\n' "$(echo "$prep / $arch" | bc -l)"

# vm run PATH writes the repository into the new VM's repo disk before its
# first boot: the create's clone (+ index) and workspace stages, against the
# same git archive | ssh
: >"$W/pre"
for i in 1 2 3; do
        B vm run --rm --timings "${S[@]}" --disk-size 4G "$R" -- true 2>"$W/pre-$i.err" >/dev/null
        sed -nE 's/^  (clone|workspace) +([0-9.]+)s.*/\2/p' "$W/pre-$i.err" | paste -sd+ | bc >>"$W/pre"
done
pre=$(median <"$W/pre")
printf 'vm run PATH: clone + workspace into the repo disk (median of 3): %7.3f s\n' "$pre"
printf 'ratio to git archive | ssh tar -x:                              %7.2fx\n' "$(echo "$pre / $arch" | bc -l)"

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
        t0=$(now); B --json vm workspace prepare ship "$T" >"$W/prep.json" 2>/dev/null; t1=$(now)
        echo "$t1 - $t0" | bc >>"$W/prep2"
        t0=$(now)
        git -C "$T" archive HEAD | ip netns exec "$NS" "${SSH[@]}" 'rm -rf /root/arch && mkdir -p /root/arch && tar -x -C /root/arch'
        t1=$(now)
        echo "$t1 - $t0" | bc >>"$W/arch2"
done
prep=$(median <"$W/prep2"); arch=$(median <"$W/arch2")
printf 'workspace prepare (%s), %s repo, base64 text (median of 3):   %7.3f s\n' "$(jq -r .method "$W/prep.json")" "$(du -sh --exclude=.git "$T" | cut -f1)" "$prep"
printf 'git archive HEAD | ssh tar -x, same VM (median of 3):     %7.3f s\n' "$arch"
printf 'ratio:                                                     %7.2fx\n' "$(echo "$prep / $arch" | bc -l)"
# ---- streams: 1 GiB each way, agent vs ssh, peak RSS -----------------------
DPID=$(B --json ping | jq -r .pid) # this run's daemon, not the newest on the machine
peak_reset() { echo 5 >"/proc/$DPID/clear_refs"; }
peak() { awk '/^VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$DPID/status"; }
mbps() { echo "1024 / $1" | bc -l | xargs printf '%.1f'; }
cli_rss() { sed -nE 's/^([0-9]+)$/\1/p' "$1" | tail -1 | awk '{printf "%.1f", $1 / 1024}'; }
TIME=(/usr/bin/time -f '%M' -o)
stream() { # label file-for-cli-peak command...
        local label="$1" tf="$2"; shift 2
        peak_reset
        local t0; t0=$(now)
        "$@"
        local t1; t1=$(now)
        printf '%-44s %7.1f MB/s  bangerd peak %6s MiB  client peak %6s MiB\n' "$label" "$(mbps "$(echo "$t1 - $t0" | bc)")" \
                "$(peak)" "$(cli_rss "$tf")"
}
echo "# streams: 1 GiB each way" >&2
stream "1 GiB in:  head -c 1G /dev/zero | vm exec cat" "$W/t1" \
        sh -c "head -c 1G /dev/zero | ${TIME[*]} $W/t1 ip netns exec $NS $BANGER vm exec ship -- cat >/dev/null"
stream "1 GiB in:  the same through ssh" "$W/t2" \
        sh -c "head -c 1G /dev/zero | ${TIME[*]} $W/t2 ip netns exec $NS ${SSH[*]} 'cat >/dev/null'"
stream "1 GiB out: vm exec head -c 1G /dev/zero | sha256sum" "$W/t3" \
        sh -c "${TIME[*]} $W/t3 ip netns exec $NS $BANGER vm exec ship -- head -c 1G /dev/zero | sha256sum >/dev/null"
stream "1 GiB out: the same through ssh" "$W/t4" \
        sh -c "${TIME[*]} $W/t4 ip netns exec $NS ${SSH[*]} 'head -c 1G /dev/zero' | sha256sum >/dev/null"
B vm delete ship >/dev/null 2>&1
