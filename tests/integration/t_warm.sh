#!/usr/bin/env bash
# Warm starts on real VMs: the first create of a kind of VM boots cold and
# builds a template in the background; the next ones resume from it and are
# re-identified before anything sees them. Two warm VMs differ in hostname,
# address, MAC, SSH host key, machine-id and what /dev/urandom gives right
# after the restore; their clocks are the host's; they reach each other and
# the host; vm ssh works with the pinned key; /root is each VM's own work
# disk. --cold boots cold; a template whose image changed is never used and
# is removed; a daemon killed during a build leaves nothing behind.
. "$(dirname "$0")/lib.sh"
begin
export BANGER_WARM=on
vm_begin
t "kernel and slim image pulled (host namespace)" vm_prepare
S=(--image debian-bookworm-slim --vcpu 1 --memory 512)
X() { local vm="$1"; shift; B vm exec "$vm" -- sh -c "$1" 2>>"$TMP/exec.err"; }
boot_is() { [ "$(B --json vm show "$1" | jq -r .boot)" = "$2" ]; }
ready_templates() { B --json template list | jq '[.[] | select(.state == "ready")] | length'; }

first() {
        B vm create --name c0 "${S[@]}" >"$TMP/c0.out" 2>&1 || { cat "$TMP/c0.out"; return 1; }
        boot_is c0 cold || { B --json vm show c0; return 1; }
        wait_for 180 "the template to be built" sh -c "[ \"\$('$BANGER_BUILD/banger' --json template list 2>/dev/null | jq '[.[] | select(.state == \"ready\")] | length')\" = 1 ]" ||
                { B --json template list; tail -20 "$LOG"; return 1; }
        # the build's VMM is gone with it
        expect_eq "$(ns_vmms | wc -l)" 1
}
t "the first create boots cold and builds a template in the background" first

warm_pair() {
        local n
        for n in w1 w2; do
                B vm create --name "$n" "${S[@]}" >"$TMP/$n.out" 2>&1 || { cat "$TMP/$n.out"; tail -20 "$LOG"; return 1; }
                grep -q warm "$TMP/$n.out" && boot_is "$n" warm || { cat "$TMP/$n.out"; tail -20 "$LOG"; return 1; }
                state_is "$n" running || return 1
        done
}
t "the next creates resume from the template (boot: warm)" warm_pair

# what each guest says about itself, one line per fact
facts() {
        X "$1" 'hostname; cat /sys/class/net/eth0/address; ip -4 -o addr show eth0 | awk "{print \$4}";
               ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | awk "{print \$2}"; cat /etc/machine-id;
               head -c 32 /dev/urandom | od -An -tx1 | tr -d " \n"; echo'
}
differ() {
        local a b; a=$(facts w1) && b=$(facts w2) || { cat "$TMP/exec.err"; return 1; }
        [ "$(echo "$a" | wc -l)" = 6 ] || { echo "w1 said: $a"; return 1; }
        local i; for i in 1 2 3 4 5 6; do
                [ "$(echo "$a" | sed -n "${i}p")" != "$(echo "$b" | sed -n "${i}p")" ] ||
                        { echo "fact $i is the same: $(echo "$a" | sed -n "${i}p")"; return 1; }
        done
        expect_eq "$(echo "$a" | sed -n 1p)" w1 &&
        expect_eq "$(echo "$a" | sed -n 2p)" "$(B --json vm show w1 | jq -r .mac)" &&
        expect_eq "$(echo "$a" | sed -n 3p)" "$(B --json vm show w1 | jq -r .ip)/24" &&
        # the host key is the one banger pinned
        grep -q "$(X w1 'cut -d" " -f2 /etc/ssh/ssh_host_ed25519_key.pub')" "$STATE/ssh/known_hosts"
}
t "two warm VMs differ: hostname, MAC, address, host key, machine-id, /dev/urandom" differ

clocks() {
        local n g h; for n in w1 w2; do
                g=$(X "$n" 'date +%s') && h=$(date +%s) || return 1
                [ $((h - g)) -le 2 ] && [ $((g - h)) -le 2 ] || { echo "$n: guest $g, host $h"; return 1; }
        done
}
t "their clocks are the host's (within 2 s)" clocks

# (sshd starts in the background after the identity: slow under a sanitized daemon)
why_no_sshd() {
        B vm logs "$1" 2>&1 | tail -15
        X "$1" 'ps -eo pid,ppid,stat,args; ls -l /run/sshd.pid /etc/ssh/ssh_host_*; cat /run/sshd.pid; ss -ltnp'
}
tcp_ok() { X "$1" "timeout 5 bash -c 'echo > /dev/tcp/$2/22'"; }
reach() {
        local ip1 ip2; ip1=$(B --json vm show w1 | jq -r .ip) ip2=$(B --json vm show w2 | jq -r .ip)
        wait_for 60 "w1 to reach w2 ($ip2:22)" tcp_ok w1 "$ip2" || { tail -2 "$TMP/exec.err"; why_no_sshd w2; return 1; }
        wait_for 60 "w2 to reach w1 ($ip1:22)" tcp_ok w2 "$ip1" || { tail -2 "$TMP/exec.err"; why_no_sshd w1; return 1; }
        expect_eq "$(B vm ssh w2 -- hostname 2>"$TMP/ssh.err")" w2 || { cat "$TMP/ssh.err"; return 1; }
        # one listener, banger-init's (restarted by it for the new host key), on IPv4 and IPv6
        local n; for n in w1 w2; do
                expect_eq "$(X "$n" 'pgrep -P 1 -c -x sshd; ps -o args= -p "$(pgrep -P 1 -x sshd | head -1)" | cut -c1-26;
                        ss -Hltn "sport = :22" | awk "{print \$4}" | sort | tr "\n" " "')" \
                        "$(printf '1\nsshd: /usr/sbin/sshd -D -e\n0.0.0.0:22 [::]:22 ')" || return 1
        done
}
t "they reach each other; vm ssh works with the pinned host key" reach

workdisk() {
        # /root is the VM's own work disk, with the user's key in it
        X w1 'grep -q " /root ext4 " /proc/mounts && test -s /root/.ssh/authorized_keys && echo mine > /root/own' || return 1
        X w2 'test ! -e /root/own'
}
t "/root is each VM's own work disk" workdisk

# vm run PATH: the workspace is written into the repo disk before the start
# (as for a cold boot); the warm guest mounts it during its identity
warm_workspace() {
        local repo="$TMP/repo"
        mkdir -p "$repo" && cd "$repo" && git init -q -b main && git config user.name T && git config user.email t@t &&
                echo hello >a.txt && git add -A && git commit -qm one || return 1
        local out; out=$(B vm run --rm "${S[@]}" "$repo" -- sh -c 'cat a.txt; git status --porcelain | wc -l; pwd' 2>"$TMP/ws.err") ||
                { cat "$TMP/ws.err"; return 1; }
        grep -q 'warm .*from template' "$TMP/ws.err" || { cat "$TMP/ws.err"; return 1; }
        expect_eq "$out" "$(printf 'hello\n0\n/root/repo')"
}
t "vm run PATH warm: the repository is in /root/repo, its status clean" warm_workspace

cold_flag() {
        B vm create --cold --name k1 "${S[@]}" >"$TMP/k1.out" 2>&1 || { cat "$TMP/k1.out"; return 1; }
        boot_is k1 cold && ! grep -q 'warm' "$TMP/k1.out" || { cat "$TMP/k1.out"; return 1; }
        # a restart is a cold boot of the VM's own disks
        B vm restart w1 >/dev/null 2>&1 && boot_is w1 cold && X w1 'cat /root/own' | grep -q mine &&
        expect_eq "$(X w1 hostname)" w1
}
t "--cold boots cold; a warm VM restarts cold with its own disks" cold_flag

stale() {
        local rootfs; rootfs=$(B --json image show debian-bookworm-slim | jq -r .rootfs_path)
        touch "$rootfs" || return 1
        # the next create does not use it, and housekeeping removes it
        B vm create --name s1 "${S[@]}" >"$TMP/s1.out" 2>&1 || { cat "$TMP/s1.out"; return 1; }
        boot_is s1 cold || { cat "$TMP/s1.out"; return 1; }
        B template prune >/dev/null || return 1
        B --json template list | jq -e 'map(select(.state == "stale")) | length == 0' >/dev/null
}
t "a template whose image changed is not used, and prune removes it" stale

crash_build() {
        # s1's cold boot started a build for the changed image: kill the daemon during it
        wait_for 60 "a template build" sh -c "ls -d '$STATE'/templates/.building-* >/dev/null 2>&1" || { ls -la "$STATE/templates"; return 1; }
        local pid; pid=$(cat "$STATE/bangerd.lock")
        grep -q bangerd "/proc/$pid/cmdline" && kill -9 "$pid" || return 1
        wait_for 5 "bangerd to die" not alive "$pid" || return 1
        B ping >/dev/null 2>&1 || return 1
        wait_for 30 "the half-built template to go" sh -c "! ls -d '$STATE'/templates/.building-* >/dev/null 2>&1" || return 1
        ! ps -eo args | grep -q '[p]rocess=banger-tpl-' || { ps -eo pid,args | grep '[b]anger-tpl'; return 1; }
}
t "a daemon killed during a template build: the build's VMM and files are gone at the next start" crash_build

done_all() {
        local n; for n in c0 w1 w2 k1 s1; do B vm delete "$n" >/dev/null 2>&1 || return 1; done
        B template prune --all >/dev/null && expect_eq "$(B --json template list | jq length)" 0 &&
        [ -z "$(ns_vmms)" ] && [ -z "$(ns_taps)" ]
}
t "deletes; template prune --all; nothing left" done_all
finish
