# shellcheck shell=bash
# Integration test helpers: TAP output, an isolated XDG environment per test
# file, and cleanup of every daemon the file started.
#
# Each t_*.sh sources this, calls `begin`, runs `t "description" cmd...` or
# `check "description" <exit code of previous commands>`, then `finish`.

set -u
: "${BANGER_BUILD:?set BANGER_BUILD to the meson build dir}"
BANGER="$BANGER_BUILD/banger"
BANGERD="$BANGER_BUILD/bangerd"
export BANGER_BANGERD="$BANGERD"
export NO_COLOR=1

_n=0
_failed=0

begin() {
        TMP=$(mktemp -d /tmp/banger-it.XXXXXX)
        export HOME="$TMP/home"
        export XDG_CONFIG_HOME="$TMP/config" XDG_STATE_HOME="$TMP/state" XDG_CACHE_HOME="$TMP/cache"
        export XDG_RUNTIME_DIR="$TMP/run"
        # never a system install this machine may have: these tests are user mode
        export BANGER_INSTALL_FILE=/nonexistent/banger-install.toml
        mkdir -p "$HOME" "$XDG_RUNTIME_DIR"
        chmod 700 "$XDG_RUNTIME_DIR"
        STATE="$XDG_STATE_HOME/banger"
        CONF="$XDG_CONFIG_HOME/banger/config.toml"
        SOCK="$XDG_RUNTIME_DIR/banger/bangerd.sock"
        DB="$STATE/state.db"
        LOG="$STATE/bangerd.log"
        strict_jq
        trap cleanup EXIT
}

# `cmd | jq -e FILTER` succeeds when cmd prints nothing (jq never evaluates
# the filter): a check that cannot fail. A jq first on PATH (so `sh -c`
# tests get it too) refuses empty input and empty files.
strict_jq() {
        mkdir -p "$TMP/bin"
        cat >"$TMP/bin/jq" <<'JQ'
#!/usr/bin/env bash
last="${!#}"
if [ $# -ge 2 ] && [ -f "$last" ]; then
        [ -s "$last" ] || { echo "jq: $last is empty" >&2; exit 1; }
        exec /usr/bin/jq "$@"
fi
input=$(cat)
[ -n "$input" ] || { echo "jq: no input" >&2; exit 1; }
printf '%s\n' "$input" | /usr/bin/jq "$@"
JQ
        chmod +x "$TMP/bin/jq"
        cat >"$TMP/bin/rpc-send" <<'PY'
#!/usr/bin/env python3
import socket, sys
data = sys.stdin.buffer.read()
s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1])
try:
    s.sendall(data); s.shutdown(socket.SHUT_WR)
except OSError:
    pass
out = b""
try:
    while True:
        c = s.recv(65536)
        if not c:
            break
        out += c
except OSError:
    pass
sys.stdout.buffer.write(out)
PY
        chmod 755 "$TMP/bin/rpc-send" "$TMP/bin/jq"
        chmod 755 "$TMP" "$TMP/bin"
        export PATH="$TMP/bin:$PATH"
}

# Stops whatever daemon this file's environment runs, then removes the tree.
cleanup() {
        local pid
        if [ -S "$SOCK" ]; then "$BANGER" daemon stop >/dev/null 2>&1 || true; fi
        if [ -f "$STATE/bangerd.lock" ]; then
                pid=$(cat "$STATE/bangerd.lock" 2>/dev/null)
                if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q bangerd "/proc/$pid/cmdline" 2>/dev/null; then
                        kill "$pid" 2>/dev/null
                        wait_for 2 "bangerd $pid to exit" not alive "$pid" >/dev/null || kill -9 "$pid" 2>/dev/null || true
                fi
        fi
        rm -rf "$TMP"
}

_report() { # status description [diagnostics-file]
        _n=$((_n + 1))
        if [ "$1" -eq 0 ]; then
                echo "ok $_n - $2"
        else
                _failed=$((_failed + 1))
                echo "not ok $_n - $2"
                if [ -n "${3:-}" ] && [ -s "$3" ]; then sed 's/^/#   /' "$3" | head -"${BANGER_TEST_DIAG_LINES:-40}"; fi
        fi
}

# t "description" command...   -- passes when the command exits 0
t() {
        local desc="$1"; shift
        local out="$TMP/.out"
        ( "$@" ) >"$out" 2>&1
        _report $? "$desc" "$out"
}

skip() { _n=$((_n + 1)); echo "ok $_n - $1 # SKIP $2"; }

finish() {
        echo "1..$_n"
        [ "$_failed" -eq 0 ]
}

# wait_for SECONDS WHAT CMD...: runs CMD (quietly) every 0.1 s until it
# succeeds, or fails after SECONDS with "timed out after Ns: WHAT". The one
# way tests wait for something to happen: no fixed sleeps.
wait_for() {
        local timeout="$1" what="$2"; shift 2
        local deadline; deadline=$(( $(date +%s%N) / 1000000 + timeout * 1000 ))
        until "$@" >/dev/null 2>&1; do
                if [ "$(( $(date +%s%N) / 1000000 ))" -ge "$deadline" ]; then
                        echo "timed out after ${timeout}s: $what"
                        return 1
                fi
                sleep 0.1
        done
}
# not CMD...: succeeds when CMD fails (for wait_for).
not() { ! "$@"; }
# to FILE CMD...: CMD with its stdout in FILE (what wait_for waited for).
to() { local f="$1"; shift; "$@" >"$f"; }

# Helpers for assertions inside t: each fails with a message.
expect_eq() { [ "$1" = "$2" ] || { echo "expected '$2', got '$1'"; return 1; }; }
expect_match() { printf '%s' "$1" | grep -Eq -- "$2" || { echo "'$1' does not match /$2/"; return 1; }; }
# Sends stdin to the daemon, half-closes, prints everything it answers. A
# daemon may answer and close before reading it all (oversized requests, a
# full server, a refused peer): the answer is read even after EPIPE.
rpc_send() { "$TMP/bin/rpc-send" "$SOCK"; }

# Sends one raw line to the daemon and prints the response line(s).
raw_rpc() { printf '%s\n' "$1" | rpc_send; }
# A process that exists and is not a zombie (exited daemons are reparented
# to whatever reaps orphans here, which may be slow to do it).
alive() { [ -e "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# Host TSC frequency in kHz (microvm guests need tsc_early_khz).
tsc_khz() { awk -F: '/^cpu MHz/ {printf "%d\n", $2 * 1000; exit}' /proc/cpuinfo; }

# Boots kernel+initramfs+rootfs under plain QEMU (TCG) until a marker shows
# up in the serial log ($1) or 120 s pass; QEMU is killed either way.
boot_until() { # log vmlinux initramfs rootfs mode marker [extra kernel args]
        local log="$1" k="$2" i="$3" r="$4" mode="$5" marker="$6" extra="${7:-quiet}" n
        qemu-system-x86_64 -M microvm -accel tcg,tb-size=128 -m 1024 -smp 1 -nodefaults \
                -no-user-config -nographic -no-reboot -kernel "$k" -initrd "$i" \
                -append "console=ttyS0 tsc_early_khz=$(tsc_khz) cryptomgr.notests $extra banger.mode=$mode banger.root=rootfs" \
                -serial stdio -device virtio-rng-device \
                -drive "id=root,file=$r,format=raw,if=none,snapshot=on" \
                -device virtio-blk-device,drive=root,serial=rootfs </dev/null >"$log" 2>&1 &
        local qemu=$! r=1
        # the marker shows up, or QEMU gives up first
        wait_for 120 "$marker in $log" marker_or_gone "$log" "$marker" "$qemu" && grep -aq -- "$marker" "$log" && r=0
        kill "$qemu" 2>/dev/null; wait "$qemu" 2>/dev/null
        return $r
}
marker_or_gone() { grep -aq -- "$2" "$1" || ! kill -0 "$3" 2>/dev/null; }

# Starts a static HTTP server on loopback for DIR; sets HTTP_PORT, HTTP_PID.
http_serve() {
        local dir="$1" out="$TMP/.http.out"
        python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$dir" >"$out" 2>&1 &
        HTTP_PID=$!
        wait_for 5 "the HTTP server's port" grep -q 'port [0-9]' "$out" || return 1
        HTTP_PORT=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$out" | head -1)
}

# VM tests: a private network namespace per test file. bangerd runs inside
# it (B runs the CLI there, which auto-starts the daemon there), so the
# bridge, TAPs and every guest packet stay in it. Artifacts are pulled first
# by a daemon in the host namespace (the mirror is outside), which is then
# stopped.
vm_begin() {
        export BANGER_IMAGE_CACHE="${BANGER_TEST_IMAGE_CACHE:-$TMP/image-builds}"
        # finished kernel pulls, kept beside the image builds (kernel_cache.c)
        export BANGER_KERNEL_CACHE="$(dirname "$BANGER_IMAGE_CACHE")/kernel-pulls"
        NS="banger-t$$"
        # The KVM boot probe is tested elsewhere (t_artifacts); here it would
        # only burn a core for 10 s per fresh daemon on hosts where KVM hangs.
        # Warm starts (templates built in the background) only where a test
        # asks for them (BANGER_WARM=on: t_warm.sh): elsewhere a template
        # build would be one more VMM in the namespace the tests count.
        mkdir -p "$(dirname "$CONF")" && printf 'accel = "tcg"\nwarm_start = "%s"\n' "${BANGER_WARM:-off}" >"$CONF"
        ip netns add "$NS" || return 1
        ip netns exec "$NS" ip link set lo up
        trap 'vm_cleanup; cleanup' EXIT
}

B() { ip netns exec "$NS" "$BANGER" "$@"; }

# Pulls the kernel and the slim image with a host-namespace daemon.
vm_prepare() {
        "$BANGER" kernel pull debian-cloud-6.1 >"$TMP/pull.log" 2>&1 &&
        "$BANGER" image pull debian-bookworm-slim >>"$TMP/pull.log" 2>&1 &&
        "$BANGER" daemon stop >/dev/null 2>&1 || { tail -20 "$TMP/pull.log"; return 1; }
}

# Every process left in the namespace (VMMs) dies with the test.
vm_cleanup() {
        [ -n "${NS:-}" ] || return 0
        "$BANGER" daemon stop >/dev/null 2>&1 || true
        local p
        for p in $(ip netns pids "$NS" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        ip netns delete "$NS" 2>/dev/null || true
}

# state_is VM STATE: the VM's state (vm show) is STATE.
state_is() { [ "$(B --json vm show "$1" | jq -r .state)" = "$2" ]; }

# Links in the namespace other than lo and the bridge (TAPs left behind).
ns_taps() { ip netns exec "$NS" ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -v -e '^lo$' -e '^br-fc$' || true; }
# Live (non-zombie) VMM processes in the namespace.
ns_vmms() { local p; for p in $(ip netns pids "$NS" 2>/dev/null); do alive "$p" && tr '\0' ' ' <"/proc/$p/cmdline" | grep -q 'process=banger-' && echo "$p"; done; true; }

# ---- a system install below $TMP/sys, inside the test's namespace ------------
# (t_system.sh, t_update.sh) After vm_begin: sys_begin PREFIX names a throwaway
# owner PREFIX<pid> and the install's paths, and cleans it all up on exit.
sys_begin() {
        R="$TMP/sys"
        IFILE="$R/etc/banger/install.toml"
        ICONF="$R/etc/banger/config.toml"
        OWNER="$1$$"
        OHOME="$TMP/owner-home"
        HSOCK="$R/run/banger-root/bangerd-root.sock"
        DSOCK="$R/run/banger/bangerd.sock"
        # the owner goes last: userdel refuses while its daemon runs
        trap 'SYS system uninstall --force >/dev/null 2>&1; vm_cleanup; userdel "$OWNER" 2>/dev/null; cleanup' EXIT
}
# As root, the build's banger with the install file (install, restart, uninstall).
SYS() { ip netns exec "$NS" env BANGER_INSTALL_FILE="$IFILE" "$BANGER" "$@"; }
# As the owner, the installed banger, in the namespace, with a clean environment.
U() {
        ip netns exec "$NS" setpriv --reuid="$OWNER" --regid="$OWNER" --init-groups \
                env -i PATH=/usr/bin:/bin HOME="$OHOME" NO_COLOR=1 BANGER_INSTALL_FILE="$IFILE" \
                "$R/usr/local/bin/banger" "$@"
}
# The owner (useradd), its home, an empty root with a config (TCG).
sys_owner() {
        useradd -M -d "$OHOME" -s /bin/sh -U "$OWNER" || return 1
        mkdir -p "$OHOME" && chown "$OWNER:" "$OHOME"
        mkdir -p "$R" "$(dirname "$IFILE")" && chmod 755 "$TMP" "$R"
        printf 'accel = "tcg"\nwarm_start = "off"\n' >"$ICONF"
}
# Runs the n-th `start:` line of $TMP/install.out in the namespace, in the
# background, output to LOG; with a third argument, as the owner (as the
# daemon's unit runs it: User=).
sys_start_line() { # n log [owner]
        local line; line=$(grep '^start: ' "$TMP/install.out" | sed -n "${1}p" | sed 's/^start: //')
        [ -n "$line" ] || { echo "no start line $1"; return 1; }
        if [ -n "${3:-}" ]; then
                # shellcheck disable=SC2086 # the line is argv, split on spaces as systemd's ExecStart would
                setsid ip netns exec "$NS" setpriv --reuid="$OWNER" --regid="$OWNER" --init-groups $line >"$2" 2>&1 &
        else
                # shellcheck disable=SC2086
                setsid ip netns exec "$NS" $line >"$2" 2>&1 &
        fi
}
# system install --root, then the helper's start line as root and the
# daemon's as the owner; both answer.
sys_install() {
        SYS system install --owner "$OWNER" --root "$R" >"$TMP/install.out" 2>&1 || { cat "$TMP/install.out"; return 1; }
        sys_start_line 1 "$TMP/helper.log" && wait_for 10 "the helper's socket" test -S "$HSOCK" ||
                { cat "$TMP/helper.log"; return 1; }
        sys_start_line 2 "$TMP/daemon.log" owner && wait_for 20 "the daemon's socket" test -S "$DSOCK" ||
                { cat "$TMP/daemon.log"; return 1; }
}

# ---- the fault suite (tests/faults/f_*.sh) -----------------------------------
# Faults injected, survived and leaks found are counted in $TMP/.faults (each
# `t` runs in a subshell); fault_finish prints one TAP comment with them,
# "# faults: injected=N survived=N leaks=N", which scripts/test sums.

# This build kills itself at $BANGER_TEST_CRASH_AT (meson -Dtest_hooks=true).
has_test_hooks() { grep -q 'test hook: crashing at' "$BANGERD"; }

fault_note() { echo "$*" >>"$TMP/.faults"; }
# tf "description" cmd...: a `t` that injects one fault; it survived when cmd passes.
# Each case's time follows it as a comment.
tf() {
        local d="$1" t0=$SECONDS; shift
        fault_note injected "$d"
        t "$d" _fault_case "$d" "$@"
        echo "#   ($((SECONDS - t0)) s)"
}
_fault_case() { local d="$1"; shift; "$@" && fault_note survived "$d"; }
fault_finish() {
        local f="$TMP/.faults" i s l
        touch "$f"
        i=$(grep -c '^injected ' "$f") s=$(grep -c '^survived ' "$f") l=$(grep -c '^leak ' "$f")
        echo "# faults: injected=$i survived=$s leaks=$l"
        finish
}

# Live processes with this file's environment (XDG_STATE_HOME): every daemon
# it started, and what those started (QEMU, mmdebstrap), in any namespace.
our_procs() { # comm-regex
        local p c
        for p in /proc/[0-9]*; do
                read -r c 2>/dev/null <"$p/comm" || continue
                [[ "$c" =~ ^($1)$ ]] || continue
                tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -qxF "XDG_STATE_HOME=$XDG_STATE_HOME" || continue
                alive "${p#/proc/}" && echo "${p#/proc/}"
        done
        true
}
# Every live descendant of PID.
descendants() {
        local c
        for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do echo "$c"; descendants "$c"; done
}

# Our QEMUs: VMMs (named banger-<id> by -name process=) and any other.
our_qemus() { local p; for p in $(our_procs 'banger-[0-9a-f]+|qemu-system.*'); do grep -qa '^qemu-system' "/proc/$p/cmdline" && echo "$p"; done; true; }
vm_pid() { B --json vm show "$1" | jq -r .pid; }
vm_id() { B --json vm show "$1" | jq -r .id; }
# The VMM of VM id $1, found by its identity (the daemon may be dead).
vmm_of() { local p; for p in $(our_qemus); do grep -qa "process=banger-$1" "/proc/$p/cmdline" && echo "$p"; done; true; }

# crash_at STAGE CMD...: CMD (a CLI command) auto-starts a daemon that kills
# itself (SIGKILL) at STAGE. Fails unless it did; waits for it to be gone.
# CMD's output is in $TMP/crash.out.
crash_at() {
        local stage="$1" before after pid; shift
        "$BANGER" daemon stop >/dev/null 2>&1 || true
        before=$(grep -c "test hook: crashing at '$stage'" "$LOG" 2>/dev/null)
        if BANGER_TEST_CRASH_AT="$stage" "$@" >"$TMP/crash.out" 2>&1; then
                echo "no crash at '$stage': $* succeeded"; cat "$TMP/crash.out"; return 1
        fi
        after=$(grep -c "test hook: crashing at '$stage'" "$LOG" 2>/dev/null)
        [ "${after:-0}" -gt "${before:-0}" ] ||
                { echo "the daemon did not crash at '$stage'"; cat "$TMP/crash.out"; tail -5 "$LOG"; return 1; }
        pid=$(cat "$STATE/bangerd.lock" 2>/dev/null)
        wait_for 10 "the crashed bangerd ($pid) to be gone" not alive "$pid"
}
# The next daemon (in the namespace): reconcile and the sweeps run before it answers.
restart() { timeout 60 ip netns exec "$NS" "$BANGER" daemon start >"$TMP/restart.out" 2>&1 || { cat "$TMP/restart.out"; return 1; }; }

# The daemon's lists over one connection (an ASan CLI is slow to start), as
# JSON arrays in VIEW_VMS, VIEW_IMAGES, VIEW_KERNELS; a daemon is started
# (in the namespace) when none answers.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
daemon_view() {
        local out try
        for try in 1 2; do
                out=$(printf '%s\n' '{"v":1,"id":1,"method":"vm.list","params":{}}' \
                        '{"v":1,"id":2,"method":"image.list","params":{}}' '{"v":1,"id":3,"method":"kernel.list","params":{}}' |
                        "$PY" "$TMP/bin/rpc-send" "$SOCK" 2>/dev/null)
                grep -q '^{"id":3,"result"' <<<"$out" && break
                [ "$try" = 1 ] && B ping >/dev/null 2>&1
        done
        VIEW_VMS=$(jq -c 'select(.id == 1) | .result.vms' <<<"$out") &&
        VIEW_IMAGES=$(jq -c 'select(.id == 2) | .result.images' <<<"$out") &&
        VIEW_KERNELS=$(jq -c 'select(.id == 3) | .result.kernels' <<<"$out") &&
        [ -n "$VIEW_VMS" ] && [ -n "$VIEW_KERNELS" ]
}

# check_consistent [quick]: what the daemon says agrees with the host. One line
# per problem, "leak: ..." for something left behind, "wrong: ..." otherwise;
# fails when there is one. quick: rows, VMMs, TAPs, nft rules and daemons only.
# $FAULT_FOREIGN_LINKS: links in the namespace a test made itself;
# $FAULT_OWN_MOUNTS: mount points below $TMP a test made itself.
check_consistent() {
        local vms live p id st tap d n out="$TMP/.consistent"
        daemon_view || { echo "wrong: the daemon does not answer"; return 1; }
        vms=$VIEW_VMS
        live=$(jq -r '.[] | select((.state == "running" or .state == "starting") and .pid != null) | .id' <<<"$vms")
        {
        for p in $(our_qemus); do
                id=$(tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | sed -n 's/^banger-\([0-9a-f]*\),process=.*/\1/p')
                st=$(jq -r --arg id "$id" '.[] | select(.id == $id) | "\(.state) \(.pid)"' <<<"$vms")
                case "$st" in
                "") echo "leak: QEMU $p (banger-$id) belongs to no VM" ;;
                "running $p" | "starting $p") ;;
                *) echo "wrong: QEMU $p runs vm $id, whose row says '$st'" ;;
                esac
        done
        jq -r '.[] | select(.state == "running" or .state == "starting") | "\(.id) \(.name) \(.state) \(.pid)"' <<<"$vms" |
                while read -r id n st p; do
                        [ "$p" != null ] && alive "$p" && grep -qa "process=banger-$id" "/proc/$p/cmdline" ||
                                echo "wrong: vm $n is $st but its VMM (pid $p) does not run"
                done
        for tap in $(ns_taps); do
                case " ${FAULT_FOREIGN_LINKS:-} " in *" $tap "*) continue ;; esac
                jq -e --arg t "$tap" 'any(.[]; .tap == $t and .pid != null and (.state == "running" or .state == "starting"))' \
                        <<<"$vms" >/dev/null || echo "leak: TAP $tap without a live VM"
        done
        for id in $(ip netns exec "$NS" nft list ruleset 2>/dev/null | grep -o 'banger-vm:[0-9a-f]*' | cut -d: -f2 | sort -u); do
                grep -qx "$id" <<<"$live" || echo "leak: nft rules banger-vm:$id without a live VM"
        done
        n=$(our_procs bangerd | wc -l)
        [ "$n" -le 1 ] || echo "leak: $n bangerd processes: $(our_procs bangerd | tr '\n' ' ')"
        if [ "${1:-}" != quick ]; then
                for p in $(our_procs mmdebstrap); do echo "leak: mmdebstrap $p"; done
                awk -v t="$TMP" 'index($5, t) == 1 {print $5}' /proc/self/mountinfo | while read -r d; do
                        case " ${FAULT_OWN_MOUNTS:-} " in *" $d "*) continue ;; esac
                        echo "leak: mount $d"
                done
                for d in "$STATE"/images/.staging-* "$STATE"/kernels/.staging-*; do
                        [ -e "$d" ] && echo "leak: staging dir $d"
                done
                jq -r '.[] | "\(.name) \(.vm_dir)"' <<<"$vms" | while read -r n d; do
                        for f in root.qcow2 work.ext4; do [ -f "$d/$f" ] || echo "leak: half row: vm $n has no $d/$f"; done
                done
                for d in "$STATE"/vms/* "$XDG_RUNTIME_DIR"/banger/vms/*; do
                        [ -e "$d" ] || continue
                        jq -e --arg id "${d##*/}" 'any(.[]; .id == $id)' <<<"$vms" >/dev/null || echo "leak: $d belongs to no VM"
                done
                local imgs=$VIEW_IMAGES kers=$VIEW_KERNELS
                for d in "$STATE"/images/*; do
                        [ -e "$d" ] || continue
                        jq -e --arg id "${d##*/}" 'any(.[]; .id == $id)' <<<"$imgs" >/dev/null 2>&1 || echo "leak: image dir $d has no image row"
                done
                for d in "$STATE"/kernels/*; do
                        [ -e "$d" ] || continue
                        jq -e --arg n "${d##*/}" 'any(.[]; .name == $n)' <<<"$kers" >/dev/null 2>&1 || echo "leak: kernel dir $d has no kernel row"
                done
                jq -r '.[] | select(.state == "pulled") | .vmlinux' <<<"$kers" 2>/dev/null | while read -r f; do
                        [ -f "$f" ] || echo "leak: half kernel row: no $f"
                done
        fi
        } >"$out"
        cat "$out"
        [ ! -s "$out" ]
}
# consistent [quick]: check_consistent holds within 20 s (the exit watcher
# and a readying VM settle on their own); else prints and counts what is wrong.
consistent() {
        wait_for 20 "the daemon and the host to agree" check_consistent "$@" >/dev/null && return 0
        local l
        check_consistent "$@" | while IFS= read -r l; do
                echo "$l"
                case "$l" in leak:*) fault_note leak "${l#leak: }" ;; esac
        done
        return 1
}
