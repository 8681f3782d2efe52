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
        local t0 t1 t2; t0=$(date +%s.%N)
        "$BANGER" kernel pull debian-cloud-6.1 >/dev/null 2>&1 || return 1
        t1=$(date +%s.%N)
        "$BANGER" --json image pull debian-bookworm >"$TMP/img.json" 2>"$TMP/img.err" || { cat "$TMP/img.err"; return 1; }
        t2=$(date +%s.%N)
        # (the image from the build cache when BANGER_TEST_IMAGE_CACHE has it)
        awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "# kernel pull %.1f s, image pull debian-bookworm %.1f s\n", b - a, c - b }' \
                >"$TMP/pull.times"
        jq -e '.init_mode == "systemd" and .kernel_ref == "debian-cloud-6.1"' "$TMP/img.json" >/dev/null
}
t "kernel pull && image pull debian-bookworm" pull
cat "$TMP/pull.times" >&2 2>/dev/null

contents() {
        local r; r=$(jq -r .rootfs_path "$TMP/img.json")
        for f in /usr/bin/gcc /usr/bin/make /usr/bin/git /usr/bin/jq /usr/bin/curl /usr/bin/sudo /lib/systemd/systemd \
                 /etc/systemd/system/multi-user.target.wants/banger-agent.service /usr/bin/kmod /usr/bin/docker \
                 /usr/sbin/dockerd /usr/bin/python3 /usr/bin/pkg-config /usr/bin/unzip /usr/bin/xz /usr/bin/file \
                 /usr/bin/rsync /usr/bin/g++; do
                debugfs -R "stat $f" "$r" 2>/dev/null | grep -q 'Inode:' || { echo "missing $f"; return 1; }
        done
}
t "the dev box has gcc, g++, make, git, jq, curl, sudo, docker, python3, pkg-config, unzip, xz, file, rsync, kmod, systemd and the agent unit" contents

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

# A dev box: the kernel's modules (the modules disk), Docker, python3 -m venv.
t "a debian-bookworm VM for the rest" B vm create --name dev --image debian-bookworm --vcpu 1 --memory 1536

modprobe_works() {
        local out; out=$(B vm exec dev -- sh -c 'd=/lib/modules/$(uname -r); test -s $d/modules.dep.bin &&
                grep -Eq " (/usr)?$d ext4 ro," /proc/mounts && modprobe overlay && modprobe veth &&
                grep -q "^overlay " /proc/modules && grep -q "^veth " /proc/modules && echo ok' 2>&1) ||
                { echo "$out"; return 1; }
        expect_eq "$out" ok
}
t "modprobe overlay and veth from the modules disk on debian-bookworm" modprobe_works

# dockerd is socket-activated (docker.socket): the first `docker` starts it
# (and containerd), which takes a while under TCG.
docker_info() {
        local out; out=$(B vm exec dev -- sh -c 'for i in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 1; done;
                docker info --format "{{.Driver}} {{.CgroupVersion}} {{.ServerVersion}}"' 2>&1) ||
                { echo "$out"; B vm exec dev -- sh -c 'systemctl status docker --no-pager; journalctl -u docker --no-pager | tail -30'; return 1; }
        expect_match "$out" '^overlay2 2 [0-9]' || return 1
        expect_eq "$(B vm exec dev -- systemctl is-enabled docker.socket docker.service containerd.service 2>/dev/null | tr '\n' ' ')" \
                "enabled disabled disabled " || return 1
        B vm exec dev -- sh -c 'for m in overlay bridge veth br_netfilter nf_conntrack nf_nat; do grep -q "^$m " /proc/modules || { echo "no $m"; exit 1; }; done'
}
t "docker info: dockerd starts through docker.socket (overlay2 storage, cgroup v2), its modules loaded" docker_info

# A docker-archive made by hand (guests have no internet): one layer with a
# static binary, its config and manifest.json, as `docker save` writes them.
docker_archive() { # dir -> $1/img.tar
        local d="$1" w="$1/w"
        mkdir -p "$w/root" && printf '#include <stdio.h>\nint main(int c, char **v) { printf("hello from %%s in a container\\n", c > 1 ? v[1] : "banger"); return 0; }\n' >"$d/hello.c" &&
                cc -static -Os -o "$w/root/hello" "$d/hello.c" || return 1
        tar -C "$w/root" --owner=0 --group=0 --numeric-owner -cf "$w/layer.tar" hello || return 1
        local diff; diff=$(sha256sum "$w/layer.tar" | cut -d' ' -f1)
        mkdir -p "$w/$diff" && mv "$w/layer.tar" "$w/$diff/layer.tar" || return 1
        echo '{}' | jq -c --arg d "sha256:$diff" '{architecture: "amd64", os: "linux", created: "2024-01-01T00:00:00Z",
                config: {Cmd: ["/hello"], Env: ["PATH=/"]}, rootfs: {type: "layers", diff_ids: [$d]},
                history: [{created: "2024-01-01T00:00:00Z", created_by: "banger test"}]}' >"$w/config.json" || return 1
        local cfg; cfg=$(sha256sum "$w/config.json" | cut -d' ' -f1)
        mv "$w/config.json" "$w/$cfg.json" &&
                echo '{}' | jq -c --arg c "$cfg.json" --arg l "$diff/layer.tar" '[{Config: $c, RepoTags: ["banger-test:1"], Layers: [$l]}]' \
                        >"$w/manifest.json" &&
                tar -C "$w" --owner=0 --group=0 --numeric-owner -cf "$d/img.tar" manifest.json "$cfg.json" "$diff"
}
docker_run() {
        docker_archive "$TMP/docker" || return 1
        local out; out=$(B vm exec dev -- docker load <"$TMP/docker/img.tar" 2>&1) || { echo "$out"; return 1; }
        expect_match "$out" 'Loaded image: banger-test:1' || return 1
        out=$(B vm exec dev -- docker run --rm banger-test:1 2>&1) || { echo "$out"; return 1; }
        expect_eq "$out" "hello from banger in a container" || return 1
        out=$(B vm exec dev -- docker run --rm banger-test:1 /hello bridge 2>&1) || { echo "$out"; return 1; }
        expect_eq "$out" "hello from bridge in a container"
}
t "docker load of a docker-archive built on the host, docker run prints its output" docker_run

# Without pip: ensurepip's install of pip compiles every module of it, ~3 min
# under TCG on a loaded CI machine; that ensurepip (python3-venv) is there is
# checked on its own.
venv() {
        local out; out=$(B vm exec dev -- sh -c 'python3 -m venv --without-pip /tmp/venv &&
                /tmp/venv/bin/python -c "import sys; print(sys.prefix)" && python3 -m ensurepip --version' 2>&1) ||
                { echo "$out"; return 1; }
        expect_eq "$(head -1 <<<"$out")" /tmp/venv && expect_match "$(tail -1 <<<"$out")" '^pip [0-9]'
}
t "python3 -m venv makes a working venv; ensurepip (python3-venv) is there" venv

t "the VM is deleted" B vm delete dev

finish
