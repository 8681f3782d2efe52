#!/usr/bin/env python3
"""A minimal Docker registry token server (the "token authentication
specification" distribution 2.8 implements) for banger's integration tests.

GET /token?service=S&scope=repository:NAME:pull,push[&scope=...][&account=..]
  HTTP Basic banger/secret: every action asked for, on every scope.
  anonymous: "pull" on repositories under public/, nothing else (the scope
    is still listed, with no actions, as the spec says).
  any other credentials: 401 {"errors":[{"code":"UNAUTHORIZED",...}]}.
  a service other than --service: 400 {"errors":[{"code":"INVALID_SERVICE"..}]}.
  -> 200 {"token": JWT, "access_token": JWT, "expires_in": N, "issued_at": T}
POST /token (OAuth2, form: grant_type=password, username, password, service,
  scope): the same rules -> {"access_token": JWT, "expires_in", "scope", ...}.

The JWT is ES256 (a P-256 key) or RS256 (an RSA key), signed by `openssl
dgst` (stdlib only otherwise). Its header names the key by "kid", the libtrust
key ID of the public key (base32 of the first 240 bits of SHA-256 of its DER
SubjectPublicKeyInfo, in groups of 4 joined by ':'), which distribution
matches against the certificates of its rootcertbundle; --x5c puts the
certificate in an "x5c" header instead. Claims: iss, sub, aud (= service),
exp, nbf, iat, jti, access=[{type, name, actions}].

Every request is logged to --log as one JSON line: method, path, query,
user (null when anonymous), status, access granted.
"""
import argparse
import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

USER, PASSWORD = "banger", "secret"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def openssl(*args, data=None):
    return subprocess.run(["openssl", *args], input=data, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, check=True).stdout


def libtrust_kid(der):
    s = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(s[i:i + 4] for i in range(0, len(s), 4))


def der_ecdsa_to_raw(sig, size=32):
    # SEQUENCE { INTEGER r, INTEGER s } -> r || s, each `size` bytes
    assert sig[0] == 0x30
    i = 2 if sig[1] < 0x80 else 2 + (sig[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert sig[i] == 0x02
        n = sig[i + 1]
        v = sig[i + 2:i + 2 + n].lstrip(b"\0")
        out += v.rjust(size, b"\0")
        i += 2 + n
    return out


class Signer:
    def __init__(self, key, cert, x5c):
        self.key = key
        text = openssl("pkey", "-in", key, "-noout", "-text").decode()
        self.alg = "ES256" if "prime256v1" in text or "P-256" in text else "RS256"
        header = {"typ": "JWT", "alg": self.alg}
        if x5c:
            header["x5c"] = [base64.b64encode(openssl("x509", "-in", cert, "-outform", "DER")).decode()]
        else:
            header["kid"] = libtrust_kid(openssl("pkey", "-in", key, "-pubout", "-outform", "DER"))
        self.header = b64url(json.dumps(header, separators=(",", ":")).encode())

    def sign(self, claims):
        payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = (self.header + "." + payload).encode()
        sig = openssl("dgst", "-sha256", "-sign", self.key, data=signing_input)
        if self.alg == "ES256":
            sig = der_ecdsa_to_raw(sig)
        return signing_input.decode() + "." + b64url(sig)


def parse_scopes(values):
    scopes = []
    for value in values:
        for scope in value.split():
            parts = scope.split(":")
            if len(parts) < 3:
                continue
            typ, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1]
            typ = typ.split("(")[0]  # repository(plugin) -> repository
            scopes.append((typ, name, [a for a in actions.split(",") if a]))
    return scopes


def grant(user, scopes):
    access = []
    for typ, name, actions in scopes:
        if user is not None:
            allowed = actions
        elif typ == "repository" and name.startswith("public/"):
            allowed = [a for a in actions if a == "pull"]
        else:
            allowed = []
        access.append({"type": typ, "name": name, "actions": allowed})
    return access


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "banger-oci-token/1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))

    def reply(self, status, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def record(self, status, user, access, query):
        cfg = self.server.cfg
        if not cfg.log:
            return
        line = json.dumps({"time": time.time(), "method": self.command, "path": urlparse(self.path).path,
                           "query": query, "user": user, "status": status, "access": access})
        with self.server.lock, open(cfg.log, "a") as f:
            f.write(line + "\n")

    def issue(self, user, password, service, scope_values, query, oauth):
        cfg = self.server.cfg
        if user is not None and (user != USER or password != PASSWORD):
            self.record(401, user, None, query)
            return self.reply(401, {"errors": [{"code": "UNAUTHORIZED",
                                                "message": "invalid username or password"}]},
                              {"WWW-Authenticate": 'Basic realm="banger-test"'})
        service = service or cfg.service
        if service != cfg.service:
            self.record(400, user, None, query)
            return self.reply(400, {"errors": [{"code": "INVALID_SERVICE",
                                                "message": "unknown service %r" % service}]})
        access = grant(user, parse_scopes(scope_values))
        now = int(time.time())
        claims = {"iss": cfg.issuer, "sub": user or "", "aud": service, "exp": now + cfg.expires_in,
                  "nbf": now - 10, "iat": now, "jti": secrets.token_hex(16), "access": access}
        token = self.server.signer.sign(claims)
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        if oauth:
            body = {"access_token": token, "expires_in": cfg.expires_in, "issued_at": issued,
                    "scope": " ".join(scope_values)}
        else:
            body = {"expires_in": cfg.expires_in, "issued_at": issued}
            for field in cfg.fields.split(","):
                body[field] = token
        self.record(200, user, access, query)
        self.reply(200, body)

    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path != "/token":
            self.record(404, None, None, query)
            return self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
        user = password = None
        auth = self.headers.get("Authorization", "")
        if auth:
            scheme, _, value = auth.partition(" ")
            try:
                if scheme.lower() != "basic":
                    raise ValueError(scheme)
                user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except Exception:
                user, password = "", None  # malformed: treated as wrong credentials
        self.issue(user, password, (query.get("service") or [None])[0], query.get("scope", []), query, False)

    def do_POST(self):
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode())
        shown = {k: v for k, v in form.items() if k != "password"}
        if url.path != "/token":
            self.record(404, None, None, shown)
            return self.reply(404, {"errors": [{"code": "NOT_FOUND", "message": url.path}]})
        first = lambda k: (form.get(k) or [None])[0]
        if first("grant_type") != "password":
            self.record(400, None, None, shown)
            return self.reply(400, {"error": "unsupported_grant_type"})
        self.issue(first("username"), first("password") or "", first("service"), form.get("scope", []),
                   shown, True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--addr", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key", required=True, help="PEM private key (P-256 or RSA)")
    ap.add_argument("--cert", required=True, help="its certificate (the registry's rootcertbundle)")
    ap.add_argument("--service", default="banger-test")
    ap.add_argument("--issuer", default="banger-test-issuer")
    ap.add_argument("--expires-in", type=int, default=300)
    ap.add_argument("--fields", default="token,access_token",
                    help="which of token,access_token a GET answer carries")
    ap.add_argument("--x5c", action="store_true", help="name the key by an x5c header, not kid")
    ap.add_argument("--log", help="JSON line per request")
    ap.add_argument("--pidfile")
    cfg = ap.parse_args()
    server = ThreadingHTTPServer((cfg.addr, cfg.port), Handler)
    server.daemon_threads = True
    server.cfg, server.lock = cfg, threading.Lock()
    server.signer = Signer(cfg.key, cfg.cert, cfg.x5c)
    if cfg.pidfile:
        with open(cfg.pidfile, "w") as f:
            f.write("%d\n" % os.getpid())
    print("oci_token: serving on %s:%d (%s, %s)" % (cfg.addr, cfg.port, server.signer.alg,
                                                    "x5c" if cfg.x5c else "kid"), file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
