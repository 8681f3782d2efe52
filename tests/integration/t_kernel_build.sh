#!/usr/bin/env bash
# `banger kernel build microvm-6.1`: Debian's linux-source-6.1 from the real
# mirror (signed index, checked .deb), compiled with banger's config
# fragment; every fragment option in the result, cached by (source .deb,
# fragment, toolchain), cancellable, and booted: the slim image under QEMU
# microvm (TCG) with this kernel runs a command.
#
# The build is cached on this machine between runs, like the image builds
# ($BANGER_TEST_KERNEL_CACHE, default /var/cache/banger-test/kernel-builds
# when writable); a cold build (tens of minutes on 2 cores) passes too.
. "$(dirname "$0")/lib.sh"
begin
if [ "${BANGER_SUITE:-std}" != std ]; then # a compile of tens of minutes cold: once per CI run
        skip "microvm-6.1 builds and boots" "runs in the normal build only"
        finish
        exit
fi
vm_begin
exec 3>&1 # TAP comments from inside `t` (whose output is kept for failures only)
FRAG="$(cd "$(dirname "$0")/../.." && pwd)/src/daemon/artifacts/catalog/microvm-6.1.config"
KDIR="$STATE/kernels/microvm-6.1"
if [ -z "${BANGER_TEST_KERNEL_CACHE:-}" ]; then
        # the daemon makes the leaf itself (0700: a cache dir must be private)
        if mkdir -p /var/cache/banger-test 2>/dev/null && [ -w /var/cache/banger-test ]; then
                BANGER_TEST_KERNEL_CACHE=/var/cache/banger-test/kernel-builds
        else
                BANGER_TEST_KERNEL_CACHE="$TMP/kernel-builds"
        fi
fi

no_staging() { ! ls -a "$STATE/kernels" 2>/dev/null | grep -q '^\.staging'; }
# Processes of a build of ours: make and what it runs carry HOME=<staging dir>.
build_procs() {
        local p
        for p in /proc/[0-9]*; do
                tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -q "^HOME=$STATE/kernels/\.staging-" &&
                        alive "${p#/proc/}" && echo "${p#/proc/}"
        done
        true
}
has_build_procs() { [ -n "$(build_procs)" ]; }
no_build_procs() { [ -z "$(build_procs)" ]; }
vmlinux_sha() { jq -r '.files.vmlinux' "$KDIR/manifest.json"; }
cache_key() { jq -r '.build.cache_key' "$KDIR/manifest.json"; }

# The slim image (and the Debian kernel it names) with the usual kernel
# cache; everything after this with the build cache.
t "the slim image and the Debian cloud kernel are pulled" vm_prepare
export BANGER_KERNEL_CACHE="$BANGER_TEST_KERNEL_CACHE"

t "kernel list --available shows microvm-6.1, built from source" sh -c \
  "'$BANGER' --json kernel list --available | jq -e '.[] | select(.name == \"microvm-6.1\" and .state == \"available\" and .kind == \"build\")' >/dev/null"

# Every line of the fragment holds in the config the build ended with.
fragment_kept() { # config
        local line sym n=0
        while IFS= read -r line; do
                case "$line" in
                CONFIG_*=*) grep -qxF -- "$line" "$1" || { echo "not in the config: $line"; return 1; } ;;
                "# CONFIG_"*" is not set")
                        sym=${line#\# }; sym=${sym%% *}
                        ! grep -q "^$sym=" "$1" || { echo "set after all: $(grep "^$sym=" "$1")"; return 1; } ;;
                *) continue ;;
                esac
                n=$((n + 1))
        done <"$FRAG"
        [ "$n" -gt 100 ] || { echo "only $n settings in $FRAG"; return 1; }
}

build() {
        local t0=$SECONDS
        "$BANGER" --json --progress plain kernel build microvm-6.1 >"$TMP/b.json" 2>"$TMP/b.err" || { tail -30 "$TMP/b.err"; return 1; }
        local frag12; frag12=$(sha256sum "$FRAG" | cut -c1-12)
        jq -e --arg f "$frag12" '.pvh == true and .modules == [] and .modules_disk == null and
               (.vmlinux | endswith("/microvm-6.1/vmlinux")) and (.initramfs | test("/initramfs-[0-9a-f]{12}\\.cpio$")) and
               (.source | test("^build:linux-source-6\\.1=[0-9][^+]*\\+" + $f + "$")) and
               (.kernel_version | test("^6\\.1\\.[0-9]+-banger-microvm$")) and .already_built == false' "$TMP/b.json" >/dev/null ||
                { jq . "$TMP/b.json"; return 1; }
        grep -q '^==> release: ' "$TMP/b.err" && no_staging && [ ! -e "$KDIR/src" ] && [ ! -e "$KDIR/modules.ext4" ] || return 1
        if grep -q '^==> cache: ' "$TMP/b.err"; then
                echo "# kernel build: a cache hit ($BANGER_TEST_KERNEL_CACHE)" >&3
        else
                grep -q '^==> download: linux-source-6.1 ' "$TMP/b.err" && grep -q '^==> configure: ' "$TMP/b.err" &&
                        grep -q '^==> compile: ' "$TMP/b.err" || { cat "$TMP/b.err"; return 1; }
                echo "# kernel build: cold, $((SECONDS - t0)) s (download, unpack, configure, compile, install)" >&3
        fi
        fragment_kept "$KDIR/config"
}
t "kernel build microvm-6.1: PVH vmlinux, no modules, every fragment option in its config" build

t "kernel build again says it is already built" sh -c \
  "'$BANGER' --json kernel build microvm-6.1 2>/dev/null | jq -e '.already_built == true' >/dev/null"

# A build again after kernel rm takes the cache's files (no download, no
# compile): the same vmlinux, the same key, one entry per kernel name.
cache_hit() {
        local sha key; sha=$(vmlinux_sha) key=$(cache_key)
        [ -n "$key" ] && [ -d "$BANGER_TEST_KERNEL_CACHE/microvm-6.1-$key" ] || { echo "no cache entry microvm-6.1-$key"; return 1; }
        "$BANGER" kernel rm microvm-6.1 >/dev/null && "$BANGER" daemon stop >/dev/null || return 1 # a new daemon: the key again
        "$BANGER" --json --progress plain kernel build microvm-6.1 >"$TMP/c.json" 2>"$TMP/c.err" || { cat "$TMP/c.err"; return 1; }
        grep -q '^==> cache: linux-source-6.1 ' "$TMP/c.err" && ! grep -qE '^==> (download|compile):' "$TMP/c.err" ||
                { cat "$TMP/c.err"; return 1; }
        expect_eq "$(vmlinux_sha)" "$sha" && expect_eq "$(cache_key)" "$key" && jq -e '.pvh == true' "$TMP/c.json" >/dev/null &&
                expect_eq "$(ls -d "$BANGER_TEST_KERNEL_CACHE"/microvm-6.1-* | grep -vc '\.tmp-')" 1 && no_staging
}
t "a second build is a cache hit: the same vmlinux and key, from a new daemon" cache_hit

pull_builds() {
        "$BANGER" kernel rm microvm-6.1 >/dev/null || return 1
        "$BANGER" --json --progress plain kernel pull microvm-6.1 >"$TMP/p.json" 2>"$TMP/p.err" || { cat "$TMP/p.err"; return 1; }
        jq -e '.already_pulled == false and (.source | startswith("build:linux-source-6.1="))' "$TMP/p.json" >/dev/null &&
                grep -q '^==> cache: ' "$TMP/p.err"
}
t "kernel pull microvm-6.1 builds it (here from the cache)" pull_builds

# --force compiles for real; the client gone (Ctrl-C) once make runs kills its process group,
# removes the staging dir and keeps the kernel that was there.
cancel() {
        local sha; sha=$(vmlinux_sha)
        "$BANGER" --progress plain kernel build --force microvm-6.1 >"$TMP/x.out" 2>"$TMP/x.err" &
        local cli=$!
        wait_for 900 "the compile to start" grep -q '^==> compile: ' "$TMP/x.err" || { kill "$cli"; cat "$TMP/x.err"; return 1; }
        wait_for 60 "make and its children" has_build_procs || { kill "$cli"; return 1; }
        kill -TERM "$cli" # (background jobs ignore SIGINT; the CLI's connection goes as with Ctrl-C)
        wait "$cli" 2>/dev/null && { echo "the cancelled build succeeded"; return 1; }
        wait_for 30 "the build's processes to go" no_build_procs || { ps -o pid,args -p "$(build_procs | tr '\n' ,)0"; return 1; }
        wait_for 600 "the staging dir (a 1.5 GB tree) to go" no_staging || { ls -a "$STATE/kernels"; return 1; }
        expect_eq "$(vmlinux_sha)" "$sha" && "$BANGER" --json daemon operations | jq -e \
                '.operations | map(select(.kind == "kernel.build")) | .[-1].state == "cancelled"' >/dev/null
}
t "a cancelled build (client gone during the compile) leaves no staging dir and no process" cancel

# The slim image's disks against this kernel: QEMU microvm (TCG) boots it
# with banger's initramfs (no module to load) and the agent runs a command.
boot() {
        local img; img=$("$BANGER" --json image show debian-bookworm-slim) || return 1
        "$BANGER" daemon stop >/dev/null 2>&1
        B image register --name slim-microvm --rootfs "$(jq -r .rootfs_path <<<"$img")" \
                --work-seed "$(jq -r .work_seed_path <<<"$img")" --kernel-ref microvm-6.1 --init-mode fast >/dev/null || return 1
        B vm create --name kb --image slim-microvm --vcpu 1 --memory 512 >"$TMP/vm.out" 2>&1 || { cat "$TMP/vm.out"; return 1; }
        local out; out=$(B vm exec kb -- sh -c 'uname -r; cat /proc/cmdline; ls /sys/bus/virtio/drivers') || return 1
        expect_match "$out" '^6\.1\.[0-9]+-banger-microvm' && expect_match "$out" 'virtio_blk' || return 1
        local log; log=$(B vm logs kb) || return 1
        expect_match "$log" 'banger-init: stage=start' && expect_match "$log" 'stage=modules-loaded t=[0-9.]+ count=0' &&
                B vm delete kb >/dev/null
}
t "the slim image boots with microvm-6.1 under QEMU microvm and runs a command" boot

finish
