#!/usr/bin/python3
"""A fake Firecracker v1.14.1 for banger's contract tests (issue 15).

It is launched exactly as the real binary would be and serves Firecracker's
API on the Unix socket given by --api-sock, validating every request against
the OpenAPI 2.0 file ../shared/reference/firecracker-api-v1.14.1.yaml (path
and method, path parameters, the JSON body against its schema with $ref
resolution). It keeps Firecracker's state machine (pre-boot configuration,
InstanceStart, pause/resume, snapshots) and answers as Firecracker does:
204 / 200 with the spec's schema, or 400 with {"fault_message": "..."}.
Standard library + python3-yaml only. No VM runs: InstanceStart only checks
what Firecracker would check and flips the state.

Command line (Firecracker's own flags; same parser rules: "--name [value]",
no "=" form, a flag given twice is an error):
  --api-sock PATH   required here (Firecracker defaults to
                    /run/firecracker.socket; a test must never touch that).
                    Fails, like Firecracker, when PATH already exists: the
                    fake, like Firecracker, does not remove the socket on exit.
  --id ID           1-64 chars, alphanumeric or '-', else a panic (SIGABRT),
                    as Firecracker's validate_instance_id does.
  --log-path, --level, --show-level, --show-log-origin, --module,
  --metrics-path, --seccomp-filter (the file must exist), --no-seccomp,
  --boot-timer, --metadata (JSON file put into MMDS), --start-time-us,
  --start-time-cpu-us, --parent-cpu-time-us, --http-api-max-payload-size,
  --mmds-size-limit, --enable-pci
  --version         prints "Firecracker v1.14.1" and a blank line, exit 0
                    (anywhere on the line, as Firecracker's parser does)
  --config-file / --no-api   refused (exit 1): banger never uses them.
  Unknown or duplicate flags, a missing value: "Arguments parsing error: ..."
  and exit 153 (Firecracker's FcExitCode::ArgParsing, not 1).

Environment:
  FC_FAKE_VERSION   the version reported by --version, GET /version and
                    GET / (e.g. "1.4.0" or "v1.4.0"); default 1.14.1.
  FC_FAKE_SPEC      the OpenAPI file; default ../../../shared/reference/
                    firecracker-api-v1.14.1.yaml from this script's real path.
  FC_FAKE_RECORD    a file; one JSON line is appended (and flushed) per
                    request: {"method", "path", "body": parsed JSON or null,
                    "status"} (+ "fault_message" when status >= 400). Event
                    lines carry "event" instead of "method":
                      {"event": "start", "pid", "argv"}
                      {"event": "vsock", "port", "result": "ok"|"no listener"
                       |"connect failed"|"bad request"}
                      {"event": "exit", "code": N} or, when killed by SIGTERM
                       / SIGINT / SIGHUP, {"event": "exit", "code": null,
                       "signal": "SIGTERM"}
  FC_FAKE_FAIL      "METHOD PATH[;METHOD PATH...]" (e.g. "PUT /drives/rootfs"
                    or the spec template "PUT /drives/{drive_id}"): a request
                    that passes validation answers 400 "injected failure"
                    instead of acting.
  FC_FAKE_VSOCK_<port>  a Unix socket path: a host "CONNECT <port>\\n" on the
                    vsock uds_path is relayed there (answer "OK <n>\\n");
                    without it the connection is closed unanswered, as
                    Firecracker does when nothing in the guest listens.
  FC_FAKE_CAD_EXIT_MS  delay between SendCtrlAltDel's 204 and exit 0
                    (default 100).

Behaviour that follows Firecracker rather than the spec text (each checked
against Firecracker's v1.14.1 source):
  * Unknown paths and wrong methods answer 400 "Invalid request method
    and/or path: ..." (never 404/405). Path IDs must be non-empty
    alphanumeric/underscore. A drive/iface/pmem id in the path must equal the
    body's ("The id from the path ... does not match the id from the body").
  * A PUT/PATCH with an empty body: 400 "Empty PUT request." (the spec omits
    `required` on several bodies Firecracker needs; only an explicit
    `required: false` makes a body optional). PATCH bodies the spec calls "a
    subset" (PATCH /machine-config) don't need the schema's required fields.
  * Objects are closed (serde deny_unknown_fields) unless the schema says
    additionalProperties; integers are unsigned; null is refused everywhere
    (omit a field instead; that works on every Firecracker); enum values whose
    description says "case-insensitive" (logger level) compare so.
  * A field whose spec description says "deprecated" (vsock_id,
    mem_file_path, enable_diff_snapshots, cpu_template) gets the response
    header "Deprecation: true", as Firecracker sends.
  * Files are opened when configured, not at InstanceStart: the kernel and
    initrd at PUT /boot-source, drives' path_on_host at PUT /drives, the
    vsock uds_path is created (bound) at PUT /vsock -- Firecracker's
    VsockUnixBackend binds it when the device is configured, and binds it
    again on snapshot load, which fails if the file is still there.
  * /logger and /metrics paths must exist. Firecracker 1.14 itself creates
    them (commit 7ee43cc, "Support creating file with open_file_nonblock"),
    but 1.5-1.13, which banger's doctor also accepts, fail with "No such file
    or directory": the fake keeps the stricter contract.
  * /snapshot/load after any boot-specific configuration (everything but
    logger, metrics, serial, cpu-config, MMDS data) is refused and the process
    goes on; a load that fails past that check (files missing, vsock socket
    in the way) is fatal: 400, then exit 1, as in Firecracker.
  * SendCtrlAltDel makes the process exit 0 (the guest reboots, Firecracker
    exits) once the VM runs; while paused, on resume.
  * SIGTERM/SIGINT/SIGHUP: Firecracker installs no handler for them, so the
    process dies by the signal (wait status "killed by signal 15"), after the
    exit line is recorded. SIGKILL: nothing recorded.

Its interpreter is Debian's /usr/bin/python3 (with python3-yaml from
scripts/setup), not whatever python3 is first on PATH (pyenv's shims start
three times slower and may lack yaml).
/proc/PID/cmdline: "/usr/bin/python3\\0<this script's path as invoked>\\0<flags>".
Installed as a symlink named firecracker, argv[1] is that symlink's path; the
flags that follow are exactly those banger passed. /proc/PID/exe is python3.

Requests are served one at a time (a lock), on as many keep-alive
connections as clients open.
"""
import datetime
import json
import os
import re
import selectors
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

import yaml

FIRECRACKER_VERSION = os.environ.get("FC_FAKE_VERSION", "1.14.1").lstrip("v")
DEFAULT_INSTANCE_ID = "anonymous-instance"
HTTP_MAX_PAYLOAD_SIZE = 51200
SNAPSHOT_MAGIC = "fake-firecracker-snapshot"

EXIT_GENERIC = 1        # FcExitCode::GenericError
EXIT_BAD_CONFIG = 152   # FcExitCode::BadConfiguration (bad --level)
EXIT_ARG_PARSING = 153  # FcExitCode::ArgParsing

NOT_STARTED, RUNNING, PAUSED = "Not started", "Running", "Paused"


def default_spec_path():
    here = os.path.dirname(os.path.realpath(__file__))
    return os.path.join(here, "..", "..", "..", "shared", "reference", "firecracker-api-v1.14.1.yaml")


def os_error(err):
    """An OSError as Rust's io::Error prints it."""
    return "%s (os error %d)" % (os.strerror(err.errno), err.errno)


class ApiError(Exception):
    """A 4xx answer: Firecracker's fault_message."""

    def __init__(self, message, status=400, fatal=False, http_level=False):
        super().__init__(message)
        self.status = status
        self.fatal = fatal  # the process exits 1 after answering
        # Errors of Firecracker's HTTP layer (micro_http) answer
        # {"error": "..."}, not {"fault_message": ...}.
        self.body = {"error": message} if http_level else {"fault_message": message}


# --------------------------------------------------------------------------
# The command line, parsed as Firecracker's utils::arg_parser does.

# name -> takes a value
CLI_ARGS = {
    "api-sock": True, "id": True, "seccomp-filter": True, "no-seccomp": False,
    "start-time-us": True, "start-time-cpu-us": True, "parent-cpu-time-us": True,
    "config-file": True, "metadata": True, "no-api": False, "log-path": True,
    "level": True, "module": True, "show-level": False, "show-log-origin": False,
    "metrics-path": True, "boot-timer": False, "version": False,
    "snapshot-version": False, "describe-snapshot": True,
    "http-api-max-payload-size": True, "mmds-size-limit": True,
    "enable-pci": False, "help": False,
}
CLI_FORBIDS = {"seccomp-filter": "no-seccomp", "no-seccomp": "seccomp-filter"}
CLI_REQUIRES = {"no-api": "config-file"}


class ArgError(Exception):
    pass


def parse_cli(argv):
    if "--help" in argv:
        return {"help": True}
    if "--version" in argv:
        return {"version": True}
    args = {}
    it = iter(argv)
    for arg in it:
        if not arg.startswith("--"):
            raise ArgError("Found argument '%s' which wasn't expected, or isn't valid in this context." % arg)
        name = arg[2:]
        if name not in CLI_ARGS:
            raise ArgError("Found argument '%s' which wasn't expected, or isn't valid in this context." % name)
        if name in args:
            raise ArgError("The argument '%s' was provided more than once." % name)
        if CLI_ARGS[name]:
            value = next(it, None)
            if value is None or value.startswith("--"):
                raise ArgError("The argument '%s' requires a value, but none was supplied." % name)
            args[name] = value
        else:
            args[name] = True
    for name in args:
        if CLI_FORBIDS.get(name) in args:
            raise ArgError("Argument '%s' cannot be used together with argument '%s'." % (CLI_FORBIDS[name], name))
        if name in CLI_REQUIRES and CLI_REQUIRES[name] not in args:
            raise ArgError("Argument '%s' required, but not found." % CLI_REQUIRES[name])
    if "api-sock" not in args:
        raise ArgError("Argument 'api-sock' required, but not found.")
    return args


def valid_instance_id(s):
    return 1 <= len(s) <= 64 and all(c == "-" or c.isalnum() for c in s)


# --------------------------------------------------------------------------
# The spec: routes from its paths, and a validator for its schemas.

class Route:
    """One spec path: its template, a regex for it, its operations by method."""

    def __init__(self, template, operations):
        self.template = template
        self.operations = {m.upper(): op for m, op in operations.items()}
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]*)", re.escape(template))
        self.regex = re.compile("^" + pattern + "$")


class Spec:
    def __init__(self, path):
        with open(path) as f:
            self.doc = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        self.routes = [Route(t, ops) for t, ops in self.doc["paths"].items()]

    def resolve(self, schema):
        while "$ref" in schema:
            ref = schema["$ref"]
            assert ref.startswith("#/definitions/"), ref
            schema = self.doc["definitions"][ref[len("#/definitions/"):]]
        return schema

    def match(self, path):
        for route in self.routes:
            m = route.regex.match(path)
            if m:
                return route, m.groupdict()
        return None, None


# serde's words for a JSON value and for what a schema expects
def describe_value(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean `%s`" % ("true" if v else "false")
    if isinstance(v, int):
        return "integer `%d`" % v
    if isinstance(v, float):
        return "floating point `%r`" % v
    if isinstance(v, str):
        return "string %s" % json.dumps(v)
    if isinstance(v, list):
        return "sequence"
    return "map"


EXPECTED = {"object": "a map", "array": "a sequence", "string": "a string",
            "integer": "an unsigned integer", "number": "a number", "boolean": "a boolean"}
TYPE_CHECKS = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
}
# `format` values with a standard meaning; any other format in this spec is a
# regular expression the string must match (MmdsConfig.ipv4_address).
STANDARD_FORMATS = {"int32", "int64", "float", "double", "byte", "binary", "date", "date-time", "password"}


class SchemaError(Exception):
    def __init__(self, message, where):
        super().__init__("%s at `%s`" % (message, where) if where else message)


class Validator:
    """Checks a JSON value against a spec schema, the way serde would refuse
    it in Firecracker. Collects the paths of deprecated fields it meets."""

    def __init__(self, spec):
        self.spec = spec

    def validate(self, schema, value, enforce_required=True):
        self.deprecated = []
        self.check(schema, value, "", enforce_required)
        return self.deprecated

    def check(self, schema, value, where, enforce_required=True):
        schema = self.spec.resolve(schema)
        if "deprecat" in schema.get("description", "").lower() and where:
            self.deprecated.append(where)
        kind = schema.get("type")
        if kind is None:  # e.g. MmdsContentsObject's values: any JSON
            return
        if value is None:
            raise SchemaError("invalid type: null, expected %s (omit the field instead)" % EXPECTED[kind], where)
        if not TYPE_CHECKS[kind](value):
            raise SchemaError("invalid type: %s, expected %s" % (describe_value(value), EXPECTED[kind]), where)
        if "enum" in schema:
            self.check_enum(schema, value, where)
        if kind == "integer":
            self.check_integer(schema, value, where)
        elif kind == "string":
            fmt = schema.get("format")
            if fmt and fmt not in STANDARD_FORMATS and not re.fullmatch(fmt, value):
                raise SchemaError("invalid value: %s, expected a string matching %s" % (describe_value(value), fmt), where)
        elif kind == "array":
            for i, item in enumerate(value):
                self.check(schema.get("items", {}), item, "%s[%d]" % (where, i))
        elif kind == "object":
            self.check_object(schema, value, where, enforce_required)

    def check_enum(self, schema, value, where):
        allowed = [str(e) for e in schema["enum"]]
        if "case-insensitive" in schema.get("description", "").lower():
            ok = value.lower() in (a.lower() for a in allowed)
        else:
            ok = value in allowed
        if not ok:
            raise SchemaError("unknown variant `%s`, expected one of %s"
                              % (value, ", ".join("`%s`" % a for a in allowed)), where)

    def check_integer(self, schema, value, where):
        # Every integer in Firecracker's API is unsigned (u8..u64, usize).
        lowest = max(schema.get("minimum", 0), 0)
        if value < lowest or value > schema.get("maximum", value):
            bound = "at least %d" % lowest
            if "maximum" in schema:
                bound += " and at most %d" % schema["maximum"]
            raise SchemaError("invalid value: integer `%d`, expected an integer %s" % (value, bound), where)

    def check_object(self, schema, value, where, enforce_required):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", False)
        for key, item in value.items():
            sub = "%s.%s" % (where, key) if where else key
            if key in props:
                self.check(props[key], item, sub)
            elif extra is True:
                continue
            elif isinstance(extra, dict):
                self.check(extra, item, sub)
            else:
                raise SchemaError("unknown field `%s`, expected one of %s"
                                  % (key, ", ".join("`%s`" % p for p in props) or "no field"), where)
        if enforce_required:
            for key in schema.get("required", []):
                if key not in value:
                    raise SchemaError("missing field `%s`" % key, where)


def apply_defaults(spec, schema, value):
    """The body with the schema's documented defaults for absent fields."""
    schema = spec.resolve(schema)
    out = dict(value)
    for key, prop in schema.get("properties", {}).items():
        default = prop.get("default", spec.resolve(prop).get("default"))
        if key not in out and default is not None:
            out[key] = default
    return out


# --------------------------------------------------------------------------
# Output: the record file, Firecracker's logger, its metrics.

class Recorder:
    def __init__(self, path):
        self.lock = threading.Lock()
        self.file = open(path, "a") if path else None

    def write(self, obj):
        if self.file:
            with self.lock:
                self.file.write(json.dumps(obj, separators=(",", ":")) + "\n")
                self.file.flush()


class Logger:
    """Firecracker's log lines: "<time> [<id>:<thread>(:LEVEL)] message", to
    stdout until a log file is configured (--log-path or PUT /logger)."""

    def __init__(self, instance_id):
        self.instance_id = instance_id
        self.target = sys.stdout
        self.show_level = False
        self.show_origin = False
        self.lock = threading.Lock()

    def configure(self, path=None, show_level=None, show_origin=None):
        if path is not None:
            # O_NONBLOCK as Firecracker opens it (a FIFO must not block it);
            # no O_CREAT: see the module docstring.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
            self.target = os.fdopen(fd, "a")
        if show_level is not None:
            self.show_level = show_level
        if show_origin is not None:
            self.show_origin = show_origin

    def log(self, level, thread, message):
        now = datetime.datetime.now().strftime("%Y-%m-%dT%H:%M:%S.%f")
        tag = "%s:%s" % (self.instance_id, thread)
        if self.show_level:
            tag += ":" + level
        if self.show_origin:
            tag += ":fake_firecracker.py:0"
        with self.lock:
            try:
                self.target.write("%s [%s] %s\n" % (now, tag, message))
                self.target.flush()
            except OSError:
                pass  # Firecracker counts a missed log line and goes on


# --------------------------------------------------------------------------
# Hybrid vsock: the host side of Firecracker's vsock device (uds_path).

class Vsock:
    def __init__(self, vmm, uds_path):
        self.vmm = vmm
        self.path = uds_path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.listener.bind(uds_path)
        except OSError:
            self.listener.close()
            raise
        self.listener.listen(64)
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def close(self, unlink):
        self.listener.close()
        if unlink:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def accept_loop(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed: the device was replaced
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    @staticmethod
    def read_request(conn):
        """Firecracker reads "connect <port>\\n" (any case), at most 32 bytes."""
        buf = b""
        while not buf.endswith(b"\n") and len(buf) < 32:
            byte = conn.recv(1)
            if not byte:
                return None
            buf += byte
        words = buf.decode("ascii", "replace").split()
        if len(words) != 2 or words[0].lower() != "connect" or not words[1].isdigit():
            return None
        return int(words[1])

    def serve(self, conn):
        with conn:
            port = self.read_request(conn)
            if port is None:
                self.vmm.record.write({"event": "vsock", "port": None, "result": "bad request"})
                return
            # The guest answers only while its vCPUs run: a connection made
            # before InstanceStart or while paused waits.
            self.vmm.wait_running()
            target = os.environ.get("FC_FAKE_VSOCK_%d" % port)
            if not target:
                self.vmm.record.write({"event": "vsock", "port": port, "result": "no listener"})
                return
            peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                peer.connect(target)
            except OSError:
                peer.close()
                self.vmm.record.write({"event": "vsock", "port": port, "result": "connect failed"})
                return
            with peer:
                local_port = self.vmm.allocate_local_port()
                conn.sendall(b"OK %d\n" % local_port)
                self.vmm.record.write({"event": "vsock", "port": port, "result": "ok"})
                relay(conn, peer)


def relay(a, b):
    """Copies bytes both ways until either side closes."""
    sel = selectors.DefaultSelector()
    sel.register(a, selectors.EVENT_READ, b)
    sel.register(b, selectors.EVENT_READ, a)
    try:
        while True:
            for key, _ in sel.select():
                data = key.fileobj.recv(65536)
                if not data:
                    return
                key.data.sendall(data)
    except OSError:
        return
    finally:
        sel.close()


# --------------------------------------------------------------------------
# The VMM: Firecracker's pre-boot and runtime controllers.

PRE, POST, ANY = "pre-boot", "post-boot", "any time"

# When each operation is allowed, from Firecracker's rpc_interface.rs
# (PrebootApiController / RuntimeApiController): the spec's summaries say
# "Pre-boot only" / "Post-boot only" for some of them, not all (and PATCH
# /balloon says "before or after", but Firecracker refuses it pre-boot).
# PUT /actions depends on its action_type (ACTION_PHASE). check_phases()
# makes sure this table covers the spec and agrees with what it does say.
PHASES = {
    "describeInstance": ANY, "getFirecrackerVersion": ANY, "getMachineConfiguration": ANY,
    "getExportVmConfig": ANY, "getMmds": ANY, "putMmds": ANY, "patchMmds": ANY,
    "describeBalloonConfig": ANY, "createSyncAction": ANY,
    "putGuestBootSource": PRE, "putLogger": PRE, "putMetrics": PRE, "putSerialDevice": PRE,
    "putGuestDriveByID": PRE, "putGuestPmemByID": PRE, "putGuestNetworkInterfaceByID": PRE,
    "loadSnapshot": PRE, "putCpuConfiguration": PRE, "putBalloon": PRE, "putGuestVsock": PRE,
    "putMmdsConfig": PRE, "putEntropyDevice": PRE, "putMemoryHotplug": PRE,
    "putMachineConfiguration": PRE, "patchMachineConfiguration": PRE,
    "createSnapshot": POST, "patchVm": POST, "describeBalloonStats": POST, "patchBalloon": POST,
    "patchBalloonStatsInterval": POST, "startBalloonHinting": POST, "describeBalloonHinting": POST,
    "stopBalloonHinting": POST, "patchGuestDriveByID": POST, "patchGuestNetworkInterfaceByID": POST,
    "getMemoryHotplug": POST, "patchMemoryHotplug": POST,
}
ACTION_PHASE = {"InstanceStart": PRE, "FlushMetrics": POST, "SendCtrlAltDel": POST}

# Pre-boot operations that make the VM "boot path" configured, after which
# /snapshot/load is refused (PrebootApiController.boot_path).
BOOT_PATH_OPERATIONS = {
    "putGuestBootSource", "putGuestDriveByID", "putGuestPmemByID", "putGuestNetworkInterfaceByID",
    "putBalloon", "putGuestVsock", "putMmdsConfig", "putEntropyDevice", "putMemoryHotplug",
    "putMachineConfiguration", "patchMachineConfiguration",
}

# Firecracker's words when a path parameter and the body field of the same
# name (the spec's path ids all have one) disagree.
ID_MISMATCH = {
    "drive_id": "The id from the path does not match the id from the body!",
    "id": "The id from the path does not match the id from the body!",
    "iface_id": "The id from the path [{path}] does not match the id from the body [{body}]!",
}

DEFAULT_MACHINE_CONFIG = {"vcpu_count": 1, "mem_size_mib": 128, "smt": False,
                          "track_dirty_pages": False, "huge_pages": "None"}


def check_phases(spec):
    for route in spec.routes:
        for op in route.operations.values():
            op_id = op["operationId"]
            assert op_id in PHASES, "no phase for %s (a new operation in the spec?)" % op_id
            summary = op.get("summary", "")
            if "Pre-boot only" in summary:
                assert PHASES[op_id] == PRE, op_id
            if "Post-boot only" in summary:
                assert PHASES[op_id] == POST, op_id


class Vmm:
    def __init__(self, spec, args, record, logger):
        self.spec = spec
        self.validator = Validator(spec)
        self.record = record
        self.log = logger
        self.lock = threading.RLock()           # one request at a time
        self.state_cv = threading.Condition()   # vsock waits for RUNNING
        self.state = NOT_STARTED
        self.deprecated = []
        self.started = False     # the runtime controller took over
        self.boot_path = False
        self.exit_on_resume = False
        self.instance_id = args.get("id", DEFAULT_INSTANCE_ID)
        self.payload_limit = int(args.get("http-api-max-payload-size", HTTP_MAX_PAYLOAD_SIZE))
        self.local_port = (1 << 30) - 1
        self.metrics = None
        self.vsock = None
        self.mmds = None
        self.config = {"machine-config": dict(DEFAULT_MACHINE_CONFIG), "drives": {},
                       "network-interfaces": {}, "pmem": {}}
        self.injected = set(x.strip() for x in os.environ.get("FC_FAKE_FAIL", "").split(";") if x.strip())

    # ---- state helpers

    def set_state(self, state):
        with self.state_cv:
            self.state = state
            self.state_cv.notify_all()

    def wait_running(self):
        with self.state_cv:
            self.state_cv.wait_for(lambda: self.state == RUNNING)

    def allocate_local_port(self):
        with self.state_cv:
            self.local_port = ((self.local_port + 1) & ~(1 << 31)) | (1 << 30)
            return self.local_port

    # ---- a request, in Firecracker's order: route (spec path + method), body
    # parsed and validated against the spec, path ids, Firecracker's parse
    # checks; then FC_FAKE_FAIL; then the VMM: phase (pre/post boot) and the
    # operation. Returns (status, body) or raises ApiError. Sets
    # self.deprecated, the deprecated fields the body used (Firecracker's
    # "Deprecation: true" goes on errors too, once the body parsed).

    def handle(self, method, path, raw):
        self.deprecated = []
        route, params = self.spec.match(path)
        op = route.operations.get(method) if route else None
        if op is None:
            raise ApiError("Invalid request method and/or path: %s %s." % (method, path))
        body_param = next((p for p in op.get("parameters", []) if p["in"] == "body"), None)
        body = self.parse_body(method, raw, body_param)
        for name, value in params.items():
            if not value:
                raise ApiError("The ID cannot be empty.")
            if not all(c == "_" or c.isalnum() for c in value):
                raise ApiError("API Resource IDs can only contain alphanumeric characters and underscores.")
        if body_param is not None and body is not None:
            subset = "subset" in body_param.get("description", "").lower()
            try:
                self.deprecated = self.validator.validate(body_param["schema"], body, enforce_required=not subset)
            except SchemaError as e:
                raise ApiError("An error occurred when deserializing the json body of a request: %s." % e)
            for name, value in params.items():
                if isinstance(body, dict) and name in body and body[name] != value:
                    message = ID_MISMATCH.get(name, "The id from the path does not match the id from the body!")
                    raise ApiError(message.format(path=value, body=body[name]))
        op_id = op["operationId"]
        parse_check = getattr(self, "parse_" + op_id, None)
        if parse_check:  # Firecracker's own checks while parsing, before the VMM sees the request
            parse_check(body)
        if "%s %s" % (method, path) in self.injected or "%s %s" % (method, route.template) in self.injected:
            raise ApiError("injected failure")
        phase = ACTION_PHASE[body["action_type"]] if op_id == "createSyncAction" else PHASES[op_id]
        if phase == PRE and self.started:
            raise ApiError("The requested operation is not supported after starting the microVM.")
        if phase == POST and not self.started:
            raise ApiError("The requested operation is not supported before starting the microVM.")
        if op_id in BOOT_PATH_OPERATIONS:
            self.boot_path = True  # even when the operation then fails, as in Firecracker
        result = getattr(self, "op_" + op_id)(body, params)
        status = min(code for code in op["responses"] if isinstance(code, int) and code < 300)
        return status, (result if status != 204 else None)

    def parse_body(self, method, raw, body_param):
        if method == "GET":
            if raw:
                raise ApiError("GET request cannot have a body.")
            return None
        if not raw:
            if body_param is not None and body_param.get("required", True) is not False:
                raise ApiError("Empty %s request." % method)
            return None
        try:
            return json.loads(raw)
        except ValueError as e:
            raise ApiError("An error occurred when deserializing the json body of a request: %s." % e)

    # ---- pre-boot configuration

    def op_putMachineConfiguration(self, body, _):
        self.set_machine_config(dict(DEFAULT_MACHINE_CONFIG, **body))

    def parse_patchMachineConfiguration(self, body):
        if not body:
            raise ApiError("Empty PATCH request.")

    def op_patchMachineConfiguration(self, body, _):
        self.set_machine_config(dict(self.config["machine-config"], **body))

    def set_machine_config(self, mc):
        vcpus = mc["vcpu_count"]
        if vcpus < 1 or vcpus > 32 or (mc.get("smt") and vcpus > 1 and vcpus % 2):
            raise ApiError("Machine config error: The number of vCPUs must be greater than 0, less than 32 "
                           "and must be 1 or an even number if SMT is enabled.")
        if mc["mem_size_mib"] == 0 or (mc.get("huge_pages") == "2M" and mc["mem_size_mib"] % 2):
            raise ApiError("Machine config error: The memory size (MiB) is either 0, or not a multiple "
                           "of the configured page size.")
        balloon = self.config.get("balloon")
        if balloon and balloon["amount_mib"] > mc["mem_size_mib"]:
            raise ApiError("Machine config error: The memory size (MiB) is smaller than the previously "
                           "set balloon device target size.")
        self.config["machine-config"] = mc

    def op_putGuestBootSource(self, body, _):
        for key, what in (("kernel_image_path", "The kernel file cannot be opened: %s"),
                          ("initrd_path", "The initrd file cannot be opened due to invalid path or "
                                          "invalid permissions. %s")):
            if key in body:
                try:
                    open(body[key], "rb").close()
                except OSError as e:
                    raise ApiError("Boot source error: " + what % os_error(e))
        self.config["boot-source"] = body

    def op_putGuestDriveByID(self, body, params):
        drives = self.config["drives"]
        drive_id = params["drive_id"]
        root = next((d for d, cfg in drives.items() if cfg["is_root_device"]), None)
        if body["is_root_device"] and root not in (None, drive_id):
            raise ApiError("Drive config error: A root block device already exists!")
        if "path_on_host" in body and "socket" not in body:
            try:
                flags = os.O_RDONLY if body.get("is_read_only") else os.O_RDWR
                os.close(os.open(body["path_on_host"], flags))
            except OSError as e:
                raise ApiError("Drive config error: Unable to create the virtio block device: Virtio backend "
                               "error: Error manipulating the backing file: %s %s" % (os_error(e), body["path_on_host"]))
        elif "socket" not in body or "path_on_host" in body:
            raise ApiError("Drive config error: Unable to create the virtio block device: Invalid block config.")
        drives[drive_id] = apply_defaults(self.spec, {"$ref": "#/definitions/Drive"}, body)

    def op_putGuestPmemByID(self, body, params):
        try:
            open(body["path_on_host"], "rb").close()
        except OSError as e:
            raise ApiError("Pmem device error: %s" % os_error(e))
        self.config["pmem"][params["id"]] = body

    def op_putGuestNetworkInterfaceByID(self, body, params):
        # The tap device itself is not opened: tests have no taps.
        mac = body.get("guest_mac")
        if mac is not None:
            if not re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", mac):
                raise ApiError("An error occurred when deserializing the json body of a request: "
                               "invalid MAC address `%s` at `guest_mac`." % mac)
            for other_id, other in self.config["network-interfaces"].items():
                if other_id != params["iface_id"] and other.get("guest_mac", "").lower() == mac.lower():
                    raise ApiError("Network config error: The MAC address is already in use: %s" % mac)
        self.config["network-interfaces"][params["iface_id"]] = body

    def op_putGuestVsock(self, body, _):
        # Firecracker binds uds_path here, when the device is configured (its
        # VsockUnixBackend::new), not at InstanceStart; host connections made
        # before the guest runs wait (Vsock.serve).
        if self.vsock:  # Firecracker drops the old device and removes its socket first
            self.vsock.close(unlink=True)
            self.vsock = None
        try:
            self.vsock = Vsock(self, body["uds_path"])
        except OSError as e:
            raise ApiError("Vsock config error: Cannot create backend for vsock device: "
                           "Error binding to the host-side Unix socket: %s" % os_error(e))
        self.config["vsock"] = body

    def op_putLogger(self, body, _):
        try:
            self.log.configure(body.get("log_path"), body.get("show_level"), body.get("show_log_origin"))
        except OSError as e:
            raise ApiError("Logger error: Failed to open target file: %s" % os_error(e))
        self.log.log("INFO", "fc_api", "Logger configured: %s" % json.dumps(body))

    def op_putMetrics(self, body, _):
        if self.metrics is not None:
            raise ApiError("Metrics error: Cannot initialize the metrics system due to bad user input: "
                           "Reinitialization of metrics not allowed.")
        try:
            fd = os.open(body["metrics_path"], os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
        except OSError as e:
            raise ApiError("Metrics error: Cannot initialize the metrics system due to bad user input: %s" % os_error(e))
        self.metrics = os.fdopen(fd, "a")

    def op_putSerialDevice(self, body, _):
        self.config["serial"] = body

    def op_putCpuConfiguration(self, body, _):
        self.config["cpu-config"] = body

    def op_putBalloon(self, body, _):
        if body["amount_mib"] > self.config["machine-config"]["mem_size_mib"]:
            raise ApiError("Balloon config error: Amount of pages requested is too large.")
        self.config["balloon"] = body

    def op_putEntropyDevice(self, body, _):
        self.config["entropy"] = body

    def op_putMemoryHotplug(self, body, _):
        self.config["memory-hotplug"] = body

    def op_putMmdsConfig(self, body, _):
        if not body["network_interfaces"]:
            raise ApiError("MMMDS config error: The list of network interface IDs that allow forwarding "
                           "MMDS requests is empty.")
        if any(i not in self.config["network-interfaces"] for i in body["network_interfaces"]):
            raise ApiError("MMMDS config error: The list of network interface IDs provided contains at "
                           "least one ID that does not correspond to any existing network interface.")
        self.config["mmds-config"] = body

    # ---- MMDS data, any time

    def op_putMmds(self, body, _):
        self.mmds = body

    def op_patchMmds(self, body, _):
        def merge(target, patch):  # JSON merge patch (RFC 7396)
            if not isinstance(patch, dict):
                return patch
            target = dict(target) if isinstance(target, dict) else {}
            for k, v in patch.items():
                if v is None:
                    target.pop(k, None)
                else:
                    target[k] = merge(target.get(k), v)
            return target
        self.mmds = merge(self.mmds, body)

    def op_getMmds(self, _, __):
        return self.mmds if self.mmds is not None else {}

    # ---- reads

    def op_describeInstance(self, _, __):
        return {"id": self.instance_id, "state": self.state, "vmm_version": FIRECRACKER_VERSION,
                "app_name": "Firecracker"}

    def op_getFirecrackerVersion(self, _, __):
        return {"firecracker_version": FIRECRACKER_VERSION}

    def op_getMachineConfiguration(self, _, __):
        return self.config["machine-config"]

    def op_getExportVmConfig(self, _, __):
        # The keys FullVmConfiguration has (serial, for one, is not there);
        # the device lists are arrays.
        keys = self.spec.resolve({"$ref": "#/definitions/FullVmConfiguration"})["properties"]
        return {key: list(value.values()) if key in ("drives", "network-interfaces", "pmem") else value
                for key, value in self.config.items() if key in keys}

    def op_describeBalloonConfig(self, _, __):
        if "balloon" not in self.config:
            raise ApiError("Balloon config error: No balloon device found.")
        return self.config["balloon"]

    # ---- actions

    def op_createSyncAction(self, body, _):
        action = body["action_type"]
        if action == "InstanceStart":
            if "boot-source" not in self.config:
                raise ApiError("Start microvm error: Cannot start microvm without kernel configuration.")
            self.start(RUNNING)
        elif action == "FlushMetrics":
            self.flush_metrics()
        elif action == "SendCtrlAltDel":
            # The guest reboots and Firecracker exits 0; a paused guest
            # reacts only once resumed.
            if self.state == RUNNING:
                self.exit_soon()
            else:
                self.exit_on_resume = True

    def start(self, state):
        self.started = True
        self.set_state(state)
        self.log.log("INFO", "fc_vmm", "Successfully started microvm" if state == RUNNING
                     else "Loaded the microVM from a snapshot")

    def flush_metrics(self):
        if self.metrics is not None:
            line = {"utc_timestamp_ms": int(time.time() * 1000), "vmm": {"state": self.state}}
            try:
                self.metrics.write(json.dumps(line) + "\n")
                self.metrics.flush()
            except OSError:
                pass

    def exit_soon(self):
        delay = int(os.environ.get("FC_FAKE_CAD_EXIT_MS", "100")) / 1000.0
        threading.Timer(delay, finish, args=(0,)).start()

    # ---- runtime

    def op_patchVm(self, body, _):
        if body["state"] == "Paused":
            self.set_state(PAUSED)
        else:
            self.set_state(RUNNING)
            if self.exit_on_resume:
                self.exit_soon()

    def op_createSnapshot(self, body, _):
        if self.state != PAUSED:
            raise ApiError("Create snapshot error: Cannot save the microVM state: Operation not allowed: "
                           "save/restore unavailable while running")
        state = {"magic": SNAPSHOT_MAGIC, "firecracker_version": FIRECRACKER_VERSION,
                 "config": {k: v for k, v in self.config.items() if k != "boot-source"}}
        for key, what, data in (("snapshot_path", "snapshot", json.dumps(state).encode() + b"\n"),
                                ("mem_file_path", "memory", b"fake guest memory\n" + bytes(4096))):
            try:
                fd = os.open(body[key], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
            except OSError as e:
                raise ApiError("Create snapshot error: Cannot perform open on the %s backing file: %s"
                               % (what, os_error(e)))

    def parse_loadSnapshot(self, body):
        has_backend, has_file = "mem_backend" in body, "mem_file_path" in body
        if has_backend == has_file:
            raise ApiError("An error occurred when deserializing the json body of a request: %s."
                           % ("too many fields: either `mem_backend` or `mem_file_path` exclusively is required"
                              if has_backend else "missing field: either `mem_backend` or `mem_file_path` is required"))

    def op_loadSnapshot(self, body, _):
        if self.boot_path:
            raise ApiError("Load snapshot error: Loading a microVM snapshot not allowed after configuring "
                           "boot-specific resources.")
        prefix = "Load snapshot error: Failed to restore from snapshot: "
        try:
            with open(body["snapshot_path"]) as f:
                state = json.load(f)
            assert state.get("magic") == SNAPSHOT_MAGIC
        except OSError as e:
            raise ApiError(prefix + "Failed to get snapshot state from file: Failed to open snapshot file: %s"
                           % os_error(e), fatal=True)
        except (ValueError, AssertionError):
            raise ApiError(prefix + "Failed to get snapshot state from file: Failed to load snapshot state "
                           "from file: not a snapshot this fake wrote", fatal=True)
        backend = body.get("mem_backend", {"backend_type": "File", "backend_path": body.get("mem_file_path")})
        if not os.path.exists(backend["backend_path"]):
            raise ApiError(prefix + "Failed to load guest memory: %s"
                           % os_error(FileNotFoundError(2, "", backend["backend_path"])), fatal=True)
        config = state["config"]
        for override in body.get("network_overrides", []):
            iface = config["network-interfaces"].get(override["iface_id"])
            if iface is None:
                raise ApiError(prefix + "Failed to get snapshot state from file: Unknown Network Device.", fatal=True)
            iface["host_dev_name"] = override["host_dev_name"]
        for drive in config["drives"].values():
            if "path_on_host" in drive and not os.path.exists(drive["path_on_host"]):
                raise ApiError(prefix + "Failed to build microVM from snapshot: Cannot open the block device "
                               "backing file: %s %s" % (os_error(FileNotFoundError(2, "")), drive["path_on_host"]),
                               fatal=True)
        if "vsock" in config:  # the restored device binds its uds_path again
            try:
                self.vsock = Vsock(self, config["vsock"]["uds_path"])
            except OSError as e:
                raise ApiError(prefix + "Failed to build microVM from snapshot: Cannot restore devices: "
                               "Error binding to the host-side Unix socket: %s" % os_error(e), fatal=True)
        if body.get("track_dirty_pages") or body.get("enable_diff_snapshots"):
            config["machine-config"]["track_dirty_pages"] = True
        self.config = config
        self.start(RUNNING if body.get("resume_vm") else PAUSED)

    def op_patchGuestDriveByID(self, body, params):
        if params["drive_id"] not in self.config["drives"]:
            raise ApiError("Drive config error: Unable to patch the block device: Device manager error: "
                           "Invalid device ID. Please verify the request arguments.")
        if "path_on_host" in body:
            if not os.path.exists(body["path_on_host"]):
                raise ApiError("Drive config error: Unable to patch the block device: %s %s. Please verify "
                               "the request arguments." % (os_error(FileNotFoundError(2, "")), body["path_on_host"]))
            self.config["drives"][params["drive_id"]]["path_on_host"] = body["path_on_host"]

    def op_patchGuestNetworkInterfaceByID(self, body, params):
        if params["iface_id"] not in self.config["network-interfaces"]:
            raise ApiError("Network config error: Unable to update the net device: Device manager error: "
                           "Invalid device ID.")

    def balloon(self, stats=False, hinting=False):
        balloon = self.config.get("balloon")
        if balloon is None:
            raise ApiError("Internal VMM error: Balloon: No balloon device found.")
        if stats and not balloon.get("stats_polling_interval_s"):
            raise ApiError("Internal VMM error: Balloon: Statistics for the balloon device are not enabled")
        if hinting and not balloon.get("free_page_hinting"):
            raise ApiError("Balloon update error: Balloon: Free page hinting is not enabled")
        return balloon

    def op_describeBalloonStats(self, _, __):
        mib = self.balloon(stats=True)["amount_mib"]
        return {"target_pages": mib * 256, "actual_pages": mib * 256, "target_mib": mib, "actual_mib": mib}

    def op_patchBalloon(self, body, _):
        self.balloon()["amount_mib"] = body["amount_mib"]

    def op_patchBalloonStatsInterval(self, body, _):
        self.balloon(stats=True)["stats_polling_interval_s"] = body["stats_polling_interval_s"]

    def op_startBalloonHinting(self, _, __):
        self.balloon(hinting=True)

    def op_stopBalloonHinting(self, _, __):
        self.balloon(hinting=True)

    def op_describeBalloonHinting(self, _, __):
        self.balloon(hinting=True)
        return {"host_cmd": 0}

    def hotplug(self):
        if "memory-hotplug" not in self.config:
            raise ApiError("Internal VMM error: Memory hotplug: the device is not configured")
        return self.config["memory-hotplug"]

    def op_getMemoryHotplug(self, _, __):
        cfg = self.hotplug()
        return {"total_size_mib": cfg.get("total_size_mib", 0), "slot_size_mib": cfg.get("slot_size_mib", 128),
                "block_size_mib": cfg.get("block_size_mib", 2), "plugged_size_mib": 0,
                "requested_size_mib": cfg.get("requested_size_mib", 0)}

    def op_patchMemoryHotplug(self, body, _):
        self.hotplug()["requested_size_mib"] = body.get("requested_size_mib", 0)


# --------------------------------------------------------------------------
# HTTP/1.1 over the Unix socket.

VMM = None  # set in main()


class ApiServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def version_string(self):
        return "Firecracker API"

    def log_message(self, *args):
        pass  # Firecracker's own log lines are written by Vmm / serve()

    def send_error(self, code, message=None, explain=None):
        # A request http.server could not parse (Firecracker: 400, micro_http's body).
        self.close_connection = True
        self.reply(400, {"error": "Invalid HTTP request: %s\nAll previous unanswered requests will be dropped."
                         % (message or code)}, False)

    def reply(self, status, body, deprecated):
        self.send_response(status)
        self.send_header("Connection", "keep-alive")
        if deprecated:
            self.send_header("Deprecation", "true")
        data = b""
        if body is not None:
            data = json.dumps(body).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
        elif status != 204:
            self.send_header("Content-Length", "0")
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise ApiError("Transfer-Encoding: chunked is not supported: Firecracker's HTTP server reads a body "
                           "by its Content-Length only.")
        length = int(self.headers.get("Content-Length") or 0)
        if length > VMM.payload_limit:
            self.close_connection = True
            raise ApiError("Request payload with size %d is larger than the limit of %d allowed by server.\n"
                           "All previous unanswered requests will be dropped." % (length, VMM.payload_limit),
                           http_level=True)
        return self.rfile.read(length) if length else b""

    def serve(self):
        method, path = self.command, urlsplit(self.path).path
        raw, parsed, deprecated = b"", None, False
        try:
            raw = self.read_body()
            with VMM.lock:
                VMM.log.log("INFO", "fc_api", "The API server received a %s request on %s%s."
                            % (method.capitalize(), json.dumps(path),
                               " with body %s" % json.dumps(raw.decode("utf-8", "replace")) if raw else ""))
                try:
                    status, body = VMM.handle(method, path, raw)
                finally:
                    deprecated = bool(VMM.deprecated)
        except ApiError as e:
            status, body, fatal = e.status, e.body, e.fatal
            VMM.log.log("ERROR", "fc_api", "Received Error. Status code: 400 Bad Request. Message: %s" % e)
        except Exception as e:  # a bug in this fake: say so rather than drop the connection
            traceback.print_exc()
            status, body, fatal = 500, {"fault_message": "fake_firecracker internal error: %r" % e}, False
        else:
            fatal = False
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        entry = {"method": method, "path": path, "body": parsed, "status": status}
        if status >= 400:
            entry["fault_message"] = body.get("fault_message", body.get("error"))
        VMM.record.write(entry)
        self.reply(status, body, deprecated)
        if fatal:  # Firecracker's preboot loop returns the error: the process exits
            threading.Timer(0.05, finish, args=(EXIT_GENERIC, "Error: RunWithApi(BuildMicroVmError(Restore))")).start()

    do_GET = do_PUT = do_PATCH = do_POST = do_DELETE = do_HEAD = do_OPTIONS = serve


# --------------------------------------------------------------------------
# Start and exit.

EXIT_LOCK = threading.Lock()


def finish(code, stderr_message=None):
    """Exits like Firecracker: metrics flushed, the exit recorded. The API and
    vsock sockets stay on disk (Firecracker does not remove them)."""
    with EXIT_LOCK:
        if VMM is not None:
            VMM.flush_metrics()
            if code == 0:
                VMM.log.log("INFO", "main", "Firecracker exiting successfully. exit_code=0")
            else:
                VMM.log.log("ERROR", "main", "Firecracker exiting with error. exit_code=%d" % code)
            VMM.record.write({"event": "exit", "code": code})
        if stderr_message:
            sys.stderr.write(stderr_message + "\n")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def die_by_signal(signum, _frame):
    """Firecracker has no handler for these: it dies by the signal."""
    # Not blocking: the main thread may be in finish() already.
    if EXIT_LOCK.acquire(timeout=1) and VMM is not None:
        VMM.record.write({"event": "exit", "code": None, "signal": signal.Signals(signum).name})
    sys.stdout.flush()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def fail(code, message):
    sys.stderr.write(message + "\n")
    sys.exit(code)


def main(argv):
    global VMM
    try:
        args = parse_cli(argv)
    except ArgError as e:
        fail(EXIT_ARG_PARSING, "Arguments parsing error: %s \n\nFor more information try --help." % e)
    if args.get("version") or args.get("help"):
        print("Firecracker v%s\n" % FIRECRACKER_VERSION)
        if args.get("help"):
            print("Flags: " + " ".join("--" + a for a in CLI_ARGS))
        return 0
    if args.get("snapshot-version"):
        print("v8.0.0")
        return 0
    if "config-file" in args or "no-api" in args:
        fail(EXIT_GENERIC, "fake_firecracker: --config-file/--no-api are not supported by this fake "
                           "(banger configures Firecracker through the API only)")
    instance_id = args.get("id", DEFAULT_INSTANCE_ID)
    if not valid_instance_id(instance_id):
        sys.stderr.write("thread 'main' panicked: Invalid instance ID: %r\n" % instance_id)
        sys.stderr.flush()
        os.abort()
    level = args.get("level")
    if level is not None and level.lower() not in ("off", "trace", "debug", "info", "warn", "warning", "error"):
        fail(EXIT_BAD_CONFIG, "Error: InvalidLogLevel(LevelFilterFromStrError(%s))" % json.dumps(level))

    spec = Spec(os.environ.get("FC_FAKE_SPEC") or default_spec_path())
    check_phases(spec)
    logger = Logger(instance_id)
    try:
        logger.configure(args.get("log-path"), True if "show-level" in args else None,
                         True if "show-log-origin" in args else None)
    except OSError as e:
        fail(EXIT_GENERIC, "Error: LoggerInitialization(Failed to open target file: %s)" % os_error(e))
    record = Recorder(os.environ.get("FC_FAKE_RECORD"))
    VMM = Vmm(spec, args, record, logger)
    record.write({"event": "start", "pid": os.getpid(), "argv": sys.argv})
    logger.log("INFO", "main", "Running Firecracker v%s" % FIRECRACKER_VERSION)

    if "metrics-path" in args:
        try:
            VMM.op_putMetrics({"metrics_path": args["metrics-path"]}, None)
        except ApiError as e:
            finish(EXIT_GENERIC, "Error: MetricsInitialization(%s)" % e)
    if "seccomp-filter" in args and not os.path.isfile(args["seccomp-filter"]):
        finish(EXIT_GENERIC, "Error: SeccompFilter(FileOpen(No such file or directory (os error 2)))")
    if "metadata" in args:
        try:
            with open(args["metadata"]) as f:
                VMM.mmds = json.load(f)
        except (OSError, ValueError) as e:
            sys.stderr.write("thread 'main' panicked: Unable to open or read from the mmds content file: %s\n" % e)
            sys.stderr.flush()
            os.abort()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, die_by_signal)

    sock_path = args["api-sock"]
    if os.path.lexists(sock_path):
        finish(EXIT_GENERIC, "Error: RunWithApi(FailedToBindSocket(%s))\nFailed to open the API socket at: %s. "
                             "Check that it is not already used." % (json.dumps(sock_path), sock_path))
    try:
        server = ApiServer(sock_path, ApiHandler)
    except OSError as e:
        finish(EXIT_GENERIC, "Error: RunWithApi(FailedToBindAndRunHttpServer(%s))" % os_error(e))
    logger.log("INFO", "fc_api", "API server started.")
    server.serve_forever(poll_interval=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
