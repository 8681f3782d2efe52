# shellcheck shell=bash
# OCI fixtures for `banger image pull` tests: image layouts built with umoci
# from a busybox-static root, and a docker-registry (distribution 2.8) on
# loopback inside a test's network namespace, optionally behind token auth
# (oci_token.py beside this file).
#
# Sourcing this file only defines functions (and remembers where it lives).
# Needs: umoci, skopeo, docker-registry, busybox-static, openssl, python3,
# curl, jq, iproute2, util-linux (flock).
#
#   oci_build_images DIR          layouts + archives in DIR (cached there)
#   oci_digest DIR TAG            digest of a tag in DIR/layout
#   oci_registry_start NS DIR PORT [token]
#   oci_push NS SRC DEST [USER:PASS]
#   oci_blob_path DIR REPO DIGEST
#   oci_registry_stop [DIR]

_OCI_FIXTURES_SH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
_OCI_FIXTURES_HOME=$(dirname "$_OCI_FIXTURES_SH")

# Fixed timestamps: the same script builds the same digests on any machine
# with the same umoci.
_OCI_EPOCH=1704067200
_OCI_CREATED=2024-01-01T00:00:00Z

# oci_build_images DIR: makes (or reuses) under DIR
#   DIR/layout               one OCI layout, tags:
#       small      1 layer, Cmd ["/bin/sh"], no Entrypoint, no Env
#       multi      3 layers (whiteouts, opaque dir, hard links, setuid,
#                  1234:5678 owner, symlinks; 1 GiB sparse file), Env
#                  PATH/FOO, WorkingDir /work, Entrypoint ["/bin/sh","-c"],
#                  Cmd ["echo entry-$FOO; id -u"]
#       multiarch  image index: linux/amd64 (= small's manifest) and
#                  linux/arm64/v8 (small's layer, config architecture arm64)
#   DIR/small-docker.tar     `docker save`-style archive of small, banger/small:1
#   DIR/small-oci.tar        oci-archive of small, tag small
#   DIR/fixtures.env         KEY=VALUE digests (see _oci_build)
# Cached: rebuilt only when this file's sha256 differs from the one the
# last build recorded (DIR/.oci-fixtures-key). Concurrent callers serialise
# on DIR/.lock. Returns non-zero (and prints the build log's tail) on failure.
oci_build_images() {
        local dir="${1:?oci_build_images DIR}" key
        mkdir -p "$dir" || return 1
        key=$(sha256sum "$_OCI_FIXTURES_SH" | cut -d' ' -f1) || return 1
        (
                flock 9 || exit 1
                if [ "$(cat "$dir/.oci-fixtures-key" 2>/dev/null)" = "$key" ] &&
                   [ -f "$dir/layout/index.json" ] && [ -f "$dir/small-docker.tar" ] &&
                   [ -f "$dir/small-oci.tar" ] && [ -f "$dir/fixtures.env" ]; then
                        exit 0
                fi
                rm -f "$dir/.oci-fixtures-key"
                local work="$dir/.build.$$"
                rm -rf "$work" && mkdir -p "$work" || exit 1
                # A separate bash: errexit holds even when the caller runs this
                # function inside `if` or `||`.
                if ! bash -euo pipefail -c '. "$0"; _oci_build "$1"' "$_OCI_FIXTURES_SH" "$work" \
                        >"$dir/build.log" 2>&1; then
                        echo "oci_build_images: build failed, see $dir/build.log:" >&2
                        tail -20 "$dir/build.log" >&2
                        rm -rf "$work"
                        exit 1
                fi
                rm -rf "$dir/layout" "$dir/small-docker.tar" "$dir/small-oci.tar" "$dir/fixtures.env"
                mv "$work/layout" "$work/small-docker.tar" "$work/small-oci.tar" "$work/fixtures.env" "$dir/" &&
                        rm -rf "$work" && echo "$key" >"$dir/.oci-fixtures-key"
        ) 9>"$dir/.lock"
}

# oci_digest DIR TAG: the digest DIR/layout's index.json gives TAG.
oci_digest() {
        jq -er --arg t "$2" '[.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t)][0].digest' \
                "$1/layout/index.json"
}

# Everything under ROOT gets the fixed mtime (symlinks themselves too).
_oci_touch() { find "$1" -exec touch -h -d "@$_OCI_EPOCH" {} +; }

# The base root every image starts from.
_oci_base_rootfs() {
        local r="$1" c
        mkdir -p "$r/bin" "$r/etc" "$r/proc" "$r/sys" "$r/dev" "$r/tmp" "$r/run" "$r/root" "$r/home/app"
        chmod 755 "$r" "$r/bin" "$r/etc" "$r/proc" "$r/sys" "$r/dev" "$r/run" "$r/home"
        chmod 1777 "$r/tmp"
        chmod 700 "$r/root"
        chown 1000:1000 "$r/home/app"
        cp /bin/busybox "$r/bin/busybox"
        chmod 755 "$r/bin/busybox"
        for c in sh cat ls echo id stat sleep test env pwd; do ln -s busybox "$r/bin/$c"; done
        printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'app:x:1000:1000:app:/home/app:/bin/sh' >"$r/etc/passwd"
        printf '%s\n' 'root:x:0:' 'app:x:1000:' >"$r/etc/group"
        printf '%s\n' 'ID=bangertest' 'NAME="banger test"' 'VERSION_ID=1' 'PRETTY_NAME="banger test image"' >"$r/etc/os-release"
        chmod 644 "$r/etc/passwd" "$r/etc/group" "$r/etc/os-release"
}

# Layer 2 of multi, written by hand: umoci 0.4.7's repack never emits an
# opaque whiteout (it whites out each old entry instead), so this tar has
# them explicitly. Uncompressed; umoci raw add-layer gzips it.
_oci_layer2_tar() {
        python3 - "$1" "$_OCI_EPOCH" <<'PY'
import io, sys, tarfile
out, mtime = sys.argv[1], int(sys.argv[2])
tf = tarfile.open(out, "w", format=tarfile.PAX_FORMAT)
def add(name, kind=tarfile.REGTYPE, mode=0o644, data=b"", uid=0, gid=0, link=""):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.uid, ti.gid, ti.mtime, ti.linkname = kind, mode, uid, gid, mtime, link
    ti.uname = ti.gname = ""
    if kind == tarfile.REGTYPE:
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    else:
        tf.addfile(ti)
D = tarfile.DIRTYPE
add(".wh.gonedir", mode=0)                      # whiteout of a directory of layer 1
add("etc/", D, 0o755)
add("etc/.wh.gone.txt", mode=0)                 # whiteout of a file of layer 1
add("opaque/", D, 0o755)
add("opaque/.wh..wh..opq", mode=0)              # hides old1 and sub/ of layer 1
add("opaque/new.txt", data=b"new in layer 2\n")
add("hl/", D, 0o755)
add("hl/a", data=b"hard linked\n")
add("hl/b", tarfile.LNKTYPE, 0o644, link="hl/a")
add("usr/", D, 0o755)
add("usr/bin/", D, 0o755)
add("usr/bin/suid", mode=0o4755, data=b"#!/bin/sh\necho suid\n")
add("owned", mode=0o640, data=b"owned by 1234:5678\n", uid=1234, gid=5678)
add("link", tarfile.SYMTYPE, 0o777, link="etc/os-release")
add("abslink", tarfile.SYMTYPE, 0o777, link="/etc/os-release")
tf.close()
PY
}

# The arm64 twin of small and an image index over both, tagged multiarch.
_oci_multiarch() {
        python3 - "$1" <<'PY'
import hashlib, json, os, sys
layout = sys.argv[1]
def blob(digest):
    with open(os.path.join(layout, "blobs", *digest.split(":")), "rb") as f:
        return f.read()
def put(obj):
    data = json.dumps(obj, separators=(",", ":")).encode()
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", d[7:]), "wb") as f:
        f.write(data)
    return d, len(data)
with open(os.path.join(layout, "index.json")) as f:
    index = json.load(f)
small = next(m for m in index["manifests"]
             if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "small")
manifest = json.loads(blob(small["digest"]))
config = json.loads(blob(manifest["config"]["digest"]))
assert config["architecture"] == "amd64" and config["os"] == "linux"
config["architecture"], config["variant"] = "arm64", "v8"
cd, cs = put(config)
manifest["config"] = dict(manifest["config"], digest=cd, size=cs)
md, ms = put(manifest)
MT = "application/vnd.oci.image.manifest.v1+json"
idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
    {"mediaType": MT, "digest": small["digest"], "size": small["size"],
     "platform": {"architecture": "amd64", "os": "linux"}},
    {"mediaType": MT, "digest": md, "size": ms,
     "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}}]}
xd, xs = put(idx)
index["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": xd, "size": xs,
                           "annotations": {"org.opencontainers.image.ref.name": "multiarch"}})
with open(os.path.join(layout, "index.json"), "w") as f:
    json.dump(index, f, separators=(",", ":"))
print(f"OCI_MULTIARCH_INDEX={xd}\nOCI_MULTIARCH_AMD64={small['digest']}\nOCI_MULTIARCH_ARM64={md}\nOCI_MULTIARCH_ARM64_CONFIG={cd}")
PY
}

# Runs in its own bash with errexit (see oci_build_images). WORK is empty.
_oci_build() {
        local work="$1" L="$1/layout" b="$1/bundle" h
        h=(--history.created "$_OCI_CREATED")
        umoci init --layout "$L"

        # small: one layer
        umoci new --image "$L:small"
        umoci unpack --image "$L:small" "$b"
        _oci_base_rootfs "$b/rootfs"
        echo "hello from small" >"$b/rootfs/hello.txt"
        mkdir -p "$b/rootfs/etc/small"
        echo "small=1" >"$b/rootfs/etc/small/marker"
        _oci_touch "$b/rootfs"
        umoci repack "${h[@]}" --history.created_by "banger fixtures: small rootfs" --image "$L:small" "$b"
        umoci config "${h[@]}" --history.created_by "banger fixtures: small config" --created "$_OCI_CREATED" \
                --os linux --architecture amd64 --config.cmd /bin/sh --image "$L:small"
        rm -rf "$b"

        # multi, layer 1: the base plus what layer 2 deletes or hides
        umoci new --image "$L:multi"
        umoci unpack --image "$L:multi" "$b"
        _oci_base_rootfs "$b/rootfs"
        mkdir -p "$b/rootfs/work" "$b/rootfs/gonedir/sub" "$b/rootfs/opaque/sub"
        echo "deleted by layer 2" >"$b/rootfs/etc/gone.txt"
        echo a >"$b/rootfs/gonedir/a"
        echo b >"$b/rootfs/gonedir/sub/b"
        echo "hidden by layer 2" >"$b/rootfs/opaque/old1"
        echo "hidden by layer 2" >"$b/rootfs/opaque/sub/old2"
        echo "kept" >"$b/rootfs/keep.txt"
        _oci_touch "$b/rootfs"
        umoci repack "${h[@]}" --history.created_by "banger fixtures: multi layer 1" --image "$L:multi" "$b"
        rm -rf "$b"

        # multi, layer 2: whiteouts, opaque dir, hard links, setuid, owner, symlinks
        _oci_layer2_tar "$work/layer2.tar"
        umoci raw add-layer "${h[@]}" --history.created_by "banger fixtures: multi layer 2" \
                --image "$L:multi" "$work/layer2.tar"
        rm -f "$work/layer2.tar"

        # multi, layer 3: a 1 GiB sparse file, zeros but for a marker at 512 MiB
        umoci unpack --image "$L:multi" "$b"
        truncate -s 1G "$b/rootfs/sparse.img"
        printf 'banger-sparse-mid\n' | dd of="$b/rootfs/sparse.img" bs=1M seek=512 conv=notrunc status=none
        touch -h -d "@$_OCI_EPOCH" "$b/rootfs/sparse.img" "$b/rootfs"
        umoci repack "${h[@]}" --history.created_by "banger fixtures: multi layer 3" --image "$L:multi" "$b"
        rm -rf "$b"
        # shellcheck disable=SC2016 # $FOO is for the image's shell
        umoci config "${h[@]}" --history.created_by "banger fixtures: multi config" --created "$_OCI_CREATED" \
                --os linux --architecture amd64 \
                --config.env PATH=/bin:/usr/bin --config.env FOO=bar --config.workingdir /work \
                --config.entrypoint /bin/sh --config.entrypoint -c \
                --config.cmd 'echo entry-$FOO; id -u' --image "$L:multi"

        # the layers really hold what the tests rely on
        local m layers l2 l3
        m=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "multi") | .digest' "$L/index.json")
        layers=$(jq -r '.layers[].digest' "$L/blobs/sha256/${m#sha256:}")
        [ "$(echo "$layers" | wc -l)" = 3 ]
        l2=$(echo "$layers" | sed -n 2p) l3=$(echo "$layers" | sed -n 3p)
        tar -tzvf "$L/blobs/sha256/${l2#sha256:}" >"$work/l2.list"
        grep -q ' opaque/\.wh\.\.wh\.\.opq$' "$work/l2.list"
        grep -q ' etc/\.wh\.gone\.txt$' "$work/l2.list"
        grep -q ' \.wh\.gonedir$' "$work/l2.list"
        grep -q '^hrw-r--r-- 0/0 .* hl/b link to hl/a$' "$work/l2.list"
        grep -q '^-rwsr-xr-x 0/0 .* usr/bin/suid$' "$work/l2.list"
        grep -q '^-rw-r----- 1234/5678 .* owned$' "$work/l2.list"
        grep -q '^lrwxrwxrwx .* link -> etc/os-release$' "$work/l2.list"
        tar -tzvf "$L/blobs/sha256/${l3#sha256:}" >"$work/l3.list"
        grep -q ' 1073741824 .* sparse\.img$' "$work/l3.list"
        [ "$(stat -c %s "$L/blobs/sha256/${l3#sha256:}")" -lt $((4 * 1024 * 1024)) ]
        rm -f "$work/l2.list" "$work/l3.list"

        {
                echo "OCI_SMALL_MANIFEST=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "small") | .digest' "$L/index.json")"
                echo "OCI_MULTI_MANIFEST=$m"
                echo "OCI_MULTI_LAYERS=\"$(echo "$layers" | paste -sd' ')\""
                _oci_multiarch "$L"
        } >"$work/fixtures.env"
        umoci gc --layout "$L" 2>/dev/null || true

        skopeo --insecure-policy copy -q "oci:$L:small" "docker-archive:$work/small-docker.tar:banger/small:1"
        skopeo --insecure-policy copy -q "oci:$L:small" "oci-archive:$work/small-oci.tar:small"
}

# True while PID exists and is not a zombie.
_oci_alive() { [ -e "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# _oci_wait SECONDS CMD...: CMD every 0.1 s until it succeeds.
_oci_wait() {
        local n=$(($1 * 10)); shift
        until "$@" >/dev/null 2>&1; do
                n=$((n - 1)); [ "$n" -gt 0 ] || return 1
                sleep 0.1
        done
}

_oci_http_up() { # NS URL CODES-regex
        local code
        code=$(ip netns exec "$1" curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$2") || true
        printf '%s' "$code" | grep -Eq "^($3)\$"
}

# _oci_serving PID NS URL CODES: PID answers at URL, or has died (then the
# wait ends at once; the caller checks PID).
_oci_serving() { ! _oci_alive "$1" || _oci_http_up "$2" "$3" "$4"; }

# Call it at the top level of a test file, not inside `t` (a subshell): the
# list oci_registry_stop walks lives in the calling shell (the pid files in
# DIR serve `oci_registry_stop DIR` from anywhere).
#
# oci_registry_start NS DIR PORT [token]: docker-registry serving
# 127.0.0.1:PORT inside network namespace NS (made by the caller, lo up),
# storage in DIR/storage (deletes enabled), config DIR/registry.yml, log
# DIR/registry.log. With "token": token auth (service banger-test, issuer
# banger-test-issuer, realm http://127.0.0.1:PORT+1/token), served by
# oci_token.py on PORT+1 with a fresh P-256 key DIR/token.key and its
# self-signed cert DIR/token.crt (the registry's rootcertbundle); its log is
# DIR/token.log (one JSON line per request), its stderr DIR/token.out;
# OCI_TOKEN_ARGS (split on spaces) adds options to it: --x5c (name the key
# by its certificate, not by kid), --expires-in N, --fields token|access_token.
# Returns once /v2/ answers (and the token endpoint, with auth); sets
# OCI_REGISTRY=127.0.0.1:PORT (and OCI_TOKEN_REALM). Stop it with
# oci_registry_stop. Users: banger/secret may do anything; anonymous
# may pull repositories under public/ only.
oci_registry_start() {
        local ns="${1:?NS}" dir="${2:?DIR}" port="${3:?PORT}" auth="${4:-}" tport pid
        tport=$((port + 1))
        case "$auth" in ""|token) ;; *) echo "oci_registry_start: unknown auth '$auth'" >&2; return 1 ;; esac
        mkdir -p "$dir/storage" || return 1
        dir=$(cd "$dir" && pwd)
        for pid in "$dir/registry.pid" "$dir/token.pid"; do
                if [ -f "$pid" ] && _oci_alive "$(cat "$pid")"; then
                        echo "oci_registry_start: $dir already has a running server ($pid)" >&2
                        return 1
                fi
        done
        {
                cat <<EOF
version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: banger-test-secret
EOF
                if [ "$auth" = token ]; then
                        cat <<EOF
auth:
  token:
    realm: http://127.0.0.1:$tport/token
    service: banger-test
    issuer: banger-test-issuer
    rootcertbundle: $dir/token.crt
EOF
                fi
        } >"$dir/registry.yml"
        for pid in "$port" "$tport"; do
                [ "$pid" = "$tport" ] && [ "$auth" != token ] && continue
                if _oci_http_up "$ns" "http://127.0.0.1:$pid/" '[1-9][0-9]*'; then
                        echo "oci_registry_start: 127.0.0.1:$pid is already in use in $ns" >&2
                        return 1
                fi
        done
        if [ "$auth" = token ]; then
                openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
                        -keyout "$dir/token.key" -out "$dir/token.crt" -days 7 \
                        -subj /CN=banger-test-token >"$dir/openssl.log" 2>&1 || { cat "$dir/openssl.log" >&2; return 1; }
        fi
        ip netns exec "$ns" docker-registry serve "$dir/registry.yml" >>"$dir/registry.log" 2>&1 </dev/null &
        pid=$!
        echo "$pid" >"$dir/registry.pid"
        OCI_REGISTRY_DIRS+=("$dir")
        if [ "$auth" = token ]; then
                # shellcheck disable=SC2086 # OCI_TOKEN_ARGS is a list of options
                ip netns exec "$ns" python3 "$_OCI_FIXTURES_HOME/oci_token.py" --addr 127.0.0.1 --port "$tport" \
                        --key "$dir/token.key" --cert "$dir/token.crt" --service banger-test \
                        --issuer banger-test-issuer --log "$dir/token.log" ${OCI_TOKEN_ARGS:-} \
                        >>"$dir/token.out" 2>&1 </dev/null &
                echo "$!" >"$dir/token.pid"
                if ! _oci_wait 10 _oci_serving "$!" "$ns" "http://127.0.0.1:$tport/token?service=banger-test" 200 ||
                   ! _oci_alive "$(cat "$dir/token.pid")"; then
                        echo "oci_registry_start: token server on $tport did not answer" >&2
                        tail -5 "$dir/token.out" >&2
                        oci_registry_stop "$dir"; return 1
                fi
                export OCI_TOKEN_REALM="http://127.0.0.1:$tport/token"
        fi
        if ! _oci_wait 10 _oci_serving "$pid" "$ns" "http://127.0.0.1:$port/v2/" '200|401' || ! _oci_alive "$pid"; then
                echo "oci_registry_start: registry on $port did not answer /v2/" >&2
                tail -5 "$dir/registry.log" >&2
                oci_registry_stop "$dir"; return 1
        fi
        export OCI_REGISTRY="127.0.0.1:$port"
}

# oci_push NS SRC DEST [USER:PASS]: skopeo copy --all --preserve-digests
# from SRC (any skopeo reference, e.g. oci:DIR/layout:multi) to DEST
# (docker://127.0.0.1:PORT/REPO:TAG; the docker:// may be left out), run in
# NS, no TLS. Blobs and manifests keep their digests; an index is pushed
# with every manifest it lists.
oci_push() {
        local ns="${1:?NS}" src="${2:?SRC}" dest="${3:?DEST}" creds=()
        case "$dest" in docker://*) ;; *) dest="docker://$dest" ;; esac
        [ -z "${4:-}" ] || creds=(--dest-creds "$4")
        ip netns exec "$ns" skopeo --insecure-policy copy -q --all --preserve-digests \
                --dest-tls-verify=false "${creds[@]}" "$src" "$dest"
}

# oci_blob_path DIR REPO DIGEST: the file holding blob DIGEST (a layer, a
# config or a manifest) in the storage of the registry started on DIR.
# Fails when it is not there, or (REPO not empty) when REPO does not link
# it. Rewriting it changes what the registry serves (it does not re-check
# digests; a truncated file is served with the shorter length).
oci_blob_path() {
        local dir="${1:?DIR}" repo="${2-}" digest="${3:?DIGEST}" hex v2
        hex=${digest#sha256:}
        v2="$dir/storage/docker/registry/v2"
        if [ -n "$repo" ] && [ ! -f "$v2/repositories/$repo/_layers/sha256/$hex/link" ] &&
           [ ! -f "$v2/repositories/$repo/_manifests/revisions/sha256/$hex/link" ]; then
                echo "oci_blob_path: $repo does not hold $digest" >&2
                return 1
        fi
        [ -f "$v2/blobs/sha256/${hex:0:2}/$hex/data" ] || { echo "oci_blob_path: no blob $digest" >&2; return 1; }
        echo "$v2/blobs/sha256/${hex:0:2}/$hex/data"
}

# oci_registry_stop [DIR]: stops the registry (and token server) started on
# DIR, or every one oci_registry_start started in this shell. TERM, then
# KILL after 5 s; reaps them. Returns non-zero if one is still alive.
oci_registry_stop() {
        local dirs=() d f pid rc=0
        if [ $# -gt 0 ]; then dirs=("$1"); else dirs=(${OCI_REGISTRY_DIRS[@]+"${OCI_REGISTRY_DIRS[@]}"}); fi
        for d in ${dirs[@]+"${dirs[@]}"}; do
                for f in "$d/registry.pid" "$d/token.pid"; do
                        [ -f "$f" ] || continue
                        pid=$(cat "$f")
                        rm -f "$f"
                        [ -n "$pid" ] || continue
                        # only what we started (the pid may have been reused)
                        grep -qaE 'docker-registry|oci_token\.py' "/proc/$pid/cmdline" 2>/dev/null || { wait "$pid" 2>/dev/null; continue; }
                        kill "$pid" 2>/dev/null
                        _oci_wait 5 eval "! _oci_alive $pid" || kill -9 "$pid" 2>/dev/null
                        _oci_wait 5 eval "! _oci_alive $pid"
                        wait "$pid" 2>/dev/null
                        if _oci_alive "$pid"; then
                                echo "oci_registry_stop: $pid still alive" >&2; rc=1
                        fi
                done
        done
        if [ $# -eq 0 ]; then OCI_REGISTRY_DIRS=(); fi
        return $rc
}
