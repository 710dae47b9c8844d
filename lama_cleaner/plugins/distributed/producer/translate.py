"""Translation between the web server's task types and the scheduler's messages, both ways.

Outgoing: a :class:`~lama_cleaner.tasks.TaskRequest` becomes a SUBMIT header and its blob frames.
Incoming: ACCEPTED/INFO/TASKS, DONE/OUTPUT, EVENT and REJECTED/ERROR become ``TaskInfo``,
``TaskOutput``, ``TaskEvent`` or the :mod:`lama_cleaner.errors` exception the HTTP edge answers with
(status, code, ``Retry-After``). Pure functions of their arguments: no socket, no thread, no config,
so every mapping is tested directly and the executor only chooses which one applies.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from ....errors import (
    ClientError,
    LamaCleanerError,
    NotFound,
    Overloaded,
    TaskCancelled,
    TaskFailed,
    TaskTimeout,
)
from ....tasks import TaskEvent, TaskInfo, TaskOutput, TaskRequest
from ..wire import protocol as p
from .client import SchedulerError
from .task_run import TaskOutcome

UNSCHEDULABLE_STATUS = 503
"""``error_status`` of a task the scheduler failed because no node could run it."""

_EVENT_FIELDS = {f.name for f in dataclasses.fields(TaskEvent)}
_INFO_FIELDS = {f.name for f in dataclasses.fields(TaskInfo)}


# ---------------------------------------------------------------------- outgoing
def submit_message(request: TaskRequest) -> tuple[dict[str, Any], list[bytes]]:
    """The SUBMIT header for ``request`` and its blob frames, in the order the header names them.

    An idempotency key is always sent (the caller's, else a fresh one) so that a SUBMIT the client
    re-sends after a reconnect never makes a second task."""
    names = list(request.files)
    header = {
        "task": {
            "kind": request.kind,
            "name": request.name,
            "form": dict(request.form),
            "submitter": request.submitter,
            "idempotency_key": request.idempotency_key or f"auto-{uuid.uuid4().hex}",
            "priority": request.priority,
            **({"owner": request.owner} if request.owner is not None else {}),
        },
        "blobs": names,
    }
    return header, [request.files[n] for n in names]


# ---------------------------------------------------------------------- incoming: values
def task_info(data: dict[str, Any]) -> TaskInfo:
    """A TaskInfo from the scheduler's dict, ignoring fields this version does not know."""
    return TaskInfo(**{k: v for k, v in data.items() if k in _INFO_FIELDS})


def task_event(data: dict[str, Any]) -> TaskEvent:
    """A TaskEvent from an EVENT header (``task_id``/``status`` are required by the protocol)."""
    return TaskEvent(**{k: v for k, v in data.items() if k in _EVENT_FIELDS})


def task_output(msg: p.Message) -> TaskOutput:
    """The result a completed DONE or an OUTPUT (the FETCH reply) carries: its ``body`` blob, the
    ``mimetype`` and the reply ``headers`` (``X-Seed``, ...)."""
    body = msg.blob_map().get("body", msg.blobs[0] if msg.blobs else b"")
    headers = {str(k): str(v) for k, v in (msg.header.get("headers") or {}).items()}
    return TaskOutput(body=body, mimetype=msg.header["mimetype"], headers=headers)


def node_counts(nodes: list[dict[str, Any]]) -> dict[str, int]:
    """Nodes by state (``idle``, ``busy``, ``draining``, ``offline``) from a NODES reply."""
    counts = dict.fromkeys(p.NODE_STATES, 0)
    for node in nodes:
        state = str(node.get("state"))
        counts[state] = counts.get(state, 0) + 1
    return counts


# ---------------------------------------------------------------------- incoming: errors
def error_from_scheduler_error(exc: SchedulerError) -> LamaCleanerError:
    """An ERROR the scheduler answered a request with -> a 502 carrying its message.

    502 (bad gateway): the web server is fine and so is the client's request; the scheduler behind
    it refuses to serve it (during a rolling upgrade: another protocol version)."""
    if exc.error_code == p.ERR_VERSION:
        message = f"The scheduler refused this web server's request (protocol version mismatch): {exc.message}"
        return LamaCleanerError(message, status=502, code="scheduler_version_mismatch")
    message = f"The scheduler refused the request ({exc.error_code}): {exc.message}"
    return LamaCleanerError(message, status=502, code="scheduler_error")


def error_from_reply(header: dict[str, Any], retry_after_default: int = 5) -> LamaCleanerError:
    """The exception a REJECTED reply stands for (what the HTTP edge turns into a status + text)."""
    status = int(header.get("status") or 500)
    code = str(header.get("code") or "")
    message = str(header.get("message") or "Scheduler rejected the request")
    if status == 503:
        err: LamaCleanerError = Overloaded(message, int(header.get("retry_after") or retry_after_default))
        if code:
            err.code = code
        return err
    if code == "cancelled":
        return TaskCancelled(message or "Task was cancelled")
    if code == "task_failed":
        # The REJECTED status says "the task failed"; ``error_status`` says why, as the node saw it.
        # A client error found on the node (an image that only fails a full decode) stays a 4xx.
        return TaskFailed(message, header.get("traceback"), status=failure_status(header.get("error_status")))
    if status == 404:
        return NotFound(message)
    if 400 <= status < 500:
        return ClientError(message, status=status, code=code or None)
    return LamaCleanerError(message, status=status, code=code or None)


def failure_status(error_status: Any) -> int:
    """HTTP status for a failed task: the node's 4xx when it blamed the input, 503 when no node
    could run it (the deployment lacks capacity, not the request), else 500."""
    if isinstance(error_status, int) and not isinstance(error_status, bool):
        if 400 <= error_status < 500 or error_status == UNSCHEDULABLE_STATUS:
            return error_status
    return 500


def output_from_done(msg: p.Message) -> TaskOutput:
    """The TaskOutput a DONE stands for, or the error FETCH would have raised for the same task."""
    header = msg.header
    status = header.get("status")
    if status == "completed":
        return task_output(msg)
    if status == "cancelled":
        raise TaskCancelled("Task was cancelled")
    raise TaskFailed(
        str(header.get("error") or "task failed"),
        header.get("traceback"),
        status=failure_status(header.get("error_status")),
    )


# ---------------------------------------------------------------------- a classic request's outcome
def run_output(outcome: TaskOutcome, timeout: float, retry_after: int) -> TaskOutput:
    """What a blocking ``/inpaint`` (``DistributedExecutor.run``) answers for ``outcome``.

    The task's bytes (from its DONE or the FETCH reply), or the error its end stands for: a refused
    SUBMIT as the scheduler said, no end within ``timeout`` seconds a 504, and a task failed because
    no node could run it a 503 with ``Retry-After`` (come back later), like a full queue."""
    if outcome.reply.command == p.REJECTED:
        raise error_from_reply(outcome.reply.header, retry_after)
    final = outcome.final
    if final is None:
        raise TaskTimeout(f"Task {outcome.task_id} did not finish within {timeout:g}s")
    try:
        if final.command == p.DONE:
            return output_from_done(final)
        if final.command == p.REJECTED:
            raise error_from_reply(final.header, retry_after)
        return task_output(final)
    except TaskFailed as exc:
        if exc.status != UNSCHEDULABLE_STATUS:
            raise
        busy = Overloaded(exc.message, retry_after)
        busy.code = "unschedulable"
        raise busy from None
