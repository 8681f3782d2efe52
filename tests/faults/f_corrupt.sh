#!/usr/bin/env bash
# Damaged state: state.db empty, missing, truncated or garbage next to a
# running VM (refused, untouched, nothing created beside it; the VM keeps
# running and is adopted once the database is back); hostile handles.json
# files (garbage, another process's pid, a foreign link's name, a FIFO, a
# symlink to /etc/passwd: the daemon starts, never hangs, never touches what
# is not the VM's); config.toml as a FIFO, a directory or 100 MB (ping and
# doctor fail fast, saying why).
. "$(dirname "$0")/../integration/lib.sh"
begin
vm_begin
t "kernel and slim image pulled (host namespace)" vm_prepare
SPEC=(--image debian-bookworm-slim --vcpu 1 --memory 512)
t "a running VM 'cv'" B vm create --name cv "${SPEC[@]}"
CV_ID=$(vm_id cv 2>/dev/null)
CV_PID=$(vm_pid cv 2>/dev/null)
CV_TAP=$(B --json vm show cv 2>/dev/null | jq -r .tap)
HANDLES="$STATE/vms/$CV_ID/handles.json"
CONF_TEXT=$(cat "$CONF")

# cv runs with the pid it had, its row agrees, and so does everything else
cv_adopted() {
        expect_eq "$(B --json vm show cv | jq -r '"\(.state) \(.pid) \(.tap)"')" "running $CV_PID $CV_TAP" || return 1
        [ -f "$HANDLES" ] && [ ! -L "$HANDLES" ] && jq -e ".pid == $CV_PID" "$HANDLES" >/dev/null ||
                { echo "handles.json was not rewritten: $(ls -l "$HANDLES")"; return 1; }
        consistent
}

# ---- state.db ----------------------------------------------------------------------
B daemon stop >/dev/null 2>&1
cp "$DB" "$TMP/db.good"
[ ! -e "$DB-wal" ] || cp "$DB-wal" "$TMP/db.good-wal"

db_refused() { # break-command message-regex
        B daemon stop >/dev/null 2>&1
        eval "$1"
        local sum ls_before rc=0
        sum=$(sha256sum "$DB" 2>/dev/null || echo missing)
        ls_before=$(ls -A "$STATE")
        timeout 30 ip netns exec "$NS" "$BANGER" ping >"$TMP/db.out" 2>&1 || rc=$?
        expect_eq "$rc" 1 || { cat "$TMP/db.out"; return 1; }
        grep -Eq -- "$2" "$TMP/db.out" || { echo "message:"; cat "$TMP/db.out"; return 1; }
        expect_eq "$(sha256sum "$DB" 2>/dev/null || echo missing)" "$sum" || { echo "state.db was changed"; return 1; }
        expect_eq "$(ls -A "$STATE")" "$ls_before" || { echo "created beside it:"; ls -A "$STATE"; return 1; }
        [ ! -e "$DB-wal" ] && [ ! -e "$DB-shm" ] || { echo "-wal/-shm created"; return 1; }
        [ ! -S "$SOCK" ] || { echo "a daemon answers"; return 1; }
        alive "$CV_PID" || { echo "cv's QEMU died"; return 1; }
        # the database back: everything as it was
        cp "$TMP/db.good" "$DB" && { [ ! -e "$TMP/db.good-wal" ] || cp "$TMP/db.good-wal" "$DB-wal"; }
        restart && cv_adopted
}
tf "state.db 0 bytes next to a VM dir: refused, untouched, nothing created; restored, the VM is adopted" \
        db_refused ': >"$DB"' "refusing to start with an empty .*state\.db: .*holds 1 VM"
tf "state.db missing next to a VM dir: refused, none created" \
        db_refused 'rm -f "$DB"' "refusing to start with no .*state\.db: .*holds 1 VM"
tf "state.db truncated to half: refused, untouched" \
        db_refused 'truncate -s $(( $(stat -c %s "$DB") / 2 )) "$DB"' "refusing to use .*state\.db: .*\(the file was left untouched\)"
tf "state.db garbage: refused, untouched" \
        db_refused 'head -c 65536 /dev/urandom >"$DB"' "refusing to use .*state\.db: .*\(the file was left untouched\)"
tf "state.db with its first page zeroed: refused, untouched" \
        db_refused 'dd if=/dev/zero of="$DB" bs=4096 count=1 conv=notrunc status=none' "refusing to use .*state\.db"

fresh_empty() {
        B daemon stop >/dev/null 2>&1
        local s="$TMP/state-empty"
        mkdir -p "$s/banger" && : >"$s/banger/state.db"
        XDG_STATE_HOME="$s" B ping >"$TMP/fresh.out" 2>&1 || { cat "$TMP/fresh.out"; return 1; }
        XDG_STATE_HOME="$s" B daemon stop >/dev/null 2>&1
        expect_eq "$(sqlite3 "$s/banger/state.db" 'SELECT max(id) FROM schema_migrations')" \
                "$(sqlite3 "$DB" 'SELECT max(id) FROM schema_migrations')" || return 1
        restart && cv_adopted
}
tf "state.db 0 bytes with no VM dir: a fresh start (migrations applied)" fresh_empty

# ---- handles.json ------------------------------------------------------------------
# hostile_handles SETUP CHECK: the daemon down, SETUP replaces cv's handles
# file; a daemon starts within 30 s; CHECK says what must hold after.
hostile_handles() {
        B daemon stop >/dev/null 2>&1
        eval "$1" || return 1
        restart || { echo "the daemon did not start within 60 s"; return 1; }
        eval "$2"
}
# another live process's pid (ours: a sleep in its own session)
setsid sleep 600 </dev/null >/dev/null 2>&1 &
SLEEP_PID=$!
trap 'kill "$SLEEP_PID" 2>/dev/null; vm_cleanup; cleanup' EXIT

tf "handles.json garbage and no teardown record in the row: the VMM is found by its identity and adopted" hostile_handles \
        'head -c 3000 /dev/urandom >"$HANDLES" && sqlite3 "$DB" "UPDATE vms SET teardown_json = NULL"' 'cv_adopted'
tf "handles.json naming another live process's pid: that process is left alone, the real VMM adopted" hostile_handles \
        'printf "{\"pid\":%d,\"tap\":\"%s\",\"vmm\":\"qemu\"}" "$SLEEP_PID" "$CV_TAP" >"$HANDLES"' \
        'alive "$SLEEP_PID" && grep -q "^sleep" /proc/$SLEEP_PID/cmdline && cv_adopted'
tf "handles.json a FIFO: never blocks, the VMM adopted, the file replaced" hostile_handles \
        'rm -f "$HANDLES" && mkfifo "$HANDLES"' 'cv_adopted'
PASSWD_SUM=$(sha256sum /etc/passwd)
tf "handles.json a symlink to /etc/passwd: not followed, /etc/passwd untouched, the VMM adopted" hostile_handles \
        'ln -sf /etc/passwd "$HANDLES"' 'expect_eq "$(sha256sum /etc/passwd)" "$PASSWD_SUM" && cv_adopted'

# a veth on banger's bridge in the namespace, named like a TAP of the pool
ip netns exec "$NS" ip link add tap-pool-7 type veth peer name fveth$$ 2>/dev/null &&
        ip netns exec "$NS" ip link set tap-pool-7 master br-fc
export FAULT_FOREIGN_LINKS="tap-pool-7 fveth$$"
link_ok() { ip netns exec "$NS" ip -o link show tap-pool-7 | grep -q 'master br-fc' || { echo "the veth tap-pool-7 was touched"; return 1; }; }
tf "handles.json of a running VM naming a foreign link: the VM keeps its own TAP, the link is untouched" hostile_handles \
        'printf "{\"pid\":%d,\"tap\":\"fveth%d\",\"vmm\":\"qemu\"}" "$CV_PID" $$ >"$HANDLES"' 'link_ok && cv_adopted'
dead_foreign() {
        kill -9 "$CV_PID" && wait_for 10 "cv's QEMU to die" not alive "$CV_PID" || return 1
        local h; h=$(printf '{"pid":%d,"tap":"tap-pool-7","vmm":"qemu"}' "$CV_PID")
        printf '%s' "$h" >"$HANDLES" && sqlite3 "$DB" "UPDATE vms SET teardown_json = '$h'"
}
dead_released() {
        link_ok || return 1
        expect_eq "$(B --json vm show cv | jq -r .state)" stopped || return 1
        ! ip netns exec "$NS" ip link show "$CV_TAP" >/dev/null 2>&1 || { echo "cv's own TAP $CV_TAP was not released"; return 1; }
        consistent
}
tf "a dead VM whose handles name a foreign veth (pool-like name, on the bridge): released, the veth untouched" \
        hostile_handles dead_foreign dead_released
restart_cv() {
        B vm start cv >"$TMP/cv.out" 2>&1 || { cat "$TMP/cv.out"; return 1; }
        CV_PID=$(vm_pid cv) CV_TAP=$(B --json vm show cv | jq -r .tap)
        echo "$CV_PID $CV_TAP" >"$TMP/cv.now"
        link_ok && consistent
}
t "cv starts again beside the foreign veth" restart_cv
read -r CV_PID CV_TAP <"$TMP/cv.now" 2>/dev/null

# ---- config.toml -------------------------------------------------------------------
# bad_config MAKE WHY: config.toml made by MAKE; ping and doctor fail within
# their timeout (no hang), exit 1, naming the file and WHY.
bad_config() {
        B daemon stop >/dev/null 2>&1
        rm -rf "$CONF"
        eval "$1" || return 1
        local rc=0 cmd
        for cmd in ping doctor; do
                rc=0; timeout 20 ip netns exec "$NS" "$BANGER" $cmd >"$TMP/cfg.out" 2>&1 || rc=$?
                [ "$rc" != 124 ] || { echo "banger $cmd hung (killed after 20 s)"; return 1; }
                expect_eq "$rc" 1 || { echo "banger $cmd:"; cat "$TMP/cfg.out"; return 1; }
                grep -q "config.toml.*$2\|$2.*config.toml" "$TMP/cfg.out" ||
                        { echo "banger $cmd does not say '$2' about config.toml:"; tail -20 "$TMP/cfg.out"; return 1; }
        done
        [ ! -S "$SOCK" ] || { echo "a daemon started"; return 1; }
        alive "$CV_PID" || { echo "cv's QEMU died"; return 1; }
}
restore_conf() { rm -rf "$CONF"; printf '%s\n' "$CONF_TEXT" >"$CONF"; }
tf "config.toml a FIFO: ping and doctor fail fast, 'not a regular file'" bad_config 'mkfifo "$CONF"' "not a regular file"
restore_conf
tf "config.toml a directory: ping and doctor fail fast, 'not a regular file'" bad_config 'mkdir "$CONF"' "not a regular file"
restore_conf
tf "config.toml of 100 MB: ping and doctor fail fast, 'larger than 1 MiB'" bad_config \
        'yes "# padding" | head -c 100000000 >"$CONF"' "larger than 1 MiB"
restore_conf
conf_back() { restart && cv_adopted; }
t "config restored: the daemon starts and cv is adopted" conf_back

final() {
        B vm delete cv >/dev/null || return 1
        B daemon stop >/dev/null
        [ -z "$(our_qemus)$(our_procs 'bangerd')" ] || { echo "left: $(our_qemus) $(our_procs bangerd)"; return 1; }
        alive "$SLEEP_PID" || { echo "the bystander sleep died"; return 1; }
        link_ok
}
t "at the end: cv deleted, nothing of ours runs, the foreign process and link untouched" final

fault_finish
