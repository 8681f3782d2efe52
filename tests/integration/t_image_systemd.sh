#!/usr/bin/env bash
# The default image: `kernel pull` + `image pull debian-bookworm` give a set
# that boots systemd to multi-user.target under TCG. (Normal build only: the
# sanitizers add nothing to an mmdebstrap run and a guest boot.)
. "$(dirname "$0")/lib.sh"
begin
export BANGER_IMAGE_CACHE="${BANGER_TEST_IMAGE_CACHE:-$TMP/image-builds}"

if [ "${BANGER_SUITE:-std}" != std ]; then
        skip "debian-bookworm builds and boots systemd" "runs in the normal build only"
        finish
        exit
fi

pull() {
        "$BANGER" kernel pull debian-cloud-6.1 >/dev/null 2>&1 &&
        "$BANGER" --json image pull debian-bookworm >"$TMP/img.json" 2>"$TMP/img.err" || { cat "$TMP/img.err"; return 1; }
        jq -e '.init_mode == "systemd" and .kernel_ref == "debian-cloud-6.1"' "$TMP/img.json" >/dev/null
}
t "kernel pull && image pull debian-bookworm" pull

contents() {
        local r; r=$(jq -r .rootfs_path "$TMP/img.json")
        for f in /usr/bin/gcc /usr/bin/make /usr/bin/git /usr/bin/jq /usr/bin/curl /usr/bin/sudo /lib/systemd/systemd \
                 /etc/systemd/system/multi-user.target.wants/banger-agent.service; do
                debugfs -R "stat $f" "$r" 2>/dev/null | grep -q 'Inode:' || { echo "missing $f"; return 1; }
        done
}
t "the dev box has gcc, make, git, jq, curl, sudo, systemd and the agent unit" contents

boot() {
        local k; k=$("$BANGER" --json kernel show debian-cloud-6.1) || return 1
        local kdir; kdir=$(echo "$k" | jq -r .dir)
        boot_until "$TMP/boot.log" "$(echo "$k" | jq -r .vmlinux)" "$(ls "$kdir"/initramfs-*.cpio | head -1)" \
                "$(jq -r .rootfs_path "$TMP/img.json")" systemd 'Reached target.*Multi-User System' \
                'systemd.show_status=1' || { tr -d '\r' <"$TMP/boot.log" | tail -30; return 1; }
        grep -q 'banger-init: stage=init-started .*mode=systemd init=/sbin/init' "$TMP/boot.log" &&
        grep -q 'Started.*banger-agent.service' "$TMP/boot.log"
}
t "debian-bookworm boots through banger-init into systemd and reaches multi-user.target" boot
grep -a -m1 'Reached target.*Multi-User' "$TMP/boot.log" 2>/dev/null | sed 's/\x1b\[[0-9;]*m//g; s/^/# /' | tr -d '\r' >&2

# The product's main job on the default image, end to end through the agent.
vm_begin
make_test() {
        local r="$TMP/proj"
        mkdir -p "$r" && cd "$r" && git init -q && git config user.name t && git config user.email t@t &&
                printf 'test:\n\t@test -f src/x.c && echo "make test: ok in $$(pwd)"\n' >Makefile && mkdir -p src &&
                echo 'int x;' >src/x.c && git add -A && git commit -qm init || return 1
        local out; out=$(B vm run --rm --timings --image debian-bookworm --vcpu 1 --memory 1024 "$r" -- make test 2>"$TMP/mt.err") ||
                { tail -20 "$TMP/mt.err"; return 1; }
        expect_eq "$out" "make test: ok in /root/repo" || return 1
        grep -q '^timing: command (agent) ' "$TMP/mt.err" || { cat "$TMP/mt.err"; return 1; }
}
t "vm run ./repo -- make test on debian-bookworm: the repo in /root/repo, make runs through the agent" make_test

finish
