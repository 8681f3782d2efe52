#!/usr/bin/env bash
# banger update, for real: a system install below $TMP/sys (a throwaway
# owner, both services in a private network namespace, as t_system.sh makes
# it), a second release built from these sources as the next patch version,
# signed with a key made here and served over HTTP inside the namespace.
# Without update_url, with an operation in flight, or with a release that is
# not what it claims (the compiled-in key's or another key's signature, a
# tarball that is not the one SHA256SUMS lists, a sixth file) the update is
# refused and the install stays byte for byte as it was; a new version whose
# doctor FAILs is rolled back; a good one replaces all five programs and
# restarts both services. (Normal build only: it builds banger a second time.)
. "$(dirname "$0")/lib.sh"
begin

if [ "${BANGER_SUITE:-std}" != std ]; then
        skip "banger update" "runs in the normal build only (it builds a second release)"
        finish
        exit
fi

vm_begin
SRC=$(cd "$(dirname "$0")/../.." && pwd)
sys_begin bgu
STAGING="$R/var/cache/banger/updates"
B2="$TMP/b2"
WWW="$TMP/www"
OLD=$("$BANGER" --json version | jq -r .version)
NEW="$(echo "$OLD" | awk -F. '{printf "%d.%d.%d", $1, $2, $3 + 1}')"
PROGS=(bin/banger bin/bangerd bin/bangerd-root lib/banger/banger-agent lib/banger/banger-init)

# As root, the installed banger: what `sudo banger update` runs.
ROOT() { ip netns exec "$NS" env BANGER_INSTALL_FILE="$IFILE" "$R/usr/local/bin/banger" "$@"; }
url() { echo "http://127.0.0.1:$(cat "$TMP/port")/$1"; }

t "a throwaway owner ($OWNER) and an empty root" sys_owner

install() {
        sys_install && U ping | grep -q "^bangerd v$OLD "
}
t "system install --root of v$OLD, helper and daemon started in the namespace" install

# The install as it is now: every program's hash, install.toml, the daemon's pid.
snapshot() { (cd "$R/usr/local" && sha256sum "${PROGS[@]}") >"$TMP/progs.sha" && cp "$IFILE" "$TMP/install.toml.before"; }
# No <program>.previous is left.
none_kept() { ! compgen -G "$R/usr/local/bin/*.previous" >/dev/null && ! compgen -G "$R/usr/local/lib/banger/*.previous" >/dev/null; }
# After a refusal: the same programs and install.toml, nothing staged or kept aside.
unchanged() {
        (cd "$R/usr/local" && sha256sum --quiet -c "$TMP/progs.sha") || { echo "the programs changed"; return 1; }
        cmp -s "$IFILE" "$TMP/install.toml.before" || { echo "install.toml changed"; diff "$TMP/install.toml.before" "$IFILE"; return 1; }
        [ ! -e "$STAGING" ] || { echo "staging left: $(ls -la "$STAGING")"; return 1; }
        none_kept || { echo ".previous files left"; return 1; }
}
t "a snapshot of the installed programs" snapshot

# Runs `banger update ARGS` as root: rc in $TMP/rc, output in $TMP/up.out.
update() { local rc=0; ROOT update "$@" >"$TMP/up.out" 2>&1 || rc=$?; echo "$rc" >"$TMP/rc"; }
# The update failed (exit 1) with a message matching $1, and changed nothing.
refused() {
        expect_eq "$(cat "$TMP/rc")" 1 || { cat "$TMP/up.out"; return 1; }
        grep -Eq -- "$1" "$TMP/up.out" || { cat "$TMP/up.out"; echo "no /$1/"; return 1; }
        unchanged
}

no_url() {
        update
        refused "^banger: update_url is not set: set it in $ICONF to where banger's releases are published"
}
t "update without update_url in the install's config.toml is refused and says where to set it" no_url

build2() {
        meson setup "$B2" "$SRC" -Dversion_override="$NEW" -Dagent=true >"$TMP/b2-setup.log" 2>&1 ||
                { tail -20 "$TMP/b2-setup.log"; return 1; }
        ninja -C "$B2" banger bangerd bangerd-root banger-agent banger-init >"$TMP/b2-build.log" 2>&1 ||
                { tail -30 "$TMP/b2-build.log"; return 1; }
        "$B2/banger" --version | grep -q "^banger v$NEW "
}
t "v$NEW built from the same sources (-Dversion_override)" build2

keys() {
        mkdir -p "$TMP/keys" && cd "$TMP/keys" || return 1
        openssl ecparam -name prime256v1 -genkey -noout -out key.pem && openssl ec -in key.pem -pubout -out pub.pem 2>/dev/null &&
        openssl ecparam -name prime256v1 -genkey -noout -out other.pem
}
# A site per case: good/ is a release made by scripts/make-release; the others are copies spoiled one way each.
sites() {
        "$SRC/scripts/make-release" "$WWW/good" "$NEW" "$B2" "$TMP/keys/key.pem" >"$TMP/mr.out" || { cat "$TMP/mr.out"; return 1; }
        jq -e --arg v "$NEW" '.format == 1 and .latest_stable == $v and .releases[0].version == $v' "$WWW/good/manifest.json" >/dev/null || return 1
        local d tb="banger-$NEW-linux-amd64.tar.gz"
        for d in badsig tampered extra; do cp -r "$WWW/good" "$WWW/$d" || return 1; done
        # signed by another key
        openssl dgst -sha256 -sign "$TMP/keys/other.pem" "$WWW/badsig/$NEW/SHA256SUMS" | base64 -w0 >"$WWW/badsig/$NEW/SHA256SUMS.sig"
        # not the tarball SHA256SUMS lists (one more byte)
        printf x >>"$WWW/tampered/$NEW/$tb"
        # a sixth file, properly listed and signed
        mkdir -p "$TMP/x" && cp "$B2"/{banger,bangerd,bangerd-root,banger-agent,banger-init} "$TMP/x/" && echo evil >"$TMP/x/evil" &&
        tar -C "$TMP/x" -czf "$WWW/extra/$NEW/$tb" banger bangerd bangerd-root banger-agent banger-init evil &&
        (cd "$WWW/extra/$NEW" && sha256sum "$tb" >SHA256SUMS) &&
        openssl dgst -sha256 -sign "$TMP/keys/key.pem" "$WWW/extra/$NEW/SHA256SUMS" | base64 -w0 >"$WWW/extra/$NEW/SHA256SUMS.sig"
}
serve() {
        ip netns exec "$NS" python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$WWW" >"$TMP/http.out" 2>&1 &
        wait_for 10 "the HTTP server's port" grep -q 'port [0-9]' "$TMP/http.out" || return 1
        sed -n 's/.*port \([0-9]*\).*/\1/p' "$TMP/http.out" | head -1 >"$TMP/port"
        printf 'update_url = "%s"\n' "$(url good)" >>"$ICONF"
}
releases() { keys && sites && serve; }
t "a test signing key, release sites (good, badsig, tampered, extra) served in the namespace" releases

check() {
        local out; out=$(U update --check 2>&1) || { echo "$out"; return 1; }
        expect_eq "$out" "update available: $OLD -> $NEW" || return 1
        U --json update --check | jq -e --arg o "$OLD" --arg n "$NEW" '.current == $o and .target == $n and .available' >/dev/null
}
t "update --check (as the owner) says: update available: $OLD -> $NEW" check

dry_run() {
        local dpid; dpid=$(pgrep -f "^$R/usr/local/bin/bangerd ")
        update --dry-run --pubkey-file "$TMP/keys/pub.pem"
        expect_eq "$(cat "$TMP/rc")" 0 || { cat "$TMP/up.out"; return 1; }
        grep -q "^dry run: banger $NEW (commit .*) is verified and staged" "$TMP/up.out" &&
        grep -q '^==> verify: SHA256SUMS is signed with the --pubkey-file key' "$TMP/up.out" && grep -q "^==> check: the staged programs are v$NEW" "$TMP/up.out" ||
                { cat "$TMP/up.out"; return 1; }
        expect_eq "$(pgrep -f "^$R/usr/local/bin/bangerd ")" "$dpid" && unchanged
}
t "update --dry-run downloads, verifies and stages v$NEW, then changes nothing (programs, install.toml, daemon)" dry_run

builtin_key() {
        update --dry-run
        refused "release $NEW refused: the signature over SHA256SUMS does not verify with banger's release key"
}
t "without --pubkey-file the compiled-in key is used: a release signed by another key is refused" builtin_key

bad_sig() {
        update --manifest-url "$(url badsig/manifest.json)" --pubkey-file "$TMP/keys/pub.pem"
        refused "release $NEW refused: the signature over SHA256SUMS does not verify with the --pubkey-file key"
}
t "a SHA256SUMS signed by another key is refused; nothing changes" bad_sig

tampered() {
        update --manifest-url "$(url tampered/manifest.json)" --pubkey-file "$TMP/keys/pub.pem"
        refused "release $NEW refused: banger-$NEW-linux-amd64.tar.gz has SHA-256 [0-9a-f]{64}, but the signed SHA256SUMS says"
}
t "a tarball that is not the one SHA256SUMS lists is refused; nothing changes" tampered

extra() {
        update --manifest-url "$(url extra/manifest.json)" --pubkey-file "$TMP/keys/pub.pem"
        refused "release $NEW refused: the tarball holds 'evil', which is not one of banger's five programs"
}
t "a signed tarball with a sixth file is refused; nothing changes" extra

# An operation in flight: the owner pulls a bundle from a server that
# promises a body and never sends it (until it is killed).
in_flight() { U --json daemon operations --running | jq -e '.running >= 1' >/dev/null; }
busy() {
        ip netns exec "$NS" python3 -u -c '
import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4)
print(s.getsockname()[1])
while True:
    c, _ = s.accept(); c.recv(4096)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n"); time.sleep(600)' >"$TMP/stall.port" 2>&1 &
        local server=$!
        wait_for 5 "the stalling server's port" test -s "$TMP/stall.port" || return 1
        local bundle; bundle="http://127.0.0.1:$(head -1 "$TMP/stall.port")/b.tar.zst"
        ip netns exec "$NS" setpriv --reuid="$OWNER" --regid="$OWNER" --init-groups env -i PATH=/usr/bin:/bin HOME="$OHOME" \
                BANGER_INSTALL_FILE="$IFILE" "$R/usr/local/bin/banger" image pull "$bundle" >"$TMP/pull.out" 2>&1 &
        local cli=$!
        wait_for 20 "the image.pull to be in flight" in_flight || { cat "$TMP/pull.out"; return 1; }
        update --pubkey-file "$TMP/keys/pub.pem"
        refused "^banger: operations are in flight \(op-[^ ]+ image.pull .*b.tar.zst\): wait for them, or --force$" || return 1
        # --force goes on (here as far as a dry run)
        update --force --dry-run --pubkey-file "$TMP/keys/pub.pem"
        expect_eq "$(cat "$TMP/rc")" 0 && grep -q '^banger: warning: updating while operations are in flight' "$TMP/up.out" &&
        grep -q "^dry run: banger $NEW " "$TMP/up.out" || { cat "$TMP/up.out"; return 1; }
        # the server goes away: the download fails and the operation ends
        kill "$server" "$cli"; wait "$server" "$cli" 2>/dev/null
        wait_for 30 "the pull to end" not in_flight && unchanged
}
t "an operation in flight (an image pull) refuses the update, listing it; --force goes on" busy

rollback() {
        cp "$ICONF" "$TMP/config.good"
        printf 'qemu_bin = "/nonexistent/qemu-system-x86_64"\n' >>"$ICONF"
        update --pubkey-file "$TMP/keys/pub.pem"
        cp "$TMP/config.good" "$ICONF"
        refused "^banger: update to $NEW failed: the new banger doctor fails: .*qemu.* \(rolled back to previous install\)$" || return 1
        grep -q '^==> rollback: ' "$TMP/up.out" || { cat "$TMP/up.out"; return 1; }
        U ping | grep -q "^bangerd v$OLD " || { U ping; return 1; }
        test -S "$HSOCK" && pgrep -f "^$R/usr/local/bin/bangerd-root " >/dev/null
}
t "a v$NEW whose doctor FAILs (qemu_bin missing) is rolled back: v$OLD answers, programs and install.toml as before" rollback

real() {
        local before; before=$(grep '^installed_at' "$IFILE")
        update --pubkey-file "$TMP/keys/pub.pem"
        expect_eq "$(cat "$TMP/rc")" 0 || { cat "$TMP/up.out"; return 1; }
        grep -q "^updated banger $OLD -> $NEW (commit " "$TMP/up.out" || { cat "$TMP/up.out"; return 1; }
        local p
        for p in "${PROGS[@]}"; do
                cmp -s "$R/usr/local/$p" "$B2/$(basename "$p")" || { echo "$p is not v$NEW's"; return 1; }
                expect_eq "$(stat -c '%U %a' "$R/usr/local/$p")" "root 755" || return 1
        done
        U ping | grep -q "^bangerd v$NEW " || { U ping; return 1; }
        pgrep -f "^$R/usr/local/bin/bangerd-root " >/dev/null || { echo "no helper"; return 1; }
        for p in man1/banger.1 man5/banger-config.5 man8/bangerd.8; do
                grep -q "^\.TH .* \"banger $NEW\"" "$R/usr/local/share/man/$p" || { echo "$p is not v$NEW's"; return 1; }
        done
        grep -q "^version = \"$NEW\"" "$IFILE" && grep -q "^built_at = \"$("$B2/banger" --json version | jq -r .built_at)\"" "$IFILE" &&
        grep -q "^user = \"$OWNER\"" "$IFILE" && grep -q "^$before$" "$IFILE" || { cat "$IFILE"; return 1; }
        [ ! -e "$STAGING" ] || { echo "staging left"; return 1; }
        none_kept || { echo ".previous left"; return 1; }
        expect_eq "$(U update --check)" "banger $NEW is up to date"
}
t "update to v$NEW: all five programs and the man pages replaced, both services restarted, v$NEW answers, install.toml updated, nothing left over" real

finish
