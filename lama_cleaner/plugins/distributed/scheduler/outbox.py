"""What the scheduler's handlers produce instead of sending: :class:`Out` messages and the helpers that
build the usual replies.

Handlers never touch a socket. They append to the round's outbox, which the loop
(:class:`~.service.Scheduler`) sends after the journal commit, so a reply never announces something
the journal could still lose. TASKs are the exception (``early``): they leave just before the
commit, which then writes the round's uploads while the node starts (see the service's docstring).
An :class:`Out` names where it goes (the control socket, or a queue's socket by queue name), not the
socket itself, which keeps the handlers testable without ZeroMQ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..journal import states
from ..journal.live_tasks import LiveTasks
from ..journal.records import TaskRecord
from ..wire import protocol as p


@dataclass
class Out:
    """One message to send after the commit; ``on_fail`` runs if it cannot be delivered."""

    ident: bytes
    frames: list[bytes]
    queue: str | None = None
    """None: the control socket; otherwise the socket of this queue (TASKs go there)."""
    on_fail: Callable[[], None] | None = None
    early: bool = False
    """Sent before the round's commit: only work for a node, never an answer to a producer."""


Outbox = list[Out]
"""The round's messages, in the order they are sent."""


def send_ctrl(outbox: Outbox, ident: bytes, command: str, header: dict[str, Any]) -> None:
    outbox.append(Out(ident, p.encode(command, header)))


def reply(outbox: Outbox, ident: bytes, command: str, req_id: Any, header: dict[str, Any]) -> None:
    send_ctrl(outbox, ident, command, {"req_id": req_id, **header})


def reject(
    outbox: Outbox,
    ident: bytes,
    req_id: Any,
    status: int,
    code: str,
    message: str,
    retry_after: int | None = None,
) -> None:
    header = {"status": status, "code": code, "message": message, "retry_after": retry_after}
    reply(outbox, ident, p.REJECTED, req_id, header)


def task_info(rec: TaskRecord, live: LiveTasks) -> dict[str, Any]:
    """``dataclasses.asdict(TaskInfo)`` of the record, built directly (this runs for every reply)."""
    return {
        "id": rec.id,
        "kind": rec.kind,
        "name": rec.name,
        "status": rec.status,
        "queue": rec.queue,
        "node": rec.node_id,
        "progress": rec.progress,
        "attempts": rec.attempts,
        "max_attempts": rec.max_attempts,
        "created_at": rec.created_at,
        "started_at": rec.started_at,
        "finished_at": rec.finished_at,
        "position": live.position(rec) if rec.status == states.QUEUED else None,
        "error": rec.error,
        "priority": rec.priority,
        "owner": rec.owner,
    }
