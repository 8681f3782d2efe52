#!/usr/bin/env bash
# A full disk: the state dir on a small tmpfs. A bundle pull that does not
# fit and a vm create whose disks do not fit fail with a clear error, leave
# nothing registered and give the space back; with the space freed, the same
# create works.
. "$(dirname "$0")/../integration/lib.sh"
begin
vm_begin
t "kernel and slim image pulled (host namespace, on disk)" vm_prepare
SPEC=(--vcpu 1 --memory 512)

# what the small state dir borrows from the big one
KDIR="$STATE/kernels/debian-cloud-6.1"
IMG_JSON=$(B --json image show debian-bookworm-slim 2>/dev/null)
t "the slim image exported as a bundle" B image export debian-bookworm-slim -o "$TMP/slim.tar.zst"
B daemon stop >/dev/null 2>&1

SMALL="$TMP/small"
mkdir -p "$SMALL"
mount -t tmpfs -o size=64m banger-fault-tmpfs "$SMALL"
export FAULT_OWN_MOUNTS="$SMALL"
trap 'vm_cleanup; umount -l "$SMALL" 2>/dev/null; cleanup' EXIT
# from here on the state (database, log, VMs, images) lives on the tmpfs
export XDG_STATE_HOME="$SMALL/state"
STATE="$XDG_STATE_HOME/banger"
DB="$STATE/state.db" LOG="$STATE/bangerd.log"

used() { df --output=used -B1 "$SMALL" | tail -1 | tr -d ' '; }
# the tmpfs holds no more than it did (the log and the database's WAL may
# have grown by a few pages: 512 KiB of slack)
space_back() { # before
        local now; now=$(used)
        [ "$now" -le $(($1 + 524288)) ] || { echo "the tmpfs used $1 bytes before, $now after"; du -a "$SMALL" | sort -n | tail -8; fault_note leak "space on a full disk"; return 1; }
}
t "a daemon with its state on a 64 MiB tmpfs" restart

bundle_too_big() {
        local before rc=0; before=$(used)
        B image pull --name big "$TMP/slim.tar.zst" >"$TMP/pull.out" 2>&1 || rc=$?
        expect_eq "$rc" 1 || { cat "$TMP/pull.out"; return 1; }
        grep -Eqi 'no space left on device|ENOSPC|disk is full|not enough space' "$TMP/pull.out" ||
                { echo "not a clear error:"; cat "$TMP/pull.out"; return 1; }
        expect_eq "$(B --json image list | jq length)" 0 || { B image list; return 1; }
        space_back "$before" && consistent
}
tf "image pull of a bundle larger than the disk: a clear error, nothing registered, the space given back" bundle_too_big

register() {
        B image register --name reg --rootfs "$(jq -r .rootfs_path <<<"$IMG_JSON")" \
                --work-seed "$(jq -r .work_seed_path <<<"$IMG_JSON")" --kernel "$KDIR/vmlinux" \
                --initrd "$(ls "$KDIR"/initramfs-*.cpio | head -1)" --init-mode fast >"$TMP/reg.out" 2>&1 ||
                { cat "$TMP/reg.out"; return 1; }
}
t "an image registered from files off the tmpfs" register

create_full() {
        # all but 2 MiB taken
        local avail; avail=$(df --output=avail -B1 "$SMALL" | tail -1 | tr -d ' ')
        fallocate -l $((avail - 2 * 1048576)) "$SMALL/filler" || return 1
        local before rc=0; before=$(used)
        B vm create --name full --image reg "${SPEC[@]}" >"$TMP/create.out" 2>&1 || rc=$?
        expect_eq "$rc" 1 || { cat "$TMP/create.out"; return 1; }
        grep -Eqi 'no space left on device|ENOSPC|disk is full|not enough space' "$TMP/create.out" ||
                { echo "not a clear error:"; cat "$TMP/create.out"; return 1; }
        expect_eq "$(B --json vm list | jq length)" 0 || { B vm list; return 1; }
        [ -z "$(ls -A "$STATE/vms" 2>/dev/null)" ] || { echo "left in vms/: $(ls -A "$STATE/vms")"; return 1; }
        space_back "$before" && consistent
}
tf "vm create whose disks do not fit: a clear error, no row, no file, the space given back" create_full

create_after() {
        rm -f "$SMALL/filler"
        B vm create --name fits --no-start --image reg "${SPEC[@]}" >"$TMP/fits.out" 2>&1 || { cat "$TMP/fits.out"; return 1; }
        B vm delete fits >/dev/null && consistent
}
t "with the space freed the same create works (--no-start) and deletes" create_after

final() {
        B image delete reg >/dev/null || return 1
        B daemon stop >/dev/null
        [ -z "$(our_qemus)$(our_procs bangerd)" ] || { echo "left: $(our_qemus) $(our_procs bangerd)"; return 1; }
}
t "at the end: nothing of ours runs" final

fault_finish
