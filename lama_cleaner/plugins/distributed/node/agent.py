"""A worker node: registers with the scheduler, pulls tasks and runs them in a child process.

Threading model. The node's main process owns every ZeroMQ socket and runs one poll loop over the
control socket, the joined queue sockets and the Pipe to the inference child. Inference happens in
that child (:mod:`.inference`, started and stopped through :mod:`.child`), so a long model call never
delays heartbeats, CANCEL handling or reconnects: the loop wakes at least every ``_TICK_S`` whatever
the model does. The tasks held and early CANCELs are kept in :mod:`.current_work`; where the node
stands (starting, joining, idle, busy, draining, stopping, stopped) is ``self.lifecycle``, the pure
state machine of :mod:`.lifecycle`: every change of mode, link or work goes through it.

Flow control is pull-based (ZeroMQ Guide ch. 3, "load balancing"): when idle the node sends READY
on each joined queue socket; the scheduler hands out at most ``depth`` TASKs (the node's
``pipeline_depth``, advertised as ``capabilities.slots``, see :mod:`.depth`) and the node is ready
again as each of them finishes. With depth 1 (the default on a CPU) that is one task at a time and no
task ever waits in a busy node; with depth N the inference child runs up to N tasks at once, their
image stages overlapping the (device-exclusive) model call, so a task waits on the node only for the
model, never for a free core.
A scheduler that lost the credit of an idle node (a queue socket reconnected on its own after a short
network cut, so its identity changed and the TASK bounced) asks for it with ``HEARTBEAT send_ready``;
the node then sends READY again if it is idle.

On the scheduler's host the node offers it a memfd region in every HELLO (``wire.shared_memory``,
protocol minor 4). Once a WELCOME says it was mapped, a TASK may carry its files by reference to one
of the region's slots; the inference child reads them there and writes the result into the same slot,
and the RESULT names it instead of carrying it. A result goes by reference only to the registration
its TASK came under; a kept outcome is read out of the region before it is sent again, or before its
slot takes another task.

Failure handling:
- scheduler silent for ``interval * liveness`` -> sockets are recreated and HELLO is sent again after
  an exponential backoff (``reconnect_min_s`` doubling to ``reconnect_max_s``); a finished task's
  outcome is re-sent after every WELCOME (the scheduler discards duplicates);
- UNKNOWN (the scheduler lost us, e.g. restarted) -> HELLO again at once;
- CANCEL for a task the node does not hold (yet): CANCEL travels on the control socket and TASK on a
  queue socket, so it can overtake its TASK; the (task_id, attempt) is remembered for a while
  (``RecentCancels``) and a matching TASK is answered CANCELLED without running it;
- CANCEL -> the shared Event is set; a model that reports steps stops at its next step, anything
  else (or a stepping model that does not stop within ``_STEP_CANCEL_GRACE_S``) is stopped by
  terminating the child (SIGTERM, then SIGKILL after ``KILL_GRACE_S``) and a fresh child is spawned.
  At depth > 1 an inpaint task of a model that cannot be interrupted is first asked too: the child's
  ``cancel_ack`` says whether it is inside its model call, and only then is the child killed (a task
  still decoding or waiting for the device stops by itself, and the loaded model and the other
  tasks stay). CANCELLED is reported only once an inference child is ready again: the scheduler takes CANCELLED
  as the node's next credit, so saying it earlier would invite a TASK the node cannot start yet, and
  "idle" must mean "can run work now". The other tasks the killed child held (depth > 1) are handed
  back (FAILED ``handed_back: true``): they never finish here, and no attempt is charged for them;
- a TASK that arrives while the node is not idle (a stop or drain raced it, or a protocol slip) is
  handed back: FAILED with ``handed_back: true`` and ``ready: false``, which the scheduler re-queues
  without charging an attempt; a stopping node also hands back TASKs still queued on its sockets and
  names what it holds in its BYE (null: a TASK still in flight to it never started);
- an outcome says ``ready: false`` whenever the node cannot take the next task at once (draining,
  stopping, or no ready inference child): then it sends READY itself once it can;
- the inference child is replaced between tasks (never during one) once it ran
  ``node_max_tasks_per_child`` tasks or its RSS exceeds ``node_max_child_rss_mb``; the outcome of
  that last task says ``ready: false`` and READY follows once the new child is ready (depth > 1:
  the child gets no new task once due, and is replaced when its last task is done);
- a TASK that arrives while the child is (re)starting (from a scheduler that took an outcome as a
  credit regardless, or sent it just before) is accepted and handed to the child once it is ready:
  the node is not stopping or draining, so it will run it, and bouncing it would only delay it;
- the inference child dies -> every task it held is reported FAILED (retryable) and a new child is spawned;
- ``parent_pid`` dies -> the node exits (local nodes must not outlive their web server).
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
import time
import uuid
from collections import deque
from typing import Any

import zmq

from ....cpu_threads import threads_for
from ....errors import NotFound
from ..security.curve import ClientKeys, secure_client
from ..wire import protocol as p
from ..wire.endpoints import granted_queues, queue_endpoint_for
from ..wire.liveness import Backoff, Liveness
from ..wire.send import send_nowait
from ..wire.shared_memory import SharedMemoryRefused, SharedRegion, supported
from .capabilities import available_models, collect
from .child import KILL_GRACE_S, InferenceChild
from .current_work import CurrentTask, RecentCancels, SentOutcome
from .depth import pipeline_depth
from .inference import child_rss_mb, recycle_reason
from .lifecycle import NodeLifecycle
from .warm import preload_model

log = logging.getLogger(__name__)

_TICK_S = 0.05
_TICK_MS = int(_TICK_S * 1000)
_STEP_CANCEL_GRACE_S = 3.0
_BYE_LINGER_MS = 500
_RECONNECT_JITTER = 0.1
"""Each reconnect delay is shortened by up to 10%: nodes that lost the scheduler together spread out."""

# Plain ints: pyzmq's flag enums cost an enum construction per ``|`` (see wire/send.py).
_NOBLOCK = int(zmq.NOBLOCK)
_POLLIN = int(zmq.POLLIN)


def _make_region(depth: int, area_mb: int) -> SharedRegion | None:
    """The node's shared memory (one slot per task it may hold), or None where it is off
    (``shared_memory_mb`` 0) or cannot be made here (not Linux, a sandbox refusing memfds)."""
    if area_mb <= 0 or not supported():
        return None
    try:
        return SharedRegion.create(depth, area_mb * 1024 * 1024)
    except (OSError, SharedMemoryRefused) as exc:
        log.warning("no shared memory for the scheduler (%s); files travel as bytes", exc)
        return None


def _loads_model(kind: str) -> bool:
    """Tasks of this kind load a model on the node (the scheduler then predicts ``loaded_model``)."""
    return kind == "inpaint"


class Node:
    """See the module docstring. ``run()`` blocks until the node stops and returns an exit code."""

    def __init__(
        self,
        scheduler: str,
        config: Any,
        *,
        name: str | None = None,
        queues: list[str] | None = None,
        models: list[str] | None = None,
        device: str = "cpu",
        labels: dict[str, str] | None = None,
        plugins: list[str] | None = None,
        exit_on_drain: bool = False,
        parent_pid: int | None = None,
        stop_grace_s: float = 10.0,
        plugin_manager: Any = None,
        max_idle_s: float | None = None,
    ) -> None:
        from ....image_plugins.registry import build_image_plugin_registry
        from ....models.registry import build_model_registry
        from ...manager import create_plugin_manager

        self.scheduler = scheduler
        self.config = config
        self.node_id = uuid.uuid4().hex
        self.name = name or f"{os.uname().nodename}-{os.getpid()}"
        self.device = device
        self.plugins = [x for x in (plugins or []) if x]
        """What the inference child registers: the same plugins as this process."""
        self.exit_on_drain = exit_on_drain
        self.parent_pid = parent_pid
        self._direct_parent = parent_pid is not None and os.getppid() == parent_pid
        self.stop_grace_s = stop_grace_s
        self.max_idle_s = max_idle_s
        """Exit after this long without a task (``--max-idle-s``); None: never."""
        self._idle_since = time.monotonic()
        dist = config.distributed
        self.max_tasks_per_child = max(0, int(dist.node_max_tasks_per_child))
        self.max_child_rss_mb = max(0, int(dist.node_max_child_rss_mb))
        self._recycling = bool(self.max_tasks_per_child or self.max_child_rss_mb)
        self.early_cancels = RecentCancels()
        self.depth = pipeline_depth(int(dist.node_pipeline_depth), device)
        """How many tasks this node holds at once (``capabilities.slots``)."""
        self.threads = threads_for(int(dist.node_threads), os.environ)
        """Threads of its inference process's math libraries, None for their defaults (``capabilities.threads``,
        see :mod:`lama_cleaner.cpu_threads`)."""

        pm = plugin_manager if plugin_manager is not None else create_plugin_manager(self.plugins)
        self.registry = build_model_registry(pm)
        try:
            image_plugins = build_image_plugin_registry(pm, config).names()
        except Exception as exc:  # noqa: BLE001 - plugins are optional capabilities
            log.warning("image plugins unavailable on this node: %s", exc)
            image_plugins = []
        self.models = available_models(self.registry, config, models or [])
        self.preload = preload_model(dist.node_preload, self.models, self.registry, config)
        self.capabilities = collect(
            preload=self.preload,
            device=device,
            models=self.models,
            plugins=image_plugins,
            labels=labels or {},
            queues_requested=list(queues or []),
        )
        self.capabilities["slots"] = self.depth
        self.capabilities["threads"] = self.threads

        dist = config.distributed
        self.liveness = Liveness(dist.heartbeat_interval_s, dist.heartbeat_liveness)
        self.backoff = Backoff(dist.reconnect_min_s, dist.reconnect_max_s, jitter=_RECONNECT_JITTER)
        self.curve = ClientKeys.from_config(dist)
        """This node's CURVE keys and the scheduler's public key (None: plaintext, loopback only)."""
        self.ctx = zmq.Context()
        self.mp_ctx = mp.get_context("spawn")
        self.control: zmq.Socket | None = None
        self.queue_socks: dict[zmq.Socket, str] = {}
        self.lifecycle = NodeLifecycle()
        """Mode (serving, draining, stopping...), link to the scheduler and work held: see :mod:`.lifecycle`."""
        self._stop_requests: list[tuple[float, bool]] = []
        """``(deadline, began)`` of each ``request_stop`` (a signal), for the loop to confirm and announce."""
        self.next_connect_at = 0.0
        self.held: dict[str, CurrentTask] = {}
        """The tasks this node holds (at most ``depth``), in the order they arrived."""
        self.pending_outcomes: deque[SentOutcome] = deque(maxlen=self.depth)
        """The last outcomes sent, re-sent after every WELCOME (the scheduler discards duplicates)."""
        self.shared = _make_region(self.depth, int(dist.shared_memory_mb))
        """This node's shared memory (``wire.shared_memory``), offered in every HELLO; None: off or unsupported."""
        self.shared_active = False
        """The scheduler mapped it (its last WELCOME said so): TASKs may name their files in it."""
        self.session = 0
        """Counts WELCOMEs: a result goes by reference only to the registration its TASK came under."""
        self.ready_sent = False
        self.exit_code: int | None = None
        self.loaded_model: str | None = None
        self.child: InferenceChild | None = None
        self.dying: list[InferenceChild] = []
        self._next_parent_check = 0.0
        self._poll_items: list[tuple[Any, int]] | None = None
        """``zmq_poll`` items, built once and rebuilt only when a socket or the child's Pipe changes
        (``_sockets_changed``)."""
        self._poll_child_fd: int | None = None
        self._ready_frames = p.encode(p.READY, {"node_id": self.node_id})
        """READY never changes for this node: encoded once, not once per task."""
        self._reported_model: str | None = None
        """The model the scheduler believes is loaded here (from our HELLO/HEARTBEAT, or its own
        prediction at dispatch): an outcome is followed by a HEARTBEAT only when this is wrong."""

    # ------------------------------------------------------------------ public
    def request_stop(self, *, immediate: bool = False) -> None:
        """Signal-safe: stop taking work; finish the current task (up to ``stop_grace_s``) then exit;
        a second request exits at once.

        The stop takes effect at once, so a TASK read later in the same turn of the loop is handed
        back. A signal may interrupt the loop in the middle of another transition (a DRAIN read
        before the handler ran, written after), so the request is also queued: the loop applies it
        again at its next turn (stopping twice is harmless) and tells the scheduler."""
        lifecycle = self.lifecycle
        if lifecycle.stopped:
            return  # exiting already; stopped is final
        deadline = 0.0 if immediate or lifecycle.stopping else time.monotonic() + self.stop_grace_s
        self._stop_requests.append((deadline, lifecycle.stop(deadline)))

    def run(self) -> int:
        self.lifecycle.start()  # stays stopping if a signal came first
        self._idle_since = time.monotonic()
        if not self.lifecycle.stopping:  # stopped while starting: no inference process to load for nothing
            self._spawn_child()
        try:
            while not self.lifecycle.stopped:
                self._tick()
        finally:
            self._shutdown()
        return self.exit_code

    # ------------------------------------------------------------------ loop
    def _tick(self) -> None:
        """One turn of the loop: timers and housekeeping, then one poll and at most one message per
        ready socket or Pipe. This runs twice per task, so checks that rarely apply are guarded
        inline rather than by calling a method that returns at once (measurably cheaper)."""
        now = time.monotonic()
        if self.parent_pid is not None and now >= self._next_parent_check and self._parent_gone(now):
            log.warning("parent process %s is gone; exiting", self.parent_pid)
            self._exit("parent exited", 0, kill_child=True)
            return
        lifecycle = self.lifecycle
        while self._stop_requests:
            deadline, began = self._stop_requests.pop(0)
            lifecycle.stop(deadline)
            if began and lifecycle.joined:
                # Tell the scheduler at once (not at the next heartbeat) so it stops handing us work.
                self._send_heartbeat()
        if lifecycle.stopping:
            if not self._running_work() or lifecycle.stop_due(now):
                self._exit("shutdown", 0, kill_child=bool(self.held))
                return
        if self.max_idle_s is not None and self._idled_out(now):
            return
        if self.dying:
            self._reap_dying()
        liveness = self.liveness
        if self.control is None:
            if now >= self.next_connect_at:
                self._connect()
        elif liveness.expired:
            log.warning("scheduler %s silent; reconnecting%s", self.scheduler, self._curve_hint())
            self._disconnect(backoff=True)
        if lifecycle.joined and self.control is not None and liveness.due():
            self._send_heartbeat()
        if self.held:
            self._check_cancel_deadlines(now)

        items = self._poll_items if self._poll_items is not None else self._build_poll_items()
        if lifecycle.joined:
            # Rounded up: a timeout that truncates to 0 ms would spin until the heartbeat is due.
            timeout_ms = math.ceil(min(_TICK_S, liveness.time_to_next()) * 1000)
        else:
            timeout_ms = _TICK_MS
        if not items:  # no socket and no child for a moment: zmq_poll([]) would return at once
            time.sleep(timeout_ms / 1000)
            return
        events = zmq.zmq_poll(items, timeout_ms)
        if not events:
            return
        ready = dict(events)
        if self.child is not None and self._poll_child_fd in ready:
            self._recv_child()
        if self.control is not None and self.control in ready:
            self._recv_socket(self.control, None)
        if self.queue_socks:
            for sock, queue in list(self.queue_socks.items()):
                if sock in ready:
                    self._recv_socket(sock, queue)

    def _idled_out(self, now: float) -> bool:
        """``--max-idle-s``: no task for that long (counted from the start of ``run``, the last WELCOME,
        or the last task's end) -> exit saying goodbye; a node that never reaches its scheduler leaves
        too. A TASK racing the decision is handed back before BYE (``_shutdown``)."""
        if self.held or self.lifecycle.stopping:
            self._idle_since = now
            return False
        if now - self._idle_since < (self.max_idle_s or 0.0):
            return False
        log.info("no task for %.0f s (--max-idle-s); leaving", now - self._idle_since)
        self._exit("idle", 0)
        return True

    def _build_poll_items(self) -> list[tuple[Any, int]]:
        """The control socket, the queue sockets and the child's Pipe, kept until one of them changes
        (building them on every tick cost more than the poll itself). ``zmq.zmq_poll`` is called with
        them directly: ``zmq.Poller`` only adds a Python frame around it."""
        items: list[tuple[Any, int]] = []
        if self.control is not None:
            items.append((self.control, _POLLIN))
        for sock in self.queue_socks:
            items.append((sock, _POLLIN))
        self._poll_child_fd = None
        if self.child is not None:
            try:
                fd = self.child.pipe.fileno()
            except OSError:
                pass
            else:
                items.append((fd, _POLLIN))
                self._poll_child_fd = fd
        self._poll_items = items
        return items

    def _sockets_changed(self) -> None:
        """A socket was opened or closed, or the child changed: the poll items are rebuilt on the next tick."""
        self._poll_items = None

    def _recv_socket(self, sock: zmq.Socket, queue: str | None) -> None:
        """Handle one message from a socket the poll reported readable.

        One per tick, not a drain loop: ``zmq_poll`` is level-triggered, so a socket with more
        messages queued makes the next poll return at once, and the common case (one TASK, one
        control message) saves the extra receive that ends in ``zmq.Again`` (an exception and a
        libzmq command-processing round each time)."""
        if sock.closed:  # closed by the handler of an earlier message in this tick
            return
        try:
            frames = sock.recv_multipart(_NOBLOCK)
        except zmq.Again:
            return
        try:
            msg = p.decode(frames, receiver="node")
        except p.ProtocolError as exc:
            # A scheduler of another protocol version still says why it refuses us (then we exit).
            foreign = p.decode_error_any_version(frames) if exc.code == p.ERR_VERSION and queue is None else None
            if foreign is None:
                log.warning("dropping malformed message from scheduler: %s", exc)
                return
            msg = foreign
        self.liveness.seen()
        if queue is None:
            self._on_control(msg)
        else:
            self._on_queue(msg, queue)

    # ------------------------------------------------------------------ connection
    def _connect(self) -> None:
        sock = self.ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        secure_client(sock, self.curve, self.config.distributed)
        try:
            sock.connect(self.scheduler)
        except zmq.ZMQError:
            sock.close(0)  # an open socket would make ctx.term() at shutdown wait forever
            raise
        self.control = sock
        self._sockets_changed()
        self.lifecycle.connect()
        self.liveness.reset()
        self._send(self._hello())
        log.info("node %s (%s) says HELLO to %s", self.name, self.node_id, self.scheduler)

    def _curve_hint(self) -> str:
        """Why a CURVE scheduler may never answer: it refuses keys it does not list, silently."""
        if self.curve is None or self.lifecycle.joined:
            return ""
        return (f" (no WELCOME: is this node's public key {self.curve.own.public.decode('ascii')} in the "
                "scheduler's curve_authorized_keys (or curve_node_keys), and curve_server_key the "
                "scheduler's key?)")  # fmt: skip

    def _disconnect(self, *, backoff: bool) -> None:
        for sock in list(self.queue_socks):
            sock.close(0)
        self.queue_socks.clear()
        if self.control is not None:
            self.control.close(0)
        self.control = None
        self._sockets_changed()
        self.lifecycle.lost()
        self.ready_sent = False
        delay = self.backoff.next_delay() if backoff else 0.0
        self.next_connect_at = time.monotonic() + delay

    def _hello(self) -> list[bytes]:
        from .... import __version__

        cur = self._first()
        self._reported_model = self.loaded_model
        return p.encode(
            p.HELLO,
            {
                "node_id": self.node_id,
                "name": self.name,
                "version": __version__,
                "pid": os.getpid(),
                "capabilities": self.capabilities,
                "loaded_model": self.loaded_model,
                "public_key": self.curve.own.public.decode("ascii") if self.curve else None,
                "task_id": cur.task_id if cur else None,
                "attempt": cur.attempt if cur else None,
                "tasks": [[t.task_id, t.attempt] for t in self.held.values()],
                **self._shared_hello(),
            },
        )

    def _shared_hello(self) -> dict[str, Any]:
        """HELLO's minor-4 fields: the region offered, and the slots its held tasks still use there."""
        if self.shared is None:
            return {}
        slots = {t.task_id: t.slot for t in self.held.values() if t.slot is not None}
        return {"shared_memory": self.shared.offer(), "task_slots": slots}

    def _send(self, frames: list[bytes], sock: zmq.Socket | None = None) -> bool:
        """Send one multipart message without blocking; False if it was dropped."""
        target = sock if sock is not None else self.control
        if target is None:
            return False
        try:
            send_nowait(target, frames)
            return True
        except zmq.Again:
            log.debug("scheduler not reachable; message dropped")
            return False

    def _send_heartbeat(self) -> None:
        self._reported_model = self.loaded_model
        self._send(
            p.encode(
                p.HEARTBEAT,
                {
                    "node_id": self.node_id,
                    "state": self.lifecycle.reported_state,
                    "task_id": next(iter(self.held), None),
                    "task_ids": list(self.held),
                    "loaded_model": self.loaded_model,
                },
            )
        )

    def _first(self) -> CurrentTask | None:
        """The oldest task held (the one a node of depth 1 runs), or None."""
        return next(iter(self.held.values()), None)

    def _idle(self) -> bool:
        """Able to start a task right now: a free slot, and an inference child that is ready and
        not waiting to be replaced."""
        child = self.child
        return (
            len(self.held) < self.depth
            and self.lifecycle.accepting
            and child is not None
            and child.ready
            and child.recycle_reason is None
        )

    def _running_work(self) -> bool:
        """A task is really running (a stop must wait for it), not just cancelled or not yet started."""
        return any(t.handed and not t.cancelled for t in self.held.values())

    def _offer_credit(self, *, again: bool = False) -> None:
        """READY (one credit) on every joined queue, once per idle period; ``again``: the scheduler
        asked for it (it lost our credit), so send it even if it was sent already. A send that
        failed leaves ``ready_sent`` false, so the next occasion tries again."""
        if (self.ready_sent and not again) or not self.lifecycle.joined or not self._idle():
            return
        sent = True
        for sock in self.queue_socks:
            sent = self._send(self._ready_frames, sock) and sent
        self.ready_sent = sent

    # ------------------------------------------------------------------ control messages
    def _on_control(self, msg: p.Message) -> None:
        cmd = msg.command
        if cmd == p.WELCOME:
            self._on_welcome(msg)
        elif cmd == p.HEARTBEAT:
            if msg.header.get("send_ready") is True:
                self._offer_credit(again=True)
        elif cmd == p.CANCEL:
            self._on_cancel(msg.header["task_id"], msg.header["attempt"])
        elif cmd == p.UNKNOWN:
            log.info("scheduler does not know this node (%s); saying HELLO again", msg.get("reason"))
            self._disconnect(backoff=False)
        elif cmd == p.DRAIN:
            log.info("drain requested")
            self.lifecycle.drain()
            self._send_heartbeat()
            if self.exit_on_drain and not self.held:
                self._exit("drained", 0)
        elif cmd == p.ERROR:
            log.error("scheduler error %s: %s", msg.header["code"], msg.header["message"])
            if msg.header["code"] == p.ERR_VERSION:
                self._exit("protocol version mismatch", 2)
        else:
            log.warning("unexpected %s on the control socket", cmd)

    def _on_welcome(self, msg: p.Message) -> None:
        header = msg.header
        self.liveness.configure(header["heartbeat_interval_s"], header["liveness"])
        self.backoff.reset()
        for sock in list(self.queue_socks):
            sock.close(0)
        self.queue_socks.clear()
        for queue, granted in granted_queues(header, self.scheduler).items():
            endpoint = queue_endpoint_for(granted, self.scheduler)
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            secure_client(sock, self.curve, self.config.distributed)
            try:
                sock.connect(endpoint)
            except zmq.ZMQError as exc:
                log.error("cannot join queue %s at %s: %s", queue, endpoint, exc)
                sock.close(0)
                continue
            self.queue_socks[sock] = queue
            log.info("joining queue %s at %s", queue, endpoint)
        self._sockets_changed()
        for queue, reason in (header.get("rejected") or {}).items():
            log.info("not joining queue %s: %s", queue, reason)
        self.lifecycle.welcome()
        self.session += 1
        self.shared_active = self.shared is not None and header.get("shared_memory") is True
        self.ready_sent = False
        self._idle_since = time.monotonic()  # --max-idle-s counts from when work can arrive
        log.info("welcomed by %s; queues %s", self.scheduler, sorted(header["queues"]))
        for sent in self.pending_outcomes:
            self._send(self._whole(sent).frames)
        self._send_heartbeat()
        self._offer_credit()

    # ------------------------------------------------------------------ tasks
    def _on_queue(self, msg: p.Message, queue: str) -> None:
        if msg.command != p.TASK:
            log.warning("unexpected %s on queue %s", msg.command, queue)
            return
        header = msg.header
        task_id, attempt = header["task_id"], header["attempt"]
        if self.early_cancels.take(task_id, attempt, time.monotonic()):
            self._answer_cancelled_task(header, queue)
            return
        if len(self.held) >= self.depth or task_id in self.held or not self.lifecycle.accepting:
            self._hand_back(task_id, attempt)
            return
        files = msg.blob_map()  # decode() already checked the blob count against the header
        slot = self._shared_slot(header)
        if slot is False:
            self._hand_back(task_id, attempt, "its shared memory reference is not usable here")
            return
        # Accepted even while the inference child is (re)starting: the scheduler gave us the task
        # on a legitimate credit; it is handed over as soon as the child says it is ready.
        self._hold(
            CurrentTask(
                task_id,
                attempt,
                header["kind"],
                header["name"],
                queue,
                time.monotonic(),
                payload=(dict(header), files),
                slot=slot,
                session=self.session,
            )
        )
        if _loads_model(header["kind"]):
            self._reported_model = header["name"]  # what the scheduler predicts at dispatch
        # No HEARTBEAT here: the scheduler knows we are busy (it just dispatched), and any message
        # counts as a sign of life; the periodic heartbeat goes on regardless.
        self._hand_over()

    def _shared_slot(self, header: dict[str, Any]) -> int | None | bool:
        """The shared-memory slot a TASK was given (None: none); False when it names one this node
        cannot use (not shared in this registration, out of range, or another held task's)."""
        ref = header.get("shared")
        if ref is None:
            return None
        slot = ref.get("slot") if isinstance(ref, dict) else None
        if not (self.shared_active and self.shared is not None and self.shared.has_slot(slot)):
            return False
        if any(t.slot == slot for t in self.held.values()):
            return False
        if self.depth > 1:  # (at depth 1 a new TASK clears the kept outcomes: ``_hold``)
            # The out area is about to be written again: a kept outcome still reading from it is made whole first.
            for i, sent in enumerate(self.pending_outcomes):
                if sent.slot == slot:
                    self.pending_outcomes[i] = self._whole(sent)
        return slot

    def _whole(self, sent: SentOutcome) -> SentOutcome:
        """``sent`` with its body in the frames (read from shared memory if it was only there)."""
        if sent.slot is None or sent.header is None or self.shared is None:
            return sent
        body = self.shared.read_output(sent.slot, sent.length)
        return SentOutcome(p.encode_named(p.RESULT, sent.header, {"body": body}))

    def _hold(self, cur: CurrentTask) -> None:
        """Take a task into a free slot (the node is busy from the first)."""
        if not self.held:
            self.lifecycle.take()
        self.held[cur.task_id] = cur
        if self.depth == 1:
            self.pending_outcomes.clear()  # a new TASK: the scheduler has the last outcome or lost us
        self.ready_sent = False

    def _hand_back(self, task_id: str, attempt: int, why: str = "arrived while not idle") -> None:
        """Give back a TASK this node will not start (a stop or drain raced it, or a protocol slip):
        the scheduler re-queues it without charging an attempt, and gets no credit from it."""
        log.warning("TASK %s (attempt %s) %s; handing it back", task_id, attempt, why)
        error = "node was not idle"
        self._send(self._failed_frames(task_id, attempt, error, "", True, 503, ready=False, handed_back=True))

    def _answer_cancelled_task(self, header: dict[str, Any], queue: str) -> None:
        """A TASK whose CANCEL arrived first: CANCELLED without running it. When idle, it goes
        through the usual outcome path, so CANCELLED is still said only once a child is ready."""
        task_id, attempt = header["task_id"], header["attempt"]
        log.info("TASK %s (attempt %s) was cancelled before it arrived; not running it", task_id, attempt)
        if len(self.held) >= self.depth or task_id in self.held:  # a protocol slip: no credit either
            self._send(self._cancelled_frames(task_id, attempt, ready=False))
            return
        self._hold(
            CurrentTask(task_id, attempt, header["kind"], header["name"], queue, time.monotonic(), cancelled=True)
        )
        self._report_cancel_when_ready()

    def _hand_over(self) -> None:
        """Send the tasks held but not started to the inference child if it is ready (else this runs
        again on "ready"); a child waiting to be replaced gets none (it is replaced once empty)."""
        for cur in list(self.held.values()):
            if not cur.handed and not cur.cancelled and cur.payload is not None:
                self._hand_over_one(cur)

    def _hand_over_one(self, cur: CurrentTask) -> None:
        child = self.child
        if child is None or not child.ready or child.recycle_reason is not None:
            log.info("task %s waits for the inference process to start", cur.task_id)
            return
        header, files = cur.payload  # type: ignore[misc]  # checked by _hand_over
        if "shared" in header and not child.shared:
            # This child could not map the region: it gets the files as bytes and sends its result so.
            header = dict(header)
            ref = header.pop("shared")
            if self.shared is not None and "blobs" in ref:
                try:
                    files = {**files, **self.shared.read_inputs(ref["slot"], ref["blobs"])}
                except ValueError as exc:
                    log.error("task %s: bad shared memory reference: %s", cur.task_id, exc)
        child.before_task()
        try:
            names = list(files)
            child.pipe.send(("task", header, names), [files[name] for name in names])
        except (OSError, ValueError) as exc:
            log.error("cannot hand task %s to the inference process: %s", cur.task_id, exc)
            return  # the child is going away; _child_died reports the task
        cur.payload = None
        cur.handed = True
        # DEBUG: the scheduler's path already says when and where a task started; the node's INFO line
        # per task is the outcome (cheap enough for no-op tasks by the thousand).
        log.debug("task %s started: %s %s", cur.task_id, cur.kind, cur.name, extra=self._task_fields(cur))

    def _task_fields(self, cur: CurrentTask) -> dict[str, Any]:
        """The task context of a log line (``extra=``): a monitoring plugin's JSON lines carry these as
        fields, so one task's lines can be found across the web server, the scheduler and the nodes."""
        return {"task_id": cur.task_id, "queue": cur.queue, "node": self.node_id, "attempt": cur.attempt}

    def _on_cancel(self, task_id: str, attempt: int) -> None:
        cur = self.held.get(task_id)
        if cur is None:
            # Not ours (yet): the CANCEL may have overtaken its TASK (different sockets), or be about
            # an attempt that already finished here. Remember it; a matching TASK is not run.
            self.early_cancels.add(task_id, attempt, time.monotonic())
            log.info("cancel %s (attempt %s): not held here; remembered in case its TASK follows", task_id, attempt)
            return
        if cur.cancelled or cur.cancel_deadline is not None:
            return
        if not cur.handed or self.child is None:
            # It never reached a model: nothing to stop, just report once a child is ready.
            log.info("cancel %s: the task had not started", task_id)
            cur.cancelled = True
            cur.payload = None
            self._report_cancel_when_ready()
            return
        self.child.cancel(task_id)
        if self._reports_steps(cur):
            cur.cancel_deadline = time.monotonic() + _STEP_CANCEL_GRACE_S
            log.info("cancel %s: asked the model to stop at its next step", task_id)
        elif self.depth > 1 and cur.kind == "inpaint":
            # The child's cancel_ack says whether the task is in its model call; only that needs a kill.
            cur.cancel_deadline = time.monotonic() + _STEP_CANCEL_GRACE_S
            log.info("cancel %s: asked the inference process where the task is", task_id)
        else:
            log.info("cancel %s: model cannot be interrupted; terminating the inference process", task_id)
            self._kill_child_for_cancel(cur)

    def _reports_steps(self, cur: CurrentTask) -> bool:
        """Whether the task's model checks the cancel Event between steps (else only a kill stops it)."""
        if cur.kind != "inpaint":
            return False
        try:
            return self.registry.get(cur.name).reports_steps
        except NotFound:  # a model this node does not know: treat as uninterruptible
            return False

    def _check_cancel_deadlines(self, now: float) -> None:
        for cur in list(self.held.values()):
            if not cur.cancelled and cur.cancel_deadline is not None and now > cur.cancel_deadline:
                log.warning("task %s did not stop at a step boundary; terminating the inference process", cur.task_id)
                self._kill_child_for_cancel(cur)
                return

    def _kill_child_for_cancel(self, cur: CurrentTask) -> None:
        """Stop the child the hard way; CANCELLED follows once its replacement is ready. The other
        tasks the child was running are handed back (they will not finish here, and it is not their
        fault: no attempt is charged); those it had not been given wait for the new child."""
        if self.child is not None:
            self.child.terminate()
            self.dying.append(self.child)
            self.child = None
            self._sockets_changed()
        self.loaded_model = None
        cur.cancelled = True
        for other in list(self.held.values()):
            if other is not cur and other.handed and not other.cancelled and other.cancel_deadline is None:
                log.info("task %s: its inference process was stopped for a cancel; handing it back", other.task_id)
                error = "inference process stopped to cancel another task"
                frames = self._failed_frames(
                    other.task_id, other.attempt, error, "", True, 503, ready=False, handed_back=True
                )
                self._finish(other.task_id, frames)
                if self.lifecycle.stopped:
                    return
            elif other.handed:
                other.cancelled = True  # was being cancelled too: reported with this one
        self._report_cancel_when_ready()

    def _report_cancel_when_ready(self) -> None:
        """Report the cancelled tasks held, but only once the node can really take the next one."""
        for cur in [t for t in self.held.values() if t.cancelled]:
            child = self.child
            if child is None or not child.ready or child.recycle_reason is not None:
                log.info("cancel %s: CANCELLED follows when the inference process is ready", cur.task_id)
                return
            self._finish(cur.task_id, self._cancelled_frames(cur.task_id, cur.attempt, ready=self._can_take_next()))
            if self.lifecycle.stopped:
                return

    def _finish(self, task_id: str, outcome: SentOutcome | list[bytes]) -> None:
        """Report the outcome of a held task, keep it for re-sending, and free its slot."""
        sent = outcome if isinstance(outcome, SentOutcome) else SentOutcome(outcome)
        self.pending_outcomes.append(sent)
        self._send(sent.frames)
        self.held.pop(task_id, None)
        self.ready_sent = False
        if not self.held:
            self.lifecycle.release()
            if self.lifecycle.draining and self.exit_on_drain:
                self._exit("drained", 0)
                return
        self._retire_if_due()
        if self.loaded_model != self._reported_model:
            # Only when the scheduler's idea of our model is wrong (a failed load, a killed child):
            # otherwise the outcome already is the sign of life and the periodic heartbeat follows.
            self._send_heartbeat()
        self._offer_credit()

    def _can_take_next(self) -> bool:
        """Whether the outcome being sent may count as the node's next credit (protocol §5): only
        if a TASK sent right after it could start at once. Otherwise the outcome says
        ``ready: false`` and READY follows when the node is able to work again."""
        child = self.child
        return child is not None and child.ready and child.recycle_reason is None and self.lifecycle.accepting

    def _cancelled_frames(self, task_id: str, attempt: int, *, ready: bool = True) -> list[bytes]:
        header: dict[str, Any] = {"node_id": self.node_id, "task_id": task_id, "attempt": attempt}
        if not ready:
            header["ready"] = False
        return p.encode(p.CANCELLED, header)

    def _failed_frames(
        self,
        task_id: str,
        attempt: int,
        error: str,
        tb: str,
        retryable: bool,
        status: int,
        *,
        ready: bool = True,
        handed_back: bool = False,
    ) -> list[bytes]:
        header: dict[str, Any] = {
            "node_id": self.node_id,
            "task_id": task_id,
            "attempt": attempt,
            "error": error,
            "traceback": tb,
            "retryable": retryable,
            "status": status,
        }
        if not ready:  # only when it matters: absent means true (protocol §3)
            header["ready"] = False
        if handed_back:
            header["handed_back"] = True
        return p.encode(p.FAILED, header)

    # ------------------------------------------------------------------ child process
    def _spawn_child(self) -> None:
        offer = self.shared.offer() if self.shared is not None else None
        self.child = InferenceChild(
            self.mp_ctx,
            self.config,
            self.plugins,
            self.device,
            self.preload,
            self.depth,
            shared=offer,
            threads=self.threads,
        )
        self._sockets_changed()
        log.info("inference process %s started", self.child.proc.pid)

    def _reap_dying(self) -> None:
        if not self.dying:
            return
        self.dying = [c for c in self.dying if not c.reap()]
        if not self.dying and self.child is None and not self.lifecycle.leaving:
            self._spawn_child()
            self._offer_credit()

    def _recv_child(self) -> None:
        """Handle one message from the inference child (its Pipe polled readable).

        No ``Connection.poll()`` before or after: the tick's poll already said the fd is readable
        (data or EOF), and it is level-triggered, so a second queued message (a progress burst) is
        read on the next tick. ``Connection.poll`` builds a selector per call, twice per task."""
        child = self.child
        assert child is not None
        try:
            fields, blobs = child.pipe.recv()
        except (EOFError, OSError):
            self._child_died(child)
            return
        self._on_child(fields, blobs)

    def _child_died(self, child: InferenceChild) -> None:
        child.proc.join(1.0)
        code = child.proc.exitcode
        log.error("inference process %s exited (code %s)", child.proc.pid, code)
        child.close_pipe()
        self.child = None
        self._sockets_changed()
        self.loaded_model = None
        for cur in list(self.held.values()):
            if cur.cancelled or cur.cancel_deadline is not None:
                cur.cancelled = True  # reported once the new child is ready
            elif cur.handed:
                error = f"inference process exited unexpectedly (exit code {code})"
                # ready: false: no child can run the next task until the replacement says "ready".
                self._finish(
                    cur.task_id, self._failed_frames(cur.task_id, cur.attempt, error, "", True, 500, ready=False)
                )
                if self.lifecycle.stopped:
                    return
            # else: it never reached the child; the new child gets it.
        if not self.lifecycle.leaving:
            self._spawn_child()
            self._offer_credit()

    def _on_child(self, msg: tuple, blobs: list[bytes]) -> None:
        kind = msg[0]
        if kind == "ready":
            assert self.child is not None
            self.child.ready = True
            self.child.shared = msg[1].get("shared") is True
            self.loaded_model = msg[1].get("loaded_model")
            if self.loaded_model != self._reported_model and self.lifecycle.joined:
                self._send_heartbeat()  # warm now (node.warm): the scheduler routes by it
            self._report_cancel_when_ready()
            if not self.lifecycle.stopped:
                self._hand_over()
                self._offer_credit()
            return
        if kind == "init_failed":
            log.error("inference process could not start: %s", msg[1])
            self._exit("inference process could not start", 3, kill_child=True)
            return
        cur = self.held.get(msg[1])
        if cur is None or not cur.handed:
            return  # a late message about a task we already gave up on
        if kind == "cancel_ack":
            _, task_id, in_model = msg
            if in_model and not cur.cancelled and not self._reports_steps(cur):
                log.info("cancel %s: the model call cannot be interrupted; terminating the inference process", task_id)
                self._kill_child_for_cancel(cur)
            # else it stops by itself (CANCELLED, or its outcome if it was already encoding)
            return
        if kind == "progress":
            _, task_id, percent, step, total = msg
            self._send(
                p.encode(
                    p.PROGRESS,
                    {
                        "node_id": self.node_id,
                        "task_id": task_id,
                        "attempt": cur.attempt,
                        "percent": percent,
                        "step": step,
                        "total_steps": total,
                    },
                )
            )
        elif kind == "result":
            _, task_id, mimetype, headers, loaded, shared_length = msg
            self.loaded_model = loaded
            if self._recycling:
                self._recycle_if_due()
            header = {
                "node_id": self.node_id,
                "task_id": task_id,
                "attempt": cur.attempt,
                "mimetype": mimetype,
                "headers": headers,
            }
            if not self._can_take_next():
                header["ready"] = False
            ran = time.monotonic() - cur.started
            if shared_length is None:
                (body,) = blobs
                sent = SentOutcome(p.encode_named(p.RESULT, header, {"body": body}))
            else:
                sent = self._shared_result(cur, header, shared_length)
            self._finish(task_id, sent)
            # Logged once the RESULT is on its way: the line is not on the request's critical path.
            how = " (result in shared memory)" if sent.slot is not None else ""
            log.info("task %s completed in %.3f s%s", task_id, ran, how, extra=self._task_fields(cur))
        elif kind == "failed":
            _, task_id, error, tb, retryable, status = msg
            log.warning("task %s failed: %s", task_id, error, extra=self._task_fields(cur))
            if self._recycling:
                self._recycle_if_due()
            ready = self._can_take_next()
            self._finish(task_id, self._failed_frames(task_id, cur.attempt, error, tb, retryable, status, ready=ready))
        elif kind == "cancelled":
            cur.cancelled = True
            cur.handed = False  # the child is done with it
            if self._recycling:
                self._recycle_if_due()
                self._retire_if_due()
            self._report_cancel_when_ready()  # now if this child is kept, else once its successor is ready

    def _shared_result(self, cur: CurrentTask, header: dict[str, Any], length: int) -> SentOutcome:
        """A RESULT whose body the inference child left in the task's shared-memory slot: named by
        reference when the scheduler that gave the slot is the one we are registered with now, else
        (we registered again since) read out and sent whole."""
        assert cur.slot is not None
        sent = SentOutcome([], dict(header), cur.slot, length)
        if not (self.shared_active and cur.session == self.session):
            return self._whole(sent)
        sent.frames = p.encode(p.RESULT, {**header, "shared": {"slot": cur.slot, "length": length}})
        return sent

    def _recycle_if_due(self) -> None:
        """After a task: replace the inference child if it reached ``node_max_tasks_per_child`` or
        its RSS exceeds ``node_max_child_rss_mb``. Between tasks only, so no work is lost: a child
        that still runs other tasks (depth > 1) gets no new one and is replaced once they are done
        (``_retire_if_due``). The old child exits (freeing its memory) before the new one is spawned
        (``_reap_dying``), so the two never hold a model at the same time, and the node offers no
        credit until the new one is ready."""
        child = self.child
        if child is None or child.recycle_reason is not None:
            return
        child.tasks_done += 1
        pid = child.proc.pid
        rss = child_rss_mb(pid) if self.max_child_rss_mb else None
        if rss is not None:
            log.debug("inference process %s: %d task(s), RSS %.1f MiB", pid, child.tasks_done, rss)
        reason = recycle_reason(child.tasks_done, rss, self.max_tasks_per_child, self.max_child_rss_mb)
        if reason is None:
            return
        child.recycle_reason = reason

    def _retire_if_due(self) -> None:
        """Replace a child due for recycling once none of the held tasks is in it."""
        child = self.child
        if child is None or child.recycle_reason is None or any(t.handed for t in self.held.values()):
            return
        log.info("replacing inference process %s: it %s", child.proc.pid, child.recycle_reason)
        child.retire()
        self.dying.append(child)
        self.child = None
        self._sockets_changed()
        self.loaded_model = None

    # ------------------------------------------------------------------ exit
    def _parent_gone(self, now: float) -> bool:
        if self.parent_pid is None or now < self._next_parent_check:
            return False
        self._next_parent_check = now + 0.2
        if self._direct_parent and os.getppid() != self.parent_pid:
            return True
        try:
            os.kill(self.parent_pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        try:
            with open(f"/proc/{self.parent_pid}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
            return state in (b"Z", b"X")
        except (OSError, IndexError):
            return False

    def _hand_back_queued_tasks(self) -> None:
        """Before BYE: hand back every TASK already waiting on a queue socket (never started)."""
        for sock in list(self.queue_socks):
            while True:
                try:
                    frames = sock.recv_multipart(_NOBLOCK)
                except zmq.ZMQError:  # zmq.Again: nothing more queued
                    break
                try:
                    msg = p.decode(frames, receiver="node")
                except p.ProtocolError:
                    continue
                if msg.command == p.TASK:
                    self._hand_back(msg.header["task_id"], msg.header["attempt"])

    def _exit(self, reason: str, code: int, *, kill_child: bool = False) -> None:
        if self.lifecycle.stopped:
            return
        self.lifecycle.exit()
        self.exit_code = code
        self._bye_reason = reason
        if kill_child and self.child is not None:
            self.child.terminate()
            self.dying.append(self.child)
            self.child = None
            self._sockets_changed()

    def _shutdown(self) -> None:
        reason = getattr(self, "_bye_reason", "shutdown")
        if self.control is not None and self.lifecycle.joined:
            self._hand_back_queued_tasks()
            # What we still hold, if it ever ran: null tells the scheduler that a TASK still in
            # flight to us (or one we had not started) never ran, so its attempt is not charged.
            started = [t.task_id for t in self.held.values() if t.handed]
            header = {"node_id": self.node_id, "reason": reason, "task_id": started[0] if started else None}
            header["task_ids"] = started
            self._send(p.encode(p.BYE, header))
            self.control.setsockopt(zmq.LINGER, _BYE_LINGER_MS)
        for sock in list(self.queue_socks):
            sock.close(0)
        self.queue_socks.clear()
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.child is not None:
            self.child.stop()
            self.child = None
        deadline = time.monotonic() + 3 * KILL_GRACE_S
        while self.dying and time.monotonic() < deadline:
            self.dying = [c for c in self.dying if not c.reap()]
            time.sleep(0.02)
        self.ctx.term()
        if self.shared is not None:
            self.shared.close()
        log.info("node %s stopped (%s)", self.name, reason)
