#!/usr/bin/env bash
# A user's snapshots of a running VM on real VMs: RAM, device state and
# disks at one instant (a file in RAM, on the root disk and on the work disk
# agree after a restore); restore of a running and of a stopped VM; the
# guest's clock set from the host; listing, removal, clear refusals; a fork
# (a new VM from a snapshot, re-identified); the snapshots go with their VM.
. "$(dirname "$0")/lib.sh"
begin
vm_begin
t "kernel and slim image pulled (host namespace)" vm_prepare
S=(--image debian-bookworm-slim --vcpu 1 --memory 512)
X() { B vm exec sn -- sh -c "$1" 2>>"$TMP/exec.err"; }

t "a VM to snapshot" B vm create --name sn "${S[@]}"
VMDIR=$(B --json vm show sn | jq -r .vm_dir)

take() {
        X 'echo ram-1 >/dev/shm/mark; echo work-1 >/root/work-file; echo root-1 >/etc/root-file; sync' || return 1
        B vm snapshot sn s1 >"$TMP/s1.out" 2>&1 || { cat "$TMP/s1.out"; return 1; }
        grep -q '^snapshot s1 of vm sn: .*; the guest was paused [0-9.]* s$' "$TMP/s1.out" || { cat "$TMP/s1.out"; return 1; }
        B --json vm snapshot list sn >"$TMP/l.json" &&
        jq -e 'length == 1 and .[0].name == "s1" and .[0].state_bytes > 1000000 and .[0].bytes > .[0].state_bytes
               and .[0].vcpu == 1 and .[0].memory_mib == 512' "$TMP/l.json" >/dev/null || { cat "$TMP/l.json"; return 1; }
        state_is sn running && X 'test -f /root/work-file' || return 1
        # nothing half-written left beside it
        expect_eq "$(ls -A "$VMDIR/snapshots")" s1
}
t "vm snapshot of a running VM: state and disks saved, the guest runs on" take

restore_running() {
        X 'echo ram-2 >/dev/shm/mark; echo work-2 >/root/work-file; echo after >/root/after; echo root-2 >/etc/root-file; sync' || return 1
        B vm restore sn s1 >"$TMP/r1.out" 2>&1 || { cat "$TMP/r1.out"; return 1; }
        grep -q '^restored vm sn from snapshot s1 (running)$' "$TMP/r1.out" || { cat "$TMP/r1.out"; return 1; }
        local got; got=$(X 'cat /dev/shm/mark /root/work-file /etc/root-file; test -e /root/after && echo after-still-there')
        expect_eq "$got" "$(printf 'ram-1\nwork-1\nroot-1')"
}
t "vm restore of a running VM: RAM, root disk and work disk are the snapshot's again" restore_running

clock() {
        local guest host; guest=$(X 'date +%s') && host=$(date +%s) || return 1
        [ $((host - guest)) -le 2 ] && [ $((guest - host)) -le 2 ] || { echo "guest $guest, host $host"; return 1; }
}
t "the restored guest's clock is the host's (within 2 s)" clock

restore_stopped() {
        B vm stop sn >/dev/null 2>&1 && state_is sn stopped || return 1
        B vm restore sn s1 >"$TMP/r2.out" 2>&1 || { cat "$TMP/r2.out"; return 1; }
        state_is sn running && expect_eq "$(X 'cat /dev/shm/mark')" ram-1 || return 1
        # the network and sshd work, with the host key banger pinned
        expect_eq "$(B vm ssh sn -- cat /dev/shm/mark 2>"$TMP/ssh.err")" ram-1 || { cat "$TMP/ssh.err"; return 1; }
}
t "vm restore of a stopped VM: it runs again from the snapshot; vm ssh works (pinned key)" restore_stopped

refusals() {
        local rc=0
        B vm restore sn nope >"$TMP/e1" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "not_found: .*vm sn has no snapshot 'nope'" "$TMP/e1" || { cat "$TMP/e1"; return 1; }
        rc=0; B vm snapshot sn s1 >"$TMP/e2" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "already has a snapshot 's1'" "$TMP/e2" || { cat "$TMP/e2"; return 1; }
        rc=0; B vm snapshot sn ../x >"$TMP/e3" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "bad_request: invalid snapshot name '../x'" "$TMP/e3" || { cat "$TMP/e3"; return 1; }
        B vm stop sn >/dev/null 2>&1 || return 1
        rc=0; B vm snapshot sn s2 >"$TMP/e4" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "vm sn is not running (state stopped); snapshots are taken of running VMs" "$TMP/e4" ||
                { cat "$TMP/e4"; return 1; }
        B vm set sn --memory 640 >/dev/null 2>&1 || return 1
        rc=0; B vm restore sn s1 >"$TMP/e5" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "taken with 1 vCPU and 512 MiB; vm sn has 1 and 640 now" "$TMP/e5" || { cat "$TMP/e5"; return 1; }
        state_is sn stopped && B vm set sn --memory 512 >/dev/null 2>&1 &&
        expect_eq "$(ls -A "$VMDIR/snapshots")" s1
}
t "clear refusals: no such snapshot, a taken name, a bad name, a stopped VM, another memory size" refusals

named() {
        B vm start sn >/dev/null 2>&1 || return 1
        B --json vm snapshot sn >"$TMP/auto.json" 2>/dev/null || return 1
        jq -e '.name | test("^snap-[0-9]{8}-[0-9]{6}$")' "$TMP/auto.json" >/dev/null || { cat "$TMP/auto.json"; return 1; }
        local name; name=$(jq -r .name "$TMP/auto.json")
        B vm snapshot list sn >"$TMP/list.txt" || return 1
        grep -q '^NAME ' "$TMP/list.txt" && grep -q "^s1 " "$TMP/list.txt" && grep -q "^$name " "$TMP/list.txt" ||
                { cat "$TMP/list.txt"; return 1; }
        B vm snapshot rm sn "$name" >"$TMP/rm.out" || return 1
        grep -q "^removed snapshot $name of vm sn (freed " "$TMP/rm.out" && [ ! -e "$VMDIR/snapshots/$name" ]
}
t "vm snapshot without a name: snap-<UTC time>; list; rm frees it" named

Y() { local vm="$1"; shift; B vm exec "$vm" -- sh -c "$1" 2>>"$TMP/exec.err"; }
forked() {
        B vm create --name fk --from-snapshot sn:s1 >"$TMP/fk.out" 2>&1 || { cat "$TMP/fk.out"; tail -20 "$LOG"; return 1; }
        grep -q 'fork' "$TMP/fk.out" && grep -q 'identity' "$TMP/fk.out" || { cat "$TMP/fk.out"; return 1; }
        expect_eq "$(B --json vm show fk | jq -r .boot)" forked || return 1
        # the snapshot's RAM and disks, its own identity
        expect_eq "$(Y fk 'cat /dev/shm/mark /root/work-file /etc/root-file; hostname')" "$(printf 'ram-1\nwork-1\nroot-1\nfk')" ||
                { cat "$TMP/exec.err"; return 1; }
        local ip mac; ip=$(B --json vm show fk | jq -r .ip) mac=$(B --json vm show fk | jq -r .mac)
        expect_eq "$(Y fk 'ip -4 -o addr show eth0 | awk "{print \$4}"')" "$ip/24" &&
        expect_eq "$(Y fk 'cat /sys/class/net/eth0/address')" "$mac" || return 1
        [ "$(Y fk 'cat /etc/ssh/ssh_host_ed25519_key.pub')" != "$(Y sn 'cat /etc/ssh/ssh_host_ed25519_key.pub')" ] &&
        [ "$(Y fk 'cat /etc/machine-id')" != "$(Y sn 'cat /etc/machine-id' 2>/dev/null)" ] || { echo "fk shares sn's identity"; return 1; }
        # the source runs on, as itself; the two reach each other; ssh with the fork's pinned key
        expect_eq "$(Y sn hostname)" sn &&
        Y fk "timeout 5 bash -c 'echo > /dev/tcp/$(B --json vm show sn | jq -r .ip)/22'" &&
        Y sn "timeout 5 bash -c 'echo > /dev/tcp/$ip/22'" || { echo "no way between sn and fk"; return 1; }
        expect_eq "$(B vm ssh fk -- hostname 2>"$TMP/ssh.err")" fk || { cat "$TMP/ssh.err"; return 1; }
        local rc=0
        B vm create --name fk2 --from-snapshot sn:s1 --memory 1G >"$TMP/f1" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "bad_request: a fork (--from-snapshot) takes the snapshot's image" "$TMP/f1" || { cat "$TMP/f1"; return 1; }
        rc=0; B vm create --name fk2 --from-snapshot sn >"$TMP/f2" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "wants VM:NAME" "$TMP/f2" || { cat "$TMP/f2"; return 1; }
        rc=0; B vm create --name fk2 --from-snapshot sn:nope >"$TMP/f3" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "not_found: vm sn has no snapshot 'nope'" "$TMP/f3" || { cat "$TMP/f3"; return 1; }
        B vm delete fk >/dev/null 2>&1 && expect_eq "$(B --json vm list | jq length)" 1
}
t "vm create --from-snapshot (a fork): the snapshot's RAM and disks, its own hostname, address, MAC, host key" forked

gone() {
        B vm delete sn >/dev/null 2>&1 || return 1
        [ ! -e "$VMDIR" ] || { ls -la "$VMDIR"; return 1; }
        [ -z "$(ns_vmms)" ] && [ -z "$(ns_taps)" ]
}
t "the snapshots go with their VM" gone
finish
