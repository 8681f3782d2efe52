#!/usr/bin/env bash
# kill -9 of bangerd at every named stage of vm create, start, stop and delete,
# of a snapshot, a restore and a template build,
# of a bundle image pull and a kernel pull, and while mmdebstrap builds an
# image (a build with -Dtest_hooks=true kills itself where
# $BANGER_TEST_CRASH_AT says). After each crash the next daemon must leave the
# host as if the operation had never started or had finished: no orphan QEMU,
# TAP, nft rule, mount, staging dir or half row, and a bystander VM that runs
# throughout is adopted with the same pid every time.
. "$(dirname "$0")/../integration/lib.sh"
begin
vm_begin
if ! has_test_hooks; then
        skip "crash points" "$BANGERD" "has no test hooks (meson -Dtest_hooks=true)"
        fault_finish
        exit
fi

t "kernel and slim image pulled (host namespace)" vm_prepare
SPEC=(--image debian-bookworm-slim --vcpu 1 --memory 512)
t "a bystander VM 'keep' runs through every crash" B vm create --name keep "${SPEC[@]}"
KEEP_PID=$(vm_pid keep 2>/dev/null)

# After a restart: the bystander adopted with its pid, and all consistent.
settled() {
        expect_eq "$(B --json vm show keep | jq -r '"\(.state) \(.pid)"')" "running $KEEP_PID" || return 1
        consistent
}
created_id() { sed -n 's/^creating vm [a-z0-9-]* (\([0-9a-f]*\)).*/\1/p' "$TMP/crash.out"; }
gone() { # name id: no row, no file, no socket
        ! B vm show "$1" >/dev/null 2>&1 || { echo "vm $1 is still there: $(B --json vm show "$1" | jq -c '{state, pid, tap}')"; return 1; }
        [ -n "$2" ] || return 0
        [ ! -e "$STATE/vms/$2" ] || { echo "its dir is left: $(ls -A "$STATE/vms/$2" | tr '\n' ' ')"; return 1; }
        [ ! -e "$XDG_RUNTIME_DIR/banger/vms/$2" ] || { echo "its runtime dir is left"; return 1; }
        ! grep -q "^$1.vm," "$STATE/ssh/known_hosts" 2>/dev/null || { echo "its known_hosts entry is left"; return 1; }
}
# it is stopped (or error) and starts again, then it is stopped again
restartable() {
        local st; st=$(B --json vm show "$1" | jq -r .state)
        case "$st" in stopped | error) ;; *) echo "vm $1 is '$st' (want stopped or error)"; return 1 ;; esac
        B vm start "$1" >"$TMP/start.out" 2>&1 || { echo "vm start $1 after the crash:"; cat "$TMP/start.out"; return 1; }
        expect_eq "$(B vm ssh "$1" -- cat /etc/hostname)" "$1" || return 1
        consistent || return 1
        B vm stop "$1" >/dev/null
}
# its VMM ($2) was adopted and it becomes running once it answers
adopted() {
        [ -n "$2" ] || { echo "no VMM of vm $1 ran before the restart"; return 1; }
        wait_for 120 "vm $1 to be running" state_is "$1" running || { B --json vm show "$1" | jq -c '{state, last_error}'; return 1; }
        expect_eq "$(vm_pid "$1")" "$2" || return 1
        expect_eq "$(B vm ssh "$1" -- cat /etc/hostname)" "$1"
}

# ---- vm create -----------------------------------------------------------------
crash_create() { # stage outcome: gone | stopped | running
        crash_at "$1" B vm create --name cr "${SPEC[@]}" || return 1
        local id qemu; id=$(created_id); qemu=$(vmm_of "$id")
        restart || return 1
        local rc=0
        case "$2" in
        gone) gone cr "$id" || rc=1 ;;
        stopped) restartable cr || rc=1 ;;
        running) adopted cr "$qemu" || rc=1 ;;
        esac
        settled || rc=1
        if B vm show cr >/dev/null 2>&1; then B vm delete cr >/dev/null || rc=1; fi
        gone cr "$id" && [ "$rc" = 0 ]
}
tf "create, kill -9 at 'resolve image': nothing of the VM is left" crash_create "resolve image" gone
tf "create, kill -9 at 'prepare disks' (row, no dir yet): rolled back" crash_create "prepare disks" gone
tf "create, kill -9 at 'create:disks-made' (disks, marker): rolled back" crash_create "create:disks-made" gone
tf "create, kill -9 at 'network': a stopped VM that starts again" crash_create network stopped
tf "create, kill -9 at 'boot' (TAP made): a stopped VM that starts again, TAP released" crash_create boot stopped
tf "create, kill -9 at 'wait for agent' (QEMU up): adopted, running once it answers" crash_create "wait for agent" running

# ---- vm start / stop -------------------------------------------------------------
t "a stopped VM 's1' (--no-start)" B vm create --name s1 --no-start "${SPEC[@]}"
S1_ID=$(vm_id s1 2>/dev/null)
crash_start() { # stage outcome: stopped | running
        crash_at "$1" B vm start s1 || return 1
        local qemu; qemu=$(vmm_of "$S1_ID")
        restart || return 1
        local rc=0
        case "$2" in
        stopped) restartable s1 || rc=1 ;;
        running) adopted s1 "$qemu" || rc=1 ;;
        esac
        settled || rc=1
        return $rc
}
tf "start, kill -9 at 'network': stopped, starts again" crash_start network stopped
tf "start, kill -9 at 'boot': stopped, TAP released, starts again" crash_start boot stopped
tf "start, kill -9 at 'wait for agent': adopted, running once it answers" crash_start "wait for agent" running

crash_stop() {
        state_is s1 running || B vm start s1 >/dev/null 2>&1 || return 1
        local pid; pid=$(vm_pid s1)
        crash_at stop B vm stop s1 || return 1
        restart || return 1
        expect_eq "$(B --json vm show s1 | jq -r '"\(.state) \(.pid)"')" "running $pid" || return 1
        settled || return 1
        B vm stop s1 >/dev/null && consistent
}
tf "stop, kill -9 at 'stop': still running, adopted with its pid, stops after" crash_stop

# ---- vm delete -------------------------------------------------------------------
crash_delete() { # stage [--no-start]
        local stage="$1"; shift
        B vm create --name dl "$@" "${SPEC[@]}" >/dev/null 2>&1 || { echo "vm create dl failed"; return 1; }
        local id; id=$(vm_id dl)
        crash_at "$stage" B vm delete dl || return 1
        restart || return 1
        local rc=0
        settled || rc=1
        # whatever is left is a VM that can be deleted
        if B vm show dl >/dev/null 2>&1; then B vm delete dl >"$TMP/del.out" 2>&1 || { cat "$TMP/del.out"; rc=1; }; fi
        gone dl "$id" && consistent && [ "$rc" = 0 ]
}
tf "delete (running VM), kill -9 at 'delete' (stopped, files kept): consistent, deletable" crash_delete delete
tf "delete (running VM), kill -9 at 'delete:released': consistent, deletable" crash_delete delete:released
tf "delete (running VM), kill -9 at 'delete:files-gone' (dir gone, row kept): no half row" crash_delete delete:files-gone

# `vm run --rm` answers once the delete is recorded; a crash in the daemon's
# background delete is finished by the next start, nobody deletes by hand.
crashes() { grep -c "test hook: crashing at '$1'" "$LOG" 2>/dev/null || true; }
crashed_since() { [ "$(crashes "$1")" -gt "$2" ]; } # stage count-before
crash_rm() { # stage
        "$BANGER" daemon stop >/dev/null 2>&1 || true
        local before; before=$(crashes "$1")
        BANGER_TEST_CRASH_AT="$1" B vm run --rm --name rm1 "${SPEC[@]}" -- true >"$TMP/crash.out" 2>&1 ||
                { cat "$TMP/crash.out"; return 1; }
        local id; id=$(created_id)
        wait_for 30 "the daemon to crash at '$1' after answering" crashed_since "$1" "${before:-0}" || return 1
        local pid; pid=$(cat "$STATE/bangerd.lock" 2>/dev/null)
        wait_for 10 "the crashed bangerd ($pid) to be gone" not alive "$pid" || return 1
        [ -e "$STATE/vms/$id/.deleting" ] || [ ! -e "$STATE/vms/$id" ] || { echo "no .deleting marker in a dir left"; return 1; }
        restart || return 1
        gone rm1 "$id" && settled
}
tf "vm run --rm, kill -9 at 'delete:released' in the background delete: the next start finishes it" crash_rm delete:released
tf "vm run --rm, kill -9 at 'delete:files-gone' in the background delete: the next start finishes it" crash_rm delete:files-gone

# ---- image pull (a bundle) ---------------------------------------------------------
mkdir -p "$TMP/www"
t "the slim image exported as a bundle" B image export debian-bookworm-slim -o "$TMP/www/slim.tar.zst"
crash_bundle() { # stage ref
        crash_at "$1" B image pull --name bslim "$2" || return 1
        restart || return 1
        ! B image show bslim >/dev/null 2>&1 || { echo "image bslim is registered"; return 1; }
        settled
}
tf "image pull of a bundle file, kill -9 at 'import': staging swept, nothing registered" crash_bundle import "$TMP/www/slim.tar.zst"
tf "image pull of a bundle file, kill -9 at 'image:moved' (dir, no row): dir swept" crash_bundle image:moved "$TMP/www/slim.tar.zst"
# the bundle over HTTP from inside the namespace (the daemon runs there)
ip netns exec "$NS" "$PY" -u -m http.server 0 --bind 127.0.0.1 --directory "$TMP/www" >"$TMP/http.out" 2>&1 &
HTTP_PID=$!
wait_for 10 "the HTTP server's port" grep -q 'port [0-9]' "$TMP/http.out"
HTTP_PORT=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$TMP/http.out" | head -1)
tf "image pull of a bundle URL, kill -9 at 'download': staging swept, nothing registered" crash_bundle download "http://127.0.0.1:$HTTP_PORT/slim.tar.zst"
kill "$HTTP_PID" 2>/dev/null; wait "$HTTP_PID" 2>/dev/null
bundle_after() {
        B image pull --name bslim "$TMP/www/slim.tar.zst" >"$TMP/bp.out" 2>&1 || { cat "$TMP/bp.out"; return 1; }
        B image delete bslim >/dev/null && consistent
}
t "after the crashes the same bundle pulls and deletes cleanly" bundle_after

# ---- kernel pull (host namespace: the mirror is outside) ---------------------------
crash_kernel() {
        crash_at "$1" "$BANGER" kernel pull --force debian-cloud-6.1 || return 1
        restart || return 1
        B --json kernel show debian-cloud-6.1 >"$TMP/k.json" || return 1
        local f; for f in $(jq -r '.vmlinux, .vmlinuz' "$TMP/k.json"); do [ -f "$f" ] || { echo "the kernel row names $f, which is missing"; return 1; }; done
        settled
}
tf "kernel pull --force, kill -9 at 'download': staging swept, the kernel kept" crash_kernel download
tf "kernel pull --force, kill -9 at 'kernel:moved' (new dir in place, no row yet): old dir swept, kernel usable" crash_kernel kernel:moved
kernel_usable() {
        B vm start s1 >"$TMP/s1.out" 2>&1 || { cat "$TMP/s1.out"; return 1; }
        B vm stop s1 >/dev/null && consistent
}
t "a VM boots with the kernel after the crashed pulls" kernel_usable

# ---- kill -9 while mmdebstrap builds (host namespace) ------------------------------
crash_build() {
        "$BANGER" daemon stop >/dev/null 2>&1
        mkdir -p "$TMP/empty-cache"
        BANGER_IMAGE_CACHE="$TMP/empty-cache" "$BANGER" daemon start >/dev/null || return 1
        local dpid; dpid=$(cat "$STATE/bangerd.lock")
        "$BANGER" image pull --name built debian-bookworm-slim >"$TMP/build.out" 2>&1 &
        local cli=$!
        wait_for 120 "the debootstrap stage" grep -q '==> debootstrap' "$TMP/build.out" || { cat "$TMP/build.out"; return 1; }
        local mm=""
        find_mm() { mm=$(for p in $(descendants "$dpid"); do grep -qx mmdebstrap "/proc/$p/comm" 2>/dev/null && echo "$p"; done); [ -n "$mm" ]; }
        wait_for 60 "mmdebstrap to run" find_mm || return 1
        find_mm
        local work; work=$(tr '\0' '\n' <"/proc/${mm%%$'\n'*}/cmdline" | grep -o '/var/tmp/banger-build-[A-Za-z0-9]*' | head -1)
        local tree; tree=$(descendants "$dpid" | tr '\n' ' ')
        [ -n "$work" ] || { echo "no work dir in mmdebstrap's arguments"; return 1; }
        fault_note injected "kill -9 of bangerd while mmdebstrap runs"
        kill -9 "$dpid"
        wait "$cli" 2>/dev/null
        local rc=0 p
        # mmdebstrap dies with the daemon (PR_SET_PDEATHSIG)
        wait_for 5 "mmdebstrap to die with the daemon" not alive "${mm%%$'\n'*}" || rc=1
        # (the dead daemon fully reaped: a zombie builder is the next case)
        wait_for 10 "the dead daemon to be reaped" test ! -e "/proc/$dpid" || rc=1
        restart || return 1
        # what it ran (apt, dpkg in the tree) is gone once the work dir is swept
        alive_any() { for p in $tree; do alive "$p" && return 0; done; return 1; }
        wait_for 10 "the build's processes to be gone" not alive_any ||
                { for p in $tree; do alive "$p" && echo "left: $p $(tr '\0' ' ' <"/proc/$p/cmdline")"; done; rc=1; }
        [ ! -e "$work" ] || { echo "the work dir $work is left"; fault_note leak "$work"; rc=1; }
        ! grep -qF "$work" /proc/self/mountinfo || { echo "mounts left:"; grep -F "$work" /proc/self/mountinfo; fault_note leak "mounts below $work"; rc=1; }
        ! B image show built >/dev/null 2>&1 || { echo "image 'built' is registered"; rc=1; }
        settled || rc=1
        [ "$rc" = 0 ] && fault_note survived "kill -9 of bangerd while mmdebstrap runs"
        return $rc
}
t "kill -9 of bangerd while mmdebstrap runs: mmdebstrap dies within 5 s; after restart no work dir, mount or image" crash_build

ZW=/var/tmp/banger-build-tzombie$$
zombie_check() {
        wait_for 5 "the zombie" grep -q '[0-9]' "$TMP/zombie.pid" || return 1
        local z; z=$(cat "$TMP/zombie.pid")
        wait_for 5 "$z to be a zombie" grep -q '^State:.*Z' "/proc/$z/status" || return 1
        mkdir -m 700 "$ZW" "$ZW/tree" && echo "$z" >"$ZW/builder.pid" || return 1
        mount -t tmpfs banger-test "$ZW/tree" || return 1
        "$BANGER" daemon stop >/dev/null 2>&1; restart || return 1
        local rc=0
        [ ! -e "$ZW" ] || { echo "the work dir of a dead (zombie) builder $z stayed"; rc=1; }
        ! grep -qF "$ZW" /proc/self/mountinfo || { echo "its mount stayed"; rc=1; }
        return $rc
}
zombie_builder() {
        # a builder that died but that its parent has not reaped yet (what a
        # daemon killed a moment ago is, in a container whose init reaps late)
        "$PY" -c 'import os, time
pid = os.fork()
if pid == 0: os._exit(0)
print(pid, flush=True); time.sleep(60)' >"$TMP/zombie.pid" &
        local parent=$! rc=0
        zombie_check || rc=1
        kill "$parent" 2>/dev/null; wait "$parent" 2>/dev/null
        umount "$ZW/tree" 2>/dev/null; rm -rf "$ZW"
        return $rc
}
t "a dead builder not yet reaped (a zombie) counts as dead: its work dir and mount are swept at start" zombie_builder

# ---- snapshots, restores, template builds -------------------------------------------
crash_snapshot() {
        crash_at snapshot:paused B vm snapshot keep cs1 || return 1
        restart || return 1
        local dir; dir="$STATE/vms/$(vm_id keep)/snapshots"
        [ -z "$(ls -A "$dir" 2>/dev/null)" ] || { echo "left in $dir: $(ls -A "$dir")"; return 1; }
        # resumed and thawed: a write reaches its disk
        timeout 60 ip netns exec "$NS" "$BANGER" vm exec keep -- sh -c 'echo x >/root/after-crash && sync' ||
                { echo "keep does not write after the crash"; return 1; }
        settled
}
tf "snapshot, kill -9 with the guest paused and frozen: no half snapshot; the guest resumed, thawed, writing" crash_snapshot

crash_restore() {
        B vm create --name rs "${SPEC[@]}" >/dev/null 2>&1 && B vm exec rs -- sh -c 'echo one >/root/f; sync' &&
        B vm snapshot rs r1 >/dev/null 2>&1 && B vm exec rs -- sh -c 'echo two >/root/f; sync' || return 1
        crash_at restore:disks B vm restore rs r1 || return 1
        restart || return 1
        [ ! -e "$STATE/vms/$(vm_id rs)/snapshots/.restoring" ] || { echo "the restore marker is left"; return 1; }
        # stopped, its disks the snapshot's (the copy finished): a cold boot sees them
        restartable rs || return 1
        B vm start rs >/dev/null 2>&1 && expect_eq "$(B vm exec rs -- cat /root/f)" one &&
        B vm delete rs >/dev/null && settled
}
tf "restore, kill -9 with the disks half copied back: the next start finishes the copy; the VM starts with them" crash_restore

crash_template() {
        "$BANGER" daemon stop >/dev/null 2>&1 || true
        printf 'accel = "tcg"\nwarm_start = "on"\n' >"$CONF"
        local before; before=$(crashes template:saved)
        BANGER_TEST_CRASH_AT=template:saved B vm create --name tw "${SPEC[@]}" >"$TMP/crash.out" 2>&1 ||
                { cat "$TMP/crash.out"; return 1; }
        wait_for 120 "the daemon to crash at 'template:saved' in the background build" crashed_since template:saved "${before:-0}" ||
                return 1
        local pid; pid=$(cat "$STATE/bangerd.lock" 2>/dev/null)
        wait_for 10 "the crashed bangerd ($pid) to be gone" not alive "$pid" || return 1
        printf 'accel = "tcg"\nwarm_start = "off"\n' >"$CONF"
        restart || return 1
        [ -z "$(ls -A "$STATE/templates" 2>/dev/null)" ] || { echo "left: $(ls -A "$STATE/templates")"; return 1; }
        ! ps -eo args | grep -q '[p]rocess=banger-tpl-' || { echo "a template VMM runs"; return 1; }
        B vm delete tw >/dev/null && settled
}
tf "template build, kill -9 once its state is saved: its VMM and files are gone at the next start" crash_template

crash_identity() {
        "$BANGER" daemon stop >/dev/null 2>&1 || true
        printf 'accel = "tcg"\nwarm_start = "on"\n' >"$CONF"
        B vm create --name tw2 "${SPEC[@]}" >/dev/null 2>&1 || return 1
        wait_for 180 "a template" sh -c "[ \"\$('$BANGER' --json template list 2>/dev/null | jq '[.[] | select(.state == \"ready\")] | length')\" = 1 ]" ||
                return 1
        crash_at identity:done B vm create --name wi "${SPEC[@]}" || return 1
        local id; id=$(created_id)
        printf 'accel = "tcg"\nwarm_start = "off"\n' >"$CONF"
        restart || return 1
        # its VMM killed, not adopted; stopped; a cold start from a fresh overlay works
        [ -z "$(vmm_of "$id")" ] || { echo "the half-identified VMM runs"; return 1; }
        [ ! -e "$STATE/vms/$id/.identifying" ] || { echo "the marker is left"; return 1; }
        restartable wi || return 1
        B vm delete wi tw2 >/dev/null && B template prune --all >/dev/null && settled
}
tf "warm create, kill -9 with the guest re-identified but the marker still there: killed, not adopted; starts cold" crash_identity

final() {
        local vms; vms=$(B vm list -q | tr '\n' ' ')
        [ -z "$vms" ] || B vm delete $vms >/dev/null || return 1
        B daemon stop >/dev/null
        [ -z "$(our_qemus)$(our_procs 'bangerd|mmdebstrap')" ] || { echo "left: $(our_qemus) $(our_procs 'bangerd|mmdebstrap')"; return 1; }
        [ -z "$(ns_taps)" ] || { echo "TAPs left: $(ns_taps)"; return 1; }
        ! ip netns exec "$NS" nft list ruleset | grep -q 'banger-vm:' || { echo "nft rules left"; return 1; }
        ! grep -qF "$TMP" /proc/self/mountinfo || { echo "mounts left"; return 1; }
}
t "at the end: every VM deleted, nothing of ours runs or is left" final

fault_finish
