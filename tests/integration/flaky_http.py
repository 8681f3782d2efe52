#!/usr/bin/env python3
"""A static HTTP server on loopback for banger's integration tests
(t_artifacts.sh) whose first GET of each path ending in one of --flaky
answers 503; later GETs of it, and every other path, are served from
--dir (404 when absent). Every request is logged to --log as
"METHOD PATH STATUS", one line, flushed at once. Prints "port N" when
listening. Standard library only."""
import argparse
import http.server
import os
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--dir", required=True)
ap.add_argument("--log", required=True)
ap.add_argument("--flaky", action="append", default=[])
args = ap.parse_args()
seen = set()
log = open(args.log, "a", buffering=1)


class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *a, **kw):
        super().__init__(*a, directory=args.dir, **kw)

    def log_message(self, fmt, *a):
        pass

    def send_response(self, code, message=None):
        log.write(f"{self.command} {self.path} {code}\n")
        super().send_response(code, message)

    def do_GET(self):
        if any(self.path.endswith(f) for f in args.flaky) and self.path not in seen:
            seen.add(self.path)
            self.send_error(503, "try again")
            return
        super().do_GET()


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"port {srv.server_address[1]}", flush=True)
try:
    srv.serve_forever()
except KeyboardInterrupt:
    sys.exit(0)
