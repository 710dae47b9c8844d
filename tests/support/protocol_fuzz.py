"""Random and malformed protocol messages for the fuzz tests (a seeded ``random.Random``: a failure
is replayed by its seed).

:class:`Fuzzer` makes one message at a time for the scheduler's control socket or a queue socket:
random frames, wrong frame counts, bad or truncated signatures and versions, unknown commands,
headers that are not JSON objects, truncated or invalid UTF-8, missing or mistyped fields, blob lists
that do not match their frames, well-formed messages about unknown node and task ids, reports on
real tasks from a node they were not dispatched to, impersonations of the real node, replies sent
the wrong way (out of order), and replays of earlier messages. It never pairs a HELLO with a READY
for the same node id, so nothing it sends can make a valid node with credit: a TASK sent to one of
its sockets is a bug.
"""

from __future__ import annotations

import json
import random
import string
from collections import deque
from typing import Any

from lama_cleaner.plugins.distributed.wire import protocol as p

NODE_COMMANDS = (p.HELLO, p.HEARTBEAT, p.PROGRESS, p.RESULT, p.FAILED, p.CANCELLED, p.BYE)
REPLY_COMMANDS = (p.WELCOME, p.TASK, p.ACCEPTED, p.INFO, p.OUTPUT, p.TASKS, p.STATS, p.EVENT, p.EVENTS, p.PONG,
                  p.DONE, p.UNKNOWN, p.REJECTED)  # fmt: skip
SAFE_REQUESTS = (p.GET, p.FETCH, p.LIST, p.QUEUES, p.NODES, p.PING, p.WATCH, p.CANCEL, p.DRAIN)


def _json(value: Any) -> bytes:
    """The standard library's JSON: it writes integers of any size (2**70), which orjson refuses."""
    return json.dumps(value).encode()


class Fuzzer:
    """``message(target)`` -> frames for ``"control"`` or ``"queue"``. ``real_tasks`` (task ids the
    real producer submitted) and ``real_node`` (its node id) are filled in by the test as they appear;
    ``replayable`` holds real frames worth replaying (the producer's SUBMITs)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.real_tasks: list[str] = []
        self.real_node: str | None = None
        self.replayable: list[list[bytes]] = []
        self.sent: deque[list[bytes]] = deque(maxlen=256)
        self.hello_ids = [f"fuzz-{i}" for i in range(40)]
        """The only ids HELLOs register (few, so the registry stays small); READYs never use them."""

    # ------------------------------------------------------------------ pieces
    def _text(self, n: int | None = None) -> str:
        n = self.rng.randint(0, 24) if n is None else n
        return "".join(self.rng.choice(string.printable) for _ in range(n))

    def _bytes(self, n: int | None = None) -> bytes:
        n = self.rng.choice((0, 1, 3, 8, 40, self.rng.randint(0, 2000))) if n is None else n
        return self.rng.randbytes(n)

    def _value(self, depth: int = 0) -> Any:
        choice = self.rng.randrange(9 if depth < 2 else 6)
        if choice == 0:
            return None
        if choice == 1:
            return self.rng.random() < 0.5
        if choice == 2:
            return self.rng.choice((0, -1, 1, 2, 2**31, 2**63, 2**70, -(2**70), self.rng.randint(-9, 9)))
        if choice == 3:
            return self.rng.choice((0.5, -1e308, 1e308, 3.0))
        if choice in (4, 5):
            return self._text()
        if choice in (6, 7):
            return {self._text(6): self._value(depth + 1) for _ in range(self.rng.randint(0, 4))}
        return [self._value(depth + 1) for _ in range(self.rng.randint(0, 4))]

    def _task_id(self) -> str:
        if self.real_tasks and self.rng.random() < 0.5:
            return self.rng.choice(self.real_tasks)
        return self.rng.choice((self._text(32), "", "0" * 32, "task-" + self._text(8)))

    def _attempt(self) -> Any:
        return self.rng.choice((1, 1, 2, 0, -1, 7, 2**40, 2**70, True, "1", None))

    def _header(self, command: str) -> dict[str, Any]:
        """A header shaped like ``command``'s, with fields that are often wrong or unknown."""
        node_id = self.rng.choice(
            ["ghost-" + self._text(6), self.real_node or "ghost", *(self.hello_ids[:3] if command != p.READY else [])]
        )
        h: dict[str, Any] = {"node_id": node_id, "task_id": self._task_id(), "attempt": self._attempt()}
        if command == p.HELLO:
            caps = {"device": self.rng.choice(("cpu", "cuda", 7, None)), "models": ["sleep", self._text(5)],
                    "queues_requested": self.rng.choice(([], ["cpu"], "cpu", [1]))}  # fmt: skip
            h.update(node_id=self.rng.choice(self.hello_ids + [self.real_node or "ghost"]), capabilities=caps)
            if self.rng.random() < 0.5:
                h.update(task_id=None, attempt=None)
        elif command == p.HEARTBEAT:
            h["state"] = self.rng.choice((p.NODE_IDLE, p.NODE_BUSY, p.NODE_DRAINING, "bogus"))
        elif command == p.PROGRESS:
            h.update(percent=self.rng.choice((0, 50.5, 100, -5, 1e9)), step=self._value(), total_steps=self._value())
        elif command == p.RESULT:
            h.update(mimetype="image/png", headers=self.rng.choice(({}, {"a": "b"}, {"x": [1]})), blobs=["body"])
        elif command == p.FAILED:
            h.update(error=self._text(), retryable=self.rng.random() < 0.5, status=500,
                     handed_back=self.rng.random() < 0.3)  # fmt: skip
        elif command == p.BYE:
            h["reason"] = self._text()
        elif command in SAFE_REQUESTS or command == p.SUBMIT:
            h = {"req_id": self.rng.choice((self._text(8), self.rng.randint(0, 99), None, [1]))}
            if command in (p.GET, p.FETCH, p.CANCEL):
                h["task_id"] = "unknown-" + self._text(8)  # never a real task: CANCEL would be legitimate
            elif command == p.DRAIN:
                h["node_id"] = "ghost-" + self._text(6)  # never the real node: DRAIN would be legitimate
            elif command == p.LIST:
                h.update(
                    status=self.rng.choice((None, "queued", "bogus", 3)), limit=self._value(), offset=self._value()
                )
            elif command == p.WATCH:
                h.update(producer_id=self.rng.choice(("fuzz", 5)), batch_events=self._value())
            elif command == p.SUBMIT:
                # Never a valid task: a bad kind, name, form, key or priority, so nothing is journaled.
                task = {"kind": self.rng.choice(("paint", "", None, 3)), "name": self.rng.choice(("sleep", "", 5)),
                        "form": self._value(), "priority": self._value()}  # fmt: skip
                h.update(task=self.rng.choice((task, self._value())))
        return h

    def _with_blobs(self, command: str, header: dict[str, Any]) -> list[bytes]:
        names = header.get("blobs") if isinstance(header.get("blobs"), list) else []
        frames = [p.SIGNATURE, command.encode("ascii"), _json(header)]
        count = len(names)
        if self.rng.random() < 0.3:
            count = max(0, count + self.rng.choice((-1, 1, 2)))  # blob count that does not match
        return frames + [self._bytes() for _ in range(count)]

    def _mistyped(self, command: str, header: dict[str, Any]) -> dict[str, Any]:
        if header and self.rng.random() < 0.7:
            key = self.rng.choice(list(header))
            if self.rng.random() < 0.5:
                del header[key]
            else:
                header[key] = self._value()
        for _ in range(self.rng.randint(0, 2)):
            header[self._text(5)] = self._value()
        return header

    # ------------------------------------------------------------------ messages
    def message(self, target: str) -> list[bytes]:
        frames = self._make(target)
        self.sent.append(frames)
        return frames

    def _make(self, target: str) -> list[bytes]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.12:  # wrong frame counts, random bytes
            return [self._bytes() for _ in range(rng.choice((0, 1, 2, 3, 4, 6)))] or [b""]
        if roll < 0.20:  # bad, truncated or future signatures and versions
            sig = rng.choice((b"LC0", b"LC2", b"LC99", b"LC", b"L", b"XX1", b"lc1", b"LC1 ", b"LC\xff"))
            command = rng.choice(NODE_COMMANDS + SAFE_REQUESTS)
            return [sig, command.encode(), _json(self._header(command))]
        if roll < 0.27:  # unknown commands, non-ASCII commands
            return [p.SIGNATURE, rng.choice((self._bytes(6), b"HELL", b"hello", b"\xc3\xa9", b"")), b"{}"]
        if roll < 0.36:  # headers that are not JSON objects: truncated, invalid UTF-8, arrays, scalars
            command = rng.choice(NODE_COMMANDS + SAFE_REQUESTS + (p.READY,))
            raw = _json(self._header(command))
            header = rng.choice((raw[: rng.randint(0, max(0, len(raw) - 1))], b"\xff\xfe" + raw, b"[1,2]", b"42",
                                 b"null", b'"text"', b"{" * 200))  # fmt: skip
            return [p.SIGNATURE, command.encode(), header]
        if roll < 0.44:  # replies sent the wrong way, out of order
            command = rng.choice(REPLY_COMMANDS)
            return self._with_blobs(command, {"req_id": "x", "task_id": self._task_id(), "attempt": 1,
                                              "status": "completed", "blobs": ["body"]})  # fmt: skip
        if roll < 0.52 and self.sent:  # replays of earlier fuzz messages and of real SUBMITs
            if self.replayable and rng.random() < 0.3:
                return list(rng.choice(self.replayable))
            return list(rng.choice(list(self.sent)))
        if target == "queue":
            command = rng.choice((p.READY, p.READY, p.READY, p.HEARTBEAT, p.RESULT))
        else:
            command = rng.choice(NODE_COMMANDS + NODE_COMMANDS + SAFE_REQUESTS + (p.SUBMIT, p.READY))
        header = self._header(command)
        if command == p.READY:
            header = {"node_id": rng.choice(("ghost-" + self._text(6), self.real_node or "ghost"))}
        if rng.random() < 0.5:
            header = self._mistyped(command, header)
        return self._with_blobs(command, header)
