#!/usr/bin/env bash
# VM creation that must fail cleanly, or be cancelled, and leave nothing:
# bad image, duplicate and invalid names (the reference's exact messages),
# --vcpu 0, a VM whose boot fails (kept in 'error' for `vm logs`, nothing
# running), Ctrl-C during create; plus generated names, --no-start, prune
# and ssh-config.
. "$(dirname "$0")/lib.sh"
begin
vm_begin
t "kernel and slim image pulled (host namespace)" vm_prepare
SPEC=(--image debian-bookworm-slim --vcpu 1 --memory 512)

nothing_left() { # expected number of rows
        expect_eq "$(sqlite3 "$DB" 'SELECT count(*) FROM vms')" "${1:-0}" || return 1
        [ -z "$(ns_taps)" ] || { echo "TAP left: $(ns_taps)"; return 1; }
        [ -z "$(ns_vmms)" ] || { echo "VMM left"; return 1; }
        if [ "${1:-0}" = 0 ]; then
                [ -z "$(ls -A "$STATE/vms" 2>/dev/null)" ] || { echo "files left: $(ls "$STATE/vms")"; return 1; }
                [ ! -s "$STATE/ssh/known_hosts" ] || { echo "known_hosts entries left"; return 1; }
        fi
}

fails_with() { # expected-stderr-substring args...
        local want="$1"; shift
        if B vm create "$@" >"$TMP/c.out" 2>"$TMP/c.err"; then echo "succeeded: $*"; return 1; fi
        grep -qF -- "$want" "$TMP/c.err" || { echo "stderr:"; cat "$TMP/c.err"; return 1; }
        nothing_left 0
}
t "unknown image: clear error, nothing left" fails_with "image 'no-such-image' not found locally or in the catalog" --name x --image no-such-image
t "--vcpu 0 rejected, no row" fails_with "vcpu must be > 0" --name x --vcpu 0 --image debian-bookworm-slim
t "--memory 0 rejected" fails_with "memory must be > 0" --name x --memory 0 --image debian-bookworm-slim
t "uppercase name: the reference's message" fails_with "vm name \"Bad\" has invalid character 'B' at position 0 (allowed: lowercase a-z, 0-9, '-')" --name Bad "${SPEC[@]}"
t "leading '-' in a name" fails_with "vm name \"-x\" cannot start or end with '-'" --name=-x "${SPEC[@]}"
t "a 64-character name" fails_with "is 64 characters; max is 63 (DNS label limit)" --name "$(printf 'a%.0s' $(seq 64))" "${SPEC[@]}"
no_backend() {
        cp "$CONF" "$TMP/conf.good" && echo 'vmm = "firecracker"' >>"$CONF"
        B daemon stop >/dev/null 2>&1
        local rc=0; fails_with 'firecracker is not installed (firecracker_bin = "firecracker"' --name x "${SPEC[@]}" || rc=1
        cp "$TMP/conf.good" "$CONF"; B daemon stop >/dev/null 2>&1
        return $rc
}
t "vmm = \"firecracker\" without firecracker: vm create fails before any row, saying what to change" no_backend
usage_size() {
        B vm create --disk-size lots >/dev/null 2>"$TMP/u.err"; local rc=$?
        expect_eq "$rc" 2 && grep -q "'lots' is not a size" "$TMP/u.err" && nothing_left 0
}
t "--disk-size garbage is a usage error (exit 2)" usage_size

dup() {
        B vm create --name one --no-start "${SPEC[@]}" >/dev/null 2>&1 || return 1
        expect_eq "$(B --json vm show one | jq -r .state)" created || return 1
        fails_with "vm name 'one' is already in use" --name one "${SPEC[@]}" 2>/dev/null
        nothing_left 1
}
t "--no-start creates disks only; a duplicate name is refused" dup

generated() {
        B --json vm create --no-start "${SPEC[@]}" >"$TMP/gen.json" 2>/dev/null || return 1
        expect_match "$(jq -r .name "$TMP/gen.json")" '^[a-z]+-[a-z]+$' || return 1
        expect_eq "$(jq -r .ip "$TMP/gen.json")" 172.16.0.3
}
t "no --name: a generated adjective-noun name and the next address" generated

broken_boot() {
        head -c 4096 /dev/urandom >"$TMP/garbage"
        local rootfs; rootfs=$(B --json image show debian-bookworm-slim | jq -r .rootfs_path)
        B image register --name broken --rootfs "$rootfs" --kernel "$TMP/garbage" --initrd "$TMP/garbage" --init-mode fast >/dev/null || return 1
        ! B vm create --name bad --image broken --vcpu 1 --memory 512 >/dev/null 2>"$TMP/bad.err" || return 1
        grep -q 'qemu' "$TMP/bad.err" || { cat "$TMP/bad.err"; return 1; }
        expect_eq "$(B --json vm show bad | jq -r .state)" error || return 1
        B --json vm show bad | jq -e '.last_error | test("qemu")' >/dev/null || return 1
        nothing_left 3 || return 1
        B vm delete bad >/dev/null && B image delete broken >/dev/null
}
t "a VM whose boot fails is kept in 'error' with last_error, with nothing running" broken_boot

cancel() {
        # ip netns exec execs the CLI: $! is the CLI itself
        ip netns exec "$NS" "$BANGER" vm create --name cancelme "${SPEC[@]}" >"$TMP/cancel.out" 2>&1 &
        local cli=$!
        wait_for 60 "the network stage" grep -q '^  network ' "$TMP/cancel.out"
        kill -TERM "$cli"
        wait "$cli"; local rc=$?
        expect_eq "$rc" 130 || { cat "$TMP/cancel.out"; return 1; }
        grep -q 'cancelled; nothing was left behind' "$TMP/cancel.out" || { cat "$TMP/cancel.out"; return 1; }
        ! B vm show cancelme >/dev/null 2>&1 || { echo "row left"; return 1; }
        nothing_left 2
}
t "Ctrl-C (SIGTERM) during create cancels it and undoes everything" cancel

ordered() { # 20 runs: every ref reported once, in the order given, exit 1
        local gen; gen=$(jq -r .name "$TMP/gen.json")
        local refs=(nope-a one nope-b "$gen" nope-c one nope-d) want=(nope-a one nope-b "$gen" nope-c nope-d)
        for run in $(seq 20); do
                if B vm stop "${refs[@]}" >"$TMP/o.out" 2>&1; then echo "run $run: exit 0"; return 1; fi
                local got=() line
                while IFS= read -r line; do
                        case "$line" in
                        *nope-a*) got+=(nope-a) ;; *nope-b*) got+=(nope-b) ;; *nope-c*) got+=(nope-c) ;;
                        *nope-d*) got+=(nope-d) ;; *"$gen"*) got+=("$gen") ;; *one*) got+=(one) ;;
                        *) echo "run $run: unexpected line: $line"; return 1 ;;
                        esac
                done <"$TMP/o.out"
                expect_eq "${got[*]}" "${want[*]}" || { cat "$TMP/o.out"; return 1; }
        done
}
t "vm stop with missing and existing refs reports each once, in the order given (20 runs)" ordered

ordered_json() {
        local gen; gen=$(jq -r .name "$TMP/gen.json")
        ! B --json vm stop nope-a one nope-b "$gen" one >"$TMP/o.json" 2>/dev/null || return 1
        expect_eq "$(jq -r '[.[].ref] | join(" ")' "$TMP/o.json")" "nope-a one nope-b $gen" || return 1
        expect_eq "$(jq -r '[.[].ok] | join(" ")' "$TMP/o.json")" "false true false true" || { cat "$TMP/o.json"; return 1; }
        expect_eq "$(jq -r '.[0].error.code' "$TMP/o.json")" not_found || return 1
        jq -e '.[0].error.message | test("nope-a")' "$TMP/o.json" >/dev/null || { cat "$TMP/o.json"; return 1; }
        expect_eq "$(jq -r '.[1].name' "$TMP/o.json")" one
}
t "vm stop --json: one entry per ref, failures with their error" ordered_json

prune() {
        ! B vm prune </dev/null >/dev/null 2>&1 || { echo "prune without -f on a non-tty must refuse"; return 1; }
        expect_eq "$(B --json vm list | jq length)" 2 || return 1
        B vm prune -f >/dev/null || return 1
        nothing_left 0
}
t "vm prune needs -f off a terminal, then deletes every non-running VM" prune
prune_none() {
        expect_eq "$(B vm prune -f)" "no VMs"
}
t "vm prune -f with no VMs at all says so" prune_none

ssh_config() {
        mkdir -p "$HOME/.ssh" && printf 'Host other\n    User me\n' >"$HOME/.ssh/config"
        B ssh-config --install >/dev/null && B ssh-config --install >/dev/null || return 1
        expect_eq "$(grep -c '^Include ' "$HOME/.ssh/config")" 1 || return 1
        head -2 "$HOME/.ssh/config" | grep -q "^Include $XDG_CONFIG_HOME/banger/ssh_config$" || return 1
        grep -q '^Host \*.vm$' "$XDG_CONFIG_HOME/banger/ssh_config" || return 1
        grep -q "UserKnownHostsFile $STATE/ssh/known_hosts" "$XDG_CONFIG_HOME/banger/ssh_config" || return 1
        grep -q "IdentityFile $STATE/ssh/id_ed25519$" "$XDG_CONFIG_HOME/banger/ssh_config" || { cat "$XDG_CONFIG_HOME/banger/ssh_config"; return 1; }
        B ssh-config --uninstall >/dev/null || return 1
        expect_eq "$(cat "$HOME/.ssh/config")" "$(printf 'Host other\n    User me')"
}
t "ssh-config --install is idempotent and --uninstall restores ~/.ssh/config" ssh_config

finish
