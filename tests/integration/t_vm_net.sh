#!/usr/bin/env bash
# Host network services with real VMs, all inside private namespaces: the
# `vm` DNS zone answered by bangerd (dig), per-VM NAT in nftables'
# `inet banger` table towards an "uplink" namespace joined by a veth pair,
# where a listener runs, and the guard: guests that spoof MACs, ARP and
# addresses, speak IPv6, open connections to the host or to an isolated VM,
# each against the rule that stops it. Nothing leaves the two namespaces.
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
trap 'kill "$(cat "$TMP/listener.pid" "$TMP/host-listener.pid" 2>/dev/null)" 2>/dev/null; ip netns delete "$UP" 2>/dev/null; vm_cleanup; cleanup' EXIT

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

# ---- port forwards: host ports relayed by bangerd to guest ports --------------
# The guest's echo servers are perl (the slim image has no python or nc):
# TCP answers each line upper-cased, UDP each datagram.
guest_echo() {
        B vm ssh dev -- "nohup perl -MIO::Socket::INET -e '\$s = IO::Socket::INET->new(LocalPort => 7000, Listen => 5, ReuseAddr => 1) or die;
                while (\$c = \$s->accept) { while (<\$c>) { print \$c uc } close \$c }' >/dev/null 2>&1 </dev/null &
                nohup perl -MIO::Socket::INET -e '\$s = IO::Socket::INET->new(LocalPort => 7001, Proto => \"udp\") or die;
                while (\$s->recv(\$b, 2048)) { \$s->send(uc \$b) }' >/dev/null 2>&1 </dev/null &" || return 1
        wait_for 20 "the guest's echo servers" B vm ssh dev -- 'ss -ltn | grep -q :7000 && ss -lun | grep -q :7001'
}
# tcp_echo HOST PORT: what the TCP echo says to "hello" (the client half-closes first)
tcp_echo() {
        ip netns exec "$NS" "$PY" -c '
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
c.sendall(b"hello through\n"); c.shutdown(socket.SHUT_WR)
out = b""
while True:
    d = c.recv(4096)
    if not d: break
    out += d
sys.stdout.write(out.decode())' "$1" "$2" 2>&1
}
udp_echo() {
        ip netns exec "$NS" "$PY" -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
for _ in range(5):
    s.sendto(b"ping", (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recv(100).decode()); break
    except socket.timeout:
        pass' "$1" "$2" 2>&1
}
fwd_rows() { sqlite3 "$DB" "SELECT count(*) FROM vm_forwards"; }
tcp_listens() { ip netns exec "$NS" ss -Hltn "sport = :$1" | grep -q .; }
udp_listens() { ip netns exec "$NS" ss -Hlun "sport = :$1" | grep -q .; }

forwards() {
        guest_echo || return 1
        B vm forward dev 17000:7000 17001:7001/udp >"$TMP/fwd.out" 2>&1 || { cat "$TMP/fwd.out"; return 1; }
        grep -q '127.0.0.1:17000 -> guest port 7000 (open)' "$TMP/fwd.out" || { cat "$TMP/fwd.out"; return 1; }
        expect_eq "$(tcp_echo 127.0.0.1 17000)" "HELLO THROUGH" || return 1
        expect_eq "$(udp_echo 127.0.0.1 17001)" PING || return 1
        # 127.0.0.1 by default: nothing on the namespace's other addresses
        tcp_echo 172.16.0.1 17000 | grep -q 'refused' || { echo "the forward answers on the bridge address"; return 1; }
        # listed, shown, and next to the guest port it serves
        B --json vm forward --list dev | jq -e 'length == 2 and all(.open) and .[0].vm == "dev"' >/dev/null || return 1
        B --json vm forward --list | jq -e 'length == 2' >/dev/null || return 1
        B vm show dev | grep -q 'forwards:     tcp 127.0.0.1:17000 -> guest port 7000 (open)' || { B vm show dev; return 1; }
        B --json vm ports dev | jq -e '.[] | select(.port == 7000 and .proto == "tcp") | .forwarded_from == ["127.0.0.1:17000"]' \
                >/dev/null || { B --json vm ports dev; return 1; }
}
t "vm forward: a host port on 127.0.0.1 relays TCP (both ways, half-close) and UDP to the guest, nowhere else" forwards

forward_refusals() {
        local ok=0
        # a host port some VM has already; one another program listens on
        B vm forward dev 17000:22 >"$TMP/e1" 2>&1 && { echo "a second forward of 17000"; ok=1; }
        grep -q 'forwarded to vm dev already\|forwards tcp port 17000 on 127.0.0.1 already' "$TMP/e1" || { cat "$TMP/e1"; ok=1; }
        # 0.0.0.0 takes 127.0.0.1 too: the wildcard clashes with dev's udp 17001
        B vm forward dev 0.0.0.0:17001:9/udp >"$TMP/e0" 2>&1 && { echo "a wildcard over a forwarded port"; ok=1; }
        grep -q 'vm dev forwards udp port 17001 on 127.0.0.1 already' "$TMP/e0" || { cat "$TMP/e0"; ok=1; }
        ip netns exec "$NS" "$PY" -c 'import socket, time; s = socket.socket(); s.bind(("127.0.0.1", 17500)); s.listen(1); time.sleep(60)' &
        local busy=$!
        wait_for 5 "the other program's listener" tcp_listens 17500 || ok=1
        B vm forward dev 17500:22 >"$TMP/e2" 2>&1 && { echo "a forward of a port in use"; ok=1; }
        grep -q 'port 17500 on 127.0.0.1 is in use by another program' "$TMP/e2" || { cat "$TMP/e2"; ok=1; }
        # --publish is checked before anything exists
        B vm create --name pubvm --no-start --publish 17500:80 "${S[@]}" >"$TMP/e3" 2>&1 && ok=1
        grep -q 'in use by another program' "$TMP/e3" || { cat "$TMP/e3"; ok=1; }
        B vm create --name pubvm --no-start --publish 127.0.0.1:17000:80 "${S[@]}" >"$TMP/e4" 2>&1 && ok=1
        grep -q 'forwarded to vm dev already' "$TMP/e4" || { cat "$TMP/e4"; ok=1; }
        B vm create --name pubvm --no-start -p 18080:80 -p 18080:81 "${S[@]}" >"$TMP/e5" 2>&1 && ok=1
        grep -q 'published twice' "$TMP/e5" || { cat "$TMP/e5"; ok=1; }
        B vm create --name pubvm --no-start --publish 99999:80 "${S[@]}" >"$TMP/e6" 2>&1
        expect_eq $? 2 || ok=1
        B vm forward dev 192.0.2.1:17600:22 >"$TMP/e7" 2>&1 && ok=1
        grep -q 'not an address of this host' "$TMP/e7" || { cat "$TMP/e7"; ok=1; }
        kill "$busy" 2>/dev/null; wait "$busy" 2>/dev/null
        expect_eq "$(sqlite3 "$DB" "SELECT count(*) FROM vms WHERE name = 'pubvm'")" 0 || ok=1
        expect_eq "$(fwd_rows)" 2 || ok=1
        # a stopped VM keeps its forwards, closed; its delete takes them along
        B vm create --name pubvm --no-start --publish 18080:80 --publish '[::1]:18081:81' "${S[@]}" >/dev/null 2>&1 || ok=1
        B --json vm forward -l pubvm | jq -e 'length == 2 and (map(.open) | any | not)' >/dev/null || ok=1
        ! tcp_listens 18080 || { echo "a stopped VM's forward listens"; ok=1; }
        B vm delete pubvm >/dev/null 2>&1 || ok=1
        expect_eq "$(fwd_rows)" 2 || ok=1
        return $ok
}
t "forwards refused with a clear error (port a VM's, on its address or the wildcard; in use; twice; not a host address; bad spec = usage error); no row left" forward_refusals

forward_restart() {
        B daemon stop >/dev/null || return 1
        # the VM runs on; its forwards pause with the daemon ...
        ! tcp_listens 17000 || { echo "17000 listens with no daemon"; return 1; }
        B ping >/dev/null || return 1
        # ... and come back when it adopts the VM
        wait_for 10 "17000 to listen again" tcp_listens 17000 || return 1
        expect_eq "$(tcp_echo 127.0.0.1 17000)" "HELLO THROUGH" || return 1
        B vm forward --rm dev 17000 | grep -q 'removed tcp 127.0.0.1:17000' || return 1
        ! tcp_listens 17000 || { echo "17000 still listens after rm"; return 1; }
        B vm forward --rm dev 17000 >"$TMP/rm.out" 2>&1 && return 1
        grep -q 'no port forward matching 17000' "$TMP/rm.out" || { cat "$TMP/rm.out"; return 1; }
        udp_listens 17001 && expect_eq "$(fwd_rows)" 1
}
t "forwards pause while the daemon is down and come back when it adopts the VM; vm forward --rm closes one" forward_restart

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

# (guests reach no host address: another guest is the peer here)
antispoof() {
        B vm ssh dev -- 'ping -c1 -W2 172.16.0.3' >/dev/null || { echo "dev cannot reach natvm with its own address"; return 1; }
        local out; out=$(B vm ssh dev -- 'ip addr add 172.16.0.99/24 dev eth0; ping -c1 -W2 -I 172.16.0.99 172.16.0.3 >/dev/null && echo spoofed; ip addr del 172.16.0.99/24 dev eth0')
        [ -z "$out" ] || { echo "a guest used an address that is not its own"; return 1; }
        ip netns exec "$NS" nft list table bridge banger | grep -q "ip saddr != 172.16.0.2 drop comment \"banger-vm:" || return 1
        ! ip link show 2>/dev/null | grep -q ' bg[0-9a-f]\{12\}[:@]' || { echo "a TAP in the host namespace"; return 1; }
}
t "every VM's port drops IPv4 and ARP from addresses other than its own" antispoof

# ---- the guard: one test per rule, each with a guest that tries to break it ----
# The slim image has perl but no python3, nc or tcpdump: raw frames come from
# these two (AF_PACKET = 17, SOCK_RAW = 3).
cat >"$TMP/arp.pl" <<'EOF'
# perl arp.pl IFACE SHA SPA TPA: one broadcast ARP request from IFACE's own
# MAC whose sender hardware address is SHA
my ($if, $sha, $spa, $tpa) = @ARGV;
my $idx = do { open my $f, "<", "/sys/class/net/$if/ifindex" or die; <$f> + 0 };
my $src = do { open my $f, "<", "/sys/class/net/$if/address" or die; my $a = <$f>; chomp $a; $a };
my $m = sub { pack "H12", join "", split /:/, $_[0] };
my $ip = sub { pack "C4", split /\./, $_[0] };
my $fr = ("\xff" x 6) . $m->($src) . pack("n", 0x0806) . pack("nnCCn", 1, 0x0800, 6, 4, 1)
       . $m->($sha) . $ip->($spa) . ("\0" x 6) . $ip->($tpa);
socket(my $s, 17, 3, 0) or die "socket: $!";
send($s, $fr, 0, pack("S n i S C C a8", 17, 0x0806, $idx, 1, 0, 6, "\xff" x 6)) or die "send: $!";
EOF
cat >"$TMP/sniff.pl" <<'EOF'
# perl sniff.pl IFACE MAC STOPFILE: prints "ready", then, once STOPFILE
# exists, how many frames for MAC arrived on IFACE
my ($if, $mac, $stop) = @ARGV;
$| = 1;
my $idx = do { open my $f, "<", "/sys/class/net/$if/ifindex" or die; <$f> + 0 };
my $want = pack "H12", join "", split /:/, $mac;
socket(my $s, 17, 3, 0x0300) or die "socket: $!";
bind($s, pack("S n i S C C a8", 17, 3, $idx, 0, 0, 0, "")) or die "bind: $!";
print "ready\n";
my $n = 0;
until (-e $stop) {
        my $rin = ""; vec($rin, fileno($s), 1) = 1;
        next unless select($rin, undef, undef, 0.2) > 0;
        recv($s, my $buf, 65536, 0);
        $n++ if substr($buf, 0, 6) eq $want;
}
print "$n\n";
EOF
to_guest() { B vm ssh "$1" -- "cat >/tmp/$2" <"$TMP/$2"; }
field() { B --json vm show "$1" | jq -r ".$2"; }
# host -> guest: sshd's banner over TCP within ${2:-10} s (TCG guests on a busy host can be slow)
sshd_answers() { expect_eq "$(ip netns exec "$NS" timeout "${2:-10}" bash -c "exec 3<>/dev/tcp/$1/22 && head -c 7 <&3")" SSH-2.0; }
on_port() { ip netns exec "$NS" bridge fdb show br br-fc | grep -i "^$1 dev $2 "; }

mac_takeover() {
        local dmac nmac dtap ntap
        dmac=$(field dev mac) nmac=$(field natvm mac) dtap=$(field dev tap) ntap=$(field natvm tap)
        sshd_answers 172.16.0.2 && on_port "$dmac" "$dtap" >/dev/null || { echo "dev is not where it should be to start with"; return 1; }
        # natvm takes dev's MAC for 15 s, broadcasting all along (its own
        # ssh session cannot survive that), then takes its own back
        B vm ssh natvm -- "nohup sh -c 'ip link set dev eth0 down; ip link set dev eth0 address $dmac; ip link set eth0 up;
                ping -b -i 0.05 -w 15 172.16.0.255; ip link set dev eth0 down; ip link set dev eth0 address $nmac;
                ip link set eth0 up; ip route replace default via 172.16.0.1' >/dev/null 2>&1 </dev/null &" || return 1
        wait_for 10 "natvm to wear dev's MAC" not sshd_answers 172.16.0.3 2 || return 1
        local i ok=0
        for i in 1 2 3; do
                sshd_answers 172.16.0.2 || { echo "dev unreachable while natvm has its MAC ($i)"; ok=1; }
        done
        expect_eq "$(B vm ssh dev -- echo still-dev 2>/dev/null)" still-dev || ok=1
        ! on_port "$dmac" "$ntap" || { echo "the bridge learnt dev's MAC on natvm's port"; ok=1; }
        wait_for 40 "natvm to take its own MAC back" sshd_answers 172.16.0.3 || return 1
        on_port "$dmac" "$dtap" >/dev/null || { echo "dev's MAC is not on dev's port"; ok=1; }
        expect_eq "$(B vm ssh natvm -- echo natvm-back 2>/dev/null)" natvm-back || ok=1
        return $ok
}
t "a guest wearing another VM's MAC takes none of its traffic: the bridge never learns it from the spoofer's port" mac_takeover

arp_sender() {
        local dmac nmac; dmac=$(field dev mac) nmac=$(field natvm mac)
        to_guest dev arp.pl || return 1
        # no lock time: an ARP that gets through changes the host's entry at once
        ip netns exec "$NS" sysctl -qw net.ipv4.neigh.br-fc.locktime=0 || return 1
        expect_eq "$(ip netns exec "$NS" ip neigh show 172.16.0.2 dev br-fc | awk '{print $3}')" "$dmac" || return 1
        # dev's own MAC and IP on the frame, natvm's MAC as ARP sender: the
        # host would send dev's traffic to natvm. The host handles a frame
        # before the guest's later ones (one queue), so by the time ssh
        # returns it has seen it.
        B vm ssh dev -- "perl /tmp/arp.pl eth0 $nmac 172.16.0.2 172.16.0.1" || return 1
        local got; got=$(ip netns exec "$NS" ip neigh show 172.16.0.2 dev br-fc | awk '{print $3}')
        [ "$got" = "$dmac" ] || { echo "the host now has 172.16.0.2 at $got"; ip netns exec "$NS" ip neigh del 172.16.0.2 dev br-fc; return 1; }
}
t "ARP from a guest must name its own MAC as the sender (the host's neighbour entry stays)" arp_sender

flooded() {
        local dmac dtap; dmac=$(field dev mac) dtap=$(field dev tap)
        to_guest natvm sniff.pl || return 1
        B vm ssh natvm -- "rm -f /tmp/sniff.stop; ip link set eth0 promisc on; perl /tmp/sniff.pl eth0 $dmac /tmp/sniff.stop; ip link set eth0 promisc off" >"$TMP/sniff.out" 2>&1 &
        local sniffer=$! i ok=0
        wait_for 20 "natvm's sniffer" grep -q ready "$TMP/sniff.out" || { kill "$sniffer"; return 1; }
        # the bridge forgets where dev is: the next frame for it is flooded to every port
        for i in 1 2 3; do
                ip netns exec "$NS" bridge fdb del "$dmac" dev "$dtap" master 2>/dev/null
                sshd_answers 172.16.0.2 || ok=1
        done
        B vm ssh natvm -- touch /tmp/sniff.stop || ok=1
        wait "$sniffer"
        expect_eq "$(tail -1 "$TMP/sniff.out")" 0 || { echo "(frames for dev that reached natvm in promiscuous mode)"; ok=1; }
        return $ok
}
t "unicast for another VM's MAC never reaches a guest, not even when the bridge floods it" flooded

ipv6_none() {
        local hll dll nll
        hll=$(ip netns exec "$NS" ip -6 -o addr show dev br-fc scope link | awk '{print $4}' | cut -d/ -f1)
        dll=$(B vm ssh dev -- ip -6 -o addr show dev eth0 scope link | awk '{print $4}' | cut -d/ -f1)
        nll=$(B vm ssh natvm -- ip -6 -o addr show dev eth0 scope link | awk '{print $4}' | cut -d/ -f1)
        [ -n "$hll" ] && [ -n "$dll" ] && [ -n "$nll" ] || { echo "link-local addresses missing: host '$hll' dev '$dll' natvm '$nll'"; return 1; }
        local out; out=$(B vm ssh dev -- "ping -6 -c1 -W2 $hll%eth0 >/dev/null && echo host-ping &
                ping -6 -c1 -W2 $nll%eth0 >/dev/null && echo guest-ping &
                timeout 2 bash -c 'exec 3<>/dev/tcp/$hll%eth0/18080 && cat <&3' 2>/dev/null & wait")
        [ -z "$out" ] || { echo "IPv6 from a guest got through: $out"; return 1; }
}

# host services: a dual-stack listener on every address of the namespace
host_listening() { ip netns exec "$NS" ss -ltn | grep -q '\*:18080'; }
host_listener() {
        ip netns exec "$NS" "$PY" -c '
import socket
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0); s.bind(("::", 18080)); s.listen(8)
while True:
    c, a = s.accept(); c.sendall(b"hello-from-host\n"); c.close()
' >/dev/null 2>&1 &
        echo $! >"$TMP/host-listener.pid"
        wait_for 5 "the host's listener" host_listening || return 1
        expect_eq "$(ip netns exec "$NS" timeout 3 bash -c 'exec 3<>/dev/tcp/172.16.0.1/18080 && cat <&3')" hello-from-host
}
t "a listener on the host's every address ([::]:18080, dual stack)" host_listener
t "no IPv6 from guests: neither the host's link-local address on the bridge nor another guest's answers" ipv6_none

guest_to_host() {
        local vm out ok=0
        for vm in dev natvm; do
                out=$(B vm ssh "$vm" -- 'for a in 172.16.0.1 10.99.0.1; do
                        timeout 2 bash -c "exec 3<>/dev/tcp/$a/18080 && cat <&3" 2>/dev/null &
                done; ping -c1 -W2 172.16.0.1 >/dev/null && echo ping-answered & wait')
                [ -z "$out" ] || { echo "$vm reached the host: $out"; ok=1; }
        done
        # what must keep working: the host into the guests, NAT out of them
        expect_eq "$(B vm ssh dev -- echo dev-here 2>/dev/null)" dev-here || ok=1
        expect_eq "$(reach natvm)" "hello-from-uplink 10.99.0.1" || ok=1
        return $ok
}
t "guests open no connection to the host, on the bridge address or another (10.99.0.1); ssh in and NAT out still work" guest_to_host

pings() { B vm ssh "$1" -- "ping -c1 -W2 $2" >/dev/null 2>&1; }
hairpin() { # vm peer: route the peer through the host (no redirects taken)
        B vm ssh "$1" -- "sysctl -qw net.ipv4.conf.all.accept_redirects=0 net.ipv4.conf.eth0.accept_redirects=0;
                ip neigh del $2 dev eth0 2>/dev/null; ip route replace $2/32 via 172.16.0.1"
}
isolation() {
        pings dev 172.16.0.3 && pings natvm 172.16.0.2 || { echo "two default VMs do not reach each other"; return 1; }
        B vm create --name iso --isolate "${S[@]}" >/dev/null 2>&1 || return 1
        expect_eq "$(field iso isolate)" true && expect_eq "$(field iso ip)" 172.16.0.4 || return 1
        B vm show iso | grep -q 'isolate on' || { B vm show iso; return 1; }
        local tap; tap=$(field iso tap)
        expect_eq "$(ip netns exec "$NS" nft list chain bridge banger forward | grep -cE "(iifname|oifname) \"$tap\" drop")" 2 &&
                expect_eq "$(ip netns exec "$NS" nft list chain inet banger isolate | grep -c '172.16.0.4 drop')" 2 ||
                { ip netns exec "$NS" nft list ruleset; return 1; }
        local ok=0
        B vm ssh dev -- 'ip neigh del 172.16.0.4 dev eth0 2>/dev/null' </dev/null
        ! pings dev 172.16.0.4 || { echo "dev reached iso"; ok=1; }
        ! pings iso 172.16.0.2 || { echo "iso reached dev"; ok=1; }
        # not even ARP crosses: dev never learns iso's MAC
        ! B vm ssh dev -- ip neigh show 172.16.0.4 | grep -q lladdr || { echo "dev resolved iso's MAC"; ok=1; }
        # nor through the host's routing, forwarding on (a NAT VM turns it on)
        ip netns exec "$NS" sysctl -qw net.ipv4.ip_forward=1 && hairpin dev 172.16.0.4 && hairpin iso 172.16.0.2 || return 1
        ! pings dev 172.16.0.4 || { echo "dev reached iso through the host"; ok=1; }
        ! pings iso 172.16.0.2 || { echo "iso reached dev through the host"; ok=1; }
        B vm ssh dev -- 'ip route del 172.16.0.4/32' || ok=1
        sshd_answers 172.16.0.4 || { echo "the host cannot reach iso"; ok=1; }
        # stopped VMs only; back to the default
        B vm set iso --no-isolate >"$TMP/set.out" 2>&1 && { echo "set on a running VM"; ok=1; }
        grep -q 'stop it first' "$TMP/set.out" || { cat "$TMP/set.out"; ok=1; }
        B vm stop iso >/dev/null 2>&1 && B vm set iso --no-isolate >/dev/null && B vm start iso >/dev/null 2>&1 || return 1
        expect_eq "$(field iso isolate)" false || ok=1
        ! ip netns exec "$NS" nft list ruleset | grep -E "(iifname|oifname) \"$(field iso tap)\" drop" || ok=1
        pings dev 172.16.0.4 && pings iso 172.16.0.2 || { echo "--no-isolate did not restore guest to guest"; ok=1; }
        B vm delete iso >/dev/null 2>&1 || ok=1
        return $ok
}
t "guests reach each other by default; --isolate cuts one off both ways (ARP, IPv4, through the host); --no-isolate restores it" isolation

# (dev keeps its guard in `inet banger` meanwhile: natvm's rules are the ones to go)
natvm_rules() { ip netns exec "$NS" nft list table "$1" banger | grep -q "banger-vm:$(sqlite3 "$DB" "SELECT id FROM vms WHERE name = 'natvm'")"; }
nat_teardown() {
        B vm stop natvm >/dev/null 2>&1 || return 1
        ! natvm_rules inet && ! natvm_rules bridge || { ip netns exec "$NS" nft list ruleset; return 1; }
        B vm start natvm >/dev/null 2>&1 && [ -n "$(reach natvm)" ] || return 1
        local pid; pid=$(B --json vm show natvm | jq -r .pid)
        kill -9 "$pid"
        wait_for 10 "natvm to be marked stopped" state_is natvm stopped || return 1
        ! natvm_rules inet && ! natvm_rules bridge || { echo "rules left after kill -9 of the VMM"; return 1; }
        B vm set natvm --no-nat >/dev/null && B vm start natvm >/dev/null 2>&1 || return 1
        [ -z "$(reach natvm)" ] || { echo "--no-nat VM still reaches the uplink"; return 1; }
        natvm_rules bridge && natvm_rules inet || { echo "natvm without NAT has no guard"; return 1; }
        B vm stop natvm >/dev/null 2>&1 && B vm set natvm --nat >/dev/null && B vm start natvm >/dev/null 2>&1 || return 1
        # a daemon killed while a NAT VM runs, then the VM dies: reconcile removes its rules
        local dpid; dpid=$(cat "$STATE/bangerd.lock")
        kill -9 "$dpid" && wait_for 5 "bangerd to die" not alive "$dpid" || return 1
        local vmm; vmm=$(pgrep -f "process=banger-$(sqlite3 "$DB" "SELECT id FROM vms WHERE name = 'natvm'")" | head -1)
        kill -9 "$vmm" && wait_for 5 "natvm's VMM to die" not alive "$vmm" || return 1
        expect_eq "$(B --json vm show natvm | jq -r .state)" stopped || return 1
        ! natvm_rules inet && ! natvm_rules bridge
}
t "NAT rules go on stop, on kill -9 of the VMM, with --no-nat, and on reconcile of a VM that died with the daemon" nat_teardown

stats_have_rates() { B --json vm stats dev | jq -e '(.guest.cpu_percent | type) == "number"'; }

stats_and_stale() {
        B vm delete natvm >/dev/null 2>&1 || { echo "delete natvm failed"; return 1; }
        B daemon stop >/dev/null || { echo "daemon stop failed"; return 1; }
        printf 'accel = "tcg"\nwarm_start = "off"\nstats_poll_interval = "1s"\nauto_stop_stale_after = "5s"\n' >"$CONF"
        B vm restart dev >"$TMP/start.out" 2>&1 || { echo "restart failed"; cat "$TMP/start.out"; return 1; }
        # two samples (1 s apart) give rates
        wait_for 15 "a second stats sample" stats_have_rates || return 1
        B vm stats dev >"$TMP/stats.json" || { echo "vm stats failed"; return 1; }
        jq -e '.guest.memory.total_kib > 100000 and .guest.ncpu == 1 and (.guest.cpu_percent | type) == "number"
               and .host.rss_kib > 10000 and .host.cpu_time_ms > 0 and .disk.overlay_bytes > 0 and .disk.work_bytes > 0' \
                "$TMP/stats.json" >/dev/null || { cat "$TMP/stats.json"; return 1; }
        # no activity: the sweep stops it (stats do not count as activity)
        # the forward recorded earlier opened with the start
        udp_listens 17001 || { echo "dev's recorded forward did not open with its start"; return 1; }
        wait_for 30 "the stale sweep to stop dev" state_is dev stopped || return 1
        grep -q 'vm dev: idle for [0-9]* s (auto_stop_stale_after is 5 s): stopping it' "$LOG" || return 1
        ! udp_listens 17001 || { echo "a stopped VM's forward listens"; return 1; }
}
t "vm stats (guest CPU/memory from the agent, VMM RSS/CPU, disks); an idle VM is auto-stopped after auto_stop_stale_after" stats_and_stale

pool_idle() { [ "$(B --json ping | jq -r .tap_pool.idle)" = "$1" ]; }
pool_taps() { ip netns exec "$NS" ip -o link show master br-fc | awk -F': ' '{print $2}' | sed 's/@.*//' | grep '^tap-pool-' | sort; }
tap_pool() {
        B daemon stop >/dev/null || return 1
        printf 'accel = "tcg"\nwarm_start = "off"\ntap_pool_size = 2\n' >"$CONF"
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
