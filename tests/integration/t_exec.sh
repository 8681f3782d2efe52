#!/usr/bin/env bash
# Commands through the guest agent (protocol version 2) on real VMs: stdin,
# stdout and stderr apart and binary-safe, exit codes and signals, Ctrl-C
# reaching the guest, a command that ignores a large stdin, concurrent execs,
# a CLI killed mid-stream, a guest without sshd, an agent killed mid-exec,
# and `vm run` that never waits for sshd.
. "$(dirname "$0")/lib.sh"
begin
vm_begin
t "kernel and slim image pulled (host namespace)" vm_prepare
S=(--image debian-bookworm-slim --vcpu 1 --memory 512)

rows() { sqlite3 "$DB" 'SELECT count(*) FROM vms'; }
rows_are() { [ "$(rows)" = "$1" ]; }

run_agent() {
        local out; out=$(B vm run --rm --timings "${S[@]}" -- echo via-agent 2>"$TMP/run.err") || { cat "$TMP/run.err"; return 1; }
        expect_eq "$out" via-agent || return 1
        grep -q '^timing: create + boot + agent ready ' "$TMP/run.err" && grep -q '^timing: command (agent) ' "$TMP/run.err" ||
                { cat "$TMP/run.err"; return 1; }
        ! grep -q 'wait for ssh' "$TMP/run.err" || grep -q 'not waited for' "$TMP/run.err" || { cat "$TMP/run.err"; return 1; }
        wait_for 30 "the --rm VM to be deleted in the daemon" rows_are 0
}
t "vm run --rm -- CMD: through the agent, sshd not waited for, nothing left" run_agent

REPO="$TMP/repo"
staged() {
        mkdir -p "$REPO" && cd "$REPO" && git init -q -b main && git config user.name T && git config user.email t@t &&
                echo a >a.txt && echo b >b.txt && echo r >r.txt && printf 'bin\0ary' >bin.dat && git add -A &&
                git commit -qm one || return 1
        echo a2 >>a.txt && git add a.txt &&           # modified, staged
                echo n >n.txt && git add n.txt &&      # new, staged
                git rm -q --cached r.txt &&            # removed from the index, still on disk
                echo b2 >>b.txt &&                     # modified, not staged
                echo a3 >>a.txt &&                     # staged, then modified again
                printf 'bin\0ary2' >bin.dat && git add bin.dat || return 1
        local want; want=$(git status --porcelain)
        local got; got=$(B vm run --rm "${S[@]}" --include-untracked "$REPO" -- git status --porcelain 2>"$TMP/st.err") ||
                { cat "$TMP/st.err"; return 1; }
        expect_eq "$got" "$want" || return 1
        got=$(B vm run --rm "${S[@]}" "$REPO" -- sh -c 'git diff --cached --stat | tail -1; cat a.txt' 2>/dev/null)
        expect_eq "$got" "$(git diff --cached --stat | tail -1; cat a.txt)"
}
t "workspace through the agent: the guest's git status is the host's, staged changes included" staged

t "a VM for the rest" B vm create --name ex "${S[@]}"

# The kernel's whole module tree is the read-only modules disk, mounted by
# banger-init on /lib/modules/<release>: modprobe resolves names and
# dependencies (depmod's indexes, made at kernel pull).
modprobe_works() {
        local out; out=$(B vm exec ex -- sh -c 'd=/lib/modules/$(uname -r); test -s $d/modules.dep.bin &&
                grep -Eq " (/usr)?$d ext4 ro," /proc/mounts && modprobe overlay && modprobe veth && modprobe br_netfilter &&
                grep -q "^overlay " /proc/modules && grep -q "^veth " /proc/modules && grep -qw overlay /proc/filesystems &&
                echo ok' 2>&1) || { echo "$out"; B vm exec ex -- cat /proc/mounts; return 1; }
        expect_eq "$out" ok
}
t "modprobe overlay, veth, br_netfilter from the modules disk (mounted read-only on /lib/modules/\$(uname -r))" modprobe_works

stdin_in() {
        expect_eq "$(echo hi | B vm run --rm "${S[@]}" -- cat 2>/dev/null)" hi || return 1
        expect_eq "$(printf 'a\nb\n' | B vm exec ex -- wc -l 2>/dev/null)" 2
}
t "stdin piped in reaches the command (vm run and vm exec)" stdin_in

apart() {
        B vm exec ex -- sh -c 'echo to-out; echo to-err >&2; echo more-out' >"$TMP/o" 2>"$TMP/e" || return 1
        expect_eq "$(cat "$TMP/o")" "$(printf 'to-out\nmore-out')" && expect_eq "$(cat "$TMP/e")" to-err
}
t "stdout and stderr are kept apart" apart

binary() {
        local want got
        want=$(B vm exec ex -- sh -c 'head -c 100000000 /dev/urandom >/tmp/blob && sha256sum </tmp/blob' 2>/dev/null | cut -d' ' -f1)
        got=$(B vm exec ex -- cat /tmp/blob | sha256sum | cut -d' ' -f1)
        [ ${#want} -eq 64 ] && expect_eq "$got" "$want" || return 1
        # and in: the same bytes back into the guest, one exec's output piped into
        # another's input (the first ends while its CLI still writes: its last
        # output and its EXIT wait in the CLI's socket and are read)
        got=$(B vm exec ex -- cat /tmp/blob | B vm exec ex -- sha256sum | cut -d' ' -f1)
        expect_eq "$got" "$want" || { tail -15 "$LOG"; return 1; }
        got=$(B vm exec ex -- cat /tmp/blob | B vm exec ex -- sha256sum | cut -d' ' -f1)
        expect_eq "$got" "$want" || { tail -15 "$LOG"; return 1; }
}
t "100 MB of binary output and input are byte-identical (sha256)" binary

codes() {
        B vm exec ex -- sh -c 'exit 42' 2>/dev/null; expect_eq $? 42 || return 1
        B vm exec ex -- sh -c 'kill -TERM $$' 2>/dev/null; expect_eq $? 143 || return 1
        B vm exec ex -- sh -c 'kill -KILL $$' 2>/dev/null; expect_eq $? 137
}
t "exit 42; killed by a signal gives 128+N (TERM 143, KILL 137)" codes

ctrl_c() {
        # (a script's background jobs start with SIGINT ignored: the CLI gets it back, as from a terminal)
        python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])' \
                ip netns exec "$NS" "$BANGER" vm exec ex -- \
                sh -c 'trap "echo got-int; exit 7" INT; echo ready; while :; do sleep 0.1; done' >"$TMP/int.out" 2>&1 &
        local cli=$!
        wait_for 60 "the command to be ready" grep -q ready "$TMP/int.out" || { kill -9 $cli; cat "$TMP/int.out"; return 1; }
        kill -INT $cli
        wait $cli; local rc=$?
        expect_eq "$rc" 7 && grep -q got-int "$TMP/int.out" || { cat "$TMP/int.out"; return 1; }
}
t "Ctrl-C (SIGINT to the CLI) reaches the guest process: its trap runs, its exit code comes back" ctrl_c

ignores_stdin() {
        local out
        out=$(head -c 1G /dev/zero | B vm exec ex -- sh -c 'sleep 1; echo done-without-reading' 2>"$TMP/ig.err") ||
                { cat "$TMP/ig.err"; return 1; }
        expect_eq "$out" done-without-reading
}
t "a command that ignores stdin while the host writes 1 GB: no deadlock, it ends when the command does" ignores_stdin

concurrent() {
        local i pids=()
        for i in 1 2 3 4 5 6 7 8; do
                B vm exec ex -- sh -c "sleep 0.5; echo job-$i" >"$TMP/c$i" 2>&1 &
                pids+=($!)
        done
        for i in "${!pids[@]}"; do wait "${pids[$i]}" || return 1; done
        for i in 1 2 3 4 5 6 7 8; do expect_eq "$(cat "$TMP/c$i")" "job-$i" || return 1; done
}
t "8 concurrent execs on one VM, each with its own output" concurrent

cli_killed() {
        # not through B: $! must be the CLI itself, not a subshell around it
        ip netns exec "$NS" "$BANGER" vm exec ex -- sh -c 'echo $$ >/tmp/victim; exec sleep 1000' >/dev/null 2>&1 &
        local cli=$!
        wait_for 60 "the victim to write its pid" B vm exec ex -- test -s /tmp/victim || return 1
        local victim; victim=$(B vm exec ex -- cat /tmp/victim)
        kill -9 $cli; wait $cli 2>/dev/null
        wait_for 30 "the guest process to be killed" B vm exec ex -- sh -c "! kill -0 $victim 2>/dev/null" ||
                { echo "guest process $victim survived: $(B vm exec ex -- ps -o pid,stat,args -p "$victim")"; tail -15 "$LOG"; return 1; }
}
t "the CLI killed mid-stream: the guest's process group is killed" cli_killed

v1_agent() {
        B vm ssh ex -- 'setsid sh -c "while :; do /usr/local/bin/banger-agent --protocol 1; [ \$? = 1 ] || break; sleep 0.2; done" </dev/null >/dev/null 2>&1 &
                sleep 0.3; for p in $(pidof banger-agent); do tr "\0" " " </proc/$p/cmdline | grep -q protocol || kill -9 $p; done' || return 1
        local out
        wait_for 30 "the version 1 agent to answer" B vm health ex ||
                { B vm ssh ex -- 'ps -eo pid,stat,args | grep -v "\[" | grep -e agent -e sh' ; tail -15 "$LOG"; return 1; }
        out=$(B vm exec ex -- echo over-ssh 2>"$TMP/v1.err") || { cat "$TMP/v1.err"; return 1; }
        expect_eq "$out" over-ssh || return 1
        grep -q 'predates commands through the agent; using ssh' "$TMP/v1.err" || { cat "$TMP/v1.err"; return 1; }
        # back to the real agent
        B vm ssh ex -- 'setsid sh -c "while :; do /usr/local/bin/banger-agent; [ \$? = 1 ] || break; sleep 0.2; done" </dev/null >/dev/null 2>&1 &
                sleep 0.3; for p in $(pidof banger-agent); do tr "\0" " " </proc/$p/cmdline | grep -q protocol && kill -9 $p; done; true' || return 1
        wait_for 30 "the agent to speak version 2 again" B vm exec ex -- true
}
t "an agent of protocol version 1: vm exec falls back to ssh with a note" v1_agent

no_sshd() {
        B vm exec ex -- sh -c 'pkill -x sshd; sleep 0.5; ! pgrep -x sshd' || return 1
        expect_eq "$(B vm exec ex -- echo still-usable)" still-usable || return 1
        B vm exec ex -- sh -c 'mkdir -p /tmp/w && echo ok >/tmp/w/f' && expect_eq "$(B vm exec ex -- cat /tmp/w/f)" ok || return 1
        B vm ssh ex -- true 2>"$TMP/ssh.err" && return 1
        grep -q 'sshd is not listening in vm ex' "$TMP/ssh.err" || { cat "$TMP/ssh.err"; return 1; }
        B vm workspace prepare ex "$REPO" >/dev/null 2>"$TMP/wp.err" || { cat "$TMP/wp.err"; return 1; }
        expect_eq "$(B vm exec ex -- cat a.txt)" "$(cat "$REPO/a.txt")" || return 1
        B vm exec ex -- sh -c 'echo guest-edit >>b.txt' &&
                B vm workspace export ex --output "$TMP/ws.patch" >/dev/null 2>"$TMP/we.err" || { cat "$TMP/we.err"; return 1; }
        grep -q '^+guest-edit' "$TMP/ws.patch" || { cat "$TMP/ws.patch"; return 1; }
}
t "a guest without sshd: exec, workspace prepare and export work; vm ssh says sshd is missing" no_sshd

agent_dies() {
        B vm exec ex -- sh -c 'echo up; exec sleep 1000' >"$TMP/ad.out" 2>"$TMP/ad.err" &
        local cli=$!
        wait_for 60 "the command to be up" grep -q up "$TMP/ad.out" || return 1
        # a second exec kills the agent under both (the guest's init starts a new one)
        B vm exec ex -- sh -c 'kill -9 $(pidof banger-agent)' >/dev/null 2>&1
        wait $cli; local rc=$?
        [ "$rc" -ne 0 ] || { echo "exit 0 after the agent died"; return 1; }
        grep -q 'agent' "$TMP/ad.err" || { cat "$TMP/ad.err"; return 1; }
        expect_eq "$(B --json vm show ex | jq -r .agent_healthy)" false || return 1
        B --json vm show ex | jq -e '.agent_error | test("agent")' >/dev/null
}
t "the agent dies mid-exec: a clear error, exit status non-zero, the VM shows the agent unhealthy" agent_dies

t "delete" B vm delete ex
finish
