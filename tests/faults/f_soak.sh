#!/usr/bin/env bash
# A soak: $BANGER_SOAK_OPS (100) random operations across at most 3 VMs --
# create, start, stop, kill -9 of a VM's QEMU, kill -9 of bangerd, delete,
# `vm run --rm -- true` -- drawn from $BANGER_SOAK_SEED (printed: the same seed
# replays the same run). After every operation the daemon's rows, the QEMU
# processes, the TAPs and the nft rules must agree; at the end, with every
# VM deleted, nothing may be left.
. "$(dirname "$0")/../integration/lib.sh"
begin
vm_begin
SEED=${BANGER_SOAK_SEED:-20261202}
OPS=${BANGER_SOAK_OPS:-100}
echo "# soak: seed $SEED, $OPS operations (BANGER_SOAK_SEED=$SEED replays this run)"
RANDOM=$SEED
T0=$SECONDS
t "kernel and slim image pulled (host namespace)" vm_prepare
SPEC=(--image debian-bookworm-slim --vcpu 1 --memory 512)
mkdir -p "$TMP/norepo" # vm run ships nothing from here

ran() { # what, cmd...: cmd succeeded, or its output says why not
        local what="$1"; shift
        "$@" >"$TMP/op.out" 2>&1 || { echo "$what failed:"; tail -15 "$TMP/op.out"; return 1; }
}
op_create() { ran "vm create $1" B vm create --name "$1" "${SPEC[@]}" && state_is "$1" running; }
op_start() { ran "vm start $1" B vm start "$1" && state_is "$1" running; }
op_stop() { ran "vm stop $1" B vm stop "$1" && state_is "$1" stopped; }
op_delete() { ran "vm delete $1" B vm delete "$1" && ! B vm show "$1" >/dev/null 2>&1; }
op_kill_vmm() {
        local pid; pid=$(vm_pid "$1")
        [ "$pid" != null ] && kill -9 "$pid" || { echo "no VMM to kill ($pid)"; return 1; }
        wait_for 20 "vm $1 to be marked stopped" state_is "$1" stopped
}
op_kill_daemon() {
        local pid; pid=$(cat "$STATE/bangerd.lock")
        alive "$pid" && kill -9 "$pid" || { echo "no daemon to kill ($pid)"; return 1; }
        wait_for 10 "bangerd $pid to die" not alive "$pid" # the next command starts another
}
op_run() {
        local before; before=$(B vm list -q | wc -l)
        (cd "$TMP/norepo" && ran "vm run --rm -- true" B vm run --rm "${SPEC[@]}" -- true) || return 1
        # the delete finishes in the daemon after the CLI exits
        wait_for 30 "the --rm VM to be gone" vm_count_is "$before" || expect_eq "$(B vm list -q | wc -l)" "$before"
}
vm_count_is() { [ "$(B vm list -q | wc -l)" = "$1" ]; }
# one operation and the consistency check after it
soak_op() {
        fault_note injected "$*"
        local rc=0
        "op_$1" "${@:2}" || rc=1
        consistent quick || rc=1
        [ "$rc" = 0 ] && fault_note survived "$*"
        return $rc
}

# the next operation, drawn from what applies now
NEXT=1
for i in $(seq 1 "$OPS"); do
        daemon_view >/dev/null 2>&1 || VIEW_VMS='[]'
        running=($(jq -r '.[] | select(.state == "running") | .name' <<<"$VIEW_VMS"))
        stopped=($(jq -r '.[] | select(.state != "running" and .state != "starting") | .name' <<<"$VIEW_VMS"))
        all=("${running[@]}" "${stopped[@]}")
        ops=(kill_daemon)
        [ "${#all[@]}" -lt 3 ] && ops+=(create run)
        [ "${#running[@]}" -gt 0 ] && ops+=(stop kill_vmm delete_running)
        [ "${#stopped[@]}" -gt 0 ] && ops+=(start delete_stopped)
        op=${ops[RANDOM % ${#ops[@]}]}
        case "$op" in
        create) args=(create "s$NEXT"); NEXT=$((NEXT + 1)) ;;
        stop | kill_vmm) args=("$op" "${running[RANDOM % ${#running[@]}]}") ;;
        delete_running) args=(delete "${running[RANDOM % ${#running[@]}]}") ;;
        start) args=(start "${stopped[RANDOM % ${#stopped[@]}]}") ;;
        delete_stopped) args=(delete "${stopped[RANDOM % ${#stopped[@]}]}") ;;
        *) args=("$op") ;;
        esac
        t0=$SECONDS
        t "op $i/$OPS: ${args[*]} (then rows, QEMUs, TAPs and nft rules agree)" soak_op "${args[@]}"
        echo "#   ($((SECONDS - t0)) s)"
done

final() {
        local vms; vms=$(B vm list -q | tr '\n' ' ')
        [ -z "$vms" ] || ran "vm delete $vms" B vm delete $vms || return 1
        consistent || return 1
        B daemon stop >/dev/null
        [ -z "$(our_qemus)$(our_procs 'bangerd')" ] || { echo "left: $(our_qemus) $(our_procs bangerd)"; return 1; }
        [ -z "$(ns_taps)" ] || { echo "TAPs left: $(ns_taps)"; return 1; }
        ! ip netns exec "$NS" nft list ruleset | grep -q 'banger-vm:' || { echo "nft rules left"; return 1; }
        [ -z "$(ls -A "$STATE/vms")" ] || { echo "VM dirs left: $(ls -A "$STATE/vms")"; return 1; }
}
t "at the end, every VM deleted: no QEMU, TAP, nft rule, mount, staging dir, file or daemon left" final
echo "# soak: $OPS operations in $((SECONDS - T0)) s (seed $SEED)"

fault_finish
