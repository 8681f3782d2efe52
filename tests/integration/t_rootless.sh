#!/usr/bin/env bash
# Rootless: a throwaway unprivileged user, no sudo, no system install, no
# capability, runs bangerd from its own XDG dirs inside a private network
# namespace. It imports a kernel and an image bundle root exported, runs a
# VM (user-mode networking: QEMU's slirp), publishes and forwards ports to
# the guest (the VMM's forwards), keeps them across a daemon restart, and
# leaves no process or listening socket behind. The bridge is refused with a
# clear error.
. "$(dirname "$0")/lib.sh"
begin
vm_begin
t "kernel and slim image pulled (host namespace, as root)" vm_prepare

RU="bgr$$"
RL="$TMP/rootless"
RHOME="$RL/home"
trap 'rl_stop; vm_cleanup; userdel "$RU" 2>/dev/null; sed -i "/^$RU:/d" /etc/subuid /etc/subgid; cleanup' EXIT
S=(--image slim --vcpu 1 --memory 512)

# As the user, in the namespace (UH: in the host's, where the Debian mirror
# is), with nothing of root's environment (no capability survives setpriv's
# switch of uid).
UH() { RL_HOST=1 U "$@"; }
U() {
        local asan=() ns=(ip netns exec "$NS")
        [ "${RL_HOST:-0}" = 1 ] && ns=()
        [ -n "${ASAN_OPTIONS:-}" ] && asan=(ASAN_OPTIONS="log_path=$RL/asan:detect_leaks=1:abort_on_error=0"
                UBSAN_OPTIONS="log_path=$RL/ubsan:print_stacktrace=1:halt_on_error=1")
        "${ns[@]}" setpriv --reuid="$RU" --regid="$RU" --init-groups \
                env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$RHOME" NO_COLOR=1 \
                XDG_CONFIG_HOME="$RHOME/.config" XDG_STATE_HOME="$RHOME/.local/state" \
                XDG_CACHE_HOME="$RHOME/.cache" XDG_RUNTIME_DIR="$RL/run" \
                BANGER_INSTALL_FILE=/nonexistent/banger-install.toml "${asan[@]}" "$RL/bin/banger" "$@"
}
rl_stop() {
        [ -d "$RL/run" ] && U daemon stop >/dev/null 2>&1
        local p; for p in $(pgrep -u "$RU" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        # a failed build's namespace (the first subordinate id is its root) and work dirs
        [ -s "$RL/subid" ] && pkill -9 -U "$(cat "$RL/subid")" 2>/dev/null
        find /var/tmp -maxdepth 1 -name 'banger-build-*' -user "$RU" -exec rm -rf {} + 2>/dev/null
        true
}
# Every live process of the user (the daemon, QEMU; an adopted VMM that
# exited waits for whatever reaps orphans here), and listening TCP ports in
# the namespace.
user_procs() { pgrep -u "$RU" -a 2>/dev/null || true; }
user_live() { local p; for p in $(pgrep -u "$RU"); do alive "$p" && echo "$p"; done; true; }
listens() { ip netns exec "$NS" ss -ltnH "sport = :$1" | grep -q .; }
# The SSH banner on 127.0.0.1:$1 (read in the namespace).
banner() {
        ip netns exec "$NS" python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10); s.settimeout(20)
sys.stdout.write(s.recv(64).decode(errors="replace"))' "$1" 2>&1 | grep -q '^SSH-2.0-'
}
none_live() { [ -z "$(user_live)" ]; }
rl_diag() {
        echo "--- bangerd.log"; tail -n 20 "$RHOME/.local/state/banger/bangerd.log" 2>/dev/null
        local c; for c in "$RHOME"/.local/state/banger/vms/*/console.log; do [ -f "$c" ] && { echo "--- $c"; tail -n 8 "$c"; }; done
        user_procs
}

setup_user() {
        useradd -M -d "$RHOME" -s /bin/sh -U "$RU" || return 1
        mkdir -p "$RL/bin" "$RL/src/modules/kernel" "$RHOME" "$RL/run" || return 1
        # the binaries where the user may run them (the guest programs from
        # the normal build, as a sanitized suite boots them)
        cp "$BANGER_BUILD/banger" "$BANGER_BUILD/bangerd" "$RL/bin/" &&
        cp "${BANGER_AGENT:-$BANGER_BUILD/banger-agent}" "${BANGER_INIT:-$BANGER_BUILD/banger-init}" "$RL/bin/" || return 1
        # the kernel root pulled (vmlinuz + modules), and the slim image as a bundle
        local k="$STATE/kernels/debian-cloud-6.1"
        cp "$k/vmlinuz" "$RL/src/" && cp "$k"/modules/*.ko "$RL/src/modules/kernel/" || return 1
        "$BANGER" image export debian-bookworm-slim -o "$RL/slim.tar.zst" >/dev/null || return 1
        "$BANGER" daemon stop >/dev/null 2>&1
        mkdir -p "$RHOME/.config/banger" && printf 'accel = "tcg"\nwarm_start = "off"\n' >"$RHOME/.config/banger/config.toml"
        chown -R "$RU:" "$RL" && chmod 755 "$TMP" "$RL" && chmod 700 "$RL/run"
}
t "a throwaway user ($RU) with its own XDG dirs, binaries, a kernel tree and an image bundle" setup_user

rootless_daemon() {
        U --json ping >"$RL/ping.json" 2>"$RL/err" || { cat "$RL/err"; return 1; }
        jq -e '.default_net == "user"' "$RL/ping.json" >/dev/null || { cat "$RL/ping.json"; return 1; }
        # the daemon runs as the user, with no capability at all
        local pid; pid=$(jq -r .pid "$RL/ping.json")
        expect_eq "$(stat -c %U "/proc/$pid")" "$RU" &&
        expect_eq "$(awk '/^CapEff/ {print $2}' "/proc/$pid/status")" 0000000000000000 || return 1
        # doctor says so, and what a system install would add
        U --json doctor >"$RL/doc.json"
        jq -e '.checks[] | select(.check == "network") | .status == "WARN" and (.detail | startswith("rootless: VMs use user-mode networking"))' \
                "$RL/doc.json" >/dev/null || { jq '.checks[] | select(.check == "network")' "$RL/doc.json"; return 1; }
}
t "the user's daemon starts without root: no capability, VMs default to user-mode networking" rootless_daemon

artifacts() {
        U kernel import debian-cloud-6.1 --from "$RL/src" >"$RL/out" 2>&1 || { cat "$RL/out"; return 1; }
        U image pull "$RL/slim.tar.zst" --name slim >"$RL/out" 2>&1 || { cat "$RL/out"; return 1; }
        U --json image list | jq -e 'any(.[]; .name == "slim")' >/dev/null
}
t "the user imports the kernel and the image bundle root exported" artifacts

# The user's work dirs of image builds (mmdebstrap's unshare mode) in /var/tmp.
build_dirs() { find /var/tmp -maxdepth 1 -name 'banger-build-*' -user "$RU" 2>/dev/null; }
build_refused() {
        # without subordinate ids there is no unshare mode: refused before any download, with how to add them
        touch /etc/subuid /etc/subgid && sed -i "/^$RU:/d" /etc/subuid /etc/subgid || return 1
        local rc=0
        U image pull debian-bookworm-slim >"$RL/b.out" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "unshare mode, which needs 65536 subordinate ids for $RU in /etc/subuid and /etc/subgid" "$RL/b.out" &&
                grep -q "usermod --add-subuids" "$RL/b.out" && grep -q 'image pull FILE.tar.zst' "$RL/b.out" ||
                { cat "$RL/b.out"; return 1; }
        # (only slim's directory)
        ! U image show debian-bookworm-slim >/dev/null 2>&1 &&
        expect_eq "$(ls "$RHOME/.local/state/banger/images" | wc -l)" 1 && [ -z "$(build_dirs)" ] || return 1
        # doctor says the same
        U --json doctor | jq -e '.checks[] | select(.check == "image builds") | .status == "WARN" and
                (.detail | test("subordinate ids")) and (.hint | test("usermod --add-subuids"))' >/dev/null ||
                { U --json doctor | jq '.checks[] | select(.check == "image builds")'; return 1; }
}
t "without subordinate ids a Debian image build is refused with how to add them (and doctor says so), nothing left" build_refused

run_rm() {
        U vm run --rm "${S[@]}" -- sh -c 'echo rootless-ok; getent hosts host.banger.internal' >"$RL/run.out" 2>&1 ||
                { cat "$RL/run.out"; rl_diag; return 1; }
        grep -q '^rootless-ok$' "$RL/run.out" && grep -q '^10\.0\.2\.2 *host\.banger\.internal' "$RL/run.out" ||
                { cat "$RL/run.out"; return 1; }
        # --rm deletes in the daemon after the CLI has its exit status: a moment
        wait_for 30 "the VM to be gone" run_rm_gone || run_rm_gone
}
run_rm_gone() {
        expect_eq "$(U --json vm list | jq 'length')" 0 &&
        # nothing left but the daemon
        expect_eq "$(user_live | wc -l)" 1
}
t "vm run --rm -- true as the user: the guest ran, knows the host's name, and nothing is left" run_rm

create_publish() {
        U vm create --name web "${S[@]}" --publish 127.0.0.1:22222:22 >"$RL/c.out" 2>&1 || { cat "$RL/c.out"; rl_diag; return 1; }
        grep -q 'at 127.0.0.1:[0-9]* (ssh; user-mode networking)' "$RL/c.out" || { cat "$RL/c.out"; return 1; }
        U --json vm show web >"$RL/web.json" || return 1
        jq -e '.net == "user" and .ip == null and .tap == null and .ssh.host == "127.0.0.1" and .ssh.port > 1024 and
               (.forwards | length) == 1 and .forwards[0].open and .forwards[0].by == "vmm"' "$RL/web.json" >/dev/null ||
                { cat "$RL/web.json"; return 1; }
        # QEMU is the user's, and the port its
        local vmm; vmm=$(jq -r .pid "$RL/web.json")
        expect_eq "$(stat -c %U "/proc/$vmm")" "$RU" || return 1
        ip netns exec "$NS" ss -ltnpH "sport = :22222" | grep -q "pid=$vmm," || { ip netns exec "$NS" ss -ltnp; return 1; }
        banner 22222 || { echo "no SSH banner on 127.0.0.1:22222"; return 1; }
        U vm list | grep -E '^[0-9a-f]{8} +web +running +slim +user ' >/dev/null || { U vm list; return 1; }
        U vm show web | grep -q '^network: *user-mode' || return 1
        # vm ports: the guest's sshd, reached from the host through the two ports QEMU forwards
        U --json vm ports web >"$RL/ports.json" || return 1
        jq -e --arg s "127.0.0.1:$(jq -r .ssh.port "$RL/web.json")" \
                'any(.[]; .port == 22 and (.forwarded_from | index("127.0.0.1:22222") != null and index($s) != null))' \
                "$RL/ports.json" >/dev/null || { cat "$RL/ports.json"; return 1; }
}
t "vm create --publish 127.0.0.1:22222:22: QEMU (the user's) forwards it, the SSH banner answers" create_publish

guest_access() {
        # ssh through the VMM's port, commands through the agent, the host's loopback reached from the guest
        expect_eq "$(U vm ssh web -- cat /etc/hostname 2>&1)" web || return 1
        ip netns exec "$NS" python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", 18080)); s.listen(1)
c, a = s.accept(); c.sendall(b"hello-from-host\n"); c.close()' >/dev/null 2>&1 &
        local l=$!
        wait_for 5 "the host listener" listens 18080 || return 1
        U vm exec web -- bash -c 'exec 3<>/dev/tcp/host.banger.internal/18080; head -1 <&3' >"$RL/x" 2>&1
        kill "$l" 2>/dev/null
        grep -q hello-from-host "$RL/x" || { cat "$RL/x"; return 1; }
}
t "vm ssh through the VMM's port; the guest reaches the host as host.banger.internal (outbound)" guest_access

forward_live() {
        U vm forward web 22223:22 >"$RL/f" 2>&1 || { cat "$RL/f"; return 1; }
        banner 22223 || { echo "no banner on 22223"; return 1; }
        # taken by another program: a clear refusal, nothing recorded
        ip netns exec "$NS" python3 -c '
import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 22230)); s.listen(1); time.sleep(30)' &
        local hog=$! rc=0
        wait_for 5 "the hog" listens 22230 || return 1
        U vm forward web 22230:80 >"$RL/f" 2>&1 || rc=$?
        kill "$hog"
        expect_eq "$rc" 1 && grep -q 'in use' "$RL/f" || { cat "$RL/f"; return 1; }
        rc=0; U vm forward web '[::1]:22231:80' >"$RL/f" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q 'IPv4 host addresses only' "$RL/f" || { cat "$RL/f"; return 1; }
        expect_eq "$(U --json vm forward --list web | jq 'length')" 2 || return 1
        U vm forward --rm web 22223 >/dev/null || return 1
        wait_for 5 "22223 closed" not listens 22223 || return 1
        # QEMU's answer to a removal ("... removed") is no failure
        ! grep -q 'unforwarding' "$RHOME/.local/state/banger/bangerd.log" || { grep unforwarding "$RHOME/.local/state/banger/bangerd.log"; return 1; }
}
t "vm forward add/remove on the running VM (the VMM's hostfwd); taken ports and IPv6 refused clearly" forward_live

daemon_gone() { local p; for p in $(pgrep -u "$RU" -x bangerd); do alive "$p" && return 1; done; true; }
restart() {
        local vmm; vmm=$(U --json vm show web | jq -r .pid)
        U daemon stop >/dev/null || return 1
        wait_for 10 "the daemon gone" daemon_gone || return 1
        # the VM and its forward outlive the daemon
        alive "$vmm" && banner 22222 || { echo "the VM or its forward died with the daemon"; return 1; }
        # a forward recorded while the daemon was down (as when it dies between the row and asking
        # QEMU): the next daemon's reconcile finds QEMU without it and adds it
        sqlite3 "$RHOME/.local/state/banger/state.db" "INSERT INTO vm_forwards VALUES ((SELECT id FROM vms WHERE
                name = 'web'), 'tcp', '127.0.0.1', 22225, 22, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))" || return 1
        U --json vm show web >"$RL/web2.json" || return 1
        banner 22225 || { echo "reconcile did not add the missing forward"; return 1; }
        jq -e --argjson p "$vmm" '.state == "running" and .pid == $p and .forwards[0].open' "$RL/web2.json" >/dev/null ||
                { cat "$RL/web2.json"; return 1; }
        banner 22222 && expect_eq "$(U vm ssh web -- echo again 2>&1)" again || return 1
        U vm forward web 22224:22 >/dev/null && banner 22224
}
t "a daemon restart: the VM and its forwards live on, ssh and new forwards work after it" restart

snapshot_user() {
        U vm exec web -- sh -c 'echo before >/root/mark' && U vm snapshot web s1 >"$RL/s" 2>&1 || { cat "$RL/s"; return 1; }
        U vm exec web -- sh -c 'echo after >/root/mark' && U vm restore web s1 >"$RL/s" 2>&1 || { cat "$RL/s"; rl_diag; return 1; }
        expect_eq "$(U vm exec web -- cat /root/mark)" before &&
        # the restored QEMU is a new one: its forwards are made again, ssh has a port of its own
        banner 22222 && expect_eq "$(U vm ssh web -- echo restored 2>&1)" restored || return 1
        # a fork resumes on the bridge: refused, with what works instead
        local rc=0; U vm create --from-snapshot web:s1 --name f1 >"$RL/f" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q 'is of a user-mode VM: forks resume on the bridge' "$RL/f" || { cat "$RL/f"; return 1; }
}
t "snapshot and restore of a user-mode VM: its state back, forwards and ssh work on the new QEMU" snapshot_user

bridge_refused() {
        local rc=0
        U vm create --name br --net bridge "${S[@]}" >"$RL/b" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q 'bridge networking needs CAP_NET_ADMIN or the root helper' "$RL/b" || { cat "$RL/b"; return 1; }
        ! U vm show br >/dev/null 2>&1
}
t "--net bridge is refused with a clear error, before any VM exists" bridge_refused

delete_clean() {
        U vm delete web >/dev/null || return 1
        local p
        for p in 22222 22223 22224 22225; do ! listens "$p" || { echo "port $p still listens"; return 1; }; done
        expect_eq "$(user_live | wc -l)" 1 || { user_procs; return 1; }
        U daemon stop >/dev/null && wait_for 10 "every process of the user gone" none_live || { user_procs; return 1; }
        [ -z "$(ls "$RHOME/.local/state/banger/vms")" ] || { ls -la "$RHOME/.local/state/banger/vms"; return 1; }
        # (a sanitized daemon wrote nothing)
        ! ls "$RL"/asan.* "$RL"/ubsan.* >/dev/null 2>&1 || { cat "$RL"/asan.* "$RL"/ubsan.* 2>/dev/null | head -40; return 1; }
}
t "delete: no process, no listening socket, no VM directory left; the daemon stops clean" delete_clean

# Builds without root: a range of subordinate ids past every other one, the
# daemon in the host's namespace (the mirror is outside the test's).
give_subids() {
        local start
        touch /etc/subuid /etc/subgid || return 1
        start=$(awk -F: 'BEGIN { m = 100000 } { if ($2 + $3 > m) m = $2 + $3 } END { print m }' /etc/subuid /etc/subgid)
        printf '%s:%s:65536\n' "$RU" "$start" | tee -a /etc/subuid >>/etc/subgid && echo "$start" >"$RL/subid"
}
t "subordinate ids for the user (past every other range)" give_subids

user_build() {
        U daemon stop >/dev/null 2>&1
        UH --json doctor | jq -e '.checks[] | select(.check == "image builds") | .status == "PASS"' >/dev/null || return 1
        UH image pull debian-bookworm-slim --name built >"$RL/build.out" 2>&1 || { tail -20 "$RL/build.out"; rl_diag; return 1; }
        grep -q 'unshare mode: no root' "$RL/build.out" || { cat "$RL/build.out"; return 1; }
        UH --json image show built >"$RL/built.json" || return 1
        local root seed; root=$(jq -r .rootfs_path "$RL/built.json"); seed=$(jq -r .work_seed_path "$RL/built.json")
        expect_eq "$(stat -c %U "$root" "$seed" | sort -u)" "$RU" &&
        [ -z "$(build_dirs)" ] && expect_eq "$(user_live | wc -l)" 1 || { build_dirs; user_procs; return 1; }
        # what the namespace made is root's in the image (setuid kept), banger's files are in, /root's
        # content is the work seed's
        debugfs -R 'stat /usr/bin/passwd' "$root" 2>/dev/null | grep -q 'Mode:  04755' &&
        debugfs -R 'stat /usr/bin/passwd' "$root" 2>/dev/null | grep -q 'User:     0   Group:     0 ' &&
        debugfs -R 'ls /usr/local/bin' "$root" 2>/dev/null | grep -q banger-agent &&
        expect_eq "$(debugfs -R 'ls -p /root' "$root" 2>/dev/null | grep -c .)" 2 &&
        debugfs -R 'ls -p /' "$seed" 2>/dev/null | grep -q '/100644/0/0/.profile/' ||
                { debugfs -R 'stat /usr/bin/passwd' "$root"; debugfs -R 'ls -p /root' "$root"; return 1; }
        UH daemon stop >/dev/null
        # it boots: banger-init, the agent, the work disk from the seed
        U vm run --rm --image built --vcpu 1 --memory 512 -- sh -c 'grep ^VERSION_CODENAME /etc/os-release; stat -c "%u %a" /usr/bin/passwd; ls -a /root' \
                >"$RL/run2.out" 2>&1 || { cat "$RL/run2.out"; rl_diag; return 1; }
        grep -q '^VERSION_CODENAME=bookworm$' "$RL/run2.out" && grep -q '^0 4755$' "$RL/run2.out" &&
                grep -q '^\.profile$' "$RL/run2.out" || { cat "$RL/run2.out"; return 1; }
}
# (the sanitizers add nothing to an mmdebstrap run: the daemon's side of it is the
# flattener, which the OCI tests run sanitized)
if [ "${BANGER_SUITE:-std}" = std ]; then
        t "with subordinate ids the user builds the slim image (mmdebstrap unshare mode, images by libext2fs) and it boots" user_build
else
        skip "the user builds the slim image and it boots" "runs in the normal build only"
fi

killed_build() {
        U daemon stop >/dev/null 2>&1
        rm -rf "$RHOME/.cache/banger/image-builds" # (a build, not the last one's copy)
        ( UH image pull debian-bookworm-slim --name killed >"$RL/k.out" 2>&1 & )
        # the namespace's tree exists (owned by a subordinate id): the daemon dies
        wait_for 120 "mmdebstrap's tree" sh -c "find /var/tmp -maxdepth 3 -path '*/banger-build-*/tmp/mmdebstrap.*' -type d ! -user $RU | grep -q ." ||
                { cat "$RL/k.out"; return 1; }
        pkill -9 -u "$RU" -x bangerd
        wait_for 10 "the daemon gone" daemon_gone && [ -n "$(build_dirs)" ] || return 1
        # the next start kills what still runs there and removes the tree through mmdebstrap's namespace
        UH ping >/dev/null || return 1
        wait_for 30 "the work dir swept" sh -c "[ -z \"\$(find /var/tmp -maxdepth 1 -name 'banger-build-*' -user $RU)\" ]" || { build_dirs; return 1; }
        # nothing of the namespace runs (its root is the first subordinate id), nothing of the build
        wait_for 10 "the namespace's processes gone" sh -c "! pgrep -U $(cat "$RL/subid") >/dev/null" ||
                { pgrep -aU "$(cat "$RL/subid")"; return 1; }
        ! pgrep -u "$RU" -f "banger-build-" >/dev/null || { pgrep -af "banger-build-"; return 1; }
        ! UH image show killed >/dev/null 2>&1 && [ -z "$(ls -A "$RHOME/.local/state/banger/images" | grep -v '^[0-9a-f]*$')" ] ||
                { ls -la "$RHOME/.local/state/banger/images"; return 1; }
        UH daemon stop >/dev/null && wait_for 10 "every process of the user gone" none_live || { user_procs; return 1; }
        ! ls "$RL"/asan.* "$RL"/ubsan.* >/dev/null 2>&1 || { cat "$RL"/asan.* "$RL"/ubsan.* 2>/dev/null | head -40; return 1; }
}
t "a build whose daemon is killed mid-mmdebstrap: the next start removes the namespace's tree and its processes" killed_build

finish
