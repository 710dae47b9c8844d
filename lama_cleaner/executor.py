"""The seam between the HTTP edge and whatever runs the work.

The classic routes only ever talk to an ``InpaintExecutor``. The built-in ``LocalExecutor`` (in
``lama_cleaner/local_executor.py``) runs tasks in this process, one at a time per model. The
``distributed`` plugin returns its own executor from the ``inpaint_executor`` hook and turns every
call into a durable task on the scheduler. Either way the reply bytes are produced by
``pipeline.execute_task``, so both modes answer identically.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .tasks import TaskOutput, TaskRequest


@runtime_checkable
class InpaintExecutor(Protocol):
    """What the web server needs from an execution backend.

    ``run`` blocks until the task finishes and returns its encoded reply, or raises one of the
    exceptions in ``lama_cleaner.errors`` (``ClientError`` for bad input, ``Overloaded`` when
    full, ``InferenceError``/``TaskFailed`` when the model failed, ``TaskCancelled``).

    Validation happens once, at the edge: the caller runs ``pipeline.validate_task`` before ``run``
    (``/inpaint``, ``/run_plugin`` and ``POST /api/v1/tasks`` do), so bad input is a 4xx before any
    work is queued and the image headers are decoded once per request. An executor does not repeat
    that check; input that only a full decode rejects still fails inside ``execute_task`` as a
    ``ClientError`` (a 4xx ``TaskFailed`` when it ran on a node).
    """

    def current_model(self) -> str:
        """The model name ``GET /model`` reports."""
        ...

    def switch_model(self, name: str) -> bool:
        """Make ``name`` the current model; False if it already was. Raises on failure and then
        leaves the previous model in place."""
        ...

    def run(self, request: TaskRequest) -> TaskOutput:
        """Run one task to completion (blocking); ``request`` already passed ``validate_task`` and is
        not modified."""
        ...

    def close(self) -> None:
        """Release processes, sockets and models."""
        ...
