"""The scheduler: one thread, one ZeroMQ poll loop, one SQLite journal.

It binds a control ROUTER (nodes and producers) and one ROUTER per queue (nodes' READY credits and
the TASKs sent back), and runs every decision in a single thread so that no lock guards the node
registry or the journal. Each loop iteration:

1. drains whatever arrived on every socket (up to a bound, so timers still run under load);
   node messages are all handled this round, producer requests at most
   ``PRODUCER_MESSAGES_PER_ROUND`` of them (the rest wait in an in-memory backlog, in order), so a
   burst of thousands of SUBMITs cannot keep a node that just finished waiting for its next TASK;
2. handles the messages inside one journal transaction (group commit), each in its own savepoint
   so one bad message cannot undo the others; replies are only queued in an outbox;
3. runs the timers (node liveness, heartbeats to nodes, producer expiry, retention pruning) and the
   dispatcher (pairs the first runnable tasks, by priority then age, with idle nodes, see :mod:`.routing`);
4. sends the round's TASKs, then commits (which first writes the round's new blob files), then
   sends the rest of the outbox: an ACCEPTED, DONE or EVENT never announces something the journal
   could still lose.

Why a TASK may leave before its commit: it is work for a node, not an answer anyone relies on, and
sending it first lets the node receive and decode an upload while the journal writes it (a 1080p
PNG's file took 1-5 ms of every request). If that commit then fails, or the scheduler dies before
it, the attempt is one the journal never recorded: its RESULT is dropped (an unknown task, or an
attempt never handed out) and a node naming it in its HELLO is told to CANCEL it
(``NodeHandlers._resume``), so nothing is delivered twice and the task itself, unless it was
durable already, was never ACCEPTED (its producer submits it again).

Where things are: this module is the engine (lifecycle, sockets, the loop and its rounds, message
decoding and routing to a handler, the public thread-safe API); it composes collaborators that never
touch a socket and share one explicit :class:`~.scheduler_state.SchedulerState` (journal, node
registry, counters): :class:`~.node_handlers.NodeHandlers` (node messages, draining),
:class:`~.requeue.Requeue` (retries, lost nodes), :class:`~.producer_handlers.ProducerHandlers`
(producer requests),
:class:`~.dispatcher.Dispatcher`, :class:`~.timers.Timers` (with
:class:`~.unschedulable.UnschedulableWatch`), :class:`~.event_publishing.EventPublisher` (task
events, DONEs, node events) and :class:`~.stats_reporting.StatsReporter`. Handlers append
:class:`~.outbox.Out` messages that this module sends after the commit.
:mod:`.node_registry` is the per-node record (credit rules); :mod:`..journal.task_store` (with
:mod:`..journal.live_tasks`) is the journal and its in-memory live index; :mod:`.routing`,
:mod:`..journal.states` and :mod:`.retry_policy` are the pure decisions.

Cost per task matters (it bounds throughput on small boxes), so the hot paths avoid the journal
where it is not the point: unfinished tasks are read from the store's in-memory live index, a round
or message that writes nothing opens no transaction or savepoint, event and TaskInfo dicts are
built by hand, and the monitoring snapshot is only computed when ``stats()`` asks for it.

Why these rules (details in ``docs/protocol.md``): node-level credit of one (a task never waits
inside a busy node), any message counts as liveness, a lost node's task is re-queued with its
attempt charged and backoff applied, but a node that comes back naming the task in its HELLO keeps it
(so it never runs twice), a terminal task never changes (late results are duplicates), garbage is
counted and dropped, never fatal; a SUBMIT with ``want_result`` gets a DONE with the result.
"""

from __future__ import annotations

import logging
import os
import queue as queue_mod
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from ....config import Config
from ....events import EventSink
from ....tasks import TaskEvent
from ..config import DistributedConfig
from ..journal.task_store import BLOB_DIR, TaskStore
from ..security.bind_policy import check_bind
from ..security.curve import ServerSecurity, limit_socket
from ..security.key_roles import NODE, PRODUCER
from ..security.peer_guard import PeerGuard
from ..wire import protocol as p
from ..wire.send import send_nowait
from .dispatcher import Dispatcher
from .event_publishing import EventPublisher
from .handle import LocalSchedulerHandle, SchedulerStats, StatsBox
from .node_handlers import NodeHandlers
from .node_registry import NodeEntry
from .outbox import Out, Outbox, reject
from .plugin_calls import PluginCalls
from .producer_handlers import ProducerHandlers, peek_req_id
from .requeue import Requeue
from .routing import ResourceClassOf
from .scheduler_state import SchedulerState
from .stats_reporting import StatsReporter
from .timers import Timers
from .unschedulable import UnschedulableWatch

__all__ = ["JOURNAL_FILE", "NodeEntry", "Scheduler"]

log = logging.getLogger(__name__)

JOURNAL_FILE = "journal.sqlite3"
LOCK_FILE = "scheduler.lock"
MAX_MESSAGES_PER_ROUND = 512
"""Messages read from one socket per loop iteration at most."""
PRODUCER_MESSAGES_PER_ROUND = 16
"""Producer requests (SUBMIT, GET, ...) handled per round at most; node messages (RESULT, READY,
HEARTBEAT, ...) are all handled every round. Journaling one SUBMIT costs ~0.1-0.2 ms, so a round of
hundreds of them kept nodes that had finished idle for tens of ms (measured: 3,000 no-op tasks
submitted at once ran at half the rate of 300); 16 keeps a round near 2-3 ms and still commits
requests in groups."""
MAX_BACKLOG = 4096
"""Producer requests read but not yet handled, at most. Beyond it (or beyond ``MAX_BACKLOG_BYTES``)
the control socket is read only ``PRODUCER_MESSAGES_PER_ROUND`` at a time (ROUTER fair queuing still
brings node messages in), and the rest wait in ZeroMQ's buffers, whose high-water mark then pushes
back on producers."""
MAX_BACKLOG_BYTES = 256 * 1024 * 1024
"""Bytes of producer requests (uploads included) read but not yet handled, at most."""
_NODE_COMMAND_NAMES = frozenset((p.HELLO, p.HEARTBEAT, p.PROGRESS, p.RESULT, p.FAILED, p.CANCELLED, p.BYE, p.READY))
"""What a node sends; everything else on the control socket is a producer request."""
_NODE_COMMANDS = frozenset(c.encode("ascii") for c in _NODE_COMMAND_NAMES)
MAX_POLL_S = 0.1


class Scheduler:
    """The scheduler service. ``start()`` opens the journal (migrations + recovery) and binds the
    sockets in the caller's thread, so errors surface there; then the loop runs in its own thread
    until ``stop()``. Usable embedded in the web server or standalone (:mod:`.main`).

    It owns the sockets, the loop thread and the journal's lifetime, and composes the parts that
    decide (see the module docstring); each part gets the shared state explicitly.
    """

    def __init__(
        self,
        config: Config | DistributedConfig,
        resource_class_of: ResourceClassOf,
        *,
        bind: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        on_event: Callable[[TaskEvent], None] | None = None,
        on_crash: Callable[[BaseException], None] | None = None,
        plugin_manager: Any = None,
        events: Any = None,
        emit_task_events: bool = True,
    ) -> None:
        dcfg: DistributedConfig = config.distributed if isinstance(config, Config) else config
        self.config: Config | None = config if isinstance(config, Config) else None
        self.plugin_manager = plugin_manager
        """Where the distributed hooks (``scheduler_started``, ``node_event``, ...) are fired; None: nowhere."""
        sink = events if events is not None else (EventSink(plugin_manager) if plugin_manager else None)
        self._own_events = events is None and sink is not None
        self.bind = bind or dcfg.scheduler_bind
        self.data_dir = Path(os.path.expanduser(str(data_dir or dcfg.data_dir)))
        self.on_crash = on_crash
        """Called on the loop thread, before it closes anything, if the loop dies of an exception."""
        self.crashed: BaseException | None = None
        """The exception the loop thread died of (None while it runs, or after a clean stop)."""
        self.recovery: Any = None

        # The parts, each given what it uses.
        self.state = SchedulerState(dcfg, resource_class_of)
        """What the parts share (journal, node registry, counters...); the loop thread's, except counters."""
        self._publisher = EventPublisher(self.state, on_event=on_event, events=sink, emit_task_events=emit_task_events)
        self._unschedulable = UnschedulableWatch(self.state, self._publisher)
        self._reporter = StatsReporter(self.state, self._publisher, self._unschedulable)
        self._plugin_calls = PluginCalls(plugin_manager, self.config, self._deliver_later)
        self._requeue = Requeue(self.state, self._publisher)
        self._node_side = NodeHandlers(self.state, self._publisher, self._requeue)
        self._producer_side = ProducerHandlers(
            self.state, self._publisher, self._reporter, self._plugin_calls, self._node_side.drain
        )
        self._dispatcher = Dispatcher(self.state, self._publisher)
        self._timers = Timers(self.state, self._publisher, self._requeue, self._unschedulable)
        self._handlers: dict[str, Callable[[bytes, p.Message, float, Outbox], None]] = {
            **self._node_side.handlers(),
            **self._producer_side.handlers(),
        }
        missing = {c for c in p.SCHEMAS["scheduler"] if c != p.READY} - set(self._handlers)
        if missing:  # pragma: no cover - SCHEMAS and the handler tables are kept in step
            raise RuntimeError(f"no scheduler handler for {sorted(missing)}")

        # The edges: sockets, the loop thread, commands from other threads.
        self._ctx: zmq.Context | None = None
        self._control: zmq.Socket | None = None
        self._queue_socks: dict[str, zmq.Socket] = {}
        self._sock_queue: dict[zmq.Socket, str] = {}
        self._poller = zmq.Poller()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._commands: queue_mod.SimpleQueue[Callable[[float, Outbox], None]] = queue_mod.SimpleQueue()
        self._wake_r = self._wake_w = -1  # a pipe (made by _bind) whose byte wakes the poll for commands
        self._lock_file: Any = None
        self._stats_box = StatsBox()
        self.handle = LocalSchedulerHandle(self)
        """This scheduler's :class:`~.handle.SchedulerHandle` (for other plugins, any thread)."""
        self._security: ServerSecurity | None = None
        self._guard: PeerGuard | None = None
        """With CURVE: receives each message with its sender's key and drops revoked keys'."""
        self._role_logged_at = float("-inf")
        """When a message of a role its key may not play was last logged (at most once a second)."""

    # ================================================================== shared state, by name
    @property
    def dcfg(self) -> DistributedConfig:
        return self.state.dcfg

    @property
    def resource_class_of(self) -> ResourceClassOf:
        return self.state.resource_class_of

    @property
    def interval(self) -> float:
        return self.state.interval

    @property
    def liveness(self) -> int:
        return self.state.liveness

    @property
    def queues(self) -> list[str]:
        return self.state.queues

    @property
    def endpoints(self) -> dict[str, Any]:
        """``control``, ``inproc`` and ``queues`` (name -> endpoint), after ``start()``."""
        return self.state.endpoints

    @property
    def store(self) -> TaskStore | None:
        """The journal (after ``start()``)."""
        return self.state.store

    @property
    def nodes(self) -> dict[str, NodeEntry]:
        """The node registry (loop thread only; other threads use ``stats()`` or the handle)."""
        return self.state.nodes

    @property
    def events(self) -> Any:
        """The sink task events and the other observing hooks go through, off this loop's thread: the
        embedding web server's (so each event reaches ``task_event`` once), else one of our own."""
        return self._publisher.events

    @property
    def emit_task_events(self) -> bool:
        """False: the embedding process delivers task events to ``task_event`` itself (``events`` then
        serves the other hooks only)."""
        return self._publisher.emit_task_events

    @property
    def on_event(self) -> Callable[[TaskEvent], None] | None:
        """Called on the loop thread with every task event, after its round's commit."""
        return self._publisher.on_event

    @on_event.setter
    def on_event(self, observer: Callable[[TaskEvent], None] | None) -> None:
        self._publisher.on_event = observer

    @property
    def _next_unschedulable_check(self) -> float:
        return self._unschedulable.next_check

    # ================================================================== lifecycle
    def start(self) -> Scheduler:
        """Open the journal, recover unfinished tasks, bind the sockets, start the loop thread."""
        if self._thread is not None:
            raise RuntimeError("scheduler already started")
        # Before anything is opened: a public bind without keys, or an unreadable key, is refused.
        self._security = ServerSecurity.from_config(self.dcfg, self._reject_peer)
        check_bind(self.bind, has_keys=self._security is not None)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_data_dir()
        try:
            store = TaskStore(
                self.data_dir / JOURNAL_FILE,
                synchronous=self.dcfg.journal_synchronous,
                blob_dir=self.data_dir / BLOB_DIR,
            )
        except BaseException:
            self._unlock_data_dir()
            raise
        self.state.store = store
        try:
            self.recovery = store.recover()
            self.state.refunded.update(self.recovery.refunded)
            # Interrupted tasks may still be running on their nodes, which reclaim them by naming
            # them in their HELLO once they notice the restart: hold dispatch (FIFO kept) until
            # they all did, or one liveness period passed.
            self._dispatcher.hold(self.recovery.requeued, time.time() + self.state.liveness_window)
            if self.recovery.requeued or self.recovery.queued:
                log.info(
                    "journal recovery: %d queued, %d interrupted and re-queued, %d failed",
                    len(self.recovery.queued),
                    len(self.recovery.requeued),
                    len(self.recovery.failed),
                )
            self._fail_orphans(time.time())
            self._bind()
            store.files.keep_spares(self.dcfg.journal_spare_files)
        except BaseException:
            self._close_sockets()
            store.close()
            self._unlock_data_dir()
            raise
        started_at = time.time()
        self._unschedulable.started_at = started_at
        self._reporter.refresh_snapshot(started_at)
        self._stats_box.put(self._reporter.build(started_at))
        self._thread = threading.Thread(target=self._run, name="lama-cleaner-scheduler", daemon=True)
        self._thread.start()
        self._fire_lifecycle("scheduler_started")
        return self

    def _fire_lifecycle(self, hook_name: str) -> None:
        """``scheduler_started``/``scheduler_stopped`` with the handle, each implementation on its
        own: one that raises is logged and the others still run."""
        caller = getattr(getattr(self.plugin_manager, "hook", None), hook_name, None)
        if caller is None:
            return
        kwargs = {"scheduler": self.handle, "config": self.config}
        for impl in reversed(caller.get_hookimpls()):  # pluggy's own call order
            try:
                impl.function(*(kwargs[name] for name in impl.argnames))
            except Exception:  # noqa: BLE001 - an observer must not stop the scheduler
                log.exception("%s hook of plugin %s failed", hook_name, impl.plugin_name)

    def _fail_orphans(self, now: float) -> None:
        """Queued tasks of a queue that is no longer configured would wait forever: fail them."""
        store = self.state.journal()
        with store.batch():
            for rec in store.unfinished():
                if rec.queue not in self.queues:
                    message = f"queue {rec.queue!r} is no longer configured (queues: {', '.join(self.queues)})"
                    store.fail(rec.id, error=message, status=503, now=now)
                    log.warning("task %s failed at start-up: %s", rec.id, message)

    def _lock_data_dir(self) -> None:
        """One scheduler per journal: a second one on the same directory would hand out the same
        tasks twice. The OS drops the lock when the process dies, even by SIGKILL."""
        self._lock_file = open(self.data_dir / LOCK_FILE, "a+")  # held (and locked) until the loop ends
        if fcntl is None:  # pragma: no cover - Windows: no advisory locks, rely on the operator
            return
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock_file.close()
            self._lock_file = None
            raise RuntimeError(f"another scheduler is already using {self.data_dir}") from None

    def _unlock_data_dir(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    def stop(self) -> None:
        """Ask the loop to finish; it closes its sockets and the journal. Safe to call twice."""
        self._stopping.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the loop thread; True once it has ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def close(self, timeout: float = 5.0) -> None:
        self.stop()
        self.join(timeout)

    @property
    def control_endpoint(self) -> str | None:
        """The control ROUTER's actual endpoint (after ``start()``; resolves a ``:0`` port)."""
        return self.endpoints.get("control")

    @property
    def inproc_endpoint(self) -> str | None:
        """The control ROUTER's ``inproc://`` endpoint (after ``start()``). Only sockets made from
        :attr:`context` can connect to it: pass both to a :class:`SchedulerClient` in this process."""
        return self.endpoints.get("inproc")

    @property
    def context(self) -> zmq.Context | None:
        """The ZeroMQ context of the scheduler's sockets (after ``start()``). Sockets an in-process
        producer makes from it must be closed before :meth:`close`, which terminates it."""
        return self._ctx

    def release_context(self) -> zmq.Context | None:
        """Hand the ZeroMQ context over to the caller, who terminates it later: the scheduler then
        closes its own sockets but skips ``term()``. For an embedding process whose socket in this
        context cannot be closed yet (``term()`` would block the scheduler thread for good)."""
        ctx, self._ctx = self._ctx, None
        return ctx

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _bind(self) -> None:
        self._ctx = zmq.Context()
        if self._security is not None:
            self._security.start(self._ctx)  # the ZAP handler must exist before the first handshake
            self._guard = PeerGuard(self._security.allow, self._reject_peer)
            self.state.key_of = self._key_of
        self._control = self._router()
        self._control.bind(self.bind)
        control_ep = self._control.getsockopt_string(zmq.LAST_ENDPOINT)
        # The same ROUTER on an in-process endpoint too: a producer in this process (the web server
        # embedding us) talks to it through memory, without TCP and the I/O thread's two hops.
        inproc_ep = f"inproc://lama-cleaner-scheduler-{uuid.uuid4().hex}"
        self._control.bind(inproc_ep)
        planned = p.queue_endpoints(self.bind, self.queues)
        queue_eps: dict[str, str] = {}
        for name in self.queues:
            sock = self._router()
            # Kept before binding, so that _close_sockets closes it when the bind fails: the
            # context's term() waits for every socket, and a start-up error would become a hang.
            self._queue_socks[name] = sock
            sock.bind(planned[name])
            queue_eps[name] = sock.getsockopt_string(zmq.LAST_ENDPOINT)
            self._sock_queue[sock] = name
            self._poller.register(sock, zmq.POLLIN)
        self._poller.register(self._control, zmq.POLLIN)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller.register(self._wake_r, zmq.POLLIN)
        self.state.endpoints.update({"control": control_ep, "queues": queue_eps, "inproc": inproc_ep})
        self._publisher.control = self._control
        log.info("scheduler listening: control %s, queues %s", control_ep, queue_eps)

    def _reject_peer(self, reason: str) -> None:
        """A peer was refused: an unknown key at the handshake, or a revoked key's message (the
        security package logs it; this counts it). Called from the ZAP thread too: counters lock."""
        self.state.counters.count("rejected_peers")

    def _key_of(self, queue: str | None, ident: bytes) -> str | None:
        """The CURVE key of connection ``ident`` on the control socket (``queue`` None) or a queue's."""
        assert self._guard is not None
        sock = self._control if queue is None else self._queue_socks.get(queue)
        return self._guard.key_of(sock, ident)

    def _router(self) -> zmq.Socket:
        assert self._ctx is not None
        sock = self._ctx.socket(zmq.ROUTER)
        try:
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unknown identity -> error, not a silent drop
            sock.setsockopt(zmq.LINGER, 200)
            sock.setsockopt(zmq.RCVHWM, 10000)
            sock.setsockopt(zmq.SNDHWM, 10000)
            limit_socket(sock, self.dcfg)
            if self._security is not None:
                self._security.apply(sock)
        except BaseException:
            sock.close(0)  # the caller never got it, so nothing else would close it (see _bind)
            raise
        return sock

    def _close_sockets(self) -> None:
        for sock in [self._control, *self._queue_socks.values()]:
            if sock is not None:
                sock.close()
        self._queue_socks.clear()
        self._control = None
        self._publisher.control = None
        wake, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), -1, -1
        for fd in wake:
            if fd >= 0:
                os.close(fd)
        if self._security is not None:
            self._security.stop()  # its ZAP socket lives in the context, which term() waits for
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    # ================================================================== public, thread-safe
    def stats(self, timeout: float = 2.0) -> dict[str, Any]:
        """Counters for monitoring: tasks by state and per queue, node states, and event counts
        (dispatched, duplicates, garbage_frames, requeued_on_node_loss, retries, ...).

        The task/queue/node part is computed by the loop thread on request (it scans the journal,
        which the loop should not do every round); this waits up to ``timeout`` for it and falls
        back to the last snapshot if the loop is busy or stopped."""
        if self.running and threading.current_thread() is not self._thread:
            done = threading.Event()

            def refresh(now: float, outbox: Outbox) -> None:
                try:
                    self._reporter.refresh_snapshot(now)
                finally:
                    done.set()

            self._commands.put(refresh)
            self._wake()
            done.wait(timeout)
        elif threading.current_thread() is self._thread:
            self._reporter.refresh_snapshot(time.time())
        return self._reporter.snapshot()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except OSError:  # pipe full (the loop is awake anyway), or already closed by the loop
            pass

    def handle_stats(self, timeout: float) -> SchedulerStats:
        """A :class:`~.handle.SchedulerStats` built by the loop thread (waited for up to ``timeout``);
        the last one built when the loop is busy that long or stopped (its final state)."""
        if self.running and threading.current_thread() is not self._thread:
            done = threading.Event()

            def build(now: float, outbox: Outbox) -> None:
                try:
                    self._stats_box.put(self._reporter.build(now))
                finally:
                    done.set()

            self._commands.put(build)
            self._wake()
            done.wait(timeout)
        elif threading.current_thread() is self._thread:
            self._stats_box.put(self._reporter.build(time.time()))
        stats = self._stats_box.get()
        if stats is None:  # never started
            return SchedulerStats(time.time(), self.state.counters.handle_view(), {}, (), ())
        return stats

    def handle_drain(self, node_id: str, timeout: float) -> bool:
        """Drain ``node_id`` on the loop thread and say whether it was a known, online node (False
        also when the loop does not answer within ``timeout``)."""
        if not self.running:
            return False
        answer: list[bool] = []
        done = threading.Event()

        def command(now: float, outbox: Outbox) -> None:
            try:
                node = self.nodes.get(node_id)
                if node is not None and not node.offline:
                    self._node_side.drain(node, outbox)
                    answer.append(True)
            finally:
                done.set()

        self._commands.put(command)
        self._wake()
        done.wait(timeout)
        return bool(answer)

    def _deliver_later(self, ident: bytes, frames: list[bytes]) -> None:
        """Send ``frames`` to the producer ``ident`` from the loop thread (any thread may call this)."""

        def send(now: float, outbox: Outbox) -> None:
            if self._control is not None:
                outbox.append(Out(ident, frames))

        self._commands.put(send)
        self._wake()

    def drain_node(self, node_id: str) -> None:
        """Tell a node to stop taking work after its current task (it gets no more credit)."""

        def command(now: float, outbox: Outbox) -> None:
            node = self.nodes.get(node_id)
            if node is not None and not node.offline:
                self._node_side.drain(node, outbox)

        self._commands.put(command)
        self._wake()

    # ================================================================== loop
    def _run(self) -> None:
        backlog: deque[tuple[zmq.Socket, list[bytes], int]] = deque()  # producer requests read, not handled
        backlog_bytes = 0
        guard = self._guard
        try:
            while not self._stopping.is_set():
                timeout = 0.0 if backlog else self._poll_timeout(time.time())
                ready = dict(self._poller.poll(int(timeout * 1000)))
                inbound: list[tuple[zmq.Socket, list[bytes]]] = []
                for sock in ready:
                    if sock == self._wake_r:
                        self._drain_wake_pipe()
                        continue
                    control = sock is self._control
                    full = len(backlog) >= MAX_BACKLOG or backlog_bytes >= MAX_BACKLOG_BYTES
                    for _ in range(PRODUCER_MESSAGES_PER_ROUND if control and full else MAX_MESSAGES_PER_ROUND):
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK, copy=True) if guard is None else guard.recv(sock)
                        except zmq.Again:
                            break
                        if frames is None:  # from a key no longer allowed: dropped, counted, logged
                            continue
                        if control and not is_node_message(frames):
                            size = sum(map(len, frames))
                            backlog.append((sock, frames, size))
                            backlog_bytes += size
                        else:
                            inbound.append((sock, frames))
                for _ in range(min(len(backlog), PRODUCER_MESSAGES_PER_ROUND)):
                    sock, frames, size = backlog.popleft()
                    backlog_bytes -= size
                    inbound.append((sock, frames))
                self._round(inbound, time.time())
        except BaseException as exc:  # a bug in the loop itself: recorded, reported, then the loop ends
            self.crashed = exc
            log.exception("scheduler loop crashed")
            self._report_crash(exc)
        finally:
            self._plugin_calls.close()
            self._keep_final_stats()
            # The journal first: closing the sockets terminates the context, which waits for sockets
            # other threads made from it (an embedded producer's) to be closed.
            if self.store is not None:
                self.store.close()
            self._unlock_data_dir()
            self._close_sockets()
            log.info("scheduler stopped")
            self._fire_lifecycle("scheduler_stopped")
            if self._own_events:
                self.events.close()

    def _keep_final_stats(self) -> None:
        """The last snapshot, for the handle's callers after the loop ended."""
        try:
            if self.store is not None:
                self._stats_box.put(self._reporter.build(time.time()))
        except Exception:  # noqa: BLE001 - the loop may have died of a broken journal
            log.debug("no final stats snapshot", exc_info=True)

    def _report_crash(self, exc: BaseException) -> None:
        """Tell the embedding process at once, so requests waiting on this loop fail now instead of
        at their timeouts (the loop is gone: nothing it was asked will ever be answered)."""
        if self.on_crash is None:
            return
        try:
            self.on_crash(exc)
        except Exception:
            log.exception("on_crash observer failed")

    def _drain_wake_pipe(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _poll_timeout(self, now: float) -> float:
        timeout = min(MAX_POLL_S, max(0.0, self._timers.next_heartbeat - now))
        if any(n.has_credit() for n in self.state.nodes.values()):
            due = self.state.journal().live.next_wakeup(now)
            if due is not None:
                timeout = min(timeout, max(0.0, due - now))
        return timeout

    def _round(self, inbound: list[tuple[zmq.Socket, list[bytes]]], now: float) -> None:
        """Handle a burst of messages, timers and dispatch in one transaction, then send."""
        assert self.store is not None
        outbox: Outbox = []
        early_failures: list[Callable[[], None]] = []
        try:
            self._round_in_transaction(inbound, now, outbox, early_failures)
        except Exception as exc:
            # The commit failed (disk full, journal locked by another process...): nothing of this
            # round is durable, so nothing of it may be announced. Its producers' requests are
            # refused with the reason (SUBMIT is idempotent: re-sending it is safe); node state
            # converges through heartbeats, a task whose outcome was lost runs again (the next
            # rounds requeue it), and a TASK that already left is answered by a RESULT the journal
            # does not know (counted stale).
            self._publisher.discard_round()
            self.state.counters.count("journal_errors")
            self.state.orphans_possible = True  # the registry kept this round's changes: see Requeue.requeue_orphans
            log.exception("journal transaction failed; the replies of this round were dropped")
            self._refuse_round(inbound, exc)
            return
        self._flush(outbox, early_failures)
        self._publisher.publish()
        self._publisher.publish_node_events(now)

    def _refuse_round(self, inbound: list[tuple[zmq.Socket, list[bytes]]], exc: Exception) -> None:
        """Answer every producer request of a round the journal could not commit with a 503 that
        says why, instead of leaving it to time out (a full disk does not clear by re-sending)."""
        refusals: Outbox = []
        retry_after = int(self.state.dcfg.retry_after_s)
        message = f"The task journal could not save this request ({type(exc).__name__}: {exc}); nothing of it was kept"
        for sock, frames in inbound:
            if sock is not self._control or len(frames) < 2 or is_node_message(frames):
                continue
            req_id = peek_req_id(frames[1:])
            if req_id is None:
                continue
            try:
                reject(refusals, frames[0], req_id, 503, "journal_unavailable", message, retry_after)
            except p.ProtocolError:
                log.exception("could not refuse a request of the failed round")
        self._send(refusals, [])

    def _round_in_transaction(
        self,
        inbound: list[tuple[zmq.Socket, list[bytes]]],
        now: float,
        outbox: Outbox,
        early_failures: list[Callable[[], None]],
    ) -> None:
        assert self.store is not None
        with self.store.batch():
            while True:
                try:
                    command = self._commands.get_nowait()
                except queue_mod.Empty:
                    break
                command(now, outbox)
            for sock, frames in inbound:
                mark = len(outbox)
                events_mark = self._publisher.mark()
                try:
                    with self.store.savepoint():
                        self._handle(sock, frames, now, outbox)
                except Exception as exc:
                    del outbox[mark:]
                    self._publisher.rollback(events_mark)
                    self.state.counters.count("handler_errors")
                    log.exception("error while handling a message; it was dropped")
                    self._internal_error(sock, frames, exc, outbox)
            self._timers.run(now, outbox)
            self._dispatcher.dispatch(now, outbox)
            # The TASKs go now; leaving the block writes the round's files and commits (docstring, 4.).
            if any(out.early for out in outbox):
                self._send(outbox, early_failures, early=True)
                outbox[:] = [out for out in outbox if not out.early]

    def _send(self, outbox: Outbox, failures: list[Callable[[], None]], *, early: bool = False) -> None:
        """Send the outbox's messages (with ``early``, only those marked early); the ``on_fail`` of
        each that could not be delivered is added to ``failures``."""
        for out in outbox:
            if early and not out.early:
                continue
            sock = self._control if out.queue is None else self._queue_socks[out.queue]
            assert sock is not None
            try:
                send_nowait(sock, [out.ident, *out.frames])
            except zmq.ZMQError as exc:
                self.state.counters.count("undelivered")
                log.debug("could not deliver %r: %s", out.frames[1][:16], exc)
                if out.on_fail is not None:
                    failures.append(out.on_fail)

    def _flush(self, outbox: Outbox, early_failures: list[Callable[[], None]]) -> None:
        """After the commit: send the rest, then undo what could not be delivered (the early TASKs'
        failures included, whose undo needs the committed dispatch)."""
        failures = list(early_failures)
        self._send(outbox, failures)
        if failures:
            assert self.store is not None
            with self.store.batch():
                for fail in failures:
                    try:
                        fail()
                    except Exception:
                        log.exception("error while undoing an undelivered message")
            self._publisher.publish()

    # ================================================================== messages: decode and route
    def _handle(self, sock: zmq.Socket, frames: list[bytes], now: float, outbox: Outbox) -> None:
        try:
            ident, body = p.split_identity(frames)
        except p.ProtocolError:
            self.state.counters.garbage("no identity")
            return
        try:
            msg = p.decode(body, receiver="scheduler")
        except p.ProtocolError as exc:
            self._reject_garbage(sock, ident, body, exc, outbox)
            return
        queue_name = self._sock_queue.get(sock)
        if queue_name is not None:
            if msg.command != p.READY:
                self.state.counters.garbage(f"{msg.command} on queue socket {queue_name}")
                return
            self._node_side.on_ready(queue_name, ident, msg, now)
            return
        if msg.command == p.READY:
            self.state.counters.garbage("READY on the control socket")
            return
        handler = self._handlers.get(msg.command)
        if handler is None:  # pragma: no cover - SCHEMAS and handlers are kept in step
            self.state.counters.garbage(f"no handler for {msg.command}")
            return
        role = NODE if msg.command in _NODE_COMMAND_NAMES else PRODUCER
        if self._guard is not None and not self._guard.may(sock, ident, role):
            self._refuse_role(ident, msg, role, outbox)
            return
        self._publisher.heard_from(ident, now)
        handler(ident, msg, now, outbox)

    def _refuse_role(self, ident: bytes, msg: p.Message, role: str, outbox: Outbox) -> None:
        """A message of a role its key may not play (``curve_node_keys``, ``curve_producer_keys``):
        counted, logged (at most once a second) and answered, so a mistaken deployment learns why at
        once: a producer request with ``REJECTED 403 node_key``, a node's HELLO with ``ERROR forbidden``
        (its other messages are dropped: without a WELCOME the key owns no node id)."""
        self.state.counters.count("rejected_peers")
        folder = "curve_node_keys" if role == PRODUCER else "curve_producer_keys"
        other = "a node" if role == PRODUCER else "a producer"
        now = time.monotonic()
        if now - self._role_logged_at >= 1.0:
            self._role_logged_at = now
            key = self._guard.key_of(self._control, ident) if self._guard is not None else None
            log.warning("refused %s from CURVE key %s: it may act only as %s (%s)", msg.command, key, other, folder)
        message = f"this CURVE key may act only as {other} (distributed.{folder}): {msg.command} refused"
        req_id = msg.header.get("req_id")
        if role == PRODUCER and isinstance(req_id, str | int):
            reject(outbox, ident, req_id, 403, "node_key", message)
        elif msg.command == p.HELLO:
            outbox.append(Out(ident, p.error_frames(p.ERR_FORBIDDEN, message)))

    def _reject_garbage(
        self, sock: zmq.Socket, ident: bytes, body: list[bytes], exc: p.ProtocolError, outbox: Outbox
    ) -> None:
        self.state.counters.garbage(str(exc))
        # A producer waiting on a req_id gets an answer instead of a timeout, when we can tell it.
        req_id = peek_req_id(body) if sock is self._control else None
        if exc.code == p.ERR_VERSION:
            # ERROR, not REJECTED: its shape is the one every version reads (docs/protocol.md §1).
            outbox.append(Out(ident, p.error_frames(p.ERR_VERSION, str(exc), req_id), queue=self._sock_queue.get(sock)))
            return
        if req_id is not None:
            reject(outbox, ident, req_id, 400, "malformed", str(exc))

    def _internal_error(self, sock: zmq.Socket, frames: list[bytes], exc: Exception, outbox: Outbox) -> None:
        """A producer whose request hit a scheduler bug gets a 500 now rather than a timeout."""
        if sock is not self._control or len(frames) < 2:
            return
        req_id = peek_req_id(frames[1:])
        if req_id is not None:
            message = f"Scheduler error: {type(exc).__name__}: {exc}"
            try:
                reject(outbox, frames[0], req_id, 500, "internal_error", message)
            except p.ProtocolError:  # an error about an error must not undo the round's other replies
                log.exception("could not answer a request that failed")


def is_node_message(frames: list[bytes]) -> bool:
    """Whether a message read from the control ROUTER (identity first) is one a node sends.

    Only a routing decision (which messages a round takes first): anything unreadable counts as a
    producer's and is judged by ``protocol.decode`` when its turn comes."""
    return len(frames) >= 3 and frames[2] in _NODE_COMMANDS
