#!/usr/bin/env bash
# Kernels and images from the real Debian mirror, booted under QEMU; bundles,
# hostile inputs, a tampered mirror on loopback, cancellation.
. "$(dirname "$0")/lib.sh"
begin
# Builds are cached between runs on one machine; an empty cache works too.
export BANGER_IMAGE_CACHE="${BANGER_TEST_IMAGE_CACHE:-$TMP/image-builds}"
KDIR="$STATE/kernels/debian-cloud-6.1"

no_staging() { ! ls -a "$STATE/kernels" "$STATE/images" 2>/dev/null | grep -q '^\.staging'; }

t "kernel list --available shows the catalog kernel" sh -c \
  "'$BANGER' --json kernel list --available | jq -e '.[] | select(.name == \"debian-cloud-6.1\" and .state == \"available\")' >/dev/null"

kernel_pull() {
        "$BANGER" --json kernel pull debian-cloud-6.1 >"$TMP/k.json" 2>"$TMP/k.err" || { cat "$TMP/k.err"; return 1; }
        jq -e '.pvh == true and (.modules | length) >= 10 and (.modules | index("virtio_blk.ko")) != null and
               (.vmlinux | endswith("/vmlinux")) and (.initramfs | test("/initramfs-[0-9a-f]{12}\\.cpio$")) and
               (.source | startswith("debian:")) and .already_pulled == false' "$TMP/k.json" >/dev/null &&
        grep -q '^==> release: ' "$TMP/k.err" && grep -q '^==> download: linux-image-' "$TMP/k.err" &&
        [ -f "$KDIR/manifest.json" ] && jq -e '.files.vmlinuz | test("^[0-9a-f]{64}$")' "$KDIR/manifest.json" >/dev/null &&
        no_staging
}
t "kernel pull: signed index, verified .deb, modules in order, PVH vmlinux, initramfs" kernel_pull

# The modules disk: the whole lib/modules/<release> tree with depmod's
# indexes at its root, labelled, no journal; the staging tree is gone.
modules_disk() {
        local d rel; d=$(jq -r .modules_disk "$TMP/k.json") && rel=$(jq -r .modules_release "$KDIR/manifest.json") || return 1
        expect_eq "$d" "$KDIR/modules.ext4" && [ -f "$d" ] && [ ! -e "$KDIR/modroot" ] && [ ! -e "$KDIR/all-modules" ] || return 1
        expect_match "$rel" '^6\.1\.[0-9]+-[0-9]+-cloud-amd64$' || return 1
        expect_eq "$(e2label "$d")" banger-modules && ! dumpe2fs -h "$d" 2>/dev/null | grep -q has_journal || return 1
        local ls; ls=$(debugfs -R 'ls -p /' "$d" 2>/dev/null) || return 1
        local f; for f in modules.dep modules.dep.bin modules.alias.bin modules.order modules.builtin kernel; do
                grep -q "/$f/" <<<"$ls" || { echo "no $f on the disk"; return 1; }
        done
        debugfs -R 'stat /kernel/fs/overlayfs/overlay.ko' "$d" 2>/dev/null | grep -q 'Type: regular' &&
                debugfs -R 'cat /modules.dep' "$d" 2>/dev/null | grep -q '^kernel/drivers/net/veth.ko:' &&
                jq -e '.files["modules.ext4"] | test("^[0-9a-f]{64}$")' "$KDIR/manifest.json" >/dev/null
}
t "kernel pull makes the modules disk (the whole tree, depmod's indexes, read-only ext4)" modules_disk

probe_settled() {
        case "$("$BANGER" --json ping | jq -r .accel_reason)" in *"probe running"*|*"no kernel pulled"*) return 1 ;; esac
}

accel_probe() {
        # with a kernel present the daemon boots it under KVM once, in the background
        wait_for 30 "the accelerator choice to settle" probe_settled || return 1
        local r accel; r=$("$BANGER" --json ping | jq -r .accel_reason) accel=$("$BANGER" --json ping | jq -r .accel)
        if [ ! -e /dev/kvm ]; then # nothing to probe: TCG, and the reason says why
                expect_eq "$accel" tcg && expect_match "$r" '/dev/kvm' && [ ! -f "$XDG_CACHE_HOME/banger/accel-probe.json" ]
                return
        fi
        [ -f "$XDG_CACHE_HOME/banger/accel-probe.json" ] || { echo "no verdict cached ($r)"; return 1; }
        local works; works=$(jq -r .kvm_works "$XDG_CACHE_HOME/banger/accel-probe.json")
        if [ ! -w /dev/kvm ]; then expect_eq "$accel" tcg; return; fi
        # the answer follows the verdict, and doctor (read-only) shows the same one
        if [ "$works" = true ]; then expect_eq "$accel" kvm; else expect_eq "$accel" tcg; fi &&
        "$BANGER" doctor | grep -A1 -P '^(PASS|WARN)\tkvm$' | grep -q 'boot probe: ' &&
        echo "# KVM boot probe: $(jq -r .detail "$XDG_CACHE_HOME/banger/accel-probe.json")" >&2
}
t "the accelerator comes from a KVM boot probe, cached and shown by ping and doctor" accel_probe

t "kernel pull again reports it is already pulled" sh -c \
  "'$BANGER' --json kernel pull debian-cloud-6.1 2>/dev/null | jq -e '.already_pulled == true' >/dev/null"

# A pull of an unchanged package takes the files of the last pull, each
# checked against its digest (no download, no depmod); a damaged cache entry
# is removed and the package pulled for real; --force never uses the cache.
kernel_cache() {
        local e; e=$(ls -d "$XDG_CACHE_HOME"/banger/kernel-pulls/debian-cloud-6.1-* 2>/dev/null)
        [ -n "$e" ] && [ "$(echo "$e" | wc -l)" = 1 ] && [ -f "$e/manifest.json" ] || { echo "cache entries: $e"; return 1; }
        jq -S .files "$KDIR/manifest.json" >"$TMP/files.before" || return 1
        "$BANGER" kernel rm debian-cloud-6.1 >/dev/null || return 1
        "$BANGER" --json kernel pull debian-cloud-6.1 >"$TMP/kc.json" 2>"$TMP/kc.err" || { cat "$TMP/kc.err"; return 1; }
        grep -q '^==> cache: linux-image-' "$TMP/kc.err" && ! grep -q '^==> download:' "$TMP/kc.err" || { cat "$TMP/kc.err"; return 1; }
        jq -e '.pvh == true and (.modules | index("virtio_blk.ko")) != null' "$TMP/kc.json" >/dev/null &&
                jq -S .files "$KDIR/manifest.json" | diff - "$TMP/files.before" && no_staging || return 1
        # one byte of the cached vmlinuz changed (after kernel rm it is the cache's only link)
        "$BANGER" kernel rm debian-cloud-6.1 >/dev/null && printf X | dd of="$e/vmlinuz" bs=1 seek=4096 conv=notrunc 2>/dev/null || return 1
        "$BANGER" kernel pull debian-cloud-6.1 >/dev/null 2>"$TMP/kd.err" || { cat "$TMP/kd.err"; return 1; }
        grep -q '^==> download: linux-image-' "$TMP/kd.err" && ! grep -q '^==> cache:' "$TMP/kd.err" || { cat "$TMP/kd.err"; return 1; }
        grep -q 'kernel cache: .* does not match its manifest' "$LOG" || { echo "no warning in the log"; return 1; }
        expect_eq "$(jq -r .files.vmlinuz "$KDIR/manifest.json")" "$(jq -r .vmlinuz "$TMP/files.before")" &&
                expect_eq "$(sha256sum <"$e/vmlinuz" | cut -d' ' -f1)" "$(jq -r .vmlinuz "$TMP/files.before")" || return 1
        "$BANGER" kernel pull --force debian-cloud-6.1 >/dev/null 2>"$TMP/kf.err" && grep -q '^==> download: ' "$TMP/kf.err" && no_staging
}
t "kernel pull of an unchanged package reuses the last pull's files (digests checked); a damaged entry is pulled again" kernel_cache

coalesce() {
        "$BANGER" kernel pull --force debian-cloud-6.1 >"$TMP/c1" 2>&1 & local p1=$!
        "$BANGER" kernel pull --force debian-cloud-6.1 >"$TMP/c2" 2>&1 & local p2=$!
        wait $p1 && wait $p2 || { cat "$TMP/c1" "$TMP/c2"; return 1; }
        grep -q 'waiting: another request is already working on kernel:debian-cloud-6.1' "$TMP/c1" "$TMP/c2" &&
        # one download stage between them (plain byte counters are indented lines of their own)
        [ "$(grep -c '^==> download: ' "$TMP/c1" "$TMP/c2" | awk -F: '{s+=$2} END {print s}')" = 1 ] && no_staging
}
t "two concurrent pulls of one kernel coalesce into one download" coalesce

tty_progress() {
        # auto mode (lib.sh sets NO_COLOR, which means plain lines)
        script -qec "env -u NO_COLOR TERM=xterm '$BANGER' kernel pull --force debian-cloud-6.1" /dev/null >"$TMP/tty.out" 2>&1 || return 1
        # a live byte counter (spinner, done / total, percent) on a terminal...
        grep -aEq $'\r''[-|/\\] download: [0-9.]+ [KMG]?i?B / 25\.[0-9] MiB  [0-9]{1,3}%' "$TMP/tty.out" ||
                { cat -v "$TMP/tty.out" | tail -5; return 1; }
        # ...and none when stderr is not one
        "$BANGER" kernel pull --force debian-cloud-6.1 2>"$TMP/notty.err" >/dev/null && ! grep -q $'\r' "$TMP/notty.err"
}
t "download progress (bytes/total, percent) only on a terminal" tty_progress

image_pull() {
        local t0=$SECONDS
        "$BANGER" --json image pull debian-bookworm-slim >"$TMP/i.json" 2>"$TMP/i.err" || { cat "$TMP/i.err"; return 1; }
        echo "# image pull debian-bookworm-slim: $((SECONDS - t0)) s" >&2
        jq -e '.name == "debian-bookworm-slim" and .managed == true and .init_mode == "fast" and
               .kernel_ref == "debian-cloud-6.1" and (.rootfs_path | endswith("/rootfs.ext4")) and
               (.work_seed_path | endswith("/work-seed.ext4"))' "$TMP/i.json" >/dev/null && no_staging
}
t "image pull debian-bookworm-slim builds (or reuses) the recipe" image_pull

ROOTFS=$(jq -r .rootfs_path "$TMP/i.json" 2>/dev/null)

rootfs_contents() {
        # look inside without mounting: debugfs reads ext4 images
        debugfs -R 'ls -l /etc/ssh' "$ROOTFS" 2>/dev/null | grep -q 'sshd_config' &&
        ! debugfs -R 'ls /etc/ssh' "$ROOTFS" 2>/dev/null | grep -q 'ssh_host_ed25519_key' &&
        debugfs -R 'cat /etc/ssh/sshd_config.d/99-banger.conf' "$ROOTFS" 2>/dev/null | grep -q '^UsePAM no' &&
        debugfs -R 'stat /usr/local/bin/banger-agent' "$ROOTFS" 2>/dev/null | grep -q 'Mode:  0755' &&
        debugfs -R 'stat /usr/bin/git' "$ROOTFS" 2>/dev/null | grep -q 'Type: regular'
}
t "the rootfs has git, the agent and the sshd drop-in, and no shared host keys" rootfs_contents

boot() {
        boot_until "$TMP/boot.log" "$KDIR/vmlinux" "$(jq -r .initramfs "$TMP/k.json")" "$ROOTFS" fast 'stage=init-started' ||
                { tail -20 "$TMP/boot.log"; return 1; }
        grep -q 'banger-init: stage=modules-loaded .*count=1[0-9]' "$TMP/boot.log" &&
        grep -q 'banger-init: stage=root-mounted .*dev=/dev/vda' "$TMP/boot.log" &&
        grep -q 'banger-init: stage=init-started .*mode=fast sshd=started agent=started' "$TMP/boot.log" &&
        ! grep -q FATAL "$TMP/boot.log"
}
t "the slim image boots under QEMU (TCG) to 'root mounted' and 'init started'" boot
grep -h 'banger-init: stage=' "$TMP/boot.log" 2>/dev/null | sed 's/^/# /' | tr -d '\r' >&2

kernel_rm_refused() {
        local rc=0; "$BANGER" kernel rm debian-cloud-6.1 >"$TMP/krm" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "is used by image 'debian-bookworm-slim'" "$TMP/krm" && [ -d "$KDIR" ]
}
t "kernel rm is refused while an image uses the kernel" kernel_rm_refused

bundle_roundtrip() {
        local sha; sha=$(sha256sum "$ROOTFS" | cut -d' ' -f1)
        "$BANGER" image export debian-bookworm-slim -o "$TMP/slim.tar.zst" >/dev/null 2>&1 || return 1
        tar --zstd -tf "$TMP/slim.tar.zst" | sort | tr '\n' ' ' | grep -qx 'manifest.json rootfs.ext4 work-seed.ext4 ' || return 1
        "$BANGER" image delete debian-bookworm-slim >/dev/null || return 1
        "$BANGER" image show debian-bookworm-slim >/dev/null 2>&1 && return 1
        "$BANGER" --json image pull "$TMP/slim.tar.zst" >"$TMP/b.json" 2>/dev/null || return 1
        jq -e '.name == "debian-bookworm-slim" and (.source | startswith("bundle:"))' "$TMP/b.json" >/dev/null &&
        expect_eq "$(sha256sum "$(jq -r .rootfs_path "$TMP/b.json")" | cut -d' ' -f1)" "$sha" &&
        # the imported rootfs is sparse, not 400 MiB of zeros on disk
        [ "$(du -k "$(jq -r .rootfs_path "$TMP/b.json")" | cut -f1)" -lt 300000 ] && no_staging
}
t "image export -> delete -> pull of the bundle gives the same rootfs" bundle_roundtrip
ROOTFS=$(jq -r .rootfs_path "$TMP/b.json" 2>/dev/null)

t "a bundle whose name is taken is refused (already_exists)" sh -c \
  "'$BANGER' image pull '$TMP/slim.tar.zst' 2>&1 | grep -q 'already_exists: image .debian-bookworm-slim. already exists'"

hostile_bundle() { # name python-entries needle
        python3 - "$TMP/$1.tar" "$2" <<'PY'
import io, sys, tarfile, json
out, spec = sys.argv[1], sys.argv[2]
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
    for kind, name, data in json.loads(spec):
        ti = tarfile.TarInfo(name)
        if kind == "file":
            b = data.encode(); ti.size = len(b); t.addfile(ti, io.BytesIO(b))
        elif kind == "symlink":
            ti.type = tarfile.SYMTYPE; ti.linkname = data; t.addfile(ti)
        elif kind == "dev":
            ti.type = tarfile.CHRTYPE; ti.devmajor, ti.devminor = 8, 0; t.addfile(ti)
PY
        zstd -q -f "$TMP/$1.tar" -o "$TMP/$1.tar.zst" || return 1
        local before; before=$("$BANGER" --json image list | jq length)
        local rc=0; "$BANGER" image pull --name "evil-$1" "$TMP/$1.tar.zst" >"$TMP/h.out" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q -- "$3" "$TMP/h.out" &&
        expect_eq "$("$BANGER" --json image list | jq length)" "$before" && no_staging
}
M='["file","manifest.json","{\"format\":1,\"name\":\"evil\",\"init_mode\":\"fast\"}"]'
t "bundle with a ../ entry is refused, nothing registered" hostile_bundle dotdot "[$M,[\"file\",\"../rootfs.ext4\",\"x\"]]" 'unsafe entry path'
t "bundle with an absolute entry is refused" hostile_bundle abs "[$M,[\"file\",\"/rootfs.ext4\",\"x\"]]" 'unsafe entry path'
t "bundle with an extra entry is refused" hostile_bundle extra "[$M,[\"file\",\"rootfs.ext4\",\"x\"],[\"file\",\"run.sh\",\"x\"]]" 'unexpected entry'
t "bundle whose rootfs is a symlink is refused" hostile_bundle link "[$M,[\"symlink\",\"rootfs.ext4\",\"/etc/shadow\"]]" 'not a regular file'
t "bundle with a device node is refused" hostile_bundle dev "[$M,[\"dev\",\"rootfs.ext4\",\"\"]]" 'not a regular file'
t "bundle without a manifest is refused" hostile_bundle nomani "[[\"file\",\"rootfs.ext4\",\"x\"]]" 'must contain'
t "bundle with a bad manifest is refused" hostile_bundle badmani "[[\"file\",\"manifest.json\",\"{\\\"format\\\":1,\\\"name\\\":\\\"../x\\\",\\\"init_mode\\\":\\\"fast\\\"}\"],[\"file\",\"rootfs.ext4\",\"x\"]]" 'DNS label'

register_promote() {
        "$BANGER" --json image register --name reg-slim --rootfs "$ROOTFS" --kernel-ref debian-cloud-6.1 --init-mode fast \
                >"$TMP/r.json" || return 1
        jq -e '.managed == false and .rootfs_path == "'"$ROOTFS"'"' "$TMP/r.json" >/dev/null || return 1
        "$BANGER" --json image promote reg-slim >"$TMP/p.json" 2>/dev/null || return 1
        jq -e '.managed == true and (.rootfs_path | startswith("'"$STATE"'/images/")) and .rootfs_path != "'"$ROOTFS"'"' \
                "$TMP/p.json" >/dev/null || return 1
        cmp -s "$ROOTFS" "$(jq -r .rootfs_path "$TMP/p.json")" || return 1
        local dir; dir=$(dirname "$(jq -r .rootfs_path "$TMP/p.json")")
        "$BANGER" image delete reg-slim >/dev/null && [ ! -e "$dir" ] && [ -f "$ROOTFS" ]
}
t "image register (unmanaged) -> promote (copied) -> delete (removes only managed files)" register_promote

register_bad() {
        local rc=0; "$BANGER" image register --name bad --rootfs /nonexistent --kernel-ref debian-cloud-6.1 >"$TMP/rb" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q 'no such file\|No such file' "$TMP/rb" || return 1
        rc=0; "$BANGER" image register --name x --rootfs "$ROOTFS" >"$TMP/rb" 2>&1 || rc=$?
        expect_eq "$rc" 2 && grep -q 'exactly one of --kernel or --kernel-ref' "$TMP/rb" || return 1
        rc=0; "$BANGER" image register --name Bad_Name --rootfs "$ROOTFS" --kernel-ref debian-cloud-6.1 >"$TMP/rb" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q 'bad_request: image name .Bad_Name. is not a DNS label' "$TMP/rb"
}
t "image register rejects missing files, bad names and kernel ambiguity" register_bad

kernel_import() {
        local src="$TMP/kimport"; mkdir -p "$src/modules/kernel"
        cp "$KDIR/vmlinuz" "$src/" && cp "$KDIR"/modules/*.ko "$src/modules/kernel/" || return 1
        "$BANGER" --json kernel import my-kernel --from "$src" >"$TMP/ki.json" 2>/dev/null || return 1
        jq -e '.pvh == true and (.modules | length) >= 10 and (.source | startswith("import:")) and
               (.vmlinux | endswith("/vmlinux")) and (.modules_disk | endswith("/my-kernel/modules.ext4"))' \
                "$TMP/ki.json" >/dev/null || return 1
        debugfs -R 'cat /modules.dep' "$(jq -r .modules_disk "$TMP/ki.json")" 2>/dev/null | grep -q '^kernel/virtio_blk.ko:' ||
                return 1
        local rc=0; "$BANGER" kernel import my-kernel --from "$src" >"$TMP/ki2" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q 'already_exists' "$TMP/ki2" || return 1
        "$BANGER" kernel rm my-kernel >/dev/null && [ ! -e "$STATE/kernels/my-kernel" ]
}
t "kernel import from a directory (vmlinuz + modules/): its modules disk; refuses a duplicate, rm works" kernel_import

kernel_import_meta() {
        local src="$TMP/kimport" rc
        "$BANGER" --json kernel import meta-kernel --from "$src" --distro ubuntu-24.04 --arch amd64 >"$TMP/km.json" || return 1
        jq -e '.distro == "ubuntu-24.04" and .arch == "x86_64"' "$TMP/km.json" >/dev/null || { cat "$TMP/km.json"; return 1; }
        "$BANGER" kernel show meta-kernel | grep -q '^distro/arch: *ubuntu-24.04/x86_64$' || return 1
        "$BANGER" kernel list | grep -Eq '^meta-kernel +pulled +ubuntu-24.04 +x86_64 ' || { "$BANGER" kernel list; return 1; }
        "$BANGER" --json kernel list | jq -e '.[] | select(.name == "meta-kernel" and .arch == "x86_64")' >/dev/null || return 1
        "$BANGER" kernel rm meta-kernel >/dev/null || return 1
        rc=0; "$BANGER" kernel import bad-meta --from "$src" --arch sparc >"$TMP/km2" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "bad_request: --arch 'sparc' is not one of x86_64, aarch64" "$TMP/km2" || { cat "$TMP/km2"; return 1; }
        rc=0; "$BANGER" kernel import bad-meta --from "$src" --distro 'De bian' >"$TMP/km2" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "bad_request: --distro 'De bian' is not a distribution name" "$TMP/km2" || return 1
        ! "$BANGER" kernel show bad-meta >/dev/null 2>&1 && [ ! -e "$STATE/kernels/bad-meta" ] && no_staging
}
t "kernel import --distro --arch: recorded and shown by show and list (amd64 is x86_64); bad values refused, nothing left" kernel_import_meta

register_modules() {
        local src="$TMP/kimport" rc
        "$BANGER" --json image register --name reg-mods --rootfs "$ROOTFS" --kernel "$src/vmlinuz" --modules "$src/modules" \
                --init-mode fast >"$TMP/rm.json" || return 1
        jq -e '.kernel_ref == "reg-mods" and .kernel_path == null and .initrd_path == null' "$TMP/rm.json" >/dev/null ||
                { cat "$TMP/rm.json"; return 1; }
        "$BANGER" --json kernel show reg-mods >"$TMP/rmk.json" || return 1
        jq -e '(.modules | index("virtio_blk.ko")) != null and (.source | startswith("register:"))' "$TMP/rmk.json" >/dev/null ||
                { cat "$TMP/rmk.json"; return 1; }
        # a name taken, a tree that is not a directory: refused, no kernel made
        rc=0; "$BANGER" image register --name reg-mods --rootfs "$ROOTFS" --kernel "$src/vmlinuz" --modules "$src/modules" >"$TMP/rm2" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "already_exists: image 'reg-mods' already exists" "$TMP/rm2" || { cat "$TMP/rm2"; return 1; }
        rc=0; "$BANGER" image register --name reg-mods2 --rootfs "$ROOTFS" --kernel "$src/vmlinuz" --modules "$src/vmlinuz" >"$TMP/rm2" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "modules must be an existing directory" "$TMP/rm2" || { cat "$TMP/rm2"; return 1; }
        ! "$BANGER" kernel show reg-mods2 >/dev/null 2>&1 && [ ! -e "$STATE/kernels/reg-mods2" ] || return 1
        rc=0; "$BANGER" image register --name reg-mods2 --rootfs "$ROOTFS" --kernel "$src/vmlinuz" --initrd "$src/vmlinuz" --modules "$src/modules" >"$TMP/rm2" 2>&1 || rc=$?
        expect_eq "$rc" 2 && grep -q -- "--modules and --initrd exclude each other" "$TMP/rm2" || return 1
        rc=0; "$BANGER" image register --name reg-mods2 --rootfs "$ROOTFS" --kernel-ref reg-mods --modules "$src/modules" >"$TMP/rm2" 2>&1 || rc=$?
        expect_eq "$rc" 2 || return 1
        # a kernel already has the image's name: refused before anything is made, that kernel kept
        "$BANGER" kernel import clash --from "$src" >/dev/null || return 1
        rc=0; "$BANGER" image register --name clash --rootfs "$ROOTFS" --kernel "$src/vmlinuz" --modules "$src/modules" >"$TMP/rm2" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "a kernel named 'clash' exists" "$TMP/rm2" || { cat "$TMP/rm2"; return 1; }
        ! "$BANGER" image show clash >/dev/null 2>&1 && "$BANGER" kernel show clash >/dev/null || return 1
        "$BANGER" kernel rm clash >/dev/null &&
        "$BANGER" image delete reg-mods >/dev/null && "$BANGER" kernel rm reg-mods >/dev/null && no_staging
}
t "image register --kernel --modules imports them as a kernel named like the image; refusals leave no kernel" register_modules

not_found() {
        local rc=0; "$BANGER" kernel pull no-such-kernel >"$TMP/nf" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "not_found: no kernel 'no-such-kernel' in the catalog (available: debian-cloud-6.1, microvm-6.1)" "$TMP/nf" || return 1
        rc=0; "$BANGER" image pull no-such-image >"$TMP/nf" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "not_found: no image 'no-such-image' in the catalog" "$TMP/nf" || return 1
        rc=0; "$BANGER" image show nope >"$TMP/nf" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "not_found: image 'nope' not found" "$TMP/nf"
}
t "unknown kernels and images are not_found" not_found

# ---- a mirror on loopback that lies ----------------------------------------
with_mirror() { # dir: restart the daemon against http://127.0.0.1:PORT/debian
        http_serve "$1" || return 1
        mkdir -p "$(dirname "$CONF")"
        printf 'debian_mirror = "http://127.0.0.1:%s/debian"\n' "$HTTP_PORT" >"$CONF"
        "$BANGER" daemon stop >/dev/null
}
end_mirror() { kill "$HTTP_PID" 2>/dev/null; wait "$HTTP_PID" 2>/dev/null; rm -f "$CONF"; "$BANGER" daemon stop >/dev/null; }

tampered() {
        local m="$TMP/mirror"; mkdir -p "$m/debian/dists/bookworm"
        curl -fsS -o "$m/debian/dists/bookworm/InRelease.good" http://deb.debian.org/debian/dists/bookworm/InRelease || return 1
        sed 's/^Suite: .*/Suite: totally-legit/' "$m/debian/dists/bookworm/InRelease.good" >"$m/debian/dists/bookworm/InRelease"
        local before; before=$(sha256sum "$KDIR/manifest.json")
        with_mirror "$m" || return 1
        local rc=0; "$BANGER" kernel pull --force debian-cloud-6.1 >"$TMP/tm" 2>&1 || rc=$?
        end_mirror
        expect_eq "$rc" 1 && grep -q 'refusing http://127.0.0.1:[0-9]*/debian/dists/bookworm/InRelease: signature check' "$TMP/tm" &&
        expect_eq "$(sha256sum "$KDIR/manifest.json")" "$before" && no_staging
}
t "a tampered InRelease is refused and the installed kernel is kept" tampered

bad_index() {
        local m="$TMP/mirror2"; mkdir -p "$m/debian/dists/bookworm/main/binary-amd64"
        curl -fsS -o "$m/debian/dists/bookworm/InRelease" http://deb.debian.org/debian/dists/bookworm/InRelease || return 1
        # the signed Release promises one Packages.xz; serve another
        # same size as promised (so the hash is what catches it)
        local size; size=$(gpgv --keyring /usr/share/keyrings/debian-archive-keyring.gpg --output - \
                "$m/debian/dists/bookworm/InRelease" 2>/dev/null | awk '/^SHA256:/{s=1} s && / main\/binary-amd64\/Packages.xz$/ {print $2; exit}')
        [ -n "$size" ] || { echo "no Packages.xz size in the signed Release:"; head -30 "$m/debian/dists/bookworm/InRelease"; return 1; }
        head -c "$size" /dev/zero >"$m/debian/dists/bookworm/main/binary-amd64/Packages.xz"
        with_mirror "$m" || return 1
        local rc=0; "$BANGER" kernel pull --force debian-cloud-6.1 >"$TMP/bi" 2>&1 || rc=$?
        end_mirror
        expect_eq "$rc" 1 || { cat "$TMP/bi"; return 1; }
        grep -q 'Packages.xz: SHA256 mismatch' "$TMP/bi" || { echo "refused for another reason:"; cat "$TMP/bi"; return 1; }
        [ -f "$KDIR/vmlinux" ] || { echo "the installed kernel is gone"; return 1; }
        no_staging || { echo "staging left"; return 1; }
}
t "an index that does not match the signed Release is refused" bad_index

# A mirror that stumbles: the first GET of the index answers 503 (tried
# again, 1 s later, and served); the .deb is missing (404: not tried again).
flaky_mirror() {
        local m="$TMP/mirror3" d="debian/dists/bookworm"; mkdir -p "$m/$d/main/binary-amd64"
        curl -fsS -o "$m/$d/InRelease" "http://deb.debian.org/$d/InRelease" &&
        curl -fsS -o "$m/$d/main/binary-amd64/Packages.xz" "http://deb.debian.org/$d/main/binary-amd64/Packages.xz" || return 1
        python3 "$(dirname "$0")/flaky_http.py" --dir "$m" --log "$TMP/flaky.log" --flaky /Packages.xz >"$TMP/flaky.out" 2>&1 &
        HTTP_PID=$!
        wait_for 5 "the flaky mirror's port" grep -q 'port [0-9]' "$TMP/flaky.out" || return 1
        printf 'debian_mirror = "http://127.0.0.1:%s/debian"\n' "$(sed -n 's/port //p' "$TMP/flaky.out")" >"$CONF"
        "$BANGER" daemon stop >/dev/null
        local rc=0; "$BANGER" kernel pull --force debian-cloud-6.1 >"$TMP/fm" 2>&1 || rc=$?
        end_mirror
        expect_eq "$rc" 1 || { cat "$TMP/fm"; return 1; }
        grep -q '/pool/.*\.deb.*404' "$TMP/fm" || { echo "failed for another reason:"; cat "$TMP/fm"; return 1; }
        expect_eq "$(grep -c 'Packages.xz 503$' "$TMP/flaky.log")" 1 &&
        expect_eq "$(grep -c 'Packages.xz 200$' "$TMP/flaky.log")" 1 &&
        expect_eq "$(grep -c '\.deb 404$' "$TMP/flaky.log")" 1 || { cat "$TMP/flaky.log"; return 1; }
        [ -f "$KDIR/vmlinux" ] && no_staging
}
t "a mirror's 503 is tried again, its 404 is not; the installed kernel is kept" flaky_mirror

cancel_build() {
        "$BANGER" image delete debian-bookworm-slim >/dev/null || return 1
        "$BANGER" daemon stop >/dev/null
        BANGER_IMAGE_CACHE="$TMP/empty-cache" "$BANGER" daemon start >/dev/null || return 1
        "$BANGER" image pull debian-bookworm-slim >"$TMP/cx.out" 2>&1 & local cli=$!
        wait_for 60 "the debootstrap stage" grep -q '==> debootstrap' "$TMP/cx.out" || { cat "$TMP/cx.out"; return 1; }
        # the trees are built in a root-only work dir, never below the state dir
        wait_for 60 "mmdebstrap to run" pgrep -f "mmdebstrap.*/var/tmp/banger-build-" || return 1
        local work; work=$(pgrep -af "mmdebstrap.*/var/tmp/banger-build-" | grep -o '/var/tmp/banger-build-[A-Za-z0-9]*' | head -1)
        [ "$(stat -c '%U %a' "$work")" = "root 700" ] || { stat "$work"; return 1; }
        kill -TERM "$cli"; wait "$cli" 2>/dev/null  # (background jobs ignore SIGINT)
        wait_for 30 "mmdebstrap to be killed" not pgrep -f "mmdebstrap.*$work" || return 1
        wait_for 10 "the staging dir to go" no_staging || { ls -la "$STATE/images"; return 1; }
        wait_for 10 "the work dir to go" not test -e "$work" || { ls -la "$work"; return 1; }
        wait_for 10 "the build's mounts to go" not grep -qE "$STATE|$work" /proc/self/mountinfo ||
                { grep -E "$STATE|$work" /proc/self/mountinfo; return 1; }
        "$BANGER" --json image list | jq -e 'length == 0' >/dev/null &&
        "$BANGER" --json daemon operations | jq -e '.operations | map(select(.kind == "image.pull")) | .[-1].state == "cancelled"' >/dev/null
}
t "cancelling an image build (client gone) kills mmdebstrap and leaves no staging, mount or image" cancel_build

sweep_dead_builds() {
        local dead=/var/tmp/banger-build-tdead$$ live=/var/tmp/banger-build-tlive$$ pid
        sleep 0 & pid=$!; wait "$pid"   # a pid that is gone
        mkdir -m 700 "$dead" "$live" "$dead/tree" && echo "$pid" >"$dead/builder.pid" && echo $$ >"$live/builder.pid" || return 1
        mount -t tmpfs banger-test "$dead/tree" || return 1   # what a killed apt leaves mounted
        "$BANGER" daemon stop >/dev/null; "$BANGER" daemon start >/dev/null || return 1
        local ok=0
        [ ! -e "$dead" ] || { echo "a dead builder's work dir stayed"; ok=1; }
        not grep -q "$dead" /proc/self/mountinfo || { echo "its mount stayed"; ok=1; }
        [ -e "$live" ] || { echo "a live builder's work dir was taken"; ok=1; }
        umount "$dead/tree" 2>/dev/null; rm -rf "$dead" "$live"
        return $ok
}
t "a dead builder's work dir (and what is mounted in it) is swept at start; a live one stays" sweep_dead_builds

finish
