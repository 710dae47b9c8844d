"""Wire protocol v1 between the scheduler, its nodes and its producers (the web servers).

Every message is a ZeroMQ multipart message (after the ROUTER identity frame on the scheduler side)::

    [0] b"LC1"                 signature + protocol version
    [1] command                ASCII, e.g. b"HELLO"
    [2] header                 UTF-8 JSON object
    [3..] blobs                binary frames, named in order by ``header["blobs"]``

This module is pure: it turns frames into a :class:`Message` and back, and refuses anything
malformed with :class:`ProtocolError` so that a peer can log, count and drop garbage instead of
crashing. ``docs/protocol.md`` describes every command, the task state machine and the rules
(credit flow, heartbeats, recovery, exactly-once) that the peers follow.

Validation has two levels. :func:`decode` always checks the envelope (signature, version, known
command, JSON object header, blob count). Given ``receiver=`` (``"scheduler"``, ``"node"`` or
``"producer"``) it also checks that the command may be sent to that receiver and that its required
header fields are present with the right types, because the same command name (``HEARTBEAT``,
``CANCEL``) carries different headers in different directions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

PROTOCOL_VERSION = 1
PROTOCOL_MINOR = 4
"""Additive revisions of version 1 (the signature stays ``LC1``): 1 added the producer requests
``STATS`` and ``CALL`` (answered ``ANSWER``); a scheduler at minor 0 answers them ``REJECTED 400``.
2 added node pipelining: ``capabilities.slots`` (how many tasks a node may hold; absent = 1) and the
lists of held tasks ``HELLO.tasks``, ``HEARTBEAT.task_ids`` and ``BYE.task_ids``; a scheduler of an
older minor ignores them and hands such a node one task at a time. 3 added ``WELCOME.advertised``
(the control and queue addresses as seen through a NAT or proxy); a node of an older minor ignores it
and joins the bound queue addresses, as before. 4 added shared memory between a node and a scheduler on
the same host (``wire.shared_memory``): ``HELLO.shared_memory`` (the node's offer) and
``HELLO.task_slots``, ``WELCOME.shared_memory`` (mapped or not), ``TASK.shared`` (the task's slot, and
its files by reference) and ``RESULT.shared`` (the body by reference); either side of an older minor
ignores the offer, and nothing else changes until a WELCOME says ``shared_memory: true``."""
SIGNATURE = b"LC1"
SIGNATURE_PREFIX = b"LC"
MAX_HEADER_BYTES = 4 * 1024 * 1024
"""A header larger than this is refused: headers carry form fields, never images."""

# ---------------------------------------------------------------- commands
# node -> scheduler (control socket)
HELLO = "HELLO"
HEARTBEAT = "HEARTBEAT"
PROGRESS = "PROGRESS"
RESULT = "RESULT"
FAILED = "FAILED"
CANCELLED = "CANCELLED"
BYE = "BYE"
# scheduler -> node (control socket)
WELCOME = "WELCOME"
CANCEL = "CANCEL"
UNKNOWN = "UNKNOWN"
DRAIN = "DRAIN"
ERROR = "ERROR"
# node -> scheduler (queue socket) and scheduler -> node (queue socket)
READY = "READY"
TASK = "TASK"
# producer -> scheduler (control socket)
SUBMIT = "SUBMIT"
GET = "GET"
FETCH = "FETCH"
LIST = "LIST"
QUEUES = "QUEUES"
NODES = "NODES"
WATCH = "WATCH"
PING = "PING"
CALL = "CALL"
# scheduler -> producer
ACCEPTED = "ACCEPTED"
REJECTED = "REJECTED"
INFO = "INFO"
OUTPUT = "OUTPUT"
TASKS = "TASKS"
STATS = "STATS"
EVENT = "EVENT"
EVENTS = "EVENTS"
PONG = "PONG"
DONE = "DONE"
ANSWER = "ANSWER"

COMMANDS = frozenset(
    {
        HELLO, HEARTBEAT, PROGRESS, RESULT, FAILED, CANCELLED, BYE,
        WELCOME, CANCEL, UNKNOWN, DRAIN, ERROR,
        READY, TASK,
        SUBMIT, GET, FETCH, LIST, QUEUES, NODES, WATCH, PING, CALL,
        ACCEPTED, REJECTED, INFO, OUTPUT, TASKS, STATS, EVENT, EVENTS, PONG, DONE, ANSWER,
    }
)  # fmt: skip

# ---------------------------------------------------------------- vocabulary
NODE_IDLE = "idle"
NODE_BUSY = "busy"
NODE_DRAINING = "draining"
NODE_OFFLINE = "offline"
NODE_STATES = (NODE_IDLE, NODE_BUSY, NODE_DRAINING, NODE_OFFLINE)

ERR_VERSION = "version"
"""ERROR code sent to a peer that speaks another protocol version."""
ERR_FORBIDDEN = "forbidden"
"""ERROR code for a node message from a CURVE key that may act only as a producer (``curve_producer_keys``)."""
ERR_MALFORMED = "malformed"
ERR_UNKNOWN_COMMAND = "unknown_command"

RECEIVERS = ("scheduler", "node", "producer")

_NONE = type(None)
_NUM = (int, float)

# Required header fields per (receiver, command): name -> accepted types. Extra fields are allowed
# (forward compatible); a missing field or a field of the wrong type is a ProtocolError.
SCHEMAS: dict[str, dict[str, dict[str, tuple[type, ...]]]] = {
    "scheduler": {
        HELLO: {"node_id": (str,), "capabilities": (dict,)},
        HEARTBEAT: {"node_id": (str,), "state": (str,)},
        PROGRESS: {"node_id": (str,), "task_id": (str,), "attempt": (int,), "percent": _NUM},
        RESULT: {"node_id": (str,), "task_id": (str,), "attempt": (int,), "mimetype": (str,), "headers": (dict,)},
        FAILED: {"node_id": (str,), "task_id": (str,), "attempt": (int,), "error": (str,), "retryable": (bool,)},
        CANCELLED: {"node_id": (str,), "task_id": (str,), "attempt": (int,)},
        BYE: {"node_id": (str,)},
        READY: {"node_id": (str,)},
        SUBMIT: {"req_id": (str, int), "task": (dict,)},
        GET: {"req_id": (str, int), "task_id": (str,)},
        FETCH: {"req_id": (str, int), "task_id": (str,)},
        CANCEL: {"req_id": (str, int), "task_id": (str,)},
        LIST: {"req_id": (str, int)},
        QUEUES: {"req_id": (str, int)},
        NODES: {"req_id": (str, int)},
        DRAIN: {"req_id": (str, int), "node_id": (str,)},
        STATS: {"req_id": (str, int)},
        CALL: {"req_id": (str, int), "name": (str,), "payload": (dict,)},
        WATCH: {"producer_id": (str,)},
        PING: {},
    },
    "node": {
        WELCOME: {"node_id": (str,), "queues": (dict,), "heartbeat_interval_s": _NUM, "liveness": (int,)},
        HEARTBEAT: {},
        CANCEL: {"task_id": (str,), "attempt": (int,)},
        UNKNOWN: {},
        DRAIN: {},
        ERROR: {"code": (str,), "message": (str,)},
        TASK: {"task_id": (str,), "attempt": (int,), "kind": (str,), "name": (str,), "form": (dict,)},
    },
    "producer": {
        ACCEPTED: {"req_id": (str, int), "task": (dict,)},
        REJECTED: {"req_id": (str, int, _NONE), "status": (int,), "code": (str,), "message": (str,)},
        INFO: {"req_id": (str, int), "task": (dict,)},
        OUTPUT: {"req_id": (str, int), "mimetype": (str,), "headers": (dict,)},
        TASKS: {"req_id": (str, int), "tasks": (list,), "total": (int,)},
        STATS: {"req_id": (str, int)},
        EVENT: {"task_id": (str,), "status": (str,)},
        EVENTS: {"events": (list,)},
        PONG: {},
        ERROR: {"code": (str,), "message": (str,)},
        DONE: {"task_id": (str,), "status": (str,)},
        ANSWER: {"req_id": (str, int), "result": (dict,)},
    },
}
"""What each receiver accepts. Nested objects (``task`` of SUBMIT, ``capabilities`` of HELLO) are
checked by the receiver itself, which knows what it needs from them."""

OPTIONAL: dict[str, dict[str, dict[str, tuple[type, ...]]]] = {
    "scheduler": {
        HELLO: {
            "task_id": (str, _NONE),
            "attempt": (int, _NONE),
            "tasks": (list,),
            "shared_memory": (dict,),
            "task_slots": (dict,),
        },
        HEARTBEAT: {"task_ids": (list,)},
        SUBMIT: {"want_result": (bool,)},
        RESULT: {"ready": (bool,), "shared": (dict,)},
        FAILED: {"ready": (bool,), "handed_back": (bool,)},
        CANCELLED: {"ready": (bool,)},
        BYE: {"task_id": (str, _NONE), "task_ids": (list,)},
        WATCH: {"batch_events": (bool,)},
    },
    "node": {
        WELCOME: {"shared_memory": (bool,)},
        TASK: {"shared": (dict,)},
    },
    "producer": {
        DONE: {"error": (str, _NONE), "error_status": (int, _NONE), "traceback": (str, _NONE)},
        ERROR: {"req_id": (str, int)},
    },
}
"""Optional header fields that change what the receiver does, checked only when present (so that a
mistyped one is refused instead of silently meaning something else). ``HELLO.task_id/attempt``: the
task a reconnecting node is still running; ``SUBMIT.want_result``: push a DONE to the submitter;
``ready: false`` on an outcome: the node cannot take the next task yet (no implied credit);
``FAILED.handed_back: true``: the node never started the task (a stop or drain raced the TASK), so
it is re-queued without charging an attempt; ``BYE.task_id``: what the leaving node still held
(null: nothing, so a TASK still in flight to it never started); ``HELLO.tasks`` (``[[task_id,
attempt], ...]``), ``HEARTBEAT.task_ids`` and ``BYE.task_ids`` (minor 2): every task a node with
several slots holds (BYE: every one it started); ``WATCH.batch_events``: the
producer also understands EVENTS (several events in one message); ``ERROR.req_id``: the producer
request the ERROR answers (absent when the refused message had no readable ``req_id``). Minor 4's
shared-memory fields are described under ``PROTOCOL_MINOR`` and in ``docs/protocol.md``."""

DONE_STATUSES = ("completed", "failed", "cancelled")
"""``DONE.status``: the terminal task states."""


class ProtocolError(ValueError):
    """A message that does not follow protocol v1; ``code`` is ``version``, ``malformed`` or
    ``unknown_command`` (the ERROR code a peer may be answered with)."""

    def __init__(self, message: str, code: str = ERR_MALFORMED) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Message:
    """One decoded message: ``command``, JSON ``header`` and the ``blobs`` in header order."""

    command: str
    header: dict[str, Any] = field(default_factory=dict)
    blobs: list[bytes] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        return self.header.get(key, default)

    def blob_map(self) -> dict[str, bytes]:
        """Blobs keyed by the names listed in ``header["blobs"]``."""
        return dict(zip(self.header.get("blobs") or [], self.blobs, strict=True))

    def frames(self) -> list[bytes]:
        return encode(self.command, self.header, self.blobs)


def _blob_names(header: Mapping[str, Any], count: int) -> None:
    names = header.get("blobs")
    if names is None:
        if count:
            raise ProtocolError(f"{count} blob frame(s) but no 'blobs' list in the header")
        return
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise ProtocolError("header 'blobs' must be a list of non-empty names")
    if len(set(names)) != len(names):
        raise ProtocolError("header 'blobs' names must be unique")
    if len(names) != count:
        raise ProtocolError(f"header names {len(names)} blob(s) but {count} blob frame(s) follow")


def encode(command: str, header: Mapping[str, Any] | None = None, blobs: Iterable[bytes] = ()) -> list[bytes]:
    """Frames for one message (without any routing identity).

    When ``blobs`` are given the header must name them in ``header["blobs"]``; use
    :func:`encode_named` to build both from a name -> bytes mapping.
    """
    if command not in COMMANDS:
        raise ProtocolError(f"unknown command {command!r}", ERR_UNKNOWN_COMMAND)
    head = dict(header or {})
    blob_list = [bytes(b) for b in blobs]
    _blob_names(head, len(blob_list))
    try:
        # orjson: the same compact JSON as json.dumps, about 10x faster on these small headers (every
        # message is encoded and decoded once per hop). Non-string keys become strings, as json does.
        raw = orjson.dumps(head, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"header of {command} is not JSON-serialisable: {exc}") from exc
    return [SIGNATURE, command.encode("ascii"), raw, *blob_list]


def encode_named(command: str, header: Mapping[str, Any] | None, named: Mapping[str, bytes]) -> list[bytes]:
    """Like :func:`encode`, setting ``header["blobs"]`` from the keys of ``named`` (in order)."""
    head = dict(header or {})
    head["blobs"] = list(named.keys())
    return encode(command, head, list(named.values()))


def _as_bytes(frame: Any) -> bytes:
    if isinstance(frame, bytes):
        return frame
    if isinstance(frame, (bytearray, memoryview)):
        return bytes(frame)
    buf = getattr(frame, "bytes", None)  # zmq.Frame
    if isinstance(buf, bytes):
        return buf
    raise ProtocolError(f"frame of type {type(frame).__name__} is not bytes")


def check_fields(command: str, header: Mapping[str, Any], schema: Mapping[str, tuple[type, ...]]) -> None:
    """Raise ProtocolError unless ``header`` has every field of ``schema`` with an accepted type."""
    for name, types in schema.items():
        if name not in header:
            raise ProtocolError(f"{command} header lacks field {name!r}")
        value = header[name]
        # bool is an int subclass: accept it only where bool is listed.
        if isinstance(value, bool) and bool not in types:
            raise ProtocolError(f"{command} field {name!r} has the wrong type (bool)")
        if not isinstance(value, types):
            raise ProtocolError(f"{command} field {name!r} has the wrong type ({type(value).__name__})")


def check_optional(command: str, header: Mapping[str, Any], schema: Mapping[str, tuple[type, ...]]) -> None:
    """Raise ProtocolError if a field of ``schema`` is present with a type it does not accept."""
    present = {name: types for name, types in schema.items() if name in header}
    if present:
        check_fields(command, header, present)


def _check_done(header: Mapping[str, Any]) -> None:
    """DONE: a terminal status; a completed one carries the result (mimetype, headers, one ``body``
    blob), a failed or cancelled one carries no blob."""
    status = header["status"]
    if status not in DONE_STATUSES:
        raise ProtocolError(f"DONE status must be one of {', '.join(DONE_STATUSES)}, got {status[:32]!r}")
    names = header.get("blobs") or []
    if status == "completed":
        check_fields(DONE, header, {"mimetype": (str,), "headers": (dict,)})
        if names != ["body"]:
            raise ProtocolError("a completed DONE must carry exactly one blob named 'body'")
    elif names:
        raise ProtocolError(f"a {status} DONE carries no blob")


def _check_events(header: Mapping[str, Any]) -> None:
    """EVENTS: every item must be what an EVENT header is, so that a receiver can hand each one to
    the same code as a single EVENT; one bad item refuses the whole message rather than delivering
    a batch with a hole in it."""
    schema = SCHEMAS["producer"][EVENT]
    for index, event in enumerate(header["events"]):
        if not isinstance(event, dict):
            raise ProtocolError(f"EVENTS item {index} must be an object, got {type(event).__name__}")
        try:
            check_fields(EVENT, event, schema)
        except ProtocolError as exc:
            raise ProtocolError(f"EVENTS item {index}: {exc}") from None


_EXTRA_CHECKS = {("producer", DONE): _check_done, ("producer", EVENTS): _check_events}
"""Checks that a flat field schema cannot express, per (receiver, command)."""


def decode(frames: Sequence[Any], *, receiver: str | None = None) -> Message:
    """Parse frames (identity already removed) into a :class:`Message`.

    Raises :class:`ProtocolError` on a wrong signature or version, an unknown command, a header that
    is not a JSON object, a blob count that does not match ``header["blobs"]``, and (with
    ``receiver``) a command not meant for that receiver or a missing/mistyped required field.
    """
    if receiver is not None and receiver not in SCHEMAS:
        raise ValueError(f"unknown receiver {receiver!r}")
    if len(frames) < 3:
        raise ProtocolError(f"expected at least 3 frames, got {len(frames)}")
    parts = [_as_bytes(f) for f in frames]
    sig = parts[0]
    if sig != SIGNATURE:
        if sig.startswith(SIGNATURE_PREFIX) and sig[2:].isdigit():
            raise ProtocolError(
                f"protocol version {sig[2:].decode()} is not supported (this peer speaks {PROTOCOL_VERSION})",
                ERR_VERSION,
            )
        raise ProtocolError("bad signature frame")
    try:
        command = parts[1].decode("ascii")
    except UnicodeDecodeError as exc:
        raise ProtocolError("command frame is not ASCII", ERR_UNKNOWN_COMMAND) from exc
    if command not in COMMANDS:
        raise ProtocolError(f"unknown command {command[:32]!r}", ERR_UNKNOWN_COMMAND)
    if len(parts[2]) > MAX_HEADER_BYTES:
        raise ProtocolError(f"{command} header is larger than {MAX_HEADER_BYTES} bytes")
    try:
        header = orjson.loads(parts[2])  # rejects invalid UTF-8 too (JSONDecodeError is a ValueError)
    except ValueError as exc:
        raise ProtocolError(f"{command} header is not UTF-8 JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ProtocolError(f"{command} header must be a JSON object")
    blobs = parts[3:]
    _blob_names(header, len(blobs))
    if receiver is not None:
        schema = SCHEMAS[receiver].get(command)
        if schema is None:
            raise ProtocolError(f"{command} is not a message a {receiver} accepts", ERR_UNKNOWN_COMMAND)
        check_fields(command, header, schema)
        optional = OPTIONAL.get(receiver, {}).get(command)
        if optional:
            check_optional(command, header, optional)
        extra = _EXTRA_CHECKS.get((receiver, command))
        if extra is not None:
            extra(header)
    return Message(command, header, blobs)


def split_identity(frames: Sequence[Any]) -> tuple[bytes, list[Any]]:
    """Split what a ROUTER received into (identity, message frames).

    DEALER peers send no empty delimiter, so the identity is exactly the first frame. An empty
    delimiter frame (a REQ peer) is tolerated and skipped.
    """
    if not frames:
        raise ProtocolError("empty message")
    ident = _as_bytes(frames[0])
    rest = list(frames[1:])
    if rest and _as_bytes(rest[0]) == b"":
        rest = rest[1:]
    return ident, rest


def error_frames(code: str, message: str, req_id: str | int | None = None) -> list[bytes]:
    """An ``ERROR`` message (e.g. to a peer with another protocol version).

    ``req_id``: the producer request it answers, so the producer fails that request at once instead
    of waiting for its timeout (an additive optional field: the version stays 1)."""
    header: dict[str, Any] = {"code": code, "message": message}
    if req_id is not None:
        header["req_id"] = req_id
    return encode(ERROR, header)


def decode_error_any_version(frames: Sequence[Any]) -> Message | None:
    """An ``ERROR`` sent under any ``LC<n>`` signature, or None if ``frames`` is not one.

    ERROR's envelope and header (``code``, ``message``, optional ``req_id``) are the one shape every
    protocol version keeps, so that during a rolling upgrade a peer can still read *why* the other
    side refuses it (instead of dropping the answer as "another version" and timing out)."""
    try:
        parts = [_as_bytes(f) for f in frames]
    except ProtocolError:
        return None
    if len(parts) != 3 or not parts[0].startswith(SIGNATURE_PREFIX) or not parts[0][2:].isdigit():
        return None
    if parts[1] != ERROR.encode("ascii") or len(parts[2]) > MAX_HEADER_BYTES:
        return None
    try:
        header = orjson.loads(parts[2])
    except ValueError:
        return None
    if not isinstance(header, dict):
        return None
    try:
        check_fields(ERROR, header, SCHEMAS["producer"][ERROR])
        check_optional(ERROR, header, OPTIONAL["producer"][ERROR])
    except ProtocolError:
        return None
    return Message(ERROR, header)


def queue_endpoints(control_endpoint: str, queues: Sequence[str]) -> dict[str, str]:
    """Default queue endpoints: the ports after the control port, in queue order.

    ``tcp://127.0.0.1:5570`` with ``["gpu", "cpu"]`` -> gpu at 5571, cpu at 5572. For a wildcard
    port (``:0`` or ``:*``) each queue gets a wildcard too; the scheduler then reports the ports
    it actually bound in WELCOME.
    """
    if not control_endpoint.startswith("tcp://"):
        raise ValueError(f"only tcp:// endpoints are supported, got {control_endpoint!r}")
    host, sep, port = control_endpoint[len("tcp://") :].rpartition(":")
    if not sep or not host:
        raise ValueError(f"endpoint {control_endpoint!r} has no port")
    if port in ("0", "*"):
        return {q: f"tcp://{host}:{port}" for q in queues}
    try:
        base = int(port)
    except ValueError as exc:
        raise ValueError(f"endpoint {control_endpoint!r} has a bad port") from exc
    return {q: f"tcp://{host}:{base + i + 1}" for i, q in enumerate(queues)}
