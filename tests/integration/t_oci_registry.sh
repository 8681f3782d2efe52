#!/usr/bin/env bash
# `banger image pull` against misbehaving registries (oci_fake.py, plain
# http on loopback in the test's network namespace): an endless error body
# is not buffered, credentials never go to a host a redirect led to, a token
# that expires after one request is renewed, a registry with a name that is
# not loopback is never asked over plain http, and a layer of "size": 0 with
# another digest than the empty one is refused without a download.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/oci_fixtures.sh"
begin
vm_begin
HERE=$(cd "$(dirname "$0")" && pwd)
F="$TMP/fake"
FAKE_PIDS=()
# Stops every fake server this file started (TERM, then KILL), reaps them.
fakes_stop() {
        local p
        for p in ${FAKE_PIDS[@]+"${FAKE_PIDS[@]}"}; do
                grep -qa oci_fake.py "/proc/$p/cmdline" 2>/dev/null || { wait "$p" 2>/dev/null; continue; }
                kill "$p" 2>/dev/null
                wait_for 5 "fake server $p to exit" not alive "$p" >/dev/null || kill -9 "$p" 2>/dev/null
                wait "$p" 2>/dev/null
                ! kill -0 "$p" 2>/dev/null || echo "# fake server $p is still running" >&2
        done
        FAKE_PIDS=()
}
trap 'fakes_stop; vm_cleanup; cleanup' EXIT
FIX="${BANGER_TEST_IMAGE_CACHE:+$(dirname "$BANGER_TEST_IMAGE_CACHE")/oci-fixtures}"
FIX="${FIX:-$TMP/oci-fixtures}"
USERPASS=banger:secret
HUGE=127.0.0.1:5300         # 404 with a 500 MiB body
REDIR=127.0.0.1:5301        # 401 until credentials come, then 302 to $ELSEWHERE
ELSEWHERE=127.0.0.2:5302    # 401, Bearer realm on $TOKENS
TOKENS=127.0.0.3:5303       # logs what it gets (nothing, we hope)
SNIFF=5304                  # every address: logs what it gets (TLS handshakes too)
EXPIRING=127.0.0.1:5305     # bearer auth, a token serves one request
ZERO=127.0.0.1:5306         # a manifest with a layer of "size": 0
FLAKY=plain.example.invalid:5307 # 503, then 429, then the image; listed in insecure_registries

t "kernel and slim image pulled (host namespace)" vm_prepare
t "fixtures: OCI layouts and archives built with umoci" oci_build_images "$FIX"
# shellcheck disable=SC1091
. "$FIX/fixtures.env"

# fake NAME ADDR PORT MODE [ARGS...]: oci_fake.py in the namespace, its log
# $F/NAME.log. (At the top level: the pids must outlive a test's subshell.)
fake() {
        local name="$1" addr="$2" port="$3" mode="$4"; shift 4
        : >"$F/$name.log"
        ip netns exec "$NS" python3 "$HERE/oci_fake.py" --mode "$mode" --addr "$addr" --port "$port" \
                --log "$F/$name.log" "$@" >"$F/$name.out" 2>&1 </dev/null &
        FAKE_PIDS+=("$!")
}
listening() { ip netns exec "$NS" ss -Hltn "sport = :$1" | grep -q .; }
mkdir -p "$F"
fake huge "${HUGE%:*}" "${HUGE#*:}" huge
fake redirect "${REDIR%:*}" "${REDIR#*:}" redirect --redirect-to "http://$ELSEWHERE" \
        --user "${USERPASS%:*}" --password "${USERPASS#*:}"
fake elsewhere "${ELSEWHERE%:*}" "${ELSEWHERE#*:}" challenge --realm "http://$TOKENS/token"
fake tokens "${TOKENS%:*}" "${TOKENS#*:}" log
fake sniff 0.0.0.0 "$SNIFF" log
fake expiring "${EXPIRING%:*}" "${EXPIRING#*:}" expiring --layout "$FIX/layout" --tag multi --blob-delay 1
fake zero "${ZERO%:*}" "${ZERO#*:}" zerosize --layout "$FIX/layout" --tag small
fake flaky 127.0.0.5 "${FLAKY#*:}" flaky --layout "$FIX/layout" --tag small
# a registry that is not loopback, pulled over plain http because config.toml says so
echo "insecure_registries = \"other.example.invalid, ${FLAKY^^}\"" >>"$CONF"
fakes_up() {
        local p
        for p in 5300 5301 5302 5303 5304 5305 5306 5307; do
                wait_for 10 "a fake server on port $p" listening "$p" || { tail -n 5 "$F"/*.out; return 1; }
        done
        for p in "${FAKE_PIDS[@]}"; do alive "$p" || { echo "fake server $p died"; tail -n 5 "$F"/*.out; return 1; }; done
}
t "eight fake registries listening in the namespace" fakes_up

# bangerd in the namespace, with an /etc/hosts of its own (every `ip netns
# exec` makes a private mount namespace; the daemon inherits it): there
# loop.example.invalid is 127.0.0.4, where the sniffing fake listens.
daemon_hosts() {
        { cat /etc/hosts; echo "127.0.0.4 loop.example.invalid"; echo "127.0.0.5 plain.example.invalid"; } >"$TMP/hosts"
        # shellcheck disable=SC2016 # for the inner shell
        ip netns exec "$NS" sh -c 'mount --bind "$1" /etc/hosts && exec "$2" daemon start' sh "$TMP/hosts" "$BANGER" \
                >"$TMP/ds.out" 2>&1 || { cat "$TMP/ds.out"; return 1; }
        local pid; pid=$(cat "$STATE/bangerd.lock") || return 1
        grep -q '^127.0.0.4 loop.example.invalid$' "/proc/$pid/root/etc/hosts" || { echo "bangerd $pid has another /etc/hosts"; return 1; }
        ! grep -q 'loop.example.invalid' /etc/hosts # (and the host's is untouched)
}
t "bangerd started in the namespace, loop.example.invalid in its own /etc/hosts" daemon_hosts

all_logs() { cat "$F"/*.log; }
images() { B --json image list | jq -r '.[].name' | sort | tr '\n' ' '; }
nothing_left() { # no staging dir, no half-written blob
        local left
        left=$(find "$STATE/images" "$XDG_CACHE_HOME/banger/oci" -maxdepth 3 \( -name '.staging-*' -o -name '*.tmp-*' -o -name '*.part' \) 2>/dev/null)
        [ -z "$left" ] || { echo "left behind: $left"; return 1; }
}
vmhwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

huge_body() {
        # the fake is what it claims: a client that reads it all gets 500 MiB
        local got; got=$(ip netns exec "$NS" curl -s -o /dev/null -w '%{http_code} %{size_download}' --max-time 20 \
                "http://$HUGE/v2/huge/img/manifests/1")
        expect_eq "$got" "404 524288000" || return 1
        local pid before after t0 ms
        pid=$(cat "$STATE/bangerd.lock") && alive "$pid" || return 1
        before=$(vmhwm_kb "$pid")
        t0=$(now_ms)
        ! B image pull "$HUGE/huge/img:1" >"$TMP/h.err" 2>&1 || { echo "the pull succeeded"; return 1; }
        ms=$(($(now_ms) - t0))
        after=$(vmhwm_kb "$pid")
        echo "# failed after $ms ms; bangerd VmHWM $before -> $after kB" >&2
        grep -q "manifest not found of $HUGE/huge/img: HTTP 404" "$TMP/h.err" || { cat "$TMP/h.err"; return 1; }
        [ "$ms" -lt 5000 ] || { echo "the pull took $ms ms"; return 1; }
        alive "$pid" || { echo "bangerd $pid died"; return 1; }
        [ $((after - before)) -lt $((64 * 1024)) ] || { echo "bangerd's peak RSS grew from $before to $after kB"; return 1; }
        # the daemon hung up at once: the fake could not hand it more than the socket buffers hold
        jq -se 'map(select(.headers["user-agent"] == "banger")) | length == 1 and .[0].sent < 64 * 1048576' \
                "$F/huge.log" >/dev/null || { cut -c1-300 "$F/huge.log"; return 1; }
}
t "a 404 with a 500 MiB body: HTTP 404 at once, the body not read past 4 KiB (peak RSS +< 64 MiB)" huge_body

redirected() {
        mkdir -p "$HOME/.docker"
        printf '{"auths":{"%s":{"auth":"%s"}}}' "$REDIR" "$(printf %s "$USERPASS" | base64)" >"$HOME/.docker/config.json"
        local kind
        for kind in basic bearer; do
                ! B image pull "$REDIR/$kind/img:1" >"$TMP/r.err" 2>&1 || { echo "the $kind pull succeeded"; return 1; }
                grep -q "unauthorized: $REDIR redirected to a host that asks for credentials" "$TMP/r.err" ||
                        { cat "$TMP/r.err"; return 1; }
        done
        rm "$HOME/.docker/config.json"
        # the registry got the credentials (Basic, then a token for which the
        # Basic credentials went to its own /token) and answered with the redirects
        jq -se '[.[] | select(.status == 302 and .headers.authorization != null)] | map(.headers.authorization | split(" ")[0]) == ["Basic", "Bearer"]' \
                "$F/redirect.log" >/dev/null || { cut -c1-300 "$F/redirect.log"; return 1; }
        # the host they led to was asked, without them; its token server never
        jq -se 'length == 2 and all(.status == 401 and .headers.authorization == null)' "$F/elsewhere.log" >/dev/null ||
                { cut -c1-300 "$F/elsewhere.log"; return 1; }
        [ ! -s "$F/tokens.log" ] || { echo "the token server of the other host was asked:"; cut -c1-300 "$F/tokens.log"; return 1; }
        all_logs | jq -se --arg reg "$REDIR" '[.[] | select(.headers.authorization != null and .server != $reg)] | length == 0' >/dev/null ||
                { all_logs | grep -i authorization | cut -c1-300; return 1; }
}
t "credentials for a registry that redirects to a host asking for a token: unauthorized, no credentials and no token request leave the registry" redirected

expiring() {
        B image cache prune >/dev/null || return 1 # (every blob is fetched: one token each)
        B --json image pull "$EXPIRING/exp/multi:1" --name exp >"$TMP/x.json" 2>"$TMP/x.err" || { cat "$TMP/x.err"; return 1; }
        expect_eq "$(jq -r .oci.manifest_digest "$TMP/x.json")" "$OCI_MULTI_MANIFEST" || return 1
        local issued; issued=$(grep -c '"issued"' "$F/expiring.log")
        echo "# $issued tokens issued" >&2
        [ "$issued" -gt 1 ] || { echo "$issued token(s) issued"; return 1; }
        # each answer came with a fresh token; a used one was refused, and renewed
        jq -se '[.[] | select(.status == 200 and .token != null) | .token] | length >= 3 and length == (unique | length)' \
                "$F/expiring.log" >/dev/null || { cut -c1-300 "$F/expiring.log"; return 1; }
        jq -se 'any(.status == 401 and .token != null)' "$F/expiring.log" >/dev/null || { cut -c1-300 "$F/expiring.log"; return 1; }
        # the three layers were fetched at once (each answer held a second), each with a token of its own
        jq -se '[.[] | .inflight // empty] | max >= 2' "$F/expiring.log" >/dev/null ||
                { jq -c '[.path, .status, .inflight]' "$F/expiring.log"; return 1; }
        expect_eq "$(B vm run --rm --image exp -- sh -c 'echo $FOO' 2>/dev/null)" bar || return 1
        wait_for 30 "the --rm VM to go, and the image with it" B image delete exp
}
t "a token that serves one request: renewed for every request, the layers fetched at once, the pull succeeds (and boots)" expiring

not_loopback() {
        local before; before=$(all_logs | wc -l)
        # a name that resolves nowhere: https, and it fails
        ! B image pull "127.example.invalid:$SNIFF/x/img:1" >"$TMP/n.err" 2>&1 || { echo "the pull succeeded"; return 1; }
        grep -q "https://127.example.invalid:$SNIFF/v2/x/img/manifests/1" "$TMP/n.err" || { cat "$TMP/n.err"; return 1; }
        expect_eq "$(all_logs | wc -l)" "$before" || { all_logs | tail -n +$((before + 1)) | cut -c1-300; return 1; }
        # a name (not loopback) that resolves to the sniffing fake: a TLS handshake, never plain http
        ! B image pull "loop.example.invalid:$SNIFF/x/img:1" >"$TMP/n.err" 2>&1 || { echo "the pull succeeded"; return 1; }
        grep -q "https://loop.example.invalid:$SNIFF/v2/x/img/manifests/1" "$TMP/n.err" || { cat "$TMP/n.err"; return 1; }
        jq -se 'length >= 1 and all(.tls == true and .server == "0.0.0.0:5304" and .to == "127.0.0.4")' "$F/sniff.log" >/dev/null ||
                { cut -c1-300 "$F/sniff.log"; return 1; }
}
t "a registry named 127.example.invalid (not loopback): https only; unresolved, nothing contacted; resolved to a fake, only TLS handshakes reach it" not_loopback

zero_size() {
        local before m layer; before=$(images)
        m=$(ip netns exec "$NS" curl -sf "http://$ZERO/v2/zero/img/manifests/1") || return 1
        layer=$(jq -r '.layers[0] | select(.size == 0) | .digest' <<<"$m")
        case "$layer" in "" | sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855)
                echo "not the manifest this wants: $m"; return 1 ;;
        esac
        ! B image pull "$ZERO/zero/img:1" >"$TMP/z.err" 2>&1 || { echo "the pull succeeded"; return 1; }
        grep -q "blob $layer of $ZERO/zero/img: the manifest gives it 0 bytes" "$TMP/z.err" || { cat "$TMP/z.err"; return 1; }
        # the daemon asked for the manifest, never for that blob
        jq -se '[.[] | select(.headers["user-agent"] == "banger") | .path] | any(test("/manifests/"))' "$F/zero.log" >/dev/null ||
                { cut -c1-300 "$F/zero.log"; return 1; }
        ! grep -q "/blobs/$layer" "$F/zero.log" || { echo "the blob was fetched:"; grep "/blobs/$layer" "$F/zero.log" | cut -c1-300; return 1; }
        expect_eq "$(images)" "$before" && nothing_left
}
t "a layer of \"size\": 0 that is not the empty blob: refused, never downloaded, nothing left" zero_size

flaky() {
        B image cache prune >/dev/null || return 1
        B --json image pull "$FLAKY/flaky/img:1" --name flaky >"$TMP/f.json" 2>"$TMP/f.err" || { cat "$TMP/f.err"; return 1; }
        expect_eq "$(jq -r .oci.manifest_digest "$TMP/f.json")" "$OCI_SMALL_MANIFEST" || return 1
        # every path: 503, 429, then 200 (and over plain http: the fake speaks nothing else)
        jq -se '[.[] | select(.path | test("^/v2/")) | .status] | (map(select(. == 503)) | length) >= 3 and
                (map(select(. == 429)) | length) >= 3 and (map(select(. == 200)) | length) >= 3' "$F/flaky.log" >/dev/null ||
                { jq -c '[.path, .status]' "$F/flaky.log"; return 1; }
        ! jq -se 'any(.tls == true)' "$F/flaky.log" >/dev/null || { echo "a TLS handshake reached the plain registry"; return 1; }
        B image delete flaky >/dev/null
}
t "a registry listed in insecure_registries (not loopback) answers 503, then 429: pulled over plain http after the retries" flaky

fakes_alive() { local p; for p in "${FAKE_PIDS[@]}"; do alive "$p" || { echo "fake server $p died"; return 1; }; done; }
t "the fake servers lived through it all" fakes_alive
finish
