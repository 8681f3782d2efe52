#!/usr/bin/env python3
"""Misbehaving OCI registries (distribution v2, plain http) for banger's
integration tests (t_oci_registry.sh). Standard library only.

Every connection is logged to --log as one JSON line, flushed at once:
  {"server": "ADDR:PORT", "method", "path", "peer" (the client's address),
   "to" (the address it connected to), "headers": {lower-case name: value},
   "status", ...}; a connection that opens with a TLS handshake (first byte
  0x16) is logged as {"server", "tls": true, "peer", "to"} and closed.

--mode
  huge       any GET: 404, application/json, a body of --size bytes
             (default 500 MiB) generated on the fly; logs "sent" (bytes the
             client took before it hung up)
  redirect   /v2/basic/...: 401 Basic until the request carries
             --user/--password as HTTP Basic; /v2/bearer/...: 401 Bearer
             (realm: this server's /token, which wants the same Basic
             credentials) until it carries a token from it. Then: 302 to
             --redirect-to + the path.
  challenge  anything: 401, WWW-Authenticate: Bearer realm="--realm",service="x"
  log        anything: 404
  expiring   a registry behind bearer auth (realm: this server's /token,
             anonymous) whose tokens each serve ONE request (a second use:
             401 with the same challenge). Serves the image --tag of the OCI
             layout --layout: its manifest under any repository and tag (and
             by digest), its blobs. Logs "issued" for every token.
  flaky      no auth; serves the layout's --tag (as expiring does), but the
             first GET of every path answers 503 and the second 429
             (Retry-After: 0): only a client that retries gets the image.
  plain      no auth; serves the layout's --tag (as expiring does), and
             200 for /v2/ (the version check).
  Blobs served (expiring, flaky, zerosize, plain) wait --blob-delay seconds
  first; their log entries say "inflight": the most blob answers under way
  at once while that one was (a client fetching blobs at once shows >= 2).
  zerosize   no auth; the manifest of /v2/<repo>/manifests/<any tag> is the
             layout's --tag with its layers replaced by one layer that says
             "size": 0 but whose digest is that of ZERO_BLOB (non-empty, also
             served); the layout's blobs and ZERO_BLOB under /blobs/ (the log
             shows which blobs were asked for).
"""
import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ZERO_BLOB = b"banger t_oci_registry: a layer a manifest says is 0 bytes\n"
PATH_RE = re.compile(r"^/v2/(.+)/(manifests|blobs)/([^/?]+)$")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Layout:
    """The image --tag of an OCI layout: manifest bytes and blobs by digest."""

    def __init__(self, path, tag):
        self.path = path
        with open(os.path.join(path, "index.json")) as f:
            index = json.load(f)
        entry = next(m for m in index["manifests"]
                     if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
        self.media_type = entry.get("mediaType", OCI_MANIFEST)
        self.manifest = self.blob(entry["digest"])
        self.digest = entry["digest"]

    def blob(self, digest):
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            return None
        try:
            with open(os.path.join(self.path, "blobs", "sha256", digest[7:]), "rb") as f:
                return f.read()
        except OSError:
            return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    server_version = "oci-fake"

    def log_message(self, fmt, *args):  # the JSON log is the log
        pass

    def handle(self):
        try:
            first = self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return
        if not first:
            return
        if first[0] == 0x16:
            self.server.log({"tls": True, "peer": self.client_address[0], "to": self.to()})
            return
        super().handle()

    # ---- helpers --------------------------------------------------------------

    def to(self):  # the address the client connected to (a server on 0.0.0.0 has many)
        try:
            return self.connection.getsockname()[0]
        except OSError:
            return None

    def entry(self, status, **extra):
        e = {"method": self.command, "path": self.path, "peer": self.client_address[0],
             "to": self.to(), "headers": {k.lower(): v for k, v in self.headers.items()}, "status": status}
        e.update(extra)
        return e

    def reply(self, status, body=b"", ctype="application/json", headers=(), **extra):
        self.server.log(self.entry(status, **extra))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, status, code, msg, headers=(), **extra):
        body = json.dumps({"errors": [{"code": code, "message": msg}]}).encode()
        self.reply(status, body, headers=headers, **extra)

    def self_url(self):
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def bearer_challenge(self, realm):
        return [("WWW-Authenticate", f'Bearer realm="{realm}",service="x"')]

    # ---- modes ----------------------------------------------------------------

    def do_GET(self):
        getattr(self, "mode_" + self.server.args.mode)()

    def do_HEAD(self):
        self.do_GET()

    def mode_log(self):
        self.error(404, "NAME_UNKNOWN", "nothing here")

    def mode_challenge(self):
        self.error(401, "UNAUTHORIZED", "authentication required",
                   headers=self.bearer_challenge(self.server.args.realm))

    def mode_huge(self):
        size = self.server.args.size
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        head = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"'
        chunk = b"x" * (1 << 20)
        sent = 0
        try:
            self.wfile.write(head)
            sent = len(head)
            while sent < size:
                n = min(len(chunk), size - sent)
                self.wfile.write(chunk[:n])
                sent += n
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.server.log(self.entry(404, sent=sent, size=size))
        self.close_connection = True

    def basic_ok(self):
        a = self.server.args
        want = "Basic " + base64.b64encode(f"{a.user}:{a.password}".encode()).decode()
        return self.headers.get("Authorization") == want

    def mode_redirect(self):
        a = self.server.args
        path = self.path.split("?")[0]
        if path == "/token":
            if not self.basic_ok():
                return self.error(401, "UNAUTHORIZED", "bad credentials")
            tok = secrets.token_hex(16)
            self.server.tokens.add(tok)
            return self.reply(200, json.dumps({"token": tok}).encode(), issued=tok)
        m = PATH_RE.match(path)
        if not m:
            return self.error(404, "NAME_UNKNOWN", "no such repository")
        repo = m.group(1)
        if repo.startswith("basic/"):
            if not self.basic_ok():
                return self.error(401, "UNAUTHORIZED", "credentials, please",
                                  headers=[("WWW-Authenticate", 'Basic realm="oci-fake"')])
        elif repo.startswith("bearer/"):
            auth = self.headers.get("Authorization", "")
            if not (auth.startswith("Bearer ") and auth[7:] in self.server.tokens):
                return self.error(401, "UNAUTHORIZED", "a token, please",
                                  headers=self.bearer_challenge(self.self_url() + "/token"))
        else:
            return self.error(404, "NAME_UNKNOWN", "no such repository")
        self.reply(302, b"", headers=[("Location", a.redirect_to + self.path)])

    def mode_expiring(self):
        path = self.path.split("?")[0]
        if path == "/token":
            tok = secrets.token_hex(16)
            with self.server.lock:
                self.server.tokens.add(tok)
            return self.reply(200, json.dumps({"token": tok, "expires_in": 300}).encode(), issued=tok)
        challenge = self.bearer_challenge(self.self_url() + "/token")
        auth = self.headers.get("Authorization", "")
        tok = auth[7:] if auth.startswith("Bearer ") else None
        with self.server.lock:
            valid = tok in self.server.tokens
            self.server.tokens.discard(tok)  # one request per token
        if not valid:
            return self.error(401, "UNAUTHORIZED", "token missing or used up", headers=challenge,
                              token=tok)
        self.serve_layout(self.server.layout.manifest, self.server.layout.media_type, token=tok)

    def mode_flaky(self):
        path = self.path.split("?")[0]
        with self.server.lock:
            n = self.server.seen.get(path, 0)
            self.server.seen[path] = n + 1
        if n == 0:
            return self.error(503, "UNAVAILABLE", "try again")
        if n == 1:
            return self.error(429, "TOOMANYREQUESTS", "slow down", headers=[("Retry-After", "0")])
        self.serve_layout(self.server.layout.manifest, self.server.layout.media_type)

    def mode_plain(self):
        if self.path.split("?")[0] in ("/v2", "/v2/"):  # the version check clients like skopeo make first
            return self.reply(200, b"{}")
        self.serve_layout(self.server.layout.manifest, self.server.layout.media_type)

    def mode_zerosize(self):
        lay = self.server.layout
        m = json.loads(lay.manifest)
        layer = dict(m["layers"][0], digest=sha256(ZERO_BLOB), size=0)
        m["layers"] = [layer]
        self.serve_layout(json.dumps(m, separators=(",", ":")).encode(), lay.media_type)

    def serve_layout(self, manifest, media_type, **extra):
        m = PATH_RE.match(self.path.split("?")[0])
        if not m:
            return self.error(404, "NAME_UNKNOWN", "no such repository", **extra)
        kind, ref = m.group(2), m.group(3)
        if kind == "manifests":
            if ref.startswith("sha256:") and ref != sha256(manifest):
                return self.error(404, "MANIFEST_UNKNOWN", "no such manifest", **extra)
            return self.reply(200, manifest, ctype=media_type,
                              headers=[("Docker-Content-Digest", sha256(manifest))], **extra)
        data = ZERO_BLOB if ref == sha256(ZERO_BLOB) else self.server.layout.blob(ref)
        if data is None:
            return self.error(404, "BLOB_UNKNOWN", "no such blob", **extra)
        srv = self.server
        with srv.lock:
            srv.inflight += 1
            most = srv.inflight
        try:
            time.sleep(srv.args.blob_delay)
            with srv.lock:
                most = max(most, srv.inflight)
            self.reply(200, data, ctype="application/octet-stream",
                       headers=[("Docker-Content-Digest", ref)], inflight=most, **extra)
        finally:
            with srv.lock:
                srv.inflight -= 1


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.tokens = set()
        self.seen = {}  # flaky: GETs per path
        self.inflight = 0  # blob answers being given
        self.layout = Layout(args.layout, args.tag) if args.layout else None
        self.logf = open(args.log, "a", buffering=1)
        super().__init__((args.addr, args.port), Handler)

    def log(self, entry):
        host, port = self.server_address[:2]
        with self.lock:
            self.logf.write(json.dumps(dict({"server": f"{host}:{port}"}, **entry)) + "\n")
            self.logf.flush()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", required=True,
                   choices=["huge", "redirect", "challenge", "log", "expiring", "flaky", "zerosize", "plain"])
    p.add_argument("--addr", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--size", type=int, default=500 << 20)
    p.add_argument("--redirect-to", default="")
    p.add_argument("--realm", default="")
    p.add_argument("--user", default="banger")
    p.add_argument("--password", default="secret")
    p.add_argument("--layout")
    p.add_argument("--tag", default="small")
    p.add_argument("--blob-delay", type=float, default=0.0)
    args = p.parse_args()
    if args.mode in ("expiring", "zerosize", "plain", "flaky") and not args.layout:
        p.error(f"--mode {args.mode} needs --layout")
    srv = Server(args)
    print(f"listening on {args.addr}:{args.port}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
