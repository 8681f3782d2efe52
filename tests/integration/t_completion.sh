#!/usr/bin/env bash
# Live completion: `banger __complete` against a daemon with two VM rows
# (created, never booted: a stand-in kernel and rootfs), an image and a
# kernel; silent and quick with the daemon down or stuck; the bash, zsh,
# fish and PowerShell scripts driven through it.
. "$(dirname "$0")/lib.sh"
begin
export PATH="$BANGER_BUILD:$PATH" # the scripts run the banger on PATH

C() { "$BANGER" __complete "$@"; }
# the candidates only (descriptions cut), sorted, on one line
words() { cut -f1 | sort | tr '\n' ' ' | sed 's/ $//'; }

setup() {
        "$BANGER" daemon start >/dev/null || return 1
        mkdir -p "$TMP/kd" && head -c 4096 /dev/urandom >"$TMP/kd/vmlinux" && head -c 1M /dev/zero >"$TMP/rootfs" &&
        "$BANGER" kernel import tinyk --from "$TMP/kd" >/dev/null &&
        "$BANGER" image register --name tiny --rootfs "$TMP/rootfs" --kernel-ref tinyk --init-mode fast >/dev/null &&
        "$BANGER" vm create --name alpha --image tiny --no-start >/dev/null 2>&1 &&
        "$BANGER" vm create --name beta --image tiny --no-start >/dev/null 2>&1
}
t "daemon with image 'tiny', kernel 'tinyk' and VM rows alpha, beta (not booted)" setup

live() {
        expect_eq "$(C vm stop '' | words)" "alpha beta" &&
        expect_eq "$(C vm stop alpha '' | words)" "beta" &&
        expect_eq "$(C vm ssh a | words)" "alpha" &&
        expect_eq "$(C --json vm show '' | words)" "alpha beta" &&
        expect_eq "$(C vm create --image '' | words)" "tiny" &&
        expect_eq "$(C image register --kernel-ref '' | words)" "tinyk" &&
        expect_eq "$(C kernel show '' | words)" "tinyk" &&
        expect_eq "$(C image export t | words)" "tiny" &&
        expect_eq "$(C vm snapshot '' | words)" "alpha beta list rm" &&
        expect_eq "$(C vm create --from-snapshot '' | words)" "alpha: beta:" &&
        # a literal "" is an empty word (PowerShell before 7.3)
        expect_eq "$(C vm stop '""' | words)" "alpha beta"
}
t "VM, image and kernel names from the daemon (named VMs not offered twice)" live

# The positional table lives apart from the command table: no command that
# takes a VM (an image, a kernel) first may be missing from it.
every_ref() {
        local g c usage want n=0
        for g in vm image kernel; do
                for c in $(C "$g" '' | cut -f1); do
                        usage=$("$BANGER" help "$g" "$c" | head -1 | sed 's/\[-[^]]*\] //g') # flags out
                        case "$g:$usage" in
                        "vm:usage: banger vm $c VM"*) want=alpha ;;
                        "image:usage: banger image $c NAME"*) want=tiny ;;
                        "kernel:usage: banger kernel $c NAME"*) want=tinyk ;;
                        *) continue ;;
                        esac
                        [ "$g $c" = "kernel import" ] && continue # a new name
                        C "$g" "$c" '' | cut -f1 | grep -qx "$want" || { echo "$g $c: no $want"; return 1; }
                        n=$((n + 1))
                done
        done
        [ "$n" -ge 20 ] || { echo "only $n commands checked"; return 1; }
}
t "every command whose first argument is a VM, image or kernel completes its names" every_ref

table() {
        C '' | words >"$TMP/top" &&
        for w in vm image kernel daemon system template config version ping doctor completion help update ssh-config; do
                grep -qw -- "$w" "$TMP/top" || { echo "$w missing: $(cat "$TMP/top")"; return 1; }
        done
        expect_eq "$(C d | words)" "daemon doctor" &&
        expect_eq "$(C daemon s | words)" "start status stop" &&
        C vm create -- | words >"$TMP/flags" &&
        for f in --name --image --vcpu --memory --disk-size --nat --no-start --cold --from-snapshot --json --socket; do
                grep -qw -- "$f" "$TMP/flags" || { echo "$f missing: $(cat "$TMP/flags")"; return 1; }
        done
        # descriptions after a TAB, help texts with apostrophes as they are
        C ssh | grep -qxF "ssh-config	write banger's ssh config for <name>.vm, reached through 'banger vm proxy' (and include it)" &&
        ! C update -- | grep -q 'manifest-url\|pubkey-file' &&
        expect_eq "$(C vm kill --signal '' | words)" "HUP INT KILL QUIT TERM USR1 USR2" &&
        expect_eq "$(C completion '' | words)" "bash fish powershell zsh" &&
        expect_eq "$(C help vm st | words)" "start stats stop" &&
        expect_eq "$(C nosuch '' | words)" "" &&
        expect_eq "$(C template rm '' | words)" "" && # no templates without a boot
        expect_eq "$(C vm exec alpha -- '' | words)" ""
}
t "groups, commands and flags from the table; enum flag values; nothing for unknown words or after --" table

files() {
        expect_eq "$(C image register --rootfs '')" ":files" &&
        expect_eq "$(C --socket '')" ":files" &&
        expect_eq "$(C kernel import k --from '')" ":dirs" &&
        expect_eq "$(C vm workspace prepare alpha '')" ":dirs" &&
        expect_eq "$(C vm run '')" ":dirs"
}
t "PATH arguments: a first line :files or :dirs hands over to the shell" files

quick_silent() { # args...: no output, nothing on stderr, exit 0, within 3 s
        local t0=$SECONDS rc=0
        timeout 5 "$BANGER" __complete "$@" >"$TMP/q.out" 2>"$TMP/q.err" || rc=$?
        expect_eq "$rc" 0 && expect_eq "$(cat "$TMP/q.out" "$TMP/q.err")" "" &&
        [ $((SECONDS - t0)) -le 3 ] || { echo "took $((SECONDS - t0)) s"; return 1; }
}

stuck() { # a socket that accepts and never answers
        python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(8); print("up", flush=True)
conns = []
while True: conns.append(s.accept())' "$TMP/stuck.sock" >"$TMP/stuck.log" 2>&1 &
        local pid=$!
        wait_for 5 "the stuck listener" grep -q up "$TMP/stuck.log" || return 1
        quick_silent --socket "$TMP/stuck.sock" vm stop ''
        local rc=$?
        kill "$pid"
        return $rc
}
t "a daemon that does not answer: nothing, exit 0, about a second" stuck

down() {
        "$BANGER" daemon stop >/dev/null || return 1
        quick_silent vm stop '' && quick_silent vm create --image '' &&
        [ ! -S "$SOCK" ] && # not auto-started
        expect_eq "$(C vm s | words)" "set show snapshot ssh start stats stop" # the table still answers
}
t "daemon down: no live values, exit 0 quickly, never auto-started" down
"$BANGER" daemon start >/dev/null

scripts() {
        local s
        for s in bash zsh fish powershell; do "$BANGER" completion "$s" >"$TMP/comp.$s" || return 1; done
        for s in bash zsh fish powershell; do grep -q '__complete' "$TMP/comp.$s" || { echo "$s"; return 1; }; done
        bash -n "$TMP/comp.bash" && fish -n "$TMP/comp.fish"
}
t "completion bash|zsh|fish|powershell: scripts that ask __complete; bash -n and fish -n pass" scripts

bash_drive() { # words...: COMPREPLY of _banger for them, the last one being completed
        bash -c '. "$1"; shift; COMP_WORDS=(banger "$@"); COMP_CWORD=$#; _banger; printf "%s\n" "${COMPREPLY[@]}"' \
                _ "$TMP/comp.bash" "$@" | sort | tr '\n' ' ' | sed 's/ $//'
}
bash_script() {
        touch "$TMP/rootfs-b.ext4"
        expect_eq "$(bash_drive vm stop '')" "alpha beta" &&
        expect_eq "$(bash_drive vm create --image '')" "tiny" &&
        expect_eq "$(bash_drive daemon s)" "start status stop" &&
        expect_eq "$(cd "$TMP" && bash_drive image register --rootfs rootfs)" "rootfs rootfs-b.ext4"
}
t "bash: _banger with COMP_WORDS/COMP_CWORD completes VM and image names, commands and files" bash_script

# With the bash-completion package the script reads the words with
# _get_comp_words_by_ref (VM:NAME stays one word) from COMP_LINE.
bash_completion_pkg() {
        local line="$1"
        bash -c '. /usr/share/bash-completion/bash_completion; . "$1"; COMP_LINE=$2; COMP_POINT=${#2}
                 read -ra COMP_WORDS <<<"$2"; COMP_CWORD=${#COMP_WORDS[@]}
                 [[ $2 == *" " ]] && COMP_WORDS+=(""); [[ $2 == *" " ]] || COMP_CWORD=$((COMP_CWORD - 1))
                 _banger; printf "%s\n" "${COMPREPLY[@]}"' _ "$TMP/comp.bash" "$line" | sort | tr '\n' ' ' | sed 's/ $//'
}
bash_pkg_checks() {
        expect_eq "$(bash_completion_pkg "banger vm stop ")" "alpha beta" &&
        expect_eq "$(bash_completion_pkg "banger vm create --from-snapshot al")" "alpha:" &&
        expect_eq "$(bash_completion_pkg "banger vm create --im")" "--image"
}
if [ -f /usr/share/bash-completion/bash_completion ]; then
        t "bash with bash-completion loaded: the same candidates" bash_pkg_checks
else
        skip "bash with bash-completion" "bash-completion not installed"
fi

zsh_script() {
        # compadd and _files stubbed: what the script hands to zsh
        zsh -fc 'compdef() { :; }; _files() { print -r -- "FILES$*"; }
                 compadd() { while [[ $1 != -- ]]; do shift; done; shift; print -rl -- "$@"; }
                 source "$1"; shift; words=(banger "$@"); CURRENT=$#words; _banger' _ "$TMP/comp.zsh" "$@" |
                sort | tr '\n' ' ' | sed 's/ $//'
}
zsh_checks() {
        zsh -n "$TMP/comp.zsh" &&
        expect_eq "$(zsh_script vm stop '')" "alpha beta" &&
        expect_eq "$(zsh_script vm create --image '')" "tiny" &&
        expect_eq "$(zsh_script image register --rootfs '')" "FILES" &&
        expect_eq "$(zsh_script kernel import k --from '')" "FILES-/" &&
        expect_eq "$(zsh_script vm create --from-snapshot al)" "alpha:"
}
if command -v zsh >/dev/null; then
        t "zsh: zsh -n; _banger hands VM and image names to compadd, files to _files" zsh_checks
else
        skip "zsh script" "zsh not installed"
fi

fish_checks() {
        touch "$TMP/rootfs-f.ext4"
        expect_eq "$(fish -c "source '$TMP/comp.fish'; complete -C 'banger vm stop '" | words)" "alpha beta" &&
        expect_eq "$(fish -c "source '$TMP/comp.fish'; complete -C 'banger vm create --image '" | words)" "tiny" &&
        fish -c "source '$TMP/comp.fish'; complete -C 'banger ssh'" | grep -qF "write banger's ssh config" &&
        (cd "$TMP" && fish -c "source '$TMP/comp.fish'; complete -C 'banger image register --rootfs rootfs-'") |
                grep -q '^rootfs-f.ext4'
}
t "fish: complete -C offers VM and image names, help texts with apostrophes, files" fish_checks

# No pwsh here: the PowerShell script is checked for balanced brackets and
# quotes only, and that it registers a native completer for banger.
powershell_checks() {
        if command -v pwsh >/dev/null; then
                pwsh -NoProfile -Command "\$null = [System.Management.Automation.Language.Parser]::ParseFile('$TMP/comp.powershell', [ref]\$null, [ref]\$e); if (\$e) { \$e; exit 1 }"
                return
        fi
        grep -q 'Register-ArgumentCompleter -Native -CommandName banger' "$TMP/comp.powershell" &&
        python3 -c '
import sys
text = open(sys.argv[1]).read()
stack, quote = [], None
pairs = {")": "(", "}": "{", "]": "["}
for c in text:
    if quote:
        if c == quote: quote = None
    elif c in "\x27\"": quote = c
    elif c in "({[": stack.append(c)
    elif c in ")}]":
        if not stack or stack.pop() != pairs[c]: sys.exit("unbalanced " + c)
if stack or quote: sys.exit("unclosed %s %s" % (stack, quote))' "$TMP/comp.powershell"
}
if command -v pwsh >/dev/null; then
        t "powershell: the script parses" powershell_checks
else
        t "powershell (no pwsh here: brackets and quotes balance only)" powershell_checks
fi

finish
