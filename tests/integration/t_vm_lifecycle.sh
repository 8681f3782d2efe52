#!/usr/bin/env bash
# The VM lifecycle on QEMU (TCG) in a private network namespace: create,
# ssh, persistence of /root across stop/start, two VMs on the bridge, a
# daemon killed with -9 (VMs survive and are re-adopted), a VMM killed with
# -9 (the VM is marked stopped and its TAP released), set, and delete
# leaving nothing behind.
. "$(dirname "$0")/lib.sh"
begin
vm_begin

t "kernel and slim image pulled (host namespace)" vm_prepare
SPEC=(--image debian-bookworm-slim --vcpu 1 --memory 512)

create_dev() {
        B vm create --name dev "${SPEC[@]}" >"$TMP/create.out" 2>&1 || { cat "$TMP/create.out"; return 1; }
        grep -q '^spec: 1 vcpu · 512 MiB · 8G disk$' "$TMP/create.out" || { cat "$TMP/create.out"; return 1; }
        for s in "resolve image" "prepare disks" network boot "wait for agent" "wait for ssh"; do
                grep -q "^  $s " "$TMP/create.out" || { echo "no stage '$s'"; cat "$TMP/create.out"; return 1; }
        done
        expect_eq "$(B --json vm show dev | jq -r .state)" running
}
t "vm create: stages with times, then running" create_dev

t "vm ssh dev -- cat /etc/hostname prints the name" sh -c '[ "$(ip netns exec '"$NS"' '"$BANGER"' vm ssh dev -- cat /etc/hostname)" = dev ]'

identity() {
        local j; j=$(B --json vm show dev)
        expect_eq "$(echo "$j" | jq -r .ip)" 172.16.0.2 || return 1
        expect_eq "$(echo "$j" | jq -r .dns_name)" dev.vm || return 1
        local pid tap; pid=$(echo "$j" | jq -r .pid); tap=$(echo "$j" | jq -r .tap)
        alive "$pid" && grep -q "banger-$(echo "$j" | jq -r .id)" "/proc/$pid/cmdline" || { echo "no VMM $pid"; return 1; }
        ip netns exec "$NS" ip -o link show "$tap" | grep -q 'master br-fc' || { echo "TAP $tap not on the bridge"; return 1; }
        ! ip link show "$tap" >/dev/null 2>&1 || { echo "TAP $tap leaked into the host namespace"; return 1; }
        grep -q '^dev.vm,172.16.0.2 ssh-ed25519 ' "$STATE/ssh/known_hosts"
}
t "address, dns name, VMM by pid+cmdline, TAP on the bridge inside the namespace, pinned host key" identity

proxy() {
        # the banner of the guest's sshd through stdin/stdout; NAME.vm is NAME
        expect_eq "$(B vm proxy dev.vm 22 </dev/null | head -c 4)" SSH- || return 1
        local rc=0; B vm proxy nope 22 </dev/null >"$TMP/px.out" 2>"$TMP/px.err" || rc=$?
        expect_eq "$rc" 1 && grep -q "vm 'nope' not found" "$TMP/px.err" && [ ! -s "$TMP/px.out" ] || return 1
        rc=0; B vm proxy dev 70000 </dev/null 2>/dev/null || rc=$?
        expect_eq "$rc" 2
}
t "vm proxy VM PORT joins stdin/stdout to the guest's port (NAME.vm accepted); unknown VM and bad port refused" proxy

ssh_dot_vm() {
        # plain OpenSSH with this test's HOME ($HOME/.ssh/config, read through -F:
        # ssh takes ~ from the password database) and no DNS for the vm zone
        B ssh-config --install >/dev/null || return 1
        grep -qF "ProxyCommand '$(realpath "$BANGER")' vm proxy %h %p" "$XDG_CONFIG_HOME/banger/ssh_config" ||
                { cat "$XDG_CONFIG_HOME/banger/ssh_config"; return 1; }
        ip netns exec "$NS" getent hosts dev.vm >/dev/null && echo "# note: dev.vm resolves here anyway"
        local o=(-F "$HOME/.ssh/config" -o BatchMode=yes -o ConnectTimeout=30)
        expect_eq "$(ip netns exec "$NS" ssh "${o[@]}" dev.vm cat /etc/hostname 2>"$TMP/sshvm.err")" dev ||
                { cat "$TMP/sshvm.err"; return 1; }
        # the pinned host key is still what is checked: with no pin, no login
        ! ip netns exec "$NS" ssh "${o[@]}" -o UserKnownHostsFile=/dev/null dev.vm true 2>"$TMP/sshvm.err" || return 1
        grep -q 'Host key verification failed' "$TMP/sshvm.err" || { cat "$TMP/sshvm.err"; return 1; }
        B ssh-config --uninstall >/dev/null
}
t "ssh NAME.vm after ssh-config --install: OpenSSH through 'banger vm proxy', host key checked against the pin" ssh_dot_vm

persist() {
        B vm ssh dev -- 'echo kept > /root/persist.txt' || return 1
        B vm stop dev >"$TMP/stop.out" 2>&1 || { cat "$TMP/stop.out"; return 1; }
        expect_eq "$(B --json vm show dev | jq -r .state)" stopped || return 1
        [ -z "$(ns_taps)" ] || { echo "TAP left: $(ns_taps)"; return 1; }
        [ -z "$(ns_vmms)" ] || { echo "VMM left: $(ns_vmms)"; return 1; }
        grep -aq 'stage=shutdown' "$STATE/vms/$(B --json vm show dev | jq -r .id)/console.log" || { echo "no clean guest shutdown"; return 1; }
        B vm start dev >/dev/null 2>&1 || return 1
        expect_eq "$(B vm ssh dev -- cat /root/persist.txt)" kept
}
t "a file written in /root survives vm stop (agent sync + poweroff) and vm start" persist

two_vms() {
        B vm create --name web "${SPEC[@]}" >/dev/null 2>&1 || return 1
        expect_eq "$(B --json vm show web | jq -r .ip)" 172.16.0.3 || return 1
        B vm ssh dev -- ping -c1 -W5 172.16.0.3 >/dev/null || { echo "dev cannot ping web"; return 1; }
        B vm ssh web -- ping -c1 -W5 172.16.0.2 >/dev/null || { echo "web cannot ping dev"; return 1; }
}
t "a second VM gets the next address; the two ping each other" two_vms

daemon_kill() {
        local dpid; dpid=$(cat "$STATE/bangerd.lock")
        kill -9 "$dpid"
        wait_for 30 "bangerd to die" not alive "$dpid" || return 1
        # the next command auto-starts a new daemon (in the namespace), which reconciles
        expect_eq "$(B --json vm list | jq -r '[.[] | .state] | join(",")')" running,running || return 1
        [ "$(cat "$STATE/bangerd.lock")" != "$dpid" ] || { echo "no new daemon"; return 1; }
        grep -q 'reconcile: vm dev is running' "$LOG" || return 1
        expect_eq "$(B vm ssh web -- hostname)" web
}
t "kill -9 of bangerd: VMs keep running, a new daemon re-adopts them" daemon_kill

vmm_kill() {
        local pid tap; pid=$(B --json vm show web | jq -r .pid); tap=$(B --json vm show web | jq -r .tap)
        kill -9 "$pid"
        wait_for 10 "web to be marked stopped" state_is web stopped || return 1
        ! ip netns exec "$NS" ip link show "$tap" >/dev/null 2>&1 || { echo "TAP $tap not released"; return 1; }
        [ "$(B --json vm show web | jq -r .pid)" = null ]
}
t "kill -9 of the VMM: the watcher marks the VM stopped and releases its TAP" vmm_kill

set_vm() {
        B vm set web --vcpu 2 --disk-size 9G >/dev/null || return 1
        ! B vm set web --disk-size 4G 2>"$TMP/shrink.err" && grep -q 'shrinking the work disk' "$TMP/shrink.err" || { cat "$TMP/shrink.err"; return 1; }
        ! B vm set dev --vcpu 2 2>"$TMP/running.err" && grep -q 'stop it first' "$TMP/running.err" || return 1
        ! B vm set web --vcpu 0 2>/dev/null || return 1
        B vm start web >/dev/null 2>&1 || return 1
        expect_eq "$(B vm ssh web -- nproc)" 2 || return 1
        local kb; kb=$(B vm ssh web -- df -k --output=size /root | tail -1)
        [ "$kb" -gt 8500000 ] || { echo "/root is $kb KiB"; return 1; }
}
t "vm set (stopped only): vcpu, growing the work disk (resize2fs); shrinking refused" set_vm

kill_signal() {
        B vm kill --signal TERM web >/dev/null || return 1
        expect_eq "$(B --json vm show web | jq -r .state)" stopped || return 1
        ! B vm kill web 2>"$TMP/kill.err" && grep -q 'not running' "$TMP/kill.err"
}
t "vm kill --signal TERM stops the VMM at once; killing a stopped VM is an error" kill_signal

logs_health() {
        B vm logs dev | grep -aq 'banger-init: stage=init-started' || return 1
        B vm health dev | grep -q 'sshd listening' || return 1
        B --json vm ports dev | jq -e '.[] | select(.port == 22 and .endpoint == "dev.vm:22")' >/dev/null
}
t "vm logs, vm health and vm ports (agent over virtio-serial)" logs_health

fanout() {
        B vm start web >/dev/null 2>&1 || return 1
        B vm stop dev web nope dev >"$TMP/fan.out" 2>"$TMP/fan.err" && { echo "an unknown ref must fail"; return 1; }
        expect_eq "$(cat "$TMP/fan.out")" "$(printf 'stopped dev\nstopped web')" || return 1
        grep -q "vm 'nope' not found" "$TMP/fan.err" || { cat "$TMP/fan.err"; return 1; }
        expect_eq "$(B --json vm list | jq -r '[.[] | .state] | join(",")')" stopped,stopped
}
t "vm stop with several refs: concurrent, deduplicated, in order, a bad ref reported" fanout

delete_all() {
        local ids; ids=$(B vm list -q | tr '\n' ' ')
        B vm start dev >/dev/null 2>&1 || return 1
        B vm delete dev web >/dev/null || return 1
        expect_eq "$(B --json vm list | jq length)" 0 || return 1
        [ -z "$(ns_taps)" ] || { echo "TAP left: $(ns_taps)"; return 1; }
        [ -z "$(ns_vmms)" ] || { echo "VMM left"; return 1; }
        [ -z "$(ls -A "$STATE/vms")" ] || { echo "files left: $(ls "$STATE/vms")"; return 1; }
        [ -z "$(ls -A "$XDG_RUNTIME_DIR/banger/vms")" ] || { echo "sockets left"; return 1; }
        [ ! -s "$STATE/ssh/known_hosts" ] || { echo "known_hosts entries left"; cat "$STATE/ssh/known_hosts"; return 1; }
        expect_eq "$(sqlite3 "$DB" 'SELECT count(*) FROM vms')" 0 || return 1
        [ -n "$ids" ]
}
t "vm delete (one running, one stopped) leaves no TAP, VMM, file, socket, known_hosts entry or row" delete_all

finish
