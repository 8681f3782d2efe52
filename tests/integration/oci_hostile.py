#!/usr/bin/env python3
"""Writes an OCI image layout with one hostile (or huge) layer, for the
`banger image pull oci:DIR` refusal tests.

usage: oci_hostile.py DIR CASE
cases: dotdot, absolute, symlink-parent, hardlink-out, hardlink-missing,
       not-tar, many (100,000 small files: not hostile, must work)
"""
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile


def entry(tar, name, data=b"x", **kw):
    ti = tarfile.TarInfo(name)
    for k, v in kw.items():
        setattr(ti, k, v)
    if ti.type == tarfile.REGTYPE:
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))
    else:
        tar.addfile(ti)


def layer(case):
    if case == "not-tar":
        return b"this is not a tar archive at all\n" * 64
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entry(tar, "etc", type=tarfile.DIRTYPE, mode=0o755)
        entry(tar, "etc/os-release", b"ID=hostile\n", mode=0o644)
        if case == "dotdot":
            entry(tar, "../escaped", b"evil\n")
        elif case == "absolute":
            entry(tar, "/abs-file", b"evil\n")
        elif case == "symlink-parent":
            entry(tar, "d", type=tarfile.SYMTYPE, linkname="/etc")
            entry(tar, "d/passwd", b"evil\n")
        elif case == "hardlink-out":
            entry(tar, "h", type=tarfile.LNKTYPE, linkname="../../etc/shadow")
        elif case == "hardlink-missing":
            entry(tar, "h", type=tarfile.LNKTYPE, linkname="etc/no-such-file")
        elif case == "many":
            entry(tar, "many", type=tarfile.DIRTYPE, mode=0o755)
            for i in range(100):
                entry(tar, "many/%02d" % i, type=tarfile.DIRTYPE, mode=0o755)
                for k in range(1000):
                    entry(tar, "many/%02d/f%03d" % (i, k), b"%d\n" % k)
        else:
            raise SystemExit("unknown case " + case)
    return gzip.compress(buf.getvalue(), mtime=0)


def blob(root, data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(root, "blobs", "sha256", d), "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)


def main():
    root, case = sys.argv[1], sys.argv[2]
    os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(root, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    ldig, lsize = blob(root, layer(case))
    cfg = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
           "rootfs": {"type": "layers", "diff_ids": [ldig]}}
    cdig, csize = blob(root, json.dumps(cfg).encode())
    man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdig, "size": csize},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ldig, "size": lsize}]}
    mdig, msize = blob(root, json.dumps(man).encode())
    idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
           "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdig, "size": msize,
                          "annotations": {"org.opencontainers.image.ref.name": case}}]}
    with open(os.path.join(root, "index.json"), "w") as f:
        json.dump(idx, f)
    print(ldig)


main()
