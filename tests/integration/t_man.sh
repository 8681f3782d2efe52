#!/usr/bin/env bash
# Man pages (generated at build time by `banger __man N`) and `banger help`.
# No daemon, no VM.
. "$(dirname "$0")/lib.sh"
begin

SRC=$(cd "$(dirname "$0")/../.." && pwd)
PAGES="banger.1 bangerd.8 banger-config.5"

# a page as man shows it: plain ASCII, no overstrikes, 80 columns
render() { MANWIDTH=80 LC_ALL=C.UTF-8 man -E ascii -l "$1" 2>"$TMP/man.err"; } # piped: no overstrikes

built() {
        local p
        for p in $PAGES; do
                [ -s "$BANGER_BUILD/$p" ] || { echo "$BANGER_BUILD/$p missing"; return 1; }
                # the build's copy is what the generator prints now
                "$BANGER" __man "${p##*.}" | cmp - "$BANGER_BUILD/$p" || return 1
        done
}
t "the build made banger.1, bangerd.8 and banger-config.5 from the tables" built

renders_clean() {
        local p
        for p in $PAGES; do
                render "$BANGER_BUILD/$p" >"$TMP/$p.txt"
                [ -s "$TMP/$p.txt" ] || { echo "$p: nothing rendered"; return 1; }
                [ ! -s "$TMP/man.err" ] || { echo "$p:"; cat "$TMP/man.err"; return 1; }
                groff -man -ww -z "$BANGER_BUILD/$p" 2>"$TMP/groff.err"
                [ ! -s "$TMP/groff.err" ] || { echo "$p:"; cat "$TMP/groff.err"; return 1; }
        done
}
t "every page renders with man and groff -ww without a warning" renders_clean

unknown_page() {
        local rc=0; "$BANGER" __man 3 >"$TMP/m3.out" 2>&1 || rc=$?
        expect_eq "$rc" 2 && grep -q "no page in section '3'" "$TMP/m3.out"
}
t "__man of another section exits 2" unknown_page

# a page's source with roff's minus signs and font changes undone, for grep
plain() { sed 's/\\-/-/g; s/\\f[BIR]//g' "$BANGER_BUILD/$1"; }

# Every command `banger --help` lists has its section (".SS group name") in banger(1)
every_command() {
        "$BANGER" --help | sed -n '/^commands:/,/^$/p' |
                sed -n 's/^  \([a-z-]*\)\( [a-z-][a-z-]*\)\{0,1\} .*/\1\2/p' | sort >"$TMP/cmds"
        plain banger.1 | sed -n 's/^\.SS //p' | sort >"$TMP/sects"
        [ "$(wc -l <"$TMP/cmds")" -ge 40 ] || { cat "$TMP/cmds"; return 1; }
        diff "$TMP/cmds" "$TMP/sects"
}
t "banger(1) has a section for every command 'banger --help' lists" every_command

every_flag() {
        local f
        plain banger.1 >"$TMP/b1"
        for f in $("$BANGER" help vm run | grep -o -- '--[a-z-]*' | sort -u) --json --socket --verbose; do
                grep -q -- "^\(-., \)\{0,1\}$f\b" "$TMP/b1" || { echo "no $f"; return 1; }
        done
}
t "banger(1) has vm run's flags and the global flags" every_flag

every_group_example() {
        local g
        for g in "" DAEMON SYSTEM KERNEL IMAGE VM TEMPLATE CONFIG; do
                sed -n "/^\.SH \"${g:+$g }COMMANDS\"/,/^\.SS/p" "$BANGER_BUILD/banger.1" | grep -q '^Examples:' ||
                        { echo "no examples for '$g'"; return 1; }
        done
}
t "every command group's section has examples" every_group_example

# the config keys, read from the key table's source, not from the generator
every_key() {
        local keys k
        keys=$(grep -o '{ [A-Za-z_"]*, "[a-z_]*", KIND_' "$SRC/src/core/config.c" | sed 's/.*, "\([a-z_]*\)", KIND_/\1/')
        [ "$(echo "$keys" | wc -l)" -ge 20 ] || { echo "found only: $keys"; return 1; }
        plain banger-config.5 >"$TMP/c5"
        for k in $keys; do
                grep -q "^$k (" "$TMP/c5" || { echo "no key $k"; return 1; }
        done
        grep -qx 'cidr (integer, default 24)' "$TMP/c5" && grep -qx 'warm_start (string, default "on")' "$TMP/c5" && grep -q 'prefix length of the guest network' "$TMP/c5"
}
t "banger-config(5) has every config key with type, default and description" every_key

daemon_options() {
        local o
        plain bangerd.8 >"$TMP/d8"
        for o in $("$BANGERD" --help | grep -o -- '--[a-z-]*' | sort -u); do
                grep -q -- "^\(-., \)\{0,1\}$o\b" "$TMP/d8" || { echo "no option $o"; return 1; }
        done
        render "$BANGER_BUILD/bangerd.8" >"$TMP/d8.txt"
        grep -q 'SIGTERM, SIGINT' "$TMP/d8.txt" && grep -A1 'SIGHUP' "$TMP/d8.txt" | grep -q 're-read the config file' &&
                grep -q '^SIGNALS' "$TMP/d8.txt" &&
                grep -q '^FILES' "$TMP/d8.txt" && grep -q 'bangerd.sock' "$TMP/d8.txt"
}
t "bangerd(8) has every option of 'bangerd --help', SIGNALS and FILES" daemon_options

# `banger help vm create` is vm create's section of banger(1), word for word
words() { tr -s ' \n\t' '\n\n\n' | grep -v '^$'; }
help_matches_man() {
        "$BANGER" help vm create >"$TMP/help.txt"
        local f
        for f in name image vcpu memory disk-size system-overlay-size nat isolate no-start cold from-snapshot; do
                grep -q -- "--$f" "$TMP/help.txt" || { echo "no --$f"; return 1; }
        done
        render "$BANGER_BUILD/banger.1" | awk '/^   vm create$/ {on=1; next} on && /^   [^ ]|^[^ ]/ {exit} on' \
                >"$TMP/sect.txt"
        [ -s "$TMP/sect.txt" ] || { echo "no vm create section"; return 1; }
        words <"$TMP/help.txt" >"$TMP/a"
        words <"$TMP/sect.txt" >"$TMP/b"
        diff "$TMP/a" "$TMP/b"
}
t "banger help vm create: every flag, and the same text as its man section" help_matches_man

help_group() {
        "$BANGER" help vm >"$TMP/hg.out" && grep -q '^examples:' "$TMP/hg.out" &&
                grep -q '^  banger vm run \. -- make test$' "$TMP/hg.out"
}
t "banger help vm lists its commands and examples" help_group

help_top() { "$BANGER" help | grep -q '^commands:' && "$BANGER" help | grep -q 'vm create'; }
t "banger help alone prints the top-level help" help_top

help_unknown() {
        local rc=0; "$BANGER" help nosuchcommand >"$TMP/hu.out" 2>&1 || rc=$?
        expect_eq "$rc" 2 && grep -q "^banger: unknown command 'nosuchcommand'" "$TMP/hu.out" &&
                rc=0 && { "$BANGER" help vm nosuch >"$TMP/hu.out" 2>&1 || rc=$?; } &&
                expect_eq "$rc" 2 && grep -q "^banger: unknown command 'vm nosuch'" "$TMP/hu.out"
}
t "banger help nosuchcommand: a clear error, exit 2" help_unknown

installed() {
        local d="$TMP/dest"
        meson install -C "$BANGER_BUILD" --no-rebuild --destdir "$d" >"$TMP/inst.out" 2>&1 || { cat "$TMP/inst.out"; return 1; }
        local p
        for p in man1/banger.1 man8/bangerd.8 man5/banger-config.5; do
                find "$d" -path "*/man/$p" | grep -q . || { echo "$p not installed"; return 1; }
        done
}
if command -v meson >/dev/null && [ -f "$BANGER_BUILD/meson-info/meson-info.json" ]; then
        t "meson install puts the three pages under share/man" installed
else
        skip "meson install puts the three pages under share/man" "no meson build dir"
fi

finish
