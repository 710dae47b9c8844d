"""An in-memory ``TaskService`` for unit-testing the ``/api/v1`` blueprint without a scheduler.

Tests drive task states by hand (``start``, ``complete``, ``fail``); the integration tests run the
real distributed executor instead.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import replace
from typing import Any

from lama_cleaner.errors import LamaCleanerError, NotFound, Overloaded, TaskCancelled, TaskFailed
from lama_cleaner.tasks import TERMINAL_STATES, TaskInfo, TaskOutput, TaskRequest


class StubTaskService:
    def __init__(self, model: str = "cv2") -> None:
        self.model = model
        self.tasks: dict[str, TaskInfo] = {}
        self.requests: dict[str, TaskRequest] = {}
        self.outputs: dict[str, TaskOutput] = {}
        self.expired: set[str] = set()
        self.by_key: dict[str, str] = {}
        self.overloaded = False
        self._ids = itertools.count(1)

    # ----------------------------------------------------------- what tests call
    def current_model(self) -> str:
        return self.model

    def start(self, task_id: str, node: str = "node-1") -> None:
        t = self.tasks[task_id]
        self.tasks[task_id] = replace(
            t, status="processing", node=node, attempts=t.attempts + 1, started_at=time.time()
        )

    def complete(self, task_id: str, output: TaskOutput) -> None:
        self.outputs[task_id] = output
        self.tasks[task_id] = replace(self.tasks[task_id], status="completed", progress=100.0, finished_at=time.time())

    def fail(self, task_id: str, error: str) -> None:
        self.tasks[task_id] = replace(self.tasks[task_id], status="failed", error=error, finished_at=time.time())

    # ----------------------------------------------------------- TaskService
    def submit(self, request: TaskRequest) -> TaskInfo:
        if request.idempotency_key and request.idempotency_key in self.by_key:
            return self.tasks[self.by_key[request.idempotency_key]]
        if self.overloaded:
            raise Overloaded("Too many queued tasks", retry_after=7)
        task_id = f"t{next(self._ids):04d}"
        info = TaskInfo(
            id=task_id,
            kind=request.kind,
            name=request.name,
            status="queued",
            queue="cpu",
            max_attempts=3,
            created_at=time.time(),
            position=0,
            owner=request.owner,
        )
        self.tasks[task_id] = info
        self.requests[task_id] = request
        if request.idempotency_key:
            self.by_key[request.idempotency_key] = task_id
        return info

    def get(self, task_id: str) -> TaskInfo:
        try:
            return self.tasks[task_id]
        except KeyError:
            raise NotFound(f"No task {task_id}") from None

    def result(self, task_id: str) -> TaskOutput:
        info = self.get(task_id)
        if task_id in self.expired:
            raise LamaCleanerError("Result expired", status=410, code="expired")
        if info.status == "failed":
            raise TaskFailed(info.error or "failed")
        if info.status == "cancelled":
            raise TaskCancelled()
        if info.status != "completed":
            raise LamaCleanerError(f"Task is {info.status}", status=409, code="not_finished")
        return self.outputs[task_id]

    def cancel(self, task_id: str) -> TaskInfo:
        info = self.get(task_id)
        if info.status not in TERMINAL_STATES:
            info = self.tasks[task_id] = replace(info, status="cancelled", finished_at=time.time())
        return info

    def list(
        self, status: str | None = None, limit: int = 50, offset: int = 0, owner: str | None = None
    ) -> tuple[list[TaskInfo], int]:
        matching = [
            t
            for t in reversed(list(self.tasks.values()))
            if (status is None or t.status == status) and (owner is None or t.owner == owner)
        ]
        return matching[offset : offset + limit], len(matching)

    def queues(self) -> list[dict[str, Any]]:
        return [
            {
                "name": "cpu",
                "endpoint": "tcp://127.0.0.1:5572",
                "queued": 0,
                "processing": 0,
                "nodes": {"idle": 1, "busy": 0},
            }
        ]

    def nodes(self) -> list[dict[str, Any]]:
        return [
            {
                "id": "node-1",
                "name": "n1",
                "state": "idle",
                "capabilities": {"device": "cpu", "models": ["cv2"]},
                "queues": ["cpu"],
                "current_task": None,
                "loaded_model": "cv2",
                "last_heartbeat": 1_700_000_000.5,
                "extra_field": 1,
            }
        ]
