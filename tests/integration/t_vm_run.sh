#!/usr/bin/env bash
# `banger vm run`, workspaces and `vm exec` with real VMs in a private netns:
# output and exit codes, what ships (tracked, untracked on request, never
# ignored), --dry-run without a VM, concurrent runs, --rm leaving nothing,
# the export round trip applied on the host, --branch/--from, exec's cwd,
# and flag combinations refused before any VM exists.
. "$(dirname "$0")/lib.sh"
begin
vm_begin
t "kernel and slim image pulled (host namespace)" vm_prepare
S=(--image debian-bookworm-slim --vcpu 1 --memory 512)

REPO="$TMP/repo"
mkrepo() {
        mkdir -p "$REPO/sub" && cd "$REPO" && git init -q -b main && git config user.name "Repo Person" &&
        git config user.email repo@example.com && git remote add origin https://example.com/acme/app.git &&
        echo tracked >tracked.txt && printf '*.log\nbuild/\n' >.gitignore && echo deep >sub/deep.txt &&
        printf '#!/bin/sh\necho run\n' >run.sh && chmod 755 run.sh && echo bye >gone.txt && git add -A && git commit -qm one &&
        touch -d '2001-02-03 04:05:06' sub/deep.txt &&
        echo two >>tracked.txt && git commit -qam two && echo untracked >untracked.txt && echo noise >debug.log &&
        echo local-change >>tracked.txt && rm gone.txt
}
t "a host repository: two commits, a local change, an untracked and an ignored file" mkrepo

rows() { sqlite3 "$DB" 'SELECT count(*) FROM vms'; }
# --rm deletes in the daemon after the CLI has its exit status: a moment
left_nothing() { wait_for 30 "the VM to be gone" gone_now || gone_now; }
gone_now() {
        expect_eq "$(rows)" 0 || return 1
        [ -z "$(ns_taps)" ] || { echo "TAP left: $(ns_taps)"; return 1; }
        [ -z "$(ns_vmms)" ] || { echo "VMM left"; return 1; }
        [ -z "$(ls -A "$STATE/vms" 2>/dev/null)" ] || { echo "files left"; return 1; }
}

hello() {
        local out; out=$(B vm run --rm --timings "${S[@]}" -- echo hello 2>"$TMP/err") || { cat "$TMP/err"; return 1; }
        expect_eq "$out" hello && grep -q '^spec: 1 vcpu' "$TMP/err" || return 1
        grep -q "^timing: create + boot + agent ready " "$TMP/err" && grep -q '^timing: total ' "$TMP/err" || { cat "$TMP/err"; return 1; }
        left_nothing
}
t "vm run --rm -- echo hello: stdout is the command's, progress and --timings on stderr, nothing left" hello

interactive() {
        # a terminal (script(1)); the shell starts in /root and the VM outlives the session
        printf 'echo "in-$((6 * 7))-$(pwd)"\nexit\n' | script -qfec "ip netns exec $NS $BANGER vm run --name inter ${S[*]}" /dev/null >"$TMP/tty.out" 2>&1
        grep -q 'in-42-/root' "$TMP/tty.out" || { cat "$TMP/tty.out"; return 1; }
        grep -q 'vm inter is still running (stop with: banger vm stop inter)' "$TMP/tty.out" || { cat "$TMP/tty.out"; return 1; }
        expect_eq "$(B --json vm show inter | jq -r .state)" running || return 1
        B vm delete inter >/dev/null && left_nothing
}
t "bare vm run: an interactive shell; disconnecting leaves the VM running" interactive

bootstrap() {
        local r="$TMP/misrepo" f rc
        mkdir -p "$r/sub" && git -C "$r" init -q && echo x >"$r/sub/x" && git -C "$r" add -A &&
                git -C "$r" -c user.name=a -c user.email=a@a commit -qm m || return 1
        for f in mise.toml .mise.toml .tool-versions; do
                rm -f "$r/mise.toml" "$r/.mise.toml" "$r/.tool-versions" && echo '' >"$r/$f"
                # a subdirectory of the project: the root's file counts
                B vm run --rm "${S[@]}" "$r/sub" -- true >"$TMP/boot.out" 2>"$TMP/boot.err"; rc=$?
                expect_eq "$rc" 1 || { cat "$TMP/boot.err"; return 1; }
                grep -qF "$f makes this a mise project" "$TMP/boot.err" || { cat "$TMP/boot.err"; return 1; }
                grep -qF -- "pass --nat, or --no-bootstrap" "$TMP/boot.err" || { cat "$TMP/boot.err"; return 1; }
                grep -q 'creating vm' "$TMP/boot.out" "$TMP/boot.err" && { echo "a VM was started"; return 1; }
                left_nothing || return 1
        done
        B vm run --rm --no-bootstrap "${S[@]}" "$r" -- true 2>"$TMP/boot2.err" || { cat "$TMP/boot2.err"; return 1; }
        ! grep -q 'bootstrap' "$TMP/boot2.err" && left_nothing
}
t "a mise project (mise.toml, .mise.toml, .tool-versions) without --nat is refused before any VM; --no-bootstrap runs" bootstrap

exit_codes() {
        B vm run --rm "${S[@]}" -- sh -c 'exit 42' 2>/dev/null; local rc=$?
        expect_eq "$rc" 42 || return 1
        B vm run --rm "${S[@]}" -- sh -c 'kill -TERM $$' 2>/dev/null; rc=$?
        expect_eq "$rc" 143 || return 1
        left_nothing
}
t "exit status is the command's (42), a signal-killed command gives 128+N; --rm whatever the code" exit_codes

quoting() {
        local out; out=$(B vm run --rm "${S[@]}" -- printf '%s|' 'a b' "it's" '$HOME' ';' 2>/dev/null)
        expect_eq "$out" "a b|it's|\$HOME|;|"
}
t "arguments reach the guest verbatim (spaces, quotes, \$, ;)" quoting

workspace_run() {
        B vm run --rm "${S[@]}" "$REPO" -- sh -c 'pwd; cat tracked.txt; ls -A; test -x run.sh && echo exec-bit; git status --short; git log --format=%s; git config user.name; git remote get-url origin; stat -c %Y sub/deep.txt' \
                >"$TMP/ws.out" 2>"$TMP/ws.err" || { cat "$TMP/ws.err"; return 1; }
        local want; want=$(printf '/root/repo\ntracked\ntwo\nlocal-change\n.git\n.gitignore\nrun.sh\nsub\ntracked.txt\nexec-bit\n D gone.txt\n M tracked.txt\ntwo\none\nRepo Person\nhttps://example.com/acme/app.git\n%s' "$(stat -c %Y "$REPO/sub/deep.txt")")
        expect_eq "$(cat "$TMP/ws.out")" "$want" || return 1
        grep -q '1 untracked file(s) not shipped' "$TMP/ws.err" || { cat "$TMP/ws.err"; return 1; }
        left_nothing
}
t "vm run --rm ./repo: tracked files with the local change and deletion, modes and mtimes, real history, identity, origin; untracked skipped with a notice, ignored never" workspace_run

untracked() {
        local out; out=$(B vm run --rm "${S[@]}" --include-untracked "$REPO" -- ls -A 2>/dev/null)
        expect_match "$out" 'untracked.txt' || return 1
        ! expect_match "$out" 'debug.log' >/dev/null
}
t "--include-untracked ships untracked files, still never ignored ones" untracked

dry_run() {
        B vm run --dry-run "$REPO" >"$TMP/dry.out" 2>"$TMP/dry.err" || { cat "$TMP/dry.err"; return 1; }
        grep -q '^100755 .* run.sh$' "$TMP/dry.out" && grep -q '^100644 .* sub/deep.txt$' "$TMP/dry.out" || { cat "$TMP/dry.out"; return 1; }
        ! grep -q 'debug.log\|untracked.txt' "$TMP/dry.out" || return 1
        expect_eq "$(rows)" 0 && [ -z "$(ns_vmms)" ] || { echo "a dry run must not create a VM"; return 1; }
}
t "--dry-run lists files with modes and creates no VM" dry_run

rejected() {
        local c
        for c in "-d --rm" "-d -- true" "--from HEAD~1 $REPO" "--branch x" "--dry-run" "$REPO extra" "--vcpu 0 -- true"; do
                # shellcheck disable=SC2086
                if B vm run "${S[@]}" $c >/dev/null 2>"$TMP/rej.err"; then echo "accepted: $c"; return 1; fi
        done
        ! B vm run "${S[@]}" "$TMP/nope" -- true 2>"$TMP/rej.err" && grep -q 'nope' "$TMP/rej.err" || return 1
        mkdir -p "$TMP/notgit" && ! B vm run "${S[@]}" "$TMP/notgit" -- true 2>"$TMP/rej.err" &&
                grep -q 'not inside a git repository' "$TMP/rej.err" || { cat "$TMP/rej.err"; return 1; }
        git init -q --bare "$TMP/bare.git" && ! B vm run "${S[@]}" "$TMP/bare.git" -- true 2>"$TMP/rej.err" &&
                grep -q 'bare' "$TMP/rej.err" || { cat "$TMP/rej.err"; return 1; }
        left_nothing
}
t "invalid combinations and paths (missing, not git, bare), --vcpu 0: refused before any VM exists" rejected

concurrent() {
        local i pids=()
        for i in 1 2 3; do
                ip netns exec "$NS" "$BANGER" vm run --rm "${S[@]}" -- sh -c "echo run-$i; hostname >/dev/null" >"$TMP/c$i.out" 2>"$TMP/c$i.err" &
                pids+=($!)
        done
        for i in 0 1 2; do wait "${pids[$i]}" || { cat "$TMP/c$((i + 1)).err"; return 1; }; done
        for i in 1 2 3; do expect_eq "$(cat "$TMP/c$i.out")" "run-$i" || return 1; done
        left_nothing
}
t "three concurrent vm run --rm" concurrent

export_roundtrip() {
        B vm run -d "${S[@]}" --name ws "$REPO" >/dev/null 2>&1 || return 1
        B vm exec ws -- sh -c 'echo guest >>tracked.txt && rm sub/deep.txt && printf "\000\001bin" >blob.bin && git add -A && git -c user.name=g -c user.email=g@g commit -qm guest && echo later >late.txt && echo more >>run.sh' || return 1
        local before; before=$(B vm exec ws -- git status --porcelain)
        B vm workspace export ws >"$TMP/ws.patch" || return 1
        expect_eq "$(B vm exec ws -- git status --porcelain)" "$before" || { echo "export changed the guest repo"; return 1; }
        rm -rf "$TMP/clean" && git clone -q "$REPO" "$TMP/clean" && (cd "$TMP/clean" && git apply "$TMP/ws.patch") || return 1
        B vm exec ws -- sh -c 'git ls-files -co --exclude-standard | sort | xargs sha256sum' >"$TMP/guest.sums" || return 1
        (cd "$TMP/clean" && git ls-files -co --exclude-standard | sort | xargs sha256sum) >"$TMP/host.sums"
        diff "$TMP/guest.sums" "$TMP/host.sums" || return 1
        B vm workspace export ws --output "$TMP/out.patch" >/dev/null && cmp "$TMP/ws.patch" "$TMP/out.patch"
}
t "workspace export: commits, uncommitted, untracked and binary changes; git apply on a clean checkout gives the guest's tree; the guest repo is untouched" export_roundtrip

exec_cwd() {
        expect_eq "$(B vm exec ws -- pwd)" /root/repo || return 1
        expect_eq "$(B vm exec ws --guest-path /tmp -- pwd)" /tmp || return 1
        B vm exec ws -- sh -c 'exit 7'; expect_eq "$?" 7 || return 1
        (cd "$REPO" && git commit -qam three) || return 1
        B vm exec ws -- true 2>"$TMP/exec.err" && grep -q 'warning: the workspace in ws is at' "$TMP/exec.err" || { cat "$TMP/exec.err"; return 1; }
        B vm exec ws --auto-prepare -- git log -1 --format=%s >"$TMP/exec.out" 2>/dev/null || return 1
        expect_eq "$(cat "$TMP/exec.out")" three || return 1
        B vm create --name plain --no-start "${S[@]}" >/dev/null 2>&1 && B vm start plain >/dev/null 2>&1 || return 1
        expect_eq "$(B vm exec plain -- pwd)" /root
}
t "vm exec: cwd is --guest-path, else the workspace, else /root; exit code kept; HEAD drift warned, --auto-prepare re-ships" exec_cwd

list_workspace() {
        local repo; repo=$(cd "$REPO" && pwd -P)
        B vm list >"$TMP/list.out" || return 1
        head -1 "$TMP/list.out" | grep -Eq ' CREATED +WORKSPACE$' || { cat "$TMP/list.out"; return 1; }
        grep -E '^[0-9a-f]{8}  ws ' "$TMP/list.out" | grep -q " $repo\$" || { cat "$TMP/list.out"; return 1; }
        grep -E '^[0-9a-f]{8}  plain ' "$TMP/list.out" | grep -q ' -$' || { cat "$TMP/list.out"; return 1; }
        B --json vm list >"$TMP/list.json" || return 1
        expect_eq "$(jq -r '.[] | select(.name == "ws") | .workspace_path' "$TMP/list.json")" "$repo" || return 1
        expect_eq "$(jq -r '.[] | select(.name == "plain") | .workspace_path' "$TMP/list.json")" null
}
t "vm list: WORKSPACE is the host repo a VM was made from, else '-' (workspace_path in --json)" list_workspace

branch() {
        local h1; h1=$(git -C "$REPO" rev-parse HEAD~1)
        B vm workspace prepare ws "$REPO" --branch feature --from HEAD~1 >/dev/null 2>&1 || return 1
        expect_eq "$(B vm exec ws -- git rev-parse --abbrev-ref HEAD)" feature || return 1
        expect_eq "$(B vm exec ws -- git rev-parse HEAD)" "$h1" || return 1
        B vm workspace prepare ws "$REPO" --branch guest-only >/dev/null 2>&1 || return 1
        expect_eq "$(B vm exec ws -- git rev-parse --abbrev-ref HEAD)" guest-only || return 1
        ! git -C "$REPO" rev-parse -q --verify guest-only >/dev/null || { echo "the branch leaked to the host"; return 1; }
        ! B vm workspace prepare ws "$REPO" --branch 'bad..name' >/dev/null 2>&1
}
t "--branch creates a guest-only branch, --from bases it on REF" branch

shallow_history() {
        local r="$TMP/long"
        mkdir -p "$r" && git -C "$r" init -q -b main && git -C "$r" config user.name L && git -C "$r" config user.email l@l || return 1
        for i in $(seq 12); do
                echo "v$i" >"$r/f.txt" && printf 'gen %s\n' "$i" >"$r/gen$i.txt" && git -C "$r" add -A && git -C "$r" commit -qm "c$i" || return 1
        done
        # depth 10: commits c3..c12 with every blob they name (not only
        # HEAD's), a clean fsck, and nothing left of the partial fetch
        local out; out=$(B vm run --rm "${S[@]}" "$r" -- sh -c 'git log --format=%s | wc -l; git show HEAD~9:f.txt; git show HEAD~5:f.txt;
                cat .git/shallow | wc -l; git fsck --no-dangling 2>&1 | grep -v "^Checking" | wc -l;
                git config --get-regexp "remote|promisor|partialclone" | grep -v "^remote.origin" | wc -l; ls .git/objects/pack | grep -c promisor; git status --porcelain | wc -l' 2>"$TMP/long.err") || { cat "$TMP/long.err"; return 1; }
        expect_eq "$(echo $out)" "10 v3 v7 1 0 0 0 0" || { cat "$TMP/long.err"; return 1; }
}
t "a long history arrives 10 commits deep with every blob those commits name; fsck clean; no promisor remains" shallow_history

repo_disk() {
        local dir; dir=$(B --json vm show ws | jq -r .vm_dir) || return 1
        # a prepare on the running VM writes the repo disk on the host
        expect_eq "$(B --json vm workspace prepare ws "$REPO" | jq -r .method)" disk || return 1
        expect_eq "$(B vm exec ws -- sh -c 'grep -c " /root/repo ext4 " /proc/mounts; git status --porcelain | wc -l; ls -A | tr "\n" " "')" \
                "$(printf '1\n0\n.git .gitignore run.sh sub tracked.txt ')" || return 1
        # /root/repo in use: the stream through the agent instead, same result
        ip netns exec "$NS" "$BANGER" vm exec ws -- sh -c 'cd /root/repo && exec sleep 60' >/dev/null 2>&1 &
        local holder=$!
        wait_for 20 "a guest process in /root/repo" sh -c "ip netns exec '$NS' '$BANGER' vm exec ws -- sh -c 'ls -l /proc/*/cwd 2>/dev/null' | grep -q ' -> /root/repo$'" || return 1
        local m; m=$(B --json vm workspace prepare ws "$REPO" 2>"$TMP/busy.err" | jq -r .method)
        kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null
        expect_eq "$m" agent || { cat "$TMP/busy.err"; return 1; }
        expect_eq "$(B vm exec ws -- sh -c 'git status --porcelain | wc -l; ls -A | tr "\n" " "')" "$(printf '0\n.git .gitignore run.sh sub tracked.txt ')" || return 1
        # a stop/start keeps it, the host's fsck finds it clean
        expect_eq "$(B --json vm workspace prepare ws "$REPO" | jq -r .method)" disk || return 1
        B vm stop ws >/dev/null 2>&1 || return 1
        e2fsck -fn "$dir/repo.ext4" >"$TMP/fsck.out" 2>&1 || { cat "$TMP/fsck.out"; return 1; }
        B vm start ws >/dev/null 2>&1 || return 1
        expect_eq "$(B vm exec ws -- sh -c 'grep -c " /root/repo ext4 " /proc/mounts; git log -1 --format=%s')" "$(printf '1\nthree')" || return 1
        # a disk the host did not finish (its label says so) is never mounted
        B vm stop ws >/dev/null 2>&1 && e2label "$dir/repo.ext4" banger-repo-new && B vm start ws >/dev/null 2>&1 || return 1
        expect_eq "$(B vm exec ws -- sh -c 'grep -c " /root/repo " /proc/mounts; ls -A /root/repo | wc -l')" "$(printf '0\n0')" || return 1
        grep -q 'stage=repo-empty' "$dir/console.log" || { echo "no repo-empty stage on the console"; return 1; }
        expect_eq "$(B --json vm workspace prepare ws "$REPO" | jq -r .method)" disk || return 1
        # a daemon that died mid-prepare left its clone: swept at the next start
        mkdir -p "$dir/.ws-staging-dead/.git" && B daemon stop >/dev/null 2>&1 && B ping >/dev/null 2>&1 || return 1
        wait_for 10 "the dead prepare's clone to be swept" sh -c "[ ! -e '$dir/.ws-staging-dead' ]" || return 1
        grep -q "left by a workspace prepare cut short" "$LOG" || { echo "no log line"; return 1; }
        expect_eq "$(B vm exec ws -- git -C /root/repo log -1 --format=%s)" three
}
t "the repo disk: prepare writes it on the host (method disk), /root/repo in use falls back to the agent's stream, survives stop/start with a clean fsck, a half-written disk is never mounted; a dead prepare's clone is swept at start" repo_disk

interrupt_prepare() {
        ip netns exec "$NS" "$BANGER" vm run --rm "${S[@]}" --name intr "$REPO" -- true >"$TMP/intr.out" 2>&1 &
        local cli=$!
        # the workspace goes into the work disk while the VM is made: interrupt that
        wait_for 120 "the create to start" grep -q '^creating vm intr' "$TMP/intr.out"
        kill -TERM "$cli"
        wait "$cli"; local rc=$?
        expect_eq "$rc" 130 || { cat "$TMP/intr.out"; return 1; }
        ! B vm show intr >/dev/null 2>&1 || { echo "--rm did not delete the VM"; cat "$TMP/intr.out"; return 1; }
}
t "Ctrl-C (SIGTERM) while the VM and its workspace are made: nothing is left, exit 130" interrupt_prepare

cleanup_all() { B vm delete ws plain >/dev/null && left_nothing; }
t "delete leaves nothing" cleanup_all

finish
