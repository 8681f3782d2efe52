#!/usr/bin/env bash
# Progress on stderr: live on a (pseudo-)terminal, plain lines without one,
# nothing with --quiet. A bundle import (a byte counter, no network, no VM)
# is the long operation watched.
. "$(dirname "$0")/lib.sh"
begin

ESC=$'\033' CR=$'\r'
BUNDLE="$TMP/big.tar.zst"

# 48 MiB that zstd cannot shrink, so the import takes long enough to count
make_bundle() {
        mkdir -p "$TMP/bundle/content" &&
        head -c 48M /dev/urandom >"$TMP/bundle/content/noise" &&
        truncate -s 96M "$TMP/bundle/rootfs.ext4" &&
        mkfs.ext4 -q -F -d "$TMP/bundle/content" "$TMP/bundle/rootfs.ext4" &&
        echo '{"format":1,"name":"big","init_mode":"fast"}' >"$TMP/bundle/manifest.json" &&
        tar --zstd -cf "$BUNDLE" -C "$TMP/bundle" manifest.json rootfs.ext4
}
t "a 48 MiB bundle to import" make_bundle

# on a pseudo-terminal: script(1) records what the terminal got (stdout away)
on_tty() { # file cmd...
        local f="$1"; shift
        script -qec "$(printf '%q ' "$@") >/dev/null" /dev/null >"$f" </dev/null
}
# the same with stdout on the terminal too
on_tty_all() { # file cmd...
        local f="$1"; shift
        script -qec "$(printf '%q ' "$@")" /dev/null >"$f" </dev/null
}
# \r other than the terminal's own \r\n
redraws() { sed "s/$CR\$//" "$1" | grep -q "$CR"; }

tty_live() {
        on_tty "$TMP/tty.out" "$BANGER" --progress=tty image pull --name live "$BUNDLE" || { cat -A "$TMP/tty.out"; return 1; }
        redraws "$TMP/tty.out" &&
        grep -aq "$CR[-|/\\\\] import" "$TMP/tty.out" &&       # a spinner frame, redrawn in place
        grep -aq "$ESC\\[K" "$TMP/tty.out" &&                  # each redraw clears the rest of the line
        grep -aEq 'import: [0-9.]+ [KMG]iB / 48\.[0-9] MiB  [0-9]{1,3}%' "$TMP/tty.out" &&
        grep -aEq '[0-9]+\.[0-9]s' "$TMP/tty.out" &&          # elapsed time
        # the finished stage stays as a line with its duration
        grep -aEq "(^|$ESC\\[K)==> import: $BUNDLE \\([0-9.]+ MiB in [0-9.]+s\\)" "$TMP/tty.out" || { cat -A "$TMP/tty.out"; return 1; }
}
t "--progress=tty on a terminal: spinner, percent, redrawn in place; the stage left with its duration" tty_live

plain() {
        "$BANGER" image pull --name plain "$BUNDLE" >"$TMP/plain.out" 2>"$TMP/plain.err" || { cat "$TMP/plain.err"; return 1; }
        grep -q '^image plain ready' "$TMP/plain.out" &&
        ! grep -q "$CR" "$TMP/plain.err" && ! grep -q "$ESC" "$TMP/plain.err" &&
        expect_eq "$(grep -c '^==> import: ' "$TMP/plain.err")" 1 &&
        grep -Eq '^    import: 48\.0 MiB / 48\.0 MiB  100%' "$TMP/plain.err" &&
        # counters only now and then: the first, each 25% step, every 5 s
        [ "$(grep -c '^    import: ' "$TMP/plain.err")" -le 6 ] || { cat -A "$TMP/plain.err"; return 1; }
}
t "no terminal: a line per stage, a few byte counters, no escape codes or \\r" plain

forced_plain() {
        on_tty "$TMP/fp.out" "$BANGER" --progress=plain image pull --name fplain "$BUNDLE" &&
        ! redraws "$TMP/fp.out" && ! grep -q "$ESC" "$TMP/fp.out" && grep -aq '^==> import: ' "$TMP/fp.out" ||
                { cat -A "$TMP/fp.out"; return 1; }
}
t "--progress=plain on a terminal: plain lines" forced_plain

auto_modes() {
        # NO_COLOR (lib.sh sets it) and TERM=dumb: plain even on a terminal
        on_tty "$TMP/a1.out" "$BANGER" image pull --name auto1 "$BUNDLE" &&
        ! redraws "$TMP/a1.out" && ! grep -q "$ESC" "$TMP/a1.out" || { echo "NO_COLOR:"; cat -A "$TMP/a1.out"; return 1; }
        on_tty "$TMP/a2.out" env -u NO_COLOR TERM=dumb "$BANGER" image pull --name auto2 "$BUNDLE" &&
        ! redraws "$TMP/a2.out" && ! grep -q "$ESC" "$TMP/a2.out" || { echo "TERM=dumb:"; cat -A "$TMP/a2.out"; return 1; }
        on_tty "$TMP/a3.out" env -u NO_COLOR TERM=xterm "$BANGER" image pull --name auto3 "$BUNDLE" &&
        redraws "$TMP/a3.out" && grep -aq "$ESC\\[K" "$TMP/a3.out" || { echo "xterm:"; cat -A "$TMP/a3.out"; return 1; }
}
t "--progress=auto: live on a terminal, plain under NO_COLOR or TERM=dumb" auto_modes

quiet() {
        "$BANGER" --quiet image pull --name quiet "$BUNDLE" >"$TMP/q.out" 2>"$TMP/q.err" || { cat "$TMP/q.err"; return 1; }
        [ ! -s "$TMP/q.err" ] || { echo "stderr:"; cat -A "$TMP/q.err"; return 1; }
        on_tty "$TMP/q.tty" "$BANGER" image pull -q --progress=tty --name quiet2 "$BUNDLE" &&
        [ ! -s "$TMP/q.tty" ] || { echo "on a terminal:"; cat -A "$TMP/q.tty"; return 1; }
        grep -q '^image quiet ready' "$TMP/q.out"
}
t "--quiet (-q): nothing on stderr on success, even with --progress=tty" quiet

quiet_error() {
        local rc=0
        "$BANGER" -q image pull --name quiet "$BUNDLE" >/dev/null 2>"$TMP/qe.err" || rc=$?
        expect_eq "$rc" 1 && grep -q "^banger: .*quiet" "$TMP/qe.err" && ! grep -q '==>' "$TMP/qe.err" ||
                { cat "$TMP/qe.err"; return 1; }
}
t "--quiet still reports errors" quiet_error

# a failure while the live line is up: the line is cleared, then the error
tty_error() {
        mkdir -p "$TMP/bad" && cp "$TMP/bundle/manifest.json" "$TMP/bad/" && echo x >"$TMP/bad/run.sh" &&
        sed -i 's/"big"/"bad"/' "$TMP/bad/manifest.json" &&
        tar --zstd -cf "$TMP/bad.tar.zst" -C "$TMP/bundle" rootfs.ext4 -C "$TMP/bad" manifest.json run.sh || return 1
        on_tty "$TMP/te.out" "$BANGER" --progress=tty image pull "$TMP/bad.tar.zst" && return 1
        python3 - "$TMP/te.out" <<'PY' || { cat -A "$TMP/te.out"; return 1; }
import sys
t = open(sys.argv[1], "rb").read()
i = t.find(b"banger: ")
assert i > 0 and b"unexpected entry" in t[i:], "no error"
assert t[:i].endswith(b"\r\x1b[K") or t[:i].endswith(b"\n"), "the error is glued to the live line"
assert b"==> import" not in t, "a failed stage left as if finished"
PY
}
t "an error on a terminal clears the live line first; the failed stage is not shown as finished" tty_error

flags() {
        local rc=0
        "$BANGER" --progress=fancy ping >/dev/null 2>"$TMP/f.err" || rc=$?
        expect_eq "$rc" 2 && grep -q -- '--progress needs auto, plain or tty' "$TMP/f.err" || return 1
        "$BANGER" --help | grep -q -- '-q, --quiet' && "$BANGER" --help | grep -q -- '--progress MODE' || return 1
        # vm list keeps its own -q (ids only)
        expect_eq "$("$BANGER" vm list -q)" "" && "$BANGER" vm list | grep -q '^ID '
}
t "--progress takes auto|plain|tty; --quiet and --progress in --help; vm list -q is still ids only" flags

# ---- a kernel download and vm create (--no-start: no boot) ------------------
# The kernel comes from the Debian mirror, as in t_artifacts.sh.
kernel_tty() {
        on_tty "$TMP/k.out" "$BANGER" --progress=tty kernel pull --force debian-cloud-6.1 || { cat -A "$TMP/k.out"; return 1; }
        grep -aEq "${CR}[-|/\\\\] download: [0-9.]+ [KMG]?i?B / [0-9.]+ MiB  [0-9]{1,3}%" "$TMP/k.out" &&
        grep -aEq "(^|$ESC\\[K)==> download: linux-image-.* \\([0-9.]+ MiB in [0-9.]+s\\)" "$TMP/k.out" &&
        grep -aEq "(^|$ESC\\[K)==> extract: .* \\([0-9.]+s\\)" "$TMP/k.out" || { cat -A "$TMP/k.out" | tail -20; return 1; }
}
t "kernel pull on a terminal: the download with percent, each stage left with its duration" kernel_tty

register() {
        # a work seed of 512 MiB of data: each create copies it into the VM's
        # work disk, so that "prepare disks" runs long enough to be seen
        # running (without it a --no-start create takes ~30 ms here)
        mkdir -p "$TMP/seed" && head -c 512M /dev/urandom >"$TMP/seed/noise" &&
        truncate -s 600M "$TMP/seed.ext4" && mkfs.ext4 -q -F -d "$TMP/seed" "$TMP/seed.ext4" && rm -rf "$TMP/seed" &&
        "$BANGER" image register --name reg --rootfs "$TMP/bundle/rootfs.ext4" --work-seed "$TMP/seed.ext4" \
                --kernel-ref debian-cloud-6.1 --init-mode fast >/dev/null
}
t "an image on that kernel" register

create_tty_once() {
        on_tty_all "$TMP/c.out" "$BANGER" --progress=tty vm create --no-start --image reg --name "$1" || { cat -A "$TMP/c.out"; return 1; }
        # a running stage live (spinner, detail, elapsed; which one depends on how fast the
        # stages go: at most ten redraws a second), then each finished one as a line with its time
        grep -aEq "${CR}[-|/\\\\] (resolve image|prepare disks): reg.*  [0-9]+\\.[0-9]s$ESC\\[K" "$TMP/c.out" &&
        grep -aEq "(^|$ESC\\[K)  prepare disks +[0-9.]+s  reg overlay" "$TMP/c.out"
}
create_tty() {
        # A --no-start create takes ~0.3 s (the seed's copy): the CLI's first status
        # poll can still come after it finished (a loaded machine), and then nothing
        # was running to show. Three tries; a CLI that never draws the running stage
        # fails all three.
        local n; for n in live live2 live3; do
                create_tty_once "$n" && return 0
                "$BANGER" vm delete "$n" >/dev/null 2>&1 || return 1
        done
        cat -A "$TMP/c.out"; return 1
}
t "vm create on a terminal: the running stage live, finished ones as lines" create_tty

create_plain() {
        "$BANGER" vm create --no-start --image reg --name plain >"$TMP/cp.out" 2>"$TMP/cp.err" || { cat "$TMP/cp.err"; return 1; }
        ! grep -q "$CR\|$ESC" "$TMP/cp.out" "$TMP/cp.err" && grep -q '^  prepare disks ' "$TMP/cp.out" ||
                { cat -A "$TMP/cp.out" "$TMP/cp.err"; return 1; }
        "$BANGER" --quiet vm create --no-start --image reg --name quiet >"$TMP/cq.out" 2>"$TMP/cq.err" || { cat "$TMP/cq.err"; return 1; }
        [ ! -s "$TMP/cq.err" ] && [ "$(wc -l <"$TMP/cq.out")" -eq 1 ] && grep -q '^vm quiet is created at ' "$TMP/cq.out" ||
                { cat "$TMP/cq.out" "$TMP/cq.err"; return 1; }
}
t "vm create without a terminal: plain lines; --quiet: only the result line" create_plain

finish
