#!/usr/bin/env bash
# The system install, for real: `banger system install --root` puts a whole
# install below $TMP/sys, the root helper runs as root and the daemon as a
# throwaway user, both inside a private network namespace. That user runs
# VMs (QEMU is theirs, so are the TAPs), DNS and NAT work through the
# helper, and the helper refuses every request that steps outside its rules
# (each refusal leaves the device or file it named as it was). Then restart
# keeps VMs running, and uninstall leaves nothing behind.
. "$(dirname "$0")/lib.sh"
begin
vm_begin
t "kernel and slim image pulled (host namespace, user mode)" vm_prepare

sys_begin bgt
VS=(--image slim --vcpu 1 --memory 512)

# One raw request to the helper (as root unless AS=uid): prints the answer line.
HELPER() {
        ip netns exec "$NS" setpriv --reuid="${AS:-0}" --regid="${AS:-0}" --clear-groups \
                /usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(30); s.connect(sys.argv[1])
s.sendall((sys.argv[2].rstrip("\n") + "\n").encode())  # no half-close: to the helper that means "cancel"
out = b""
while True:
    c = s.recv(65536)
    if not c: break
    out += c
sys.stdout.write(out.decode())' "$HSOCK" "$1"
}
# What the two services said last (for failures).
syslogs() {
        echo "--- bangerd.log"; tail -n 15 "$R/var/lib/banger/bangerd.log" 2>/dev/null
        echo "--- helper"; tail -n 15 "$TMP/helper.log" 2>/dev/null; tail -n 15 "$R/run/banger-root/bangerd-root.log" 2>/dev/null
        local c; for c in "$R"/var/lib/banger/vms/*/console.log; do [ -f "$c" ] && { echo "--- $c"; tail -n 8 "$c"; }; done
}
req() { printf '{"v":1,"id":7,"method":"%s","params":%s}' "$1" "$2"; }
# A refusal: the answer is an error with code $2 whose message matches $3.
refused() { # request code regex
        local a; a=$(HELPER "$1") || { echo "no answer to $1"; return 1; }
        printf '%s' "$a" | jq -e --arg c "$2" '.error.code == $c' >/dev/null || { echo "not a $2: $a"; return 1; }
        expect_match "$a" "$3"
}

t "a throwaway owner ($OWNER) and an empty root" sys_owner

install() {
        sys_install || return 1
        # no systemd here: the install printed the two start lines, helper first, and
        # the daemon (started as the owner, as its unit runs it) answers
        grep '^start: ' "$TMP/install.out" | head -1 | grep -q "bangerd-root --system" &&
        grep '^start: ' "$TMP/install.out" | sed -n 2p | grep -q "/bangerd --system" || { cat "$TMP/install.out"; return 1; }
        local f
        for f in bin/banger bin/bangerd bin/bangerd-root lib/banger/banger-agent lib/banger/banger-init; do
                expect_eq "$(stat -c '%U %a' "$R/usr/local/$f")" "root 755" || { echo "$f"; return 1; }
        done
        expect_eq "$(stat -c '%U %a' "$IFILE")" "root 644" || return 1
        grep -q "^user = \"$OWNER\"" "$IFILE" || return 1
        # sockets: the helper's 0600 (the owner's) in a 0711 root dir; the daemon's 0600 in its 0700 dir
        expect_eq "$(stat -c '%U %a' "$HSOCK")" "$OWNER 600" && expect_eq "$(stat -c '%U %a' "$(dirname "$HSOCK")")" "root 711" &&
        expect_eq "$(stat -c '%U %a' "$DSOCK")" "$OWNER 600" && expect_eq "$(stat -c '%U %a' "$(dirname "$DSOCK")")" "$OWNER 700" ||
                return 1
        expect_eq "$(stat -c '%U %a' "$R/var/lib/banger")" "$OWNER 700" || return 1
        # the helper runs as root, the daemon as the owner (all of its ids)
        local hp dp; hp=$(pgrep -f "^$R/usr/local/bin/bangerd-root ") dp=$(pgrep -f "^$R/usr/local/bin/bangerd ")
        [ -n "$hp" ] && [ -n "$dp" ] || { echo "helper '$hp' daemon '$dp'"; return 1; }
        expect_eq "$(ps -o ruser=,euser= -p "$hp" | xargs)" "root root" &&
        expect_eq "$(awk '/^Uid:/ {print $2,$3,$4,$5}' "/proc/$dp/status")" "$(id -u "$OWNER") $(id -u "$OWNER") $(id -u "$OWNER") $(id -u "$OWNER")" &&
        expect_eq "$(awk '/^CapEff:/ {print $2}' "/proc/$dp/status")" "0000000000000000"
}
t "system install --root: root's binaries, install.toml 0644, sockets 0600, helper as root, daemon as the owner (no capabilities)" install

units() {
        command -v systemd-analyze >/dev/null || { echo "no systemd-analyze"; return 1; }
        local u="$R/etc/systemd/system"
        systemd-analyze verify "$u/bangerd-root.service" "$u/bangerd.service" >"$TMP/verify" 2>&1 &&
                [ ! -s "$TMP/verify" ] || { cat "$TMP/verify"; return 1; }
        grep -q "^User=$OWNER$" "$u/bangerd.service" && grep -q '^KillMode=process$' "$u/bangerd.service" &&
        grep -q '^NoNewPrivileges=yes$' "$u/bangerd.service" && grep -q '^CapabilityBoundingSet=$' "$u/bangerd.service" &&
        grep -q '^ProtectHome=yes$' "$u/bangerd-root.service" && grep -q '^PrivateTmp=yes$' "$u/bangerd-root.service" &&
        ! grep -q '^User=' "$u/bangerd-root.service"
}
t "both units pass systemd-analyze verify with their hardening" units

posture() {
        U doctor >"$TMP/doc.out" 2>&1
        local c
        for c in install binaries sockets services "unit hardening" version "state dir" "runtime dir" "state store"; do
                grep -Eq "^PASS	$c\$" "$TMP/doc.out" || { echo "no PASS for $c:"; cat "$TMP/doc.out"; return 1; }
        done
        U system status >"$TMP/st.out" 2>&1 || { cat "$TMP/st.out"; return 1; }
        grep -q "^owner        $OWNER" "$TMP/st.out" && grep -q '^root helper  answers' "$TMP/st.out" &&
        grep -q '^daemon       answers' "$TMP/st.out" && grep -q "(mode 0600, uid $(id -u "$OWNER"))" "$TMP/st.out" ||
                { cat "$TMP/st.out"; return 1; }
        # a loosened socket is a FAIL, not a shrug
        chmod 666 "$DSOCK"
        local rc=0; U doctor >"$TMP/doc2.out" 2>&1 || rc=$?
        chmod 600 "$DSOCK"
        expect_eq "$rc" 1 && grep -A1 -E "^FAIL	sockets$" "$TMP/doc2.out" | grep -q "mode 0666" || { cat "$TMP/doc2.out"; return 1; }
        # outside the install (user mode) doctor says so
        "$BANGER" doctor 2>/dev/null | grep -A1 -E '^WARN	install$' | grep -q 'running outside the system install'
}
t "doctor as the owner: the install's binaries, sockets, services and version PASS; a loosened socket FAILs; user mode WARNs" posture

meson_set() {
        DESTDIR="$TMP/mi" meson install -C "$BANGER_BUILD" --no-rebuild --quiet >/dev/null 2>&1 || return 1
        expect_eq "$(cd "$TMP/mi/usr/local" && find . -type f | sort | xargs)" \
                "$(cd "$R/usr/local" && find . -type f | sort | xargs)"
}
if [ -x "$BANGER_BUILD/banger-agent" ]; then
        t "meson install installs the same files as system install (five programs, three man pages)" meson_set
else
        skip "meson install installs the same files as system install (five programs, three man pages)" "no guest programs in this build (sanitizers)"
fi

third_user() {
        local rc=0 out
        out=$(ip netns exec "$NS" setpriv --reuid=nobody --regid=nogroup --clear-groups \
                env BANGER_INSTALL_FILE="$IFILE" "$R/usr/local/bin/banger" vm list 2>&1) || rc=$?
        expect_eq "$rc" 1 && expect_match "$out" "installed system-wide for $OWNER" || return 1
        # even with the socket's mode loosened, the kernel's peer credentials decide
        chmod 666 "$HSOCK"
        AS=$(id -u nobody) refused "$(req priv.ip_forward '{}')" unauthorized "uid $(id -u nobody) may not use the root helper"
        rc=$?; chmod 600 "$HSOCK"; return $rc
}
t "a third user is told whose install it is; the helper refuses its uid even through a loosened socket" third_user

artifacts() {
        local k="$TMP/own-kernel" i="$TMP/own-image" info
        info=$("$BANGER" --json image show debian-bookworm-slim) || return 1
        mkdir -p "$k/modules/kernel" "$i" && cp "$STATE/kernels/debian-cloud-6.1/vmlinuz" "$k/" &&
        cp "$STATE"/kernels/debian-cloud-6.1/modules/*.ko "$k/modules/kernel/" &&
        cp --sparse=always "$(jq -r .rootfs_path <<<"$info")" "$i/rootfs.ext4" &&
        cp --sparse=always "$(jq -r .work_seed_path <<<"$info")" "$i/work-seed.ext4" &&
        chown -R "$OWNER:" "$k" "$i" || return 1
        U kernel import debian-cloud-6.1 --from "$k" >/dev/null &&
        U image register --name slim --rootfs "$i/rootfs.ext4" --work-seed "$i/work-seed.ext4" \
                --kernel-ref debian-cloud-6.1 --init-mode "$(jq -r .init_mode <<<"$info")" >/dev/null
}
t "the owner imports a kernel and registers an image" artifacts

run_rm() {
        local repo="$TMP/repo"
        mkdir -p "$repo" && echo hello >"$repo/f.txt" && chown -R "$OWNER:" "$repo" || return 1
        ip netns exec "$NS" setpriv --reuid="$OWNER" --regid="$OWNER" --init-groups sh -c \
                "cd '$repo' && git init -q && git add f.txt && git -c user.email=t@t -c user.name=t commit -qm x" || return 1
        U vm run --rm "${VS[@]}" "$repo" -- sh -c 'cat f.txt; id -u' >"$TMP/run.out" 2>"$TMP/run.err" ||
                { tail -5 "$TMP/run.err"; syslogs; return 1; }
        grep -qx hello "$TMP/run.out" && grep -qx 0 "$TMP/run.out" || { cat "$TMP/run.out"; tail -5 "$TMP/run.err"; return 1; }
        wait_for 30 "the VM to be deleted (--rm finishes in the daemon)" sys_none_left || sys_none_left
}
sys_none_left() { expect_eq "$(U --json vm list | jq length)" 0 && expect_eq "$(ns_taps | grep -c '^bg' || true)" 0; }
t "vm run --rm as the owner ships the repo, runs the command, and leaves no VM or TAP" run_rm

lifecycle() {
        U vm create --name sysvm --nat "${VS[@]}" >/dev/null 2>"$TMP/c.err" || { cat "$TMP/c.err"; syslogs; return 1; }
        local pid tap; pid=$(U --json vm show sysvm | jq -r .pid)
        expect_eq "$(ps -o user= -p "$pid")" "$OWNER" || { echo "QEMU is not the owner's"; return 1; }
        tap=$(ns_taps | grep '^bg' | head -1)
        expect_eq "$(ip netns exec "$NS" cat "/sys/class/net/$tap/owner" 2>/dev/null)" "$(id -u "$OWNER")" ||
                { echo "TAP $tap"; return 1; }
        expect_eq "$(ip netns exec "$NS" dig @127.0.0.1 -p 42069 +time=2 +tries=1 +short sysvm.vm)" 172.16.0.2 || return 1
        ip netns exec "$NS" nft list table inet banger | grep -q "banger-vm:" || { echo "no NAT rule"; return 1; }
        expect_eq "$(U vm ssh sysvm -- cat /etc/hostname 2>/dev/null)" sysvm || return 1
        U vm stop sysvm >/dev/null && state_of sysvm stopped && U vm start sysvm >/dev/null && state_of sysvm running
}
state_of() { [ "$(U --json vm show "$1" | jq -r .state)" = "$2" ]; }
t "the owner's VM: QEMU and TAP are theirs, <name>.vm resolves, NAT rules via the helper, ssh, stop, start" lifecycle

restart() {
        local pid dp; pid=$(U --json vm show sysvm | jq -r .pid)
        SYS system restart >"$TMP/rs.out" 2>&1 || { cat "$TMP/rs.out"; return 1; }
        expect_eq "$(U --json vm show sysvm | jq -r .pid)" "$pid" && alive "$pid" && state_of sysvm running &&
        expect_eq "$(U vm ssh sysvm -- echo still-here 2>/dev/null)" still-here || return 1
        # restarted by root, the daemon became the owner itself, for good
        dp=$(pgrep -f "^$R/usr/local/bin/bangerd ")
        expect_eq "$(awk '/^Uid:/ {print $2,$3,$4,$5}' "/proc/$dp/status")" "$(id -u "$OWNER") $(id -u "$OWNER") $(id -u "$OWNER") $(id -u "$OWNER")" &&
        expect_eq "$(awk '/^Gid:/ {print $2}' "/proc/$dp/status")" "$(id -g "$OWNER")" &&
        expect_eq "$(awk '/^CapEff:/ {print $2}' "/proc/$dp/status")" "0000000000000000"
}
t "system restart (helper and daemon) keeps the VM running and reachable; a root-started daemon drops to the owner" restart

helper_refusals() {
        ip netns exec "$NS" ip link add bg0123456789ab type bridge &&
                ip netns exec "$NS" ip link add tap-pool-200 type veth peer name tp200peer || return 1
        refused "$(req priv.tap_delete '{"tap":"lo"}')" unauthorized "not a banger TAP name" &&
        refused "$(req priv.tap_delete '{"tap":"br-fc"}')" unauthorized "not a banger TAP name" &&
        refused "$(req priv.tap_delete '{"tap":"bg0123456789ab"}')" unauthorized "is a bridge device, not a TAP" &&
        refused "$(req priv.tap_delete '{"tap":"tap-pool-200"}')" unauthorized "is a veth device, not a TAP" &&
        refused "$(req priv.tap_create '{"tap":"bg00000000000a","bridge":"eth0"}')" unauthorized "not banger's" &&
        refused "$(req priv.bridge_ensure '{"bridge":"br-fc-evil"}')" unauthorized "not the configured bridge" &&
        refused "$(req priv.nat_disable '{"vm_id":"*"}')" unauthorized "not a VM id" &&
        refused "$(req priv.nat_enable '{"vm_id":"0123456789abcdef","ip":"10.99.0.2"}')" unauthorized "not a guest address" &&
        refused "$(req priv.dns_route '{"listen":"0.0.0.0:53"}')" unauthorized "loopback" &&
        refused "$(req priv.link_exists '{"name":"eth0"}')" unauthorized "neither a banger TAP nor the bridge" &&
        refused "$(req priv.reboot '{}')" unknown_method "no method 'priv.reboot'" &&
        refused "$(req priv.tap_delete '{"tap":"tap-pool-200","extra":1}')" bad_request "extra" &&
        refused "$(req priv.ip_forward '{}')"$'\n'"$(req priv.ip_forward '{}')" bad_request "one request per connection" || return 1
        for l in lo br-fc bg0123456789ab tap-pool-200; do
                ip netns exec "$NS" ip link show "$l" >/dev/null 2>&1 || { echo "$l is gone"; return 1; }
        done
        ip netns exec "$NS" ip link del bg0123456789ab; ip netns exec "$NS" ip link del tap-pool-200
}
t "the helper refuses other devices, bridges, VM ids, addresses, methods, extra keys and a second request; nothing is touched" helper_refusals

helper_paths() {
        local imgs="$R/var/lib/banger/images" out
        out="$imgs/.staging-t$$"
        mkdir -p "$out" "$TMP/elsewhere" && chown "$OWNER:" "$out" || return 1
        echo keep >"$TMP/victim" && ln "$TMP/victim" "$out/rootfs.ext4" && ln -s /etc "$imgs/evil-link" || return 1
        local b='"suite":"bookworm","mirror":"http://127.0.0.1:9/debian","packages":["openssh-server"],"init_mode":"fast"'
        refused "$(req priv.build_debian "{$b,\"out_dir\":\"$TMP/elsewhere\"}")" unauthorized "outside banger's directories" &&
        refused "$(req priv.build_debian "{$b,\"out_dir\":\"$imgs/evil-link\"}")" unauthorized "symlink" &&
        refused "$(req priv.build_debian "{$b,\"out_dir\":\"$imgs/evil-link/x\"}")" unauthorized "symlink" &&
        refused "$(req priv.build_debian "{$b,\"out_dir\":\"$imgs/../../../../etc\"}")" unauthorized "normalised" &&
        refused "$(req priv.build_debian "{$b,\"out_dir\":\"$out\"}")" unauthorized "already has rootfs.ext4" || return 1
        expect_eq "$(cat "$TMP/victim")" keep && [ ! -e "$out/build.log" ] || return 1
        # a build that fails (no mirror): its log stays, the owner's; no image, no work dir
        rm -f "$out/rootfs.ext4"
        local a; a=$(AS=$(id -u "$OWNER") HELPER "$(req priv.build_debian "{$b,\"out_dir\":\"$out\"}")")
        expect_match "$a" '"code":"operation_failed".*mmdebstrap' || return 1
        expect_eq "$(ls "$out")" build.log && expect_eq "$(stat -c %U "$out/build.log")" "$OWNER" || { ls -la "$out"; return 1; }
        ! ls -d /var/tmp/banger-build-* 2>/dev/null | grep -q . || { ls -la /var/tmp/banger-build-*; return 1; }
        rm -rf "$out" "$imgs/evil-link"
}
t "the helper's builds: paths outside, through symlinks or with outputs present are refused; a failed build leaves only its log" helper_paths

helper_dm() {
        local vms="$R/var/lib/banger/vms" d id=00000000deadbeef
        d="$vms/$id"
        mkdir -p "$d" "$TMP/elsewhere" && truncate -s 4M "$d/rootfs.ext4" "$TMP/elsewhere/rootfs.ext4" &&
                truncate -s 8M "$d/root.cow" && chown -R "$OWNER:" "$d" && ln -s "$d/root.cow" "$d/link.cow" || return 1
        local a; a=$(HELPER "$(req priv.dm_available '{}')")
        # these machines have no /dev/mapper/control; a host that has one says true
        if [ -e /dev/mapper/control ]; then expect_match "$a" '"available":true'; else expect_match "$a" '"available":false'; fi || return 1
        local o="\"origin\":\"$d/rootfs.ext4\""
        refused "$(req priv.dm_snapshot_create "{\"vm_id\":\"*\",$o,\"cow\":\"$d/root.cow\"}")" unauthorized "not a VM id" &&
        refused "$(req priv.dm_snapshot_create "{\"vm_id\":\"$id\",\"origin\":\"$TMP/elsewhere/rootfs.ext4\",\"cow\":\"$d/root.cow\"}")" unauthorized "outside banger's directories" &&
        refused "$(req priv.dm_snapshot_create "{\"vm_id\":\"$id\",$o,\"cow\":\"$d/link.cow\"}")" unauthorized "symlink" &&
        refused "$(req priv.dm_snapshot_create "{\"vm_id\":\"$id\",$o,\"cow\":\"$d/rootfs.ext4\"}")" unauthorized "not one" &&
        refused "$(req priv.dm_snapshot_create "{\"vm_id\":\"$id\",$o}")" bad_request "cow" &&
        refused "$(req priv.dm_snapshot_remove '{"vm_id":"banger-x"}')" unauthorized "not a VM id" || return 1
        if [ ! -e /dev/mapper/control ]; then
                refused "$(req priv.dm_snapshot_create "{\"vm_id\":\"$id\",$o,\"cow\":\"$d/root.cow\"}")" operation_failed "/dev/mapper/control" &&
                expect_match "$(HELPER "$(req priv.dm_snapshot_remove "{\"vm_id\":\"$id\"}")")" '"result"' || return 1
                [ ! -e /dev/mapper/control ] || { echo "the helper made /dev/mapper/control"; return 1; }
        fi
        rm -rf "$d"
}
t "the helper's device-mapper methods: ids, paths outside or through symlinks, one file for both are refused; without /dev/mapper/control nothing is made" helper_dm

nft_foreign() {
        local id ip a; id=$(U --json vm show sysvm | jq -r .id) ip=$(U --json vm show sysvm | jq -r .ip)
        ip netns exec "$NS" nft add rule inet banger forward counter comment '"someone-else"' &&
        ip netns exec "$NS" nft add rule inet banger forward counter || return 1
        a=$(HELPER "$(req priv.nat_disable "{\"vm_id\":\"$id\"}")")
        expect_match "$a" '"result"' || return 1
        ip netns exec "$NS" nft -a list table inet banger >"$TMP/nft" || return 1
        local ok=0
        # NAT's chains lose the VM's rules; the guard's (input) keep theirs
        ! ip netns exec "$NS" nft list chain inet banger forward | grep -q "banger-vm:$id" &&
                ! ip netns exec "$NS" nft list chain inet banger postrouting | grep -q "banger-vm:$id" ||
                { echo "the VM's NAT rules stayed"; ok=1; }
        ip netns exec "$NS" nft list chain inet banger input | grep -q "banger-vm:$id" || { echo "the VM's guard went too"; ok=1; }
        grep -q 'comment "someone-else"' "$TMP/nft" || { echo "a rule with another comment went"; ok=1; }
        grep -E 'counter packets [0-9]+ bytes [0-9]+ # handle' "$TMP/nft" | grep -vq comment ||
                { echo "a rule without a comment went"; ok=1; }
        a=$(HELPER "$(req priv.nat_enable "{\"vm_id\":\"$id\",\"ip\":\"$ip\"}")")
        expect_match "$a" '"result"' || ok=1
        local h
        for h in $(grep -E '^\s*counter packets' "$TMP/nft" | grep -o 'handle [0-9]*' | awk '{print $2}'); do
                ip netns exec "$NS" nft delete rule inet banger forward handle "$h"
        done
        return $ok
}
t "nat_disable removes only the NAT rules commented banger-vm:<that id>; the guard's and other rules in banger's table stay" nft_foreign

tampered_stop() {
        local id; id=$(U --json vm show sysvm | jq -r .id)
        local own; own=$(ns_taps | grep '^bg' | head -1)
        [ -n "$own" ] || { echo "no TAP"; return 1; }
        ip netns exec "$NS" ip link add tap-pool-202 type veth peer name tp202peer || return 1
        local h="$R/var/lib/banger/vms/$id/handles.json"
        jq -c '.tap = "tap-pool-202"' "$h" >"$h.new" && chown "$OWNER:" "$h.new" && mv "$h.new" "$h" || return 1
        U vm stop sysvm >/dev/null || return 1
        local ok=0
        ip netns exec "$NS" ip link show tap-pool-202 >/dev/null 2>&1 || { echo "the named device is gone"; ok=1; }
        ! ip netns exec "$NS" ip link show "$own" >/dev/null 2>&1 || { echo "the VM's own TAP $own stayed"; ok=1; }
        ip netns exec "$NS" ip link del tap-pool-202 2>/dev/null
        U vm start sysvm >/dev/null || ok=1
        return $ok
}
t "a running VM's handles.json names another device as its TAP: stop deletes only the VM's own TAP" tampered_stop

hostile_handles() {
        local id pid dpid victim
        id=$(U --json vm show sysvm | jq -r .id) pid=$(U --json vm show sysvm | jq -r .pid)
        dpid=$(pgrep -f "^$R/usr/local/bin/bangerd ")
        # the daemon dies, then its VM; the VM's files then name someone else's process and device
        kill -9 "$dpid" && wait_for 10 "the daemon to die" not alive "$dpid" || return 1
        kill -9 "$pid" && wait_for 10 "QEMU to die" not alive "$pid" || return 1
        sleep 300 & victim=$!
        ip netns exec "$NS" ip link add tap-pool-201 type veth peer name tp201peer || return 1
        printf '{"pid":%d,"tap":"tap-pool-201","vmm":"qemu"}' "$victim" >"$R/var/lib/banger/vms/$id/handles.json"
        chown "$OWNER:" "$R/var/lib/banger/vms/$id/handles.json"
        SYS system restart >"$TMP/rs2" 2>&1 || { cat "$TMP/rs2"; return 1; }
        local ok=0
        alive "$victim" || { echo "the daemon killed a process its files named"; ok=1; }
        ip netns exec "$NS" ip link show tap-pool-201 >/dev/null 2>&1 || { echo "the named device is gone"; ok=1; }
        wait_for 10 "sysvm to be marked stopped" state_of sysvm stopped || ok=1
        [ -z "$(ns_taps | grep '^bg')" ] || { echo "the VM's own TAP stayed: $(ns_taps)"; ok=1; }
        kill "$victim"; ip netns exec "$NS" ip link del tap-pool-201 2>/dev/null
        return $ok
}
t "a crashed VM whose handles.json names another process and device: its own TAP goes, they survive the restart" hostile_handles

# Firecracker under its jailer, started by the root helper, running as the
# owner: tests/fc's fakes (the jailer's makes a real chroot), root's copies
# (the helper runs only root's programs no one else can write), the helper
# and the daemon restarted with the fakes' settings in their environment.
jailed_fc() {
        local fcdir lib="$R/opt/banger-test" rec="$TMP/fcrec" agent="${BANGER_AGENT:-$BANGER_BUILD/banger-agent}"
        fcdir="$(cd "$(dirname "$0")/../fc" && pwd)"
        # (`command`: this file has a test named install)
        command install -d -m 755 "$R/opt" "$lib" && command install -m 755 "$fcdir/fake_firecracker.py" "$lib/firecracker" &&
                command install -m 755 "$fcdir/fake_jailer.py" "$lib/jailer" &&
                command install -m 644 "$(realpath "$fcdir/../../../shared/reference/firecracker-api-v1.14.1.yaml")" "$lib/api.yaml" &&
                command install -d -m 777 "$rec" || return 1
        printf 'firecracker_bin = "%s"\njailer_bin = "%s"\n' "$lib/firecracker" "$lib/jailer" >>"$ICONF"
        socat UNIX-LISTEN:"$rec/guest.sock",fork,mode=666 EXEC:"$agent --stdio" 2>/dev/null &
        echo $! >"$TMP/socat.pid"
        export FC_FAKE_SPEC="$lib/api.yaml" FC_FAKE_RECORD="$rec/record.jsonl" FC_FAKE_JAILER_RECORD="$rec/jailer.jsonl" \
                FC_FAKE_VSOCK_1024="$rec/guest.sock"
        SYS system restart >"$TMP/rs3.out" 2>&1 || { cat "$TMP/rs3.out"; return 1; }
        U vm create --name jfc --vmm firecracker "${VS[@]}" >"$TMP/jfc.out" 2>&1 || {
                cat "$TMP/jfc.out"; ls -ld "$TMP" "$R" "$R/opt" "$lib" "$lib/firecracker"
                ip netns exec "$NS" setpriv --reuid="$OWNER" --regid="$OWNER" --init-groups test -x "$lib/firecracker" || echo "the owner cannot run $lib/firecracker"
                syslogs; return 1; }
        local pid id jail; pid=$(U --json vm show jfc | jq -r .pid); id=$(U --json vm show jfc | jq -r .id)
        jail="$R/var/lib/banger/jail/firecracker/banger-$id"
        # the helper ran the jailer (root), which dropped Firecracker to the owner, chrooted
        jq -se --arg u "$(id -u "$OWNER")" 'length == 1 and (.[0].uid | tostring) == $u' "$rec/jailer.jsonl" >/dev/null ||
                { cat "$rec/jailer.jsonl"; return 1; }
        expect_eq "$(ps -o user= -p "$pid")" "$OWNER" || return 1
        expect_eq "$(readlink "/proc/$pid/root")" "$jail/root" || return 1
        expect_eq "$(stat -c %U "$jail/root")" "$OWNER" || return 1
        U vm stop jfc >/dev/null 2>&1 && state_of jfc stopped && [ ! -e "$jail" ] || { echo "stop: jail $jail left"; return 1; }
        U vm start jfc >/dev/null 2>&1 && state_of jfc running && [ -d "$jail/root" ] || { syslogs; return 1; }
        pid=$(U --json vm show jfc | jq -r .pid)
        U vm delete jfc >/dev/null 2>&1 || return 1
        [ ! -e "$jail" ] && ! alive "$pid" || { find "$R/var/lib/banger/jail"; return 1; }
}
t "the helper runs Firecracker under its jailer as the owner (a chroot of the VM's files); stop and delete remove the jail" jailed_fc
kill "$(cat "$TMP/socat.pid" 2>/dev/null)" 2>/dev/null
unset FC_FAKE_SPEC FC_FAKE_RECORD FC_FAKE_JAILER_RECORD FC_FAKE_VSOCK_1024

uninstall() {
        U vm start sysvm >/dev/null || return 1
        local rc=0; SYS system uninstall >"$TMP/un" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q 'VMs are running (sysvm)' "$TMP/un" || { cat "$TMP/un"; return 1; }
        SYS system uninstall --force >"$TMP/un" 2>&1 || { cat "$TMP/un"; return 1; }
        [ ! -e "$IFILE" ] && [ -z "$(find "$R/usr/local" -type f)" ] && [ ! -e "$R/usr/local/lib/banger" ] &&
        [ ! -e "$R/etc/systemd/system/bangerd.service" ] && [ ! -e "$HSOCK" ] && [ ! -e "$DSOCK" ] || { find "$R" -maxdepth 4; return 1; }
        not pgrep -f "^$R/usr/local/bin/bangerd" >/dev/null || { echo "a service still runs"; return 1; }
        [ -z "$(ns_vmms)" ] || { echo "a VMM still runs"; return 1; }
        [ -z "$(ns_taps)" ] || { echo "TAPs left: $(ns_taps)"; return 1; }
        ! ip netns exec "$NS" nft list table inet banger 2>/dev/null | grep -q 'banger-vm:' || { echo "NAT rules left"; return 1; }
        [ -d "$R/var/lib/banger/vms" ] && grep -q -- '--purge removes them' "$TMP/un"
}
t "uninstall refuses while a VM runs; --force stops it and leaves no service, VMM, TAP, rule, binary or man page (state kept)" uninstall

finish
