#!/usr/bin/env bash
# doctor, usage errors and completion scripts.
. "$(dirname "$0")/lib.sh"
begin

doctor_fresh() {
        local rc=0
        "$BANGER" doctor >"$TMP/doc.out" 2>&1 || rc=$?
        # every check line is STATUS<TAB>name followed by an indented detail
        grep -Eq $'^PASS\tarchitecture$' "$TMP/doc.out" &&
        grep -Eq $'^PASS\tqemu$' "$TMP/doc.out" &&
        grep -Eq $'^(PASS|WARN)\tkvm$' "$TMP/doc.out" &&
        grep -Eq $'^PASS\tstate store$' "$TMP/doc.out" &&
        grep -Eq $'^PASS\tdebian mirror$' "$TMP/doc.out" &&
        grep -Eq '^  - ' "$TMP/doc.out" &&
        ! grep -Ev $'^(PASS|WARN|FAIL)\t|^  (- |fix: )' "$TMP/doc.out" &&
        expect_eq "$rc" 0 || { cat "$TMP/doc.out"; return 1; }
        # not installed and not asked for: optional, nothing to fix
        grep -A1 -E $'^PASS\tfirecracker$' "$TMP/doc.out" | grep -q 'the qemu backend is used' &&
        ! grep -A2 -E $'^[A-Z]+\tfirecracker$' "$TMP/doc.out" | grep -q 'fix:'
}
t "doctor on this host: truthful lines, exit 0" doctor_fresh

t "doctor changes nothing (no state, runtime or db created)" sh -c "[ ! -e '$STATE' ] && [ ! -e '$XDG_RUNTIME_DIR/banger' ]"

doctor_json() {
        "$BANGER" --json doctor | jq -e '.ok == true and (.checks | length) >= 10 and
           all(.checks[]; (.status | test("^(PASS|WARN|FAIL)$")) and (.check|length>0) and (.detail|length>0))' >/dev/null
}
t "doctor --json has the documented shape" doctor_json

doctor_fail() {
        mkdir -p "$(dirname "$CONF")"
        printf 'cidr = 99\n' >"$CONF"
        local rc=0; "$BANGER" doctor >"$TMP/docf.out" 2>&1 || rc=$?
        rm -f "$CONF"
        expect_eq "$rc" 1 && grep -Eq $'^FAIL\tconfig$' "$TMP/docf.out" && grep -q 'config.toml:1: cidr: must be between 8 and 30' "$TMP/docf.out"
}
t "doctor fails (exit 1) on a broken config and names it" doctor_fail

doctor_mirror_fallback() {
        local apt="$TMP/apt"; mkdir -p "$apt"
        BANGER_APT_DIR="$apt" "$BANGER" doctor >"$TMP/docm.out" 2>&1
        grep -A1 -E $'^WARN\tdebian mirror$' "$TMP/docm.out" | grep -q 'falling back to http://deb.debian.org/debian'
}
t "doctor warns when apt sources name no mirror" doctor_mirror_fallback

usage() { # args... ; expects exit 2 and a usage line
        local rc=0; "$BANGER" "$@" >"$TMP/u.out" 2>&1 || rc=$?
        expect_eq "$rc" 2 && grep -q '^usage: banger' "$TMP/u.out"
}
t "unknown command exits 2 with usage" usage frobnicate
t "unknown subcommand exits 2 with usage" usage daemon frobnicate
t "unknown flag exits 2 with the command's usage" sh -c "$(declare -f usage expect_eq); BANGER='$BANGER' TMP='$TMP'; usage config show --frob && grep -q '^usage: banger config show' '$TMP/u.out'"
t "extra argument exits 2" usage config show extra
t "missing argument exits 2" usage completion
t "bad shell exits 2" usage completion tcsh

completion() {
        local shell
        for shell in bash zsh fish powershell; do "$BANGER" completion "$shell" >"$TMP/comp.$shell" || return 1; done
        bash -n "$TMP/comp.bash" && fish -n "$TMP/comp.fish" || return 1
        # the scripts ask `banger __complete`, which knows every command and flag of the table
        local word
        for word in version ping doctor completion daemon config; do
                "$BANGER" __complete '' | cut -f1 | grep -qx -- "$word" || { echo "$word missing"; return 1; }
        done
        for word in status start stop operations; do
                "$BANGER" __complete daemon '' | cut -f1 | grep -qx -- "$word" || { echo "daemon $word missing"; return 1; }
        done
        for word in --running --json --socket; do
                "$BANGER" __complete daemon operations -- | cut -f1 | grep -qx -- "$word" || { echo "$word missing"; return 1; }
        done
        # bash: the script really completes (through the banger on PATH)
        PATH="$BANGER_BUILD:$PATH" bash -c ". '$TMP/comp.bash'; COMP_WORDS=(banger daemon s); COMP_CWORD=2; _banger; echo \"\${COMPREPLY[*]}\"" |
                grep -qx 'status start stop' || return 1
        # help texts (with apostrophes) stay out of the scripts
        ! grep -q "banger's" "$TMP/comp.bash" "$TMP/comp.zsh" "$TMP/comp.fish" "$TMP/comp.powershell" || return 1
        # test-only flags are nowhere a user looks
        ! "$BANGER" __complete update -- | grep -q 'manifest-url\|pubkey-file' &&
        ! "$BANGER" help update | grep -q 'manifest-url\|pubkey-file'
}
t "completion scripts (four shells) ask __complete, which covers every command and flag; bash completes; test-only flags hidden" completion

tty_colours() {
        # script(1) gives the CLI a real terminal
        env -u NO_COLOR script -qec "'$BANGER' doctor" /dev/null >"$TMP/tty.out" 2>&1
        grep -q $'\e\[32mPASS\e\[0m\tarchitecture' "$TMP/tty.out" || { cat -v "$TMP/tty.out" | head -3; return 1; }
        NO_COLOR=1 script -qec "'$BANGER' doctor" /dev/null >"$TMP/tty2.out" 2>&1
        ! grep -q $'\e\[' "$TMP/tty2.out" && grep -q $'^PASS\tarchitecture' <(tr -d '\r' <"$TMP/tty2.out") &&
        # not a terminal: never colours
        ! env -u NO_COLOR "$BANGER" doctor | grep -q $'\e\['
}
t "colours only on a terminal, and never with NO_COLOR" tty_colours

t "help lists commands" sh -c "'$BANGER' help | grep -q 'daemon operations' && '$BANGER' help daemon stop | grep -q '^usage: banger daemon stop'"

error_format() {
        local rc=0; "$BANGER" --socket "$TMP/nope.sock" ping >"$TMP/e.out" 2>&1 || rc=$?
        expect_eq "$rc" 1 && grep -q "^banger: cannot reach bangerd at $TMP/nope.sock" "$TMP/e.out" &&
        [ ! -e "$SOCK" ]
}
t "errors are 'banger: <message>', exit 1; --socket never auto-starts" error_format

rpc_error_format() {
        "$BANGER" daemon start >/dev/null
        local rc=0; "$BANGER" --socket "$SOCK" ping >/dev/null || return 1
        # an RPC error prints the code, message and op id
        printf '{"v":1,"id":1,"method":"nope"}\n' | socat - "UNIX-CONNECT:$SOCK" | jq -e .error.op_id >/dev/null
}
t "rpc errors carry op ids" rpc_error_format

finish
