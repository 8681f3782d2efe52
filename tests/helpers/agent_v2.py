#!/usr/bin/env python3
"""Protocol version 2 of banger-agent, checked from outside (docs/GUEST.md).

  agent_v2.py stdio AGENT_BIN     the agent's --stdio mode on this host
  agent_v2.py socket PATH         a guest's agent through QEMU's socket

Prints one line per check and exits non-zero at the first failure.
"""
import os
import socket
import struct
import subprocess
import sys
import time

OPEN, OPENED, ERROR, DATA, EOF, CREDIT, SIGNAL, RESIZE, EXIT, CLOSE, CALL, REPLY, BYE = range(1, 14)
WINDOW = 256 * 1024


class Conn:
    def __init__(self, mode, arg):
        if mode == "stdio":
            self.p = subprocess.Popen([arg, "--stdio"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self.w, self.r = self.p.stdin, self.p.stdout
        else:
            self.s = socket.socket(socket.AF_UNIX)
            self.s.connect(arg)
            self.w = self.r = self.s.makefile("rwb", buffering=0)
        self.rest = b""

    def send(self, b):
        self.w.write(b)
        self.w.flush()

    def readn(self, n, timeout=30):
        import select
        deadline = time.time() + timeout
        while len(self.rest) < n:
            left = deadline - time.time()
            if left <= 0 or not select.select([self.r.fileno()], [], [], left)[0]:
                raise TimeoutError(f"waited {timeout} s for {n} bytes")
            c = os.read(self.r.fileno(), 65536)
            if not c:
                raise EOFError
            self.rest += c
        d, self.rest = self.rest[:n], self.rest[n:]
        return d

    def line(self, timeout=30):
        import select
        deadline = time.time() + timeout
        while b"\n" not in self.rest:
            left = deadline - time.time()
            if left <= 0 or not select.select([self.r.fileno()], [], [], left)[0]:
                raise TimeoutError(f"waited {timeout} s for a line")
            c = os.read(self.r.fileno(), 65536)
            if not c:
                raise EOFError
            self.rest += c
        i = self.rest.index(b"\n")
        l, self.rest = self.rest[:i], self.rest[i + 1:]
        return l

    def frame(self, ch, t, st=0, pl=b""):
        self.send(struct.pack("<IBBHI", ch, t, st, 0, len(pl)) + pl)

    def next(self):
        ch, t, st, _z, n = struct.unpack("<IBBHI", self.readn(12))
        return ch, t, st, self.readn(n)

    def pending(self, wait):
        """True when bytes arrive within `wait` seconds."""
        import select
        if self.rest:
            return True
        r, _, _ = select.select([self.r.fileno()], [], [], wait)
        return bool(r)


def rec(tag, b):
    return struct.pack("<BI", tag, len(b)) + b


def spec(*argv, env=(), pty=None):
    b = b"".join(rec(1, a.encode()) for a in argv) + b"".join(rec(2, e.encode()) for e in env)
    if pty:
        b += rec(6, struct.pack("<HH", *pty))
    return b


def until_exit(c, ch, credit=True):
    out = {1: b"", 2: b""}
    while True:
        fch, t, st, pl = c.next()
        if fch != ch:
            continue
        if t == DATA:
            out[st] += pl
            if credit:
                c.frame(ch, CREDIT, st, struct.pack("<I", len(pl)))
        elif t == EXIT:
            code, sig = struct.unpack("<ii", pl)
            return out, code, sig
        elif t == ERROR:
            return out, None, pl.decode()


def check(name, ok, detail=""):
    print(("ok" if ok else "FAIL") + " " + name + ("" if ok else f": {detail}"))
    if not ok:
        sys.exit(1)


def main():
    c = Conn(sys.argv[1], sys.argv[2])
    c.send(b'{"v":1,"id":2,"method":"upgrade"}\n')
    up = c.line()
    check("upgrade answers protocol 2", b'"protocol":2' in up and b'"window":262144' in up, up)

    c.frame(5, OPEN, 0, spec("sh", "-c", "read x; echo out:$x; echo err >&2; exit 42"))
    c.frame(5, DATA, 0, b"hello\n")
    c.frame(5, EOF, 0)
    out, code, sig = until_exit(c, 5)
    check("stdin in, stdout and stderr apart, exit 42",
          out[1] == b"out:hello\n" and out[2] == b"err\n" and code == 42 and sig == 0, (out, code, sig))

    c.frame(6, OPEN, 0, spec("sh", "-c", "kill -TERM $$"))
    out, code, sig = until_exit(c, 6)
    check("a signal-killed command reports its signal", sig == 15, (code, sig))

    c.frame(7, OPEN, 0, spec("/nonexistent/cmd"))
    _, code, err = until_exit(c, 7)
    check("an exec that fails is an ERROR with errno", code is None and "No such file" in err, err)

    c.frame(8, OPEN, 0, spec("sh", "-c", "trap 'echo got-int; exit 3' INT; echo ready; while :; do sleep 0.05; done"))
    while True:
        ch, t, st, pl = c.next()
        if ch == 8 and t == DATA:
            c.frame(8, CREDIT, st, struct.pack("<I", len(pl)))
            break
    c.frame(9, CALL, 0, b'{"v":1,"id":4,"method":"sync"}')
    c.frame(8, SIGNAL, 0, struct.pack("<I", 2))
    replied = False
    while True:
        ch, t, st, pl = c.next()
        if t == REPLY and ch == 9:
            replied = b'"synced":true' in pl
        if ch == 8 and t == DATA:
            c.frame(8, CREDIT, st, struct.pack("<I", len(pl)))
        if ch == 8 and t == EXIT:
            code = struct.unpack("<ii", pl)[0]
            break
    check("SIGNAL reaches the process group; a CALL is answered while an exec runs", code == 3 and replied,
          (code, replied))

    c.frame(10, OPEN, 0, spec("sh", "-c", "tty >/dev/null && stty size", pty=(30, 100)))
    out, code, _ = until_exit(c, 10)
    check("PTY with its window size", out[1].strip() == b"30 100" and code == 0, out)

    # flow control: without CREDIT the agent stops at the window
    c.frame(11, OPEN, 0, spec("sh", "-c", "head -c 4000000 /dev/zero"))
    got = 0
    while c.pending(2.0):
        ch, t, st, pl = c.next()
        if ch == 11 and t == DATA:
            got += len(pl)
    check("a fast producer stops at the 256 KiB window without credit", got == WINDOW, got)
    c.frame(11, CREDIT, 1, struct.pack("<I", WINDOW))
    out, code, _ = until_exit(c, 11)
    check("credit given back: the rest arrives", got + len(out[1]) == 4000000 and code == 0, got + len(out[1]))

    c.frame(12, OPEN, 0, spec("sh", "-c", "echo $$; exec sleep 1000"))
    ch, t, st, pl = c.next()
    while not (ch == 12 and t == DATA):
        ch, t, st, pl = c.next()
    pid = int(pl.strip())
    c.frame(12, CLOSE)
    c.frame(13, OPEN, 0, spec("sh", "-c", f"sleep 0.5; kill -0 {pid} 2>/dev/null && echo alive || echo gone"))
    out, code, _ = until_exit(c, 13)
    check("CLOSE kills the process group", out[1] == b"gone\n", out)

    # stdin beyond the credit fails that exec only; another one keeps running
    c.frame(15, OPEN, 0, spec("sh", "-c", "read x; echo still:$x"))
    c.next()  # OPENED
    c.frame(14, OPEN, 0, spec("sleep", "1000"))
    ch, t, st, pl = c.next()
    while not (ch == 14 and t == OPENED):
        ch, t, st, pl = c.next()
    for _ in range(12):  # the pipe takes 256 KiB (sized to the window), the window 256 KiB more, then over
        c.frame(14, DATA, 0, b"x" * 65536)
    ch, t, st, pl = c.next()
    while not (ch == 14 and t == ERROR):
        ch, t, st, pl = c.next()
    c.frame(15, DATA, 0, b"ok\n")
    out, code, _ = until_exit(c, 15)
    check("over-credit stdin fails that exec only; the other one goes on", out[1] == b"still:ok\n" and code == 0, out)

    # a frame that is not one resets the agent: lines again
    c.send(b"\xff" * 12)
    ch, t, st, pl = c.next()
    while not (ch == 0 and t == ERROR):
        ch, t, st, pl = c.next()
    c.send(b'{"v":1,"id":9,"method":"health"}\n')
    l = c.line()
    check("a malformed frame resets the agent to lines", b'"id":9' in l, l)

    c.send(b'{"v":1,"id":3,"method":"upgrade"}\n')
    c.line()
    c.frame(0, BYE)
    c.send(b'{"v":1,"id":10,"method":"health"}\n')
    l = c.line()
    check("BYE: lines again", b'"id":10' in l, l)


if __name__ == "__main__":
    main()
