#!/usr/bin/env bash
# Host network services with real VMs, all inside private namespaces: the
# `vm` DNS zone answered by bangerd (dig), and per-VM NAT in nftables'
# `inet banger` table towards an "uplink" namespace joined by a veth pair,
# where a listener runs. Nothing leaves the two namespaces.
. "$(dirname "$0")/lib.sh"
begin
vm_begin
t "kernel and slim image pulled (host namespace)" vm_prepare
S=(--image debian-bookworm-slim --vcpu 1 --memory 512)
UP="${NS}-up"
DIG=(ip netns exec "$NS" dig @127.0.0.1 -p 42069 +time=2 +tries=1)

listening() { ip netns exec "$UP" ss -ltn | grep -q 10.99.0.2:8080; }

uplink() {
        ip netns add "$UP" && ip netns exec "$UP" ip link set lo up || return 1
        ip link add "vu$$a" type veth peer name "vu$$b" || return 1
        ip link set "vu$$a" netns "$NS" && ip link set "vu$$b" netns "$UP" || return 1
        ip netns exec "$NS" ip addr add 10.99.0.1/24 dev "vu$$a" && ip netns exec "$NS" ip link set "vu$$a" up &&
        ip netns exec "$UP" ip addr add 10.99.0.2/24 dev "vu$$b" && ip netns exec "$UP" ip link set "vu$$b" up &&
        ip netns exec "$NS" ip route add default via 10.99.0.2 || return 1
        # the uplink knows no route back to the guests: only masqueraded traffic gets answers
        ip netns exec "$UP" python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("10.99.0.2", 8080)); s.listen(8)
while True:
    c, a = s.accept(); c.sendall(("hello-from-uplink " + a[0] + "\n").encode()); c.close()
' >/dev/null 2>&1 &
        echo $! >"$TMP/listener.pid"
        wait_for 5 "the uplink listener" listening
}
t "an uplink namespace behind a veth pair, with a TCP listener" uplink
trap 'kill "$(cat "$TMP/listener.pid" 2>/dev/null)" 2>/dev/null; ip netns delete "$UP" 2>/dev/null; vm_cleanup; cleanup' EXIT

dns() {
        B vm create --name dev "${S[@]}" >/dev/null 2>&1 || return 1
        expect_eq "$("${DIG[@]}" +short dev.vm)" 172.16.0.2 || return 1
        expect_eq "$("${DIG[@]}" +short DEV.Vm)" 172.16.0.2 || return 1
        expect_eq "$("${DIG[@]}" +tcp +short dev.vm)" 172.16.0.2 || return 1
        "${DIG[@]}" dev.vm AAAA | grep -q 'status: NOERROR.*' && "${DIG[@]}" dev.vm AAAA | grep -q 'ANSWER: 0' || return 1
        "${DIG[@]}" nope.vm | grep -q 'status: NXDOMAIN' || return 1
        "${DIG[@]}" example.com | grep -q 'status: REFUSED' || return 1
        B vm list | grep -q 'dev.vm' || { echo "vm list has no DNS column"; return 1; }
        # garbage does not hurt the responder
        ip netns exec "$NS" python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); [s.sendto(b, ("127.0.0.1", 42069)) for b in (b"", b"\x00", b"\xff"*11, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03de")]'
        expect_eq "$("${DIG[@]}" +short dev.vm)" 172.16.0.2 || return 1
        B vm stop dev >/dev/null 2>&1 || return 1
        "${DIG[@]}" dev.vm | grep -q 'status: NXDOMAIN' || return 1
        B vm start dev >/dev/null 2>&1 || return 1
        expect_eq "$("${DIG[@]}" +short dev.vm)" 172.16.0.2
}
t "dig @127.0.0.1 -p 42069: <name>.vm is the guest IP while running, NXDOMAIN after stop; AAAA empty, other zones REFUSED" dns

reach() { # vm -> prints what the uplink listener said, or nothing
        B vm ssh "$1" -- 'timeout 5 bash -c "exec 3<>/dev/tcp/10.99.0.2/8080 && cat <&3"' 2>/dev/null
}

nat() {
        B vm create --name natvm --nat "${S[@]}" >/dev/null 2>&1 || return 1
        local out; out=$(reach natvm)
        expect_eq "$out" "hello-from-uplink 10.99.0.1" || { echo "(masqueraded to the uplink address)"; return 1; }
        [ -z "$(reach dev)" ] || { echo "a VM without NAT reached the uplink"; return 1; }
        ip netns exec "$NS" nft list table inet banger >"$TMP/nft.txt" || return 1
        local id; id=$(B --json vm show natvm | jq -r .id)
        grep -q "ip saddr 172.16.0.3 oifname != \"br-fc\" masquerade comment \"banger-vm:$id\"" "$TMP/nft.txt" &&
                grep -q "iifname \"br-fc\" ip saddr 172.16.0.3 accept comment \"banger-vm:$id\"" "$TMP/nft.txt" || { cat "$TMP/nft.txt"; return 1; }
        expect_eq "$(ip netns exec "$NS" cat /proc/sys/net/ipv4/ip_forward)" 1
}
t "a --nat VM reaches the uplink (masqueraded); a VM without NAT does not" nat

antispoof() {
        B vm ssh dev -- 'ping -c1 -W2 172.16.0.1' >/dev/null || { echo "dev cannot reach the bridge with its own address"; return 1; }
        local out; out=$(B vm ssh dev -- 'ip addr add 172.16.0.99/24 dev eth0; ping -c1 -W2 -I 172.16.0.99 172.16.0.1 >/dev/null && echo spoofed; ip addr del 172.16.0.99/24 dev eth0')
        [ -z "$out" ] || { echo "a guest used an address that is not its own"; return 1; }
        ip netns exec "$NS" nft list table bridge banger | grep -q "ip saddr != 172.16.0.2 drop comment \"banger-vm:" || return 1
        ! ip link show 2>/dev/null | grep -q ' bg[0-9a-f]\{12\}[:@]' || { echo "a TAP in the host namespace"; return 1; }
}
t "every VM's port drops IPv4 and ARP from addresses other than its own" antispoof

nat_teardown() {
        B vm stop natvm >/dev/null 2>&1 || return 1
        ! ip netns exec "$NS" nft list table inet banger | grep -q 'banger-vm:' || { ip netns exec "$NS" nft list table inet banger; return 1; }
        B vm start natvm >/dev/null 2>&1 && [ -n "$(reach natvm)" ] || return 1
        local pid; pid=$(B --json vm show natvm | jq -r .pid)
        kill -9 "$pid"
        wait_for 10 "natvm to be marked stopped" state_is natvm stopped || return 1
        ! ip netns exec "$NS" nft list table inet banger | grep -q 'banger-vm:' || { echo "rules left after kill -9 of the VMM"; return 1; }
        B vm set natvm --no-nat >/dev/null && B vm start natvm >/dev/null 2>&1 || return 1
        [ -z "$(reach natvm)" ] || { echo "--no-nat VM still reaches the uplink"; return 1; }
        B vm stop natvm >/dev/null 2>&1 && B vm set natvm --nat >/dev/null && B vm start natvm >/dev/null 2>&1 || return 1
        # a daemon killed while a NAT VM runs, then the VM dies: reconcile removes its rules
        local dpid; dpid=$(cat "$STATE/bangerd.lock")
        kill -9 "$dpid" && wait_for 5 "bangerd to die" not alive "$dpid" || return 1
        local vmm; vmm=$(pgrep -f "process=banger-$(sqlite3 "$DB" "SELECT id FROM vms WHERE name = 'natvm'")" | head -1)
        kill -9 "$vmm" && wait_for 5 "natvm's VMM to die" not alive "$vmm" || return 1
        expect_eq "$(B --json vm show natvm | jq -r .state)" stopped || return 1
        ! ip netns exec "$NS" nft list table inet banger | grep -q 'banger-vm:'
}
t "NAT rules go on stop, on kill -9 of the VMM, with --no-nat, and on reconcile of a VM that died with the daemon" nat_teardown

stats_have_rates() { B --json vm stats dev | jq -e '(.guest.cpu_percent | type) == "number"'; }

stats_and_stale() {
        B vm delete natvm >/dev/null 2>&1 || { echo "delete natvm failed"; return 1; }
        B daemon stop >/dev/null || { echo "daemon stop failed"; return 1; }
        printf 'accel = "tcg"\nstats_poll_interval = "1s"\nauto_stop_stale_after = "5s"\n' >"$CONF"
        B vm restart dev >"$TMP/start.out" 2>&1 || { echo "restart failed"; cat "$TMP/start.out"; return 1; }
        # two samples (1 s apart) give rates
        wait_for 15 "a second stats sample" stats_have_rates || return 1
        B vm stats dev >"$TMP/stats.json" || { echo "vm stats failed"; return 1; }
        jq -e '.guest.memory.total_kib > 100000 and .guest.ncpu == 1 and (.guest.cpu_percent | type) == "number"
               and .host.rss_kib > 10000 and .host.cpu_time_ms > 0 and .disk.overlay_bytes > 0 and .disk.work_bytes > 0' \
                "$TMP/stats.json" >/dev/null || { cat "$TMP/stats.json"; return 1; }
        # no activity: the sweep stops it (stats do not count as activity)
        wait_for 30 "the stale sweep to stop dev" state_is dev stopped || return 1
        grep -q 'vm dev: idle for [0-9]* s (auto_stop_stale_after is 5 s): stopping it' "$LOG"
}
t "vm stats (guest CPU/memory from the agent, VMM RSS/CPU, disks); an idle VM is auto-stopped after auto_stop_stale_after" stats_and_stale

pool_idle() { [ "$(B --json ping | jq -r .tap_pool.idle)" = "$1" ]; }
pool_taps() { ip netns exec "$NS" ip -o link show master br-fc | awk -F': ' '{print $2}' | sed 's/@.*//' | grep '^tap-pool-' | sort; }
tap_pool() {
        B daemon stop >/dev/null || return 1
        printf 'accel = "tcg"\ntap_pool_size = 2\n' >"$CONF"
        B ping >/dev/null || return 1
        wait_for 10 "two idle TAPs" pool_idle 2 || return 1
        expect_eq "$(pool_taps | tr '\n' ' ')" "tap-pool-0 tap-pool-1 " || return 1
        B vm create --name pooled "${S[@]}" >/dev/null 2>&1 || return 1
        local tap; tap=$(B --json vm show pooled | jq -r .tap)
        expect_match "$tap" '^tap-pool-[01]$' || return 1
        wait_for 10 "the pool to be refilled" pool_idle 2 || return 1
        expect_eq "$(pool_taps | wc -l)" 3 || { echo "3 pool TAPs expected (2 idle, 1 in use)"; pool_taps; return 1; }
        B vm delete pooled >/dev/null 2>&1 || return 1
        expect_eq "$(pool_taps | wc -l)" 2 || { echo "a full pool keeps no extra TAP"; pool_taps; return 1; }
        # a restarted daemon adopts the idle TAPs: its pool is full without
        # making any, and a start takes one of them
        local before; before=$(pool_taps | tr '\n' ' ')
        B daemon stop >/dev/null && B ping >/dev/null || return 1
        wait_for 10 "a full pool after the restart" pool_idle 2 || return 1
        expect_eq "$(pool_taps | tr '\n' ' ')" "$before" || { echo "the restarted daemon made TAPs of its own"; return 1; }
        B vm create --name adopted "${S[@]}" >/dev/null 2>&1 || return 1
        local got; got=$(B --json vm show adopted | jq -r .tap)
        B vm delete adopted >/dev/null 2>&1 || return 1
        case " $before" in *" $got "*) ;; *) echo "the start took $got, not one of the adopted $before"; return 1 ;; esac
}
t "tap_pool_size = 2: two idle TAPs on the bridge, one taken by a start and refilled, seeded again after a restart" tap_pool

cleanup_all() {
        B vm delete dev >/dev/null || return 1
        [ -z "$(ns_taps | grep -v -e "^vu$$a$" -e '^tap-pool-')" ] || { echo "TAP left: $(ns_taps)"; return 1; }
        [ -z "$(ns_vmms)" ] || { echo "VMM left"; return 1; }
        ! ip netns exec "$NS" nft list table inet banger | grep -q 'banger-vm:' || return 1
        ! ip netns exec "$NS" nft list table bridge banger | grep -q 'banger-vm:' || { echo "address guards left"; return 1; }
        B doctor | grep -A1 '^PASS.leftovers' | grep -q 'no banger TAP or nft rule without its VM' || { B doctor; return 1; }
        ip netns exec "$NS" ip tuntap add bgdeadbeef0000 mode tap || return 1
        B doctor | grep -A1 '^WARN.leftovers' | grep -q 'TAP bgdeadbeef0000' || { B doctor; return 1; }
        ip netns exec "$NS" ip link delete bgdeadbeef0000
}
t "delete leaves no TAP, VMM or VM rule; doctor reports a stray banger TAP" cleanup_all

finish
