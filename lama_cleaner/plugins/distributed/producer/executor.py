"""``DistributedExecutor``: the web server's executor when ``--plugins distributed`` is on.

It implements both seams the server knows: ``InpaintExecutor`` (the classic blocking ``/inpaint`` and
``/run_plugin``) and ``tasks.TaskService`` (the asynchronous ``/api/v1``). Every call becomes a
request to the scheduler through one :class:`SchedulerClient`; no model is ever loaded here.

By default the scheduler runs inside this process (embedded mode); with ``distributed.scheduler``
set the web server is only a producer for an external ``lama-cleaner scheduler``. Either way it also
supervises ``distributed.local_nodes`` node subprocesses.

One request flows one way: the executor builds it (``translate.submit_message``), the client sends
it and brings back what answers it, and the executor turns that into the server's types
(``translate``). A classic call arrives validated (the route ran ``pipeline.validate_task``, so bad
input was a 400 before anything was queued; see ``InpaintExecutor.run``) and goes through
``task_run.run_task``: SUBMIT with ``want_result``, so that the scheduler pushes the outcome (DONE,
with the result bytes) to this connection as soon as it is committed, then the wait for it, with
FETCH when no DONE came here. Either way the bytes are what the node produced with the same
``pipeline.execute_task`` the classic mode uses: replies are byte-identical. Events go the same one
way to the ``task_event`` hook: an embedded scheduler emits them into this server's event sink itself;
with an external scheduler the client forwards them (:meth:`DistributedExecutor._forward_event`). No
request waits on them here.

Failures that are not the request's fault keep their meaning at the edge: a task failed because no
node could run it (``unschedulable_timeout_s``) is a 503 with ``Retry-After``, like a full queue; and
if the embedded scheduler's loop dies, every waiting and every new request fails at once with a 503
"task scheduler stopped: ..." instead of waiting for its timeout (the crash closes the client, which
wakes every waiting request). A scheduler that refuses a request
with ERROR (another protocol version) is a 502 with its message, at once. :meth:`DistributedExecutor.health`
tells ``GET /api/v1/health`` (and so systemd or Kubernetes) when none of this can work any more.

Shutdown and a crash of the embedded scheduler may close the client at the same time, from two
threads; :meth:`SchedulerClient.close` is safe for that. The client's socket lives in the embedded
scheduler's ZeroMQ context, whose ``term()`` blocks until every socket in it is closed: if the
client's I/O thread does not end in time, the context is taken away from the scheduler (which then
skips ``term()`` instead of hanging its thread) and terminated here later, once the socket is closed.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ....errors import ClientError, LamaCleanerError, ModelNotSupported, Overloaded
from ....events import EventSink
from ....tasks import TaskInfo, TaskOutput, TaskRequest
from ..malloc_tuning import tune_malloc
from ..node.capabilities import task_resource_class
from ..wire import protocol as p
from ..wire.endpoints import connectable
from .client import SchedulerClient, SchedulerError
from .remote_handle import RemoteSchedulerHandle
from .task_run import run_task
from .translate import (
    error_from_reply,
    error_from_scheduler_error,
    node_counts,
    run_output,
    submit_message,
    task_event,
    task_info,
    task_output,
)

log = logging.getLogger(__name__)

CLIENT_CLOSE_TIMEOUT_S = 5.0
"""How long closing waits for the client's I/O thread before giving its ZeroMQ context up."""
HEALTH_TIMEOUT_S = 2.0
"""How long ``health()`` waits for the scheduler's answer (one in-memory NODES request)."""


T = TypeVar("T")


class DistributedExecutor:
    """See the module docstring. ``pm`` provides the model and image-plugin registries."""

    def __init__(self, config: Any, events: Any, pm: Any = None, *, start_local_nodes: bool = True) -> None:
        from ....image_plugins.registry import build_image_plugin_registry
        from ....models.registry import build_model_registry

        # Every image crosses this process several times (see malloc_tuning). This process only:
        # the nodes it starts tune themselves, and other children of the server are not ours to change.
        tune_malloc(dict(os.environ))
        if pm is None:
            from ...manager import create_plugin_manager

            pm = create_plugin_manager(config.plugins)
        self.config = config
        self.events = events
        self.models = build_model_registry(pm)
        self.image_plugins = build_image_plugin_registry(pm, config)
        self.resource_class_of = functools.partial(
            task_resource_class, models=self.models, image_plugins=self.image_plugins, server_device=config.device
        )
        """``gpu``/``cpu`` for a task (``kind``, ``name``): the routing lookup the scheduler main uses too."""
        self._current = config.model
        self._stopped: BaseException | None = None
        """The exception the embedded scheduler's loop died of: every request fails with it from then on."""
        self._lock = threading.Lock()
        self.scheduler: Any = None
        self.scheduler_handle: Any = None
        """The scheduler's ``SchedulerHandle`` for other plugins (``register_routes``): the embedded
        scheduler's own, or one that asks an external scheduler over this executor's connection."""
        self.local_nodes: Any = None
        self.client: SchedulerClient | None = None
        """The client requests go through; None once closed (or the embedded scheduler crashed)."""
        self._own_client: SchedulerClient | None = None
        """The same client, never cleared: whichever thread closes it last still gets its outcome."""
        self._embedded: Any = None
        """The embedded scheduler, never cleared (its crash handler may run after ``close`` started)."""
        self._orphan_context: Any = None
        """The embedded scheduler's ZeroMQ context, taken from it because the client's socket was
        still open when the scheduler stopped; terminated by :meth:`close` once that socket is."""
        self._close_lock = threading.Lock()
        dist = config.distributed
        try:
            if dist.scheduler:
                endpoint = dist.scheduler
            else:
                from ..scheduler.service import Scheduler

                # The embedded scheduler fires the task_event hook itself, through this server's sink
                # (so each event reaches every observer once: the client below forwards none). Only
                # an EventSink, which never blocks its caller, is handed to the scheduler's loop; any
                # other events object gets the events from the client's I/O thread, as before.
                self._sink_in_scheduler = isinstance(events, EventSink)
                self.scheduler = Scheduler(
                    config,
                    self.resource_class_of,
                    on_crash=self._on_scheduler_crash,
                    plugin_manager=pm,
                    events=events if self._sink_in_scheduler else None,
                    emit_task_events=self._sink_in_scheduler,
                )
                self._embedded = self.scheduler
                self.scheduler.start()
                self.scheduler_handle = self.scheduler.handle
                endpoint = self.scheduler.control_endpoint  # bound by start(), a ":0" port resolved
            self.endpoint = connectable(endpoint)  # where nodes (local ones included) reach the scheduler
            if self.scheduler is not None:
                # Embedded: this process's requests go through memory (inproc), nodes use TCP.
                forward = None if self._sink_in_scheduler else self._forward_event
                self.client = SchedulerClient(
                    self.scheduler.inproc_endpoint, config, on_event=forward, context=self.scheduler.context
                )
            else:
                self.client = SchedulerClient(self.endpoint, config, on_event=self._forward_event)
                self.scheduler_handle = RemoteSchedulerHandle(self.client)
            self._own_client = self.client
            if start_local_nodes and dist.local_nodes > 0:
                from .local_nodes import LocalNodeSupervisor

                self.local_nodes = LocalNodeSupervisor(config, self.endpoint)
                self.local_nodes.start()
        except BaseException:
            self.close()
            raise
        log.info(
            "distributed executor using scheduler %s (%s)",
            self.endpoint,
            "embedded" if self.scheduler is not None else "external",
        )

    # ------------------------------------------------------------------ InpaintExecutor
    def current_model(self) -> str:
        return self._current

    def switch_model(self, name: str) -> bool:
        """Validate and remember ``name``; nodes load models on demand, so nothing is loaded here.

        Only a model this build cannot run anywhere (``UnsupportedModel``) is refused. Whether *this*
        host could run it does not matter: a torch-less web server in front of GPU nodes must be
        able to switch to lama (``/api/v1`` leaves that to the nodes the same way)."""
        from ....models.unsupported import UnsupportedModel

        if name not in self.models:
            raise ModelNotSupported(f"{name} not implemented")
        model_cls = self.models.get(name)
        if issubclass(model_cls, UnsupportedModel):
            raise ModelNotSupported(model_cls.message())
        with self._lock:
            if name == self._current:
                return False
            self._current = name
        return True

    def run(self, request: TaskRequest) -> TaskOutput:
        """Submit, wait for the task's end and answer with its bytes or its error (``run_task``, then
        ``run_output``); ``request`` was validated by the caller (see ``InpaintExecutor.run``)."""
        if request.kind == "inpaint" and not request.name:
            request = dataclasses.replace(request, name=self._current)  # the caller's object stays as it was
        header, blobs = submit_message(request)
        timeout = float(self.config.distributed.request_timeout_s)
        outcome = self._call(lambda client: run_task(client, header, blobs, timeout=timeout))
        return run_output(outcome, timeout, self._retry_after)

    # ------------------------------------------------------------------ TaskService
    def submit(self, request: TaskRequest) -> TaskInfo:
        """Queue a task and return at once (``/api/v1``); its events reach the ``task_event`` hook."""
        header, blobs = submit_message(request)
        return task_info(self._request(p.SUBMIT, header, blobs).header["task"])

    def get(self, task_id: str) -> TaskInfo:
        return task_info(self._request(p.GET, {"task_id": task_id}).header["task"])

    def result(self, task_id: str) -> TaskOutput:
        return task_output(self._request(p.FETCH, {"task_id": task_id}))

    def cancel(self, task_id: str) -> TaskInfo:
        return task_info(self._request(p.CANCEL, {"task_id": task_id}).header["task"])

    def list(
        self, status: str | None = None, limit: int = 50, offset: int = 0, owner: str | None = None
    ) -> tuple[list[TaskInfo], int]:
        query: dict[str, Any] = {"status": status, "limit": limit, "offset": offset}
        if owner is not None:  # an older scheduler ignores it; never sent without tokens
            query["owner"] = owner
        reply = self._request(p.LIST, query)
        return [task_info(t) for t in reply.header.get("tasks") or []], int(reply.header.get("total") or 0)

    def queues(self) -> list[dict[str, Any]]:
        return list(self._request(p.QUEUES, {}).header.get("queues") or [])

    def nodes(self, *, timeout: float | None = None) -> list[dict[str, Any]]:
        """The scheduler's node list; ``timeout``: how long to wait for it (None: the client's default)."""
        return list(self._request(p.NODES, {}, timeout=timeout).header.get("nodes") or [])

    def drain_node(self, node_id: str) -> dict[str, Any]:
        """Drain a node (``DRAIN`` request): it finishes its current task and gets no more work.
        Returns the node as ``nodes()`` lists it; unknown node -> ``NotFound``, offline -> 409."""
        return dict(self._request(p.DRAIN, {"node_id": node_id}).header.get("node") or {})

    def health(self) -> dict[str, Any]:
        """What ``GET /api/v1/health`` reports: ``status`` ``ok`` or ``unavailable`` (with ``reason``).

        Cheap by design (probes call it every few seconds): the crash flag of the embedded scheduler,
        then one NODES round trip, which the scheduler answers from memory (no journal), and which
        proves that its loop still answers requests and gives the node counts."""
        info: dict[str, Any] = {"scheduler": "embedded" if self._embedded is not None else "external"}

        def unavailable(reason: str) -> dict[str, Any]:
            return {"status": "unavailable", "reason": reason, "scheduler_running": False, **info}

        try:
            self._check_running()
        except Overloaded as exc:
            return unavailable(exc.message)
        scheduler, client = self.scheduler, self.client
        if client is None or (self._embedded is not None and scheduler is None):
            return unavailable("the distributed executor is closed")
        if scheduler is not None and not scheduler.running:
            return unavailable("the embedded task scheduler is not running")
        try:
            reply = client.request(p.NODES, {}, timeout=HEALTH_TIMEOUT_S)
        except LamaCleanerError as exc:
            try:
                self._check_running()  # it died while we asked: say that rather than "no answer"
            except Overloaded as stopped:
                return unavailable(stopped.message)
            if isinstance(exc, SchedulerError):
                return unavailable(error_from_scheduler_error(exc).message)
            return unavailable(f"the task scheduler at {self.endpoint} did not answer within {HEALTH_TIMEOUT_S:g}s")
        counts = node_counts(list(reply.header.get("nodes") or []))
        online = sum(n for state, n in counts.items() if state != p.NODE_OFFLINE)
        return {"status": "ok", "scheduler_running": True, "nodes_online": online, "nodes": counts, **info}

    # ------------------------------------------------------------------ requests
    def _call(self, call: Callable[[SchedulerClient], T]) -> T:
        """``call(client)``, with what can go wrong on the way turned into the server's errors: the
        503 of a dead scheduler or a closed executor, a 400 for a request that cannot be encoded, a
        502 for a scheduler's ERROR."""
        self._check_running()
        client = self.client
        if client is None:
            raise Overloaded("The distributed executor is closed", self._retry_after)
        try:
            return call(client)
        except p.ProtocolError as exc:  # the request cannot even be encoded (e.g. an empty file name)
            raise ClientError(f"Cannot queue this request: {exc}") from None
        except Overloaded:
            self._check_running()  # failed because the scheduler died: say so
            raise
        except SchedulerError as exc:  # refused outright (e.g. another protocol version)
            raise error_from_scheduler_error(exc) from None

    def _request(
        self, command: str, header: dict[str, Any], blobs: list[bytes] | None = None, *, timeout: float | None = None
    ) -> p.Message:
        """One request and its reply; a REJECTED is raised as the error it stands for."""
        reply = self._call(lambda client: client.request(command, header, blobs, timeout=timeout))
        if reply.command == p.REJECTED:
            raise error_from_reply(reply.header, self._retry_after)
        return reply

    @property
    def _retry_after(self) -> int:
        """The ``Retry-After`` of this server's 503s (``distributed.retry_after_s``)."""
        return int(self.config.distributed.retry_after_s)

    # ------------------------------------------------------------------ lifecycle, scheduler crash
    def close(self) -> None:
        """Stop local nodes, the client and the embedded scheduler. Safe to call twice, and while the
        embedded scheduler's crash handler runs on its own thread."""
        with self._close_lock:  # each part is taken by one closer only
            local_nodes, self.local_nodes = self.local_nodes, None
            scheduler, self.scheduler = self.scheduler, None
            self.client = None
        try:
            if local_nodes is not None:
                local_nodes.stop()
        finally:
            try:
                self._close_client()
            finally:
                if scheduler is not None:
                    scheduler.close()  # stop the loop and wait for it: the journal is closed cleanly
                self._term_orphan_context()

    def _close_client(self) -> None:
        """Close the client (from any thread, any number of times). If its I/O thread does not end,
        its socket stays open in the embedded scheduler's context: take that context from the
        scheduler so that the scheduler thread skips ``term()``, which would block it for good."""
        client = self._own_client
        if client is None or client.close(CLIENT_CLOSE_TIMEOUT_S):
            return
        scheduler = self._embedded
        with self._close_lock:
            if scheduler is None or self._orphan_context is not None:
                return
            self._orphan_context = scheduler.release_context()
        log.error(
            "scheduler client did not stop within %gs; its ZeroMQ context is left unterminated", CLIENT_CLOSE_TIMEOUT_S
        )

    def _term_orphan_context(self) -> None:
        """Terminate the context taken by :meth:`_close_client` once nothing can block ``term()``."""
        client, scheduler = self._own_client, self._embedded
        with self._close_lock:
            ctx = self._orphan_context
            if ctx is None:
                return
            client_done = client is None or client.close(CLIENT_CLOSE_TIMEOUT_S)
            if not client_done or (scheduler is not None and not scheduler.join(0)):
                return  # a socket may still be open in it: leave it (it is a few threads, not a hang)
            self._orphan_context = None
        ctx.term()

    def _on_scheduler_crash(self, exc: BaseException) -> None:
        """Runs on the dying scheduler loop's thread: fail what waits on it, now.

        The client is closed here, which fails its requests in flight, wakes every ``run`` waiting for
        a task's end and closes its socket (the scheduler's context can then terminate); each of them
        then raises the 503 of :meth:`_check_running`, since ``_stopped`` is set first. ``close`` may
        be closing the same client on another thread at this moment: that is safe."""
        self._stopped = exc
        self.client = None
        self._close_client()

    def _check_running(self) -> None:
        """Raise the 503 of a dead embedded scheduler (nothing will ever answer this request)."""
        exc = self._stopped
        if exc is None and self.scheduler is not None:
            exc = getattr(self.scheduler, "crashed", None)
        if exc is not None:
            error = Overloaded(f"task scheduler stopped: {type(exc).__name__}: {exc}", self._retry_after)
            error.code = "scheduler_stopped"
            raise error

    # ------------------------------------------------------------------ events
    def _forward_event(self, header: dict[str, Any]) -> None:
        """Runs on the client's I/O thread, for every event: to the ``task_event`` hook (EventSink)."""
        try:
            event = task_event(header)
        except TypeError as exc:
            log.warning("ignoring malformed EVENT %s: %s", header, exc)
            return
        self.events.emit(event)
