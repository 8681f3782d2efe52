#!/usr/bin/python3
"""A fake of Firecracker's jailer (v1.14) for banger's contract tests.

It takes the jailer's command line as documented in Firecracker's
docs/jailer.md and does what the jailer does, in its order, for real where
this machine allows (the tests run as root):

  * the arguments are parsed like the jailer's: --id (1-64 chars,
    alphanumeric or '-'), --exec-file (its file name must contain
    "firecracker"), --uid and --gid required; --cgroup-version 1|2,
    --cgroup FILE=VALUE (repeatable), --parent-cgroup, --chroot-base-dir
    (required here: the default /srv/jailer is never touched by a test),
    (an existing directory), --netns, --resource-limit RES=VALUE,
    --daemonize, --new-pid-ns; unknown,
    duplicate or value-less flags are an error (exit 1); everything after
    "--" goes to Firecracker. It must run as root.
  * every fd but 0, 1 and 2 is closed; the environment is cleared (except
    FC_FAKE_*, the fake Firecracker's own settings);
  * <chroot_base>/<exec file name>/<id>/root is made (nothing done where it
    exists), the exec file copied in as /<exec file name>;
  * RLIMIT_NOFILE 2048 (or --resource-limit no-file=N);
  * with --cgroup (v2): every controller must be offered by the cgroup2
    root, else it fails as the jailer does; then
    <cgroup2>/<exec file name>/<id> with the values, this process in it;
  * a new mount namespace, the chroot bound on itself and made the root
    (chroot(2) here, pivot_root in the jailer); /dev/kvm and /dev/net/tun made
    as device nodes inside and given, with the root, to uid:gid;
  * uid and gid dropped, then exec of /<exec file name> --id <id>
    --start-time-us N --start-time-cpu-us N --parent-cpu-time-us N, followed
    by the arguments after "--": the same pid, as banger watches it.

Deviation, so that a Python fake can run inside the jail: /usr is bound
read-only into the chroot (with bin, lib, lib64 as links into it), and so are
the directories of FC_FAKE_SPEC, FC_FAKE_RECORD and every FC_FAKE_VSOCK_*
socket, at their host paths. The real jailer copies a static binary and needs
none of it. These extra entries are in the jail's mount namespace only; the
mount points (empty directories) stay in the chroot, which whoever made the
jail removes.

FC_FAKE_JAILER_RECORD: a file; one JSON line per run is appended:
  {"event": "jailer", "pid", "argv", "uid", "gid", "chroot", "exec"}
"""
import ctypes
import json
import os
import re
import resource
import shutil
import stat
import sys
import time

CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

FLAGS = {  # name -> (takes a value, may repeat)
    "id": (True, False), "exec-file": (True, False), "uid": (True, False), "gid": (True, False),
    "parent-cgroup": (True, False), "cgroup-version": (True, False), "cgroup": (True, True),
    "chroot-base-dir": (True, False), "netns": (True, False), "resource-limit": (True, True),
    "daemonize": (False, False), "new-pid-ns": (False, False),
}


def die(msg, code=1):
    sys.stderr.write("jailer: %s\n" % msg)
    sys.stderr.flush()
    sys.exit(code)


def parse(argv):
    args, extra = {}, []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            extra = argv[i + 1:]
            break
        if not a.startswith("--") or a[2:] not in FLAGS:
            die("Arguments parsing error: Found argument '%s' which wasn't expected." % a)
        name = a[2:]
        takes, repeats = FLAGS[name]
        if name in args and not repeats:
            die("Arguments parsing error: The argument '%s' was provided more than once." % name)
        if takes:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                die("Arguments parsing error: The argument '%s' requires a value." % name)
            args.setdefault(name, []).append(argv[i + 1]) if repeats else args.__setitem__(name, argv[i + 1])
            i += 2
        else:
            args[name] = True
            i += 1
    for need in ("id", "exec-file", "uid", "gid"):
        if need not in args:
            die("Arguments parsing error: Argument '%s' required, but not found." % need)
    if "chroot-base-dir" not in args:
        die("fake jailer: --chroot-base-dir is required (a test never touches /srv/jailer)")
    jid = args["id"]
    if not (1 <= len(jid) <= 64 and re.fullmatch(r"[A-Za-z0-9-]+", jid)):
        die("Invalid instance ID: %s" % jid)
    name = os.path.basename(args["exec-file"])
    if "firecracker" not in name:
        die("Invalid filename. The filename of `--exec-file` option must contain \"firecracker\": %s" % name)
    if not os.path.isfile(args["exec-file"]):
        die("Failed to canonicalize path %s" % args["exec-file"])
    for key in ("uid", "gid"):
        if not args[key].isdigit():
            die("Invalid %s: %s" % (key, args[key]))
    if args.get("cgroup-version", "1") not in ("1", "2"):
        die("Cgroup version not supported: %s" % args["cgroup-version"])
    for c in args.get("cgroup", []):
        if not re.fullmatch(r"[a-z_]+\.[a-z_.]+=.+", c):
            die("Invalid format for cgroup: %s" % c)
    for r in args.get("resource-limit", []):
        if not re.fullmatch(r"(fsize|no-file)=\d+", r):
            die("Invalid resource limit: %s" % r)
    if not os.path.isdir(args["chroot-base-dir"]):  # the jailer canonicalizes it: it must exist
        die("Failed to canonicalize path %s" % args["chroot-base-dir"])
    return args, extra


def libc_call(libc, fn, *a):
    if getattr(libc, fn)(*a) != 0:
        e = ctypes.get_errno()
        die("%s: %s" % (fn, os.strerror(e)))


def bind(libc, src, dst, ro):
    libc_call(libc, "mount", src.encode(), dst.encode(), None, MS_BIND | MS_REC, None)
    if ro:
        libc_call(libc, "mount", None, dst.encode(), None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, None)


def main(argv):
    t0, c0 = time.time_ns() // 1000, time.process_time_ns() // 1000
    args, extra = parse(argv)
    if os.geteuid() != 0:
        die("the jailer must run as root")
    os.closerange(3, 1 << 16)
    keep = {k: v for k, v in os.environ.items() if k.startswith("FC_FAKE_")}
    os.environ.clear()
    os.environ.update(keep)

    exec_name = os.path.basename(args["exec-file"])
    chroot = os.path.join(args["chroot-base-dir"], exec_name, args["id"], "root")
    os.makedirs(chroot, exist_ok=True)
    shutil.copy2(args["exec-file"], os.path.join(chroot, exec_name))
    nofile = 2048
    for r in args.get("resource-limit", []):
        k, v = r.split("=")
        if k == "no-file":
            nofile = int(v)
        else:
            resource.setrlimit(resource.RLIMIT_FSIZE, (int(v), int(v)))
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    # cgroups, as the jailer makes them (v2): each controller must be one the
    # cgroup2 root offers (else the jailer fails: CgroupControllerUnavailable);
    # <root>/<parent cgroup: the exec file name>/<id>, the controller enabled
    # down the path, the value written, this process moved in
    cgroups = args.get("cgroup", [])
    if cgroups and args.get("cgroup-version", "1") == "2":
        root = next((l.split()[1] for l in open("/proc/mounts") if l.split()[2:3] == ["cgroup2"]), None)
        if root is None:
            die("No hierarchy found for this cgroup version.")
        offered = open(os.path.join(root, "cgroup.controllers")).read().split()
        for c in cgroups:
            if c.split(".")[0] not in offered:
                die("Cgroup controller unavailable: %s" % c.split(".")[0])
        leaf = os.path.join(root, args.get("parent-cgroup", exec_name), args["id"])
        os.makedirs(leaf, exist_ok=True)
        for c in cgroups:
            ctl, (f, v) = c.split(".")[0], c.split("=", 1)
            p = root
            for part in [args.get("parent-cgroup", exec_name)]:
                with open(os.path.join(p, "cgroup.subtree_control"), "w") as sc:
                    sc.write("+" + ctl)
                p = os.path.join(p, part)
            with open(os.path.join(p, "cgroup.subtree_control"), "w") as sc:
                sc.write("+" + ctl)
            with open(os.path.join(leaf, f), "w") as w:
                w.write(v)
        with open(os.path.join(leaf, "cgroup.procs"), "w") as w:
            w.write(str(os.getpid()))

    uid, gid = int(args["uid"]), int(args["gid"])
    rec = os.environ.get("FC_FAKE_JAILER_RECORD")
    if rec:
        with open(rec, "a") as f:
            f.write(json.dumps({"event": "jailer", "pid": os.getpid(), "argv": sys.argv, "uid": uid, "gid": gid,
                                "chroot": chroot, "exec": exec_name}) + "\n")

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc_call(libc, "unshare", CLONE_NEWNS)
    libc_call(libc, "mount", None, b"/", None, MS_REC | MS_PRIVATE, None)
    bind(libc, chroot, chroot, False)
    # the deviation: what a Python Firecracker needs inside
    os.makedirs(os.path.join(chroot, "usr"), exist_ok=True)
    bind(libc, "/usr", os.path.join(chroot, "usr"), True)
    for link in ("bin", "lib", "lib64"):
        p = os.path.join(chroot, link)
        if not os.path.lexists(p):
            os.symlink("usr/" + link, p)
    dirs = set()
    for k, v in keep.items():
        if k in ("FC_FAKE_SPEC", "FC_FAKE_RECORD") or k.startswith("FC_FAKE_VSOCK_"):
            dirs.add(os.path.dirname(os.path.realpath(v)))
    for d in sorted(dirs):
        inside = chroot + d
        os.makedirs(inside, exist_ok=True)
        bind(libc, d, inside, False)
    os.chdir(chroot)
    os.chroot(".")
    os.chdir("/")
    os.makedirs("/dev/net", exist_ok=True)
    for path, major, minor in (("/dev/kvm", 10, 232), ("/dev/net/tun", 10, 200)):
        if not os.path.exists(path):
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(major, minor))
        os.chown(path, uid, gid)
    os.chown("/", uid, gid)
    if args.get("daemonize"):
        os.setsid()
        null = os.open("/dev/null", os.O_RDWR) if os.path.exists("/dev/null") else None
        if null is not None:
            for fd in (0, 1, 2):
                os.dup2(null, fd)
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    fc = ["/" + exec_name, "--id", args["id"], "--start-time-us", str(t0), "--start-time-cpu-us", str(c0),
          "--parent-cpu-time-us", str(time.process_time_ns() // 1000)] + extra
    os.execv(fc[0], fc)


if __name__ == "__main__":
    main(sys.argv[1:])
