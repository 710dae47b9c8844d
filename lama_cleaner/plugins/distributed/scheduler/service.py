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
4. commits, then sends the outbox: an ACCEPTED or TASK never announces something the journal
   could still lose.

Where things are: this module is the engine (lifecycle, the loop and its rounds, timers, dispatch,
``stats()``); :mod:`.node_handlers` handles node messages and retry decisions,
:mod:`.producer_handlers` handles producer requests, :mod:`.scheduler_base` holds the shared state,
outbox, replies and events; :mod:`.node_registry` is the per-node record (credit rules);
:mod:`..journal.task_store` (with :mod:`..journal.live_tasks`) is the journal and its in-memory live
index; :mod:`.routing`, :mod:`..journal.states` and :mod:`.retry_policy` are the pure decisions.

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
from collections.abc import Callable, Iterator
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
from ..journal import states
from ..journal.records import TaskRecord
from ..journal.task_store import BLOB_DIR, BlobMissing, TaskStore
from ..security.bind_policy import check_bind
from ..security.curve import ServerSecurity, limit_socket
from ..security.peer_guard import PeerGuard
from ..wire import protocol as p
from ..wire.send import send_nowait
from .handle import LocalSchedulerHandle, SchedulerStats, StatsBox
from .node_handlers import NodeMessages
from .node_registry import DrainedNodes, FailedOn, NodeEntry
from .plugin_calls import PluginCalls
from .producer_handlers import ProducerMessages, peek_req_id
from .routing import (
    IdleNode,
    ResourceClassOf,
    WaitingTask,
    node_can_run,
    plan_dispatch,
    preferred_nodes,
    unschedulable_reason,
)
from .scheduler_base import Out
from .snapshots import NodeWatch, RecentTasks, node_info, queue_stats

__all__ = ["JOURNAL_FILE", "NodeEntry", "Scheduler"]

log = logging.getLogger(__name__)

JOURNAL_FILE = "journal.sqlite3"
LOCK_FILE = "scheduler.lock"
PRUNE_BATCH = 200
"""Tasks (and blobs) removed per retention pass, so pruning never stalls the loop for long."""
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
_NODE_COMMANDS = frozenset(
    c.encode("ascii") for c in (p.HELLO, p.HEARTBEAT, p.PROGRESS, p.RESULT, p.FAILED, p.CANCELLED, p.BYE, p.READY)
)
CANDIDATE_LOOKAHEAD = 8
"""Runnable tasks looked at per round beyond one per idle node (for the affinity choice)."""
CANDIDATE_SCAN_LIMIT = 2000
"""Queued tasks scanned per round at most, looking for ones an idle node can run."""
MAX_POLL_S = 0.1
OFFLINE_FORGET_S = 600.0
"""Offline nodes stay listed (state ``offline``) this long, then are forgotten."""
UNSCHEDULABLE_CHECK_S = 1.0
"""How often (at most) queued tasks are checked for having no node that could ever run them."""

TaskKey = tuple[str, str, str]
"""``(queue, kind, name)``: what decides which nodes can run a task."""


class Scheduler(NodeMessages, ProducerMessages):
    """The scheduler service. ``start()`` opens the journal (migrations + recovery) and binds the
    sockets in the caller's thread, so errors surface there; then the loop runs in its own thread
    until ``stop()``. Usable embedded in the web server or standalone (:mod:`.main`).
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
        self.dcfg: DistributedConfig = config.distributed if isinstance(config, Config) else config
        self.config: Config | None = config if isinstance(config, Config) else None
        self.plugin_manager = plugin_manager
        """Where the distributed hooks (``scheduler_started``, ``node_event``, ...) are fired; None: nowhere."""
        self.events = events if events is not None else (EventSink(plugin_manager) if plugin_manager else None)
        """The sink task events and the other observing hooks go through, off this loop's thread: the
        embedding web server's (so each event reaches ``task_event`` once), else one of our own."""
        self._own_events = events is None and self.events is not None
        self.emit_task_events = emit_task_events
        """False: the embedding process delivers task events to ``task_event`` itself (``events`` then
        serves the other hooks only)."""
        self.resource_class_of = resource_class_of
        self.bind = bind or self.dcfg.scheduler_bind
        self.data_dir = Path(os.path.expanduser(str(data_dir or self.dcfg.data_dir)))
        self.on_event = on_event
        self.on_crash = on_crash
        """Called on the loop thread, before it closes anything, if the loop dies of an exception."""
        self.crashed: BaseException | None = None
        """The exception the loop thread died of (None while it runs, or after a clean stop)."""
        self.interval = float(self.dcfg.heartbeat_interval_s)
        self.liveness = max(1, int(self.dcfg.heartbeat_liveness))
        self.queues: list[str] = list(self.dcfg.queues)
        self.endpoints: dict[str, Any] = {}
        self.store: TaskStore | None = None
        self.nodes: dict[str, NodeEntry] = {}
        self._ctrl_owner: dict[bytes, str] = {}
        self._watchers: dict[bytes, tuple[str, float]] = {}
        self._batch_watchers: set[bytes] = set()
        self._ctx: zmq.Context | None = None
        self._control: zmq.Socket | None = None
        self._queue_socks: dict[str, zmq.Socket] = {}
        self._sock_queue: dict[zmq.Socket, str] = {}
        self._poller = zmq.Poller()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._commands: queue_mod.SimpleQueue[Callable[[float, list[Out]], None]] = queue_mod.SimpleQueue()
        self._lock = threading.Lock()
        self._counters: dict[str, int] = dict.fromkeys(
            (
                "submitted",
                "dispatched",
                "completed",
                "failed",
                "cancelled",
                "retries",
                "duplicates",
                "stale_messages",
                "garbage_frames",
                "requeued_on_node_loss",
                "handed_back",
                "rejected_overloaded",
                "rejected_bad_request",
                "handler_errors",
                "journal_errors",
                "undelivered",
                "pruned_tasks",
                "pruned_blobs",
                "reattached",
                "done_sent",
                "heartbeats_missed",
                "nodes_lost",
                "rejected_peers",
                "foreign_reports",
            ),
            0,
        )
        self._snapshot: dict[str, Any] = {"tasks": dict.fromkeys(states.STATES, 0), "queues": {}, "nodes": {}}
        self._snapshot_at = 0.0
        self._events: list[dict[str, Any]] = []
        self._done_waiters: dict[str, list[bytes]] = {}  # task id -> producers that want its DONE
        self._dones: list[tuple[TaskRecord, bytes | None]] = []  # finished this round, DONE after commit
        self._refunded: set[str] = set()  # recovered tasks whose interrupted attempt was refunded
        self._held: set[str] = set()  # recovered tasks their node may still reclaim (dispatch waits)
        self._hold_until = 0.0
        self._wake_r = self._wake_w = -1  # a pipe (made by _bind) whose byte wakes the poll for commands
        self._handlers: dict[str, Callable[[bytes, p.Message, float, list[Out]], None]] = {
            command: getattr(self, f"_on_{command.lower()}") for command in p.SCHEMAS["scheduler"] if command != p.READY
        }
        self._next_heartbeat = 0.0
        self._next_prune = 0.0
        self._next_unschedulable_check = 0.0
        self._last_eligible: dict[TaskKey, float] = {}  # last moment some online node could run such a task
        self._started_at = 0.0
        self._garbage_logged = 0.0
        self._drained = DrainedNodes()
        self._failed_on = FailedOn()
        self.recovery: Any = None
        self._lock_file: Any = None
        self._finished: list[TaskRecord] = []  # finished this round, sampled after commit
        self._recent = RecentTasks()
        self._node_watch = NodeWatch()
        self._unschedulable: dict[str, str] = {}  # queued task id -> queue, as of the last check
        self._reported_unschedulable: set[str] = set()  # tasks task_unschedulable was fired for
        self._stats_box = StatsBox()
        self._plugin_calls = PluginCalls(plugin_manager, self.config, self._deliver_later)
        self.handle = LocalSchedulerHandle(self)
        """This scheduler's :class:`~.handle.SchedulerHandle` (for other plugins, any thread)."""
        self._security: ServerSecurity | None = None
        self._guard: PeerGuard | None = None
        """With CURVE: receives each message with its sender's key and drops revoked keys'."""

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
            self.store = TaskStore(
                self.data_dir / JOURNAL_FILE,
                synchronous=self.dcfg.journal_synchronous,
                blob_dir=self.data_dir / BLOB_DIR,
            )
        except BaseException:
            self._unlock_data_dir()
            raise
        try:
            self.recovery = self.store.recover()
            self._refunded = set(self.recovery.refunded)
            # Interrupted tasks may still be running on their nodes, which reclaim them by naming
            # them in their HELLO once they notice the restart: hold dispatch (FIFO kept) until
            # they all did, or one liveness period passed.
            self._held = set(self.recovery.requeued)
            self._hold_until = time.time() + self.interval * self.liveness
            if self.recovery.requeued or self.recovery.queued:
                log.info(
                    "journal recovery: %d queued, %d interrupted and re-queued, %d failed",
                    len(self.recovery.queued),
                    len(self.recovery.requeued),
                    len(self.recovery.failed),
                )
            self._fail_orphans(time.time())
            self._bind()
        except BaseException:
            self._close_sockets()
            self.store.close()
            self._unlock_data_dir()
            raise
        self._started_at = time.time()
        self._refresh_snapshot(self._started_at)
        self._stats_box.put(self._build_stats(self._started_at))
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
        store = self._store()
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
            sock.bind(planned[name])
            queue_eps[name] = sock.getsockopt_string(zmq.LAST_ENDPOINT)
            self._queue_socks[name] = sock
            self._sock_queue[sock] = name
            self._poller.register(sock, zmq.POLLIN)
        self._poller.register(self._control, zmq.POLLIN)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poller.register(self._wake_r, zmq.POLLIN)
        self.endpoints = {"control": control_ep, "queues": queue_eps, "inproc": inproc_ep}
        log.info("scheduler listening: control %s, queues %s", control_ep, queue_eps)

    def _router(self) -> zmq.Socket:
        assert self._ctx is not None
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unknown identity -> error, not a silent drop
        sock.setsockopt(zmq.LINGER, 200)
        sock.setsockopt(zmq.RCVHWM, 10000)
        sock.setsockopt(zmq.SNDHWM, 10000)
        limit_socket(sock, self.dcfg)
        if self._security is not None:
            self._security.apply(sock)
        return sock

    def _close_sockets(self) -> None:
        for sock in [self._control, *self._queue_socks.values()]:
            if sock is not None:
                sock.close()
        self._queue_socks.clear()
        self._control = None
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

            def refresh(now: float, outbox: list[Out]) -> None:
                try:
                    self._refresh_snapshot(now)
                finally:
                    done.set()

            self._commands.put(refresh)
            self._wake()
            done.wait(timeout)
        elif threading.current_thread() is self._thread:
            self._refresh_snapshot(time.time())
        with self._lock:
            snap = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self._snapshot.items()}
        snap.update(self._counters)
        return snap

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

            def build(now: float, outbox: list[Out]) -> None:
                try:
                    self._stats_box.put(self._build_stats(now))
                finally:
                    done.set()

            self._commands.put(build)
            self._wake()
            done.wait(timeout)
        elif threading.current_thread() is self._thread:
            self._stats_box.put(self._build_stats(time.time()))
        stats = self._stats_box.get()
        if stats is None:  # never started
            return SchedulerStats(time.time(), self._counter_view(), {}, (), ())
        return stats

    def _build_stats(self, now: float) -> SchedulerStats:
        live = self._store().live
        nodes = sorted(self.nodes.values(), key=lambda n: n.registered_at)
        return SchedulerStats(
            time=now,
            counters=self._counter_view(),
            queues=queue_stats(self.queues, live, self._unschedulable, now),
            nodes=tuple(node_info(n, now, live) for n in nodes),
            recent=self._recent.snapshot(),
        )

    def _counter_view(self) -> dict[str, int]:
        """The counters, plus the names the handle promises (docs/protocol.md §10)."""
        with self._lock:
            c = dict(self._counters)
        c["retried"] = c["retries"]
        c["requeued"] = c["requeued_on_node_loss"] + c["handed_back"]
        c["duplicates_discarded"] = c["duplicates"]
        c["rejected_messages"] = c["garbage_frames"] + c["rejected_bad_request"]
        return c

    def handle_drain(self, node_id: str, timeout: float) -> bool:
        """Drain ``node_id`` on the loop thread and say whether it was a known, online node (False
        also when the loop does not answer within ``timeout``)."""
        if not self.running:
            return False
        answer: list[bool] = []
        done = threading.Event()

        def command(now: float, outbox: list[Out]) -> None:
            try:
                node = self.nodes.get(node_id)
                if node is not None and not node.offline:
                    self._drain(node, outbox)
                    answer.append(True)
            finally:
                done.set()

        self._commands.put(command)
        self._wake()
        done.wait(timeout)
        return bool(answer)

    def _deliver_later(self, ident: bytes, frames: list[bytes]) -> None:
        """Send ``frames`` to the producer ``ident`` from the loop thread (any thread may call this)."""

        def send(now: float, outbox: list[Out]) -> None:
            if self._control is not None:
                outbox.append(Out(self._control, ident, frames))

        self._commands.put(send)
        self._wake()

    def drain_node(self, node_id: str) -> None:
        """Tell a node to stop taking work after its current task (it gets no more credit)."""

        def command(now: float, outbox: list[Out]) -> None:
            node = self.nodes.get(node_id)
            if node is not None and not node.offline:
                self._drain(node, outbox)

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
                self._stats_box.put(self._build_stats(time.time()))
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
        timeout = min(MAX_POLL_S, max(0.0, self._next_heartbeat - now))
        if any(n.has_credit() for n in self.nodes.values()):
            due = self._store().live.next_wakeup(now)
            if due is not None:
                timeout = min(timeout, max(0.0, due - now))
        return timeout

    def _round(self, inbound: list[tuple[zmq.Socket, list[bytes]]], now: float) -> None:
        """Handle a burst of messages, timers and dispatch in one transaction, then send."""
        assert self.store is not None
        outbox: list[Out] = []
        try:
            self._round_in_transaction(inbound, now, outbox)
        except Exception:
            # The commit failed (disk full, journal locked by another process...): nothing of this
            # round is durable, so nothing of it may be announced. Producers re-send after their
            # timeout (SUBMIT is idempotent) and node state converges through heartbeats.
            self._events.clear()
            self._dones.clear()
            self._finished.clear()
            self._count("journal_errors")
            log.exception("journal transaction failed; the replies of this round were dropped")
            return
        self._flush(outbox)
        self._publish_events()
        self._publish_node_events(now)

    def _publish_node_events(self, now: float) -> None:
        """Fire ``node_event`` for what changed in the node registry this round (off this thread)."""
        events = self.events
        if events is None or not hasattr(events, "notify") or not events.has_observers("node_event"):
            return
        for event in self._node_watch.changes(self.nodes, now, self._store().live):
            events.notify("node_event", event=event)

    def _round_in_transaction(
        self, inbound: list[tuple[zmq.Socket, list[bytes]]], now: float, outbox: list[Out]
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
                events_mark = len(self._events)
                dones_mark = len(self._dones)
                finished_mark = len(self._finished)
                try:
                    with self.store.savepoint():
                        self._handle(sock, frames, now, outbox)
                except Exception as exc:
                    del outbox[mark:]
                    del self._events[events_mark:]
                    del self._dones[dones_mark:]
                    del self._finished[finished_mark:]
                    self._count("handler_errors")
                    log.exception("error while handling a message; it was dropped")
                    self._internal_error(sock, frames, exc, outbox)
            self._timers(now, outbox)
            self._dispatch(now, outbox)

    def _flush(self, outbox: list[Out]) -> None:
        failures: list[Callable[[], None]] = []
        for out in outbox:
            try:
                send_nowait(out.socket, [out.ident, *out.frames])
            except zmq.ZMQError as exc:
                self._count("undelivered")
                log.debug("could not deliver %r: %s", out.frames[1][:16], exc)
                if out.on_fail is not None:
                    failures.append(out.on_fail)
        if failures:
            assert self.store is not None
            with self.store.batch():
                for fail in failures:
                    try:
                        fail()
                    except Exception:
                        log.exception("error while undoing an undelivered message")
            self._publish_events()

    # ================================================================== messages
    def _handle(self, sock: zmq.Socket, frames: list[bytes], now: float, outbox: list[Out]) -> None:
        try:
            ident, body = p.split_identity(frames)
        except p.ProtocolError:
            self._garbage("no identity")
            return
        try:
            msg = p.decode(body, receiver="scheduler")
        except p.ProtocolError as exc:
            self._reject_garbage(sock, ident, body, exc, outbox)
            return
        queue_name = self._sock_queue.get(sock)
        if queue_name is not None:
            if msg.command != p.READY:
                self._garbage(f"{msg.command} on queue socket {queue_name}")
                return
            self._on_ready(queue_name, ident, msg, now)
            return
        if msg.command == p.READY:
            self._garbage("READY on the control socket")
            return
        handler = self._handlers.get(msg.command)
        if handler is None:  # pragma: no cover - SCHEMAS and handlers are kept in step
            self._garbage(f"no handler for {msg.command}")
            return
        watcher = self._watchers.get(ident)
        if watcher is not None:
            self._watchers[ident] = (watcher[0], now)
        handler(ident, msg, now, outbox)

    def _reject_garbage(
        self, sock: zmq.Socket, ident: bytes, body: list[bytes], exc: p.ProtocolError, outbox: list[Out]
    ) -> None:
        self._garbage(str(exc))
        # A producer waiting on a req_id gets an answer instead of a timeout, when we can tell it.
        req_id = peek_req_id(body) if sock is self._control else None
        if exc.code == p.ERR_VERSION:
            # ERROR, not REJECTED: its shape is the one every version reads (docs/protocol.md §1).
            outbox.append(Out(sock, ident, p.error_frames(p.ERR_VERSION, str(exc), req_id)))
            return
        if req_id is not None:
            self._reject(outbox, ident, req_id, 400, "malformed", str(exc))

    def _internal_error(self, sock: zmq.Socket, frames: list[bytes], exc: Exception, outbox: list[Out]) -> None:
        """A producer whose request hit a scheduler bug gets a 500 now rather than a timeout."""
        if sock is not self._control or len(frames) < 2:
            return
        req_id = peek_req_id(frames[1:])
        if req_id is not None:
            message = f"Scheduler error: {type(exc).__name__}: {exc}"
            try:
                self._reject(outbox, frames[0], req_id, 500, "internal_error", message)
            except p.ProtocolError:  # an error about an error must not undo the round's other replies
                log.exception("could not answer a request that failed")

    def _timers(self, now: float, outbox: list[Out]) -> None:
        deadline = self.interval * self.liveness
        for node in list(self.nodes.values()):
            if node.offline:
                if now - node.offline_since > max(OFFLINE_FORGET_S, deadline * 10):
                    del self.nodes[node.node_id]
                continue
            self._count_missed_heartbeats(node, now)
            if now - node.last_seen > deadline:
                self._go_offline(node, now, outbox, f"node {node.name} silent for {now - node.last_seen:.1f}s")
        for ident, (producer_id, seen) in list(self._watchers.items()):
            if now - seen > deadline:
                del self._watchers[ident]
                self._batch_watchers.discard(ident)
                log.info("producer %s stopped pinging; no more events to it", producer_id)
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.interval
            for node in self.nodes.values():
                if not node.offline:
                    self._send_ctrl(outbox, node.ctrl_ident, p.HEARTBEAT, {})
        if now >= self._next_prune:
            retention = float(self.dcfg.retention_s)
            self._next_prune = now + min(300.0, max(1.0, retention / 10))
            tasks, blobs = self._store().prune(now - retention, now, limit=PRUNE_BATCH)
            if max(tasks, blobs) >= PRUNE_BATCH:
                self._next_prune = now + 0.5  # more to do: continue soon, in small bites
            if tasks or blobs:
                self._count("pruned_tasks", tasks)
                self._count("pruned_blobs", blobs)
                log.info("retention: pruned %d finished tasks and %d blobs", tasks, blobs)
            self._forget_stale_waiters()
        self._check_unschedulable(now)

    def _count_missed_heartbeats(self, node: NodeEntry, now: float) -> None:
        """Count each heartbeat interval an online node stays silent past the first (a node sends
        at least one message per interval; the first interval is its normal lateness)."""
        missed = max(0, int((now - node.last_seen) / self.interval) - 1)
        if missed > node.heartbeats_missed:
            self._count("heartbeats_missed", missed - node.heartbeats_missed)
        node.heartbeats_missed = missed

    def _forget_stale_waiters(self) -> None:
        """Drop DONE waiters of tasks that do not exist (a SUBMIT whose round was rolled back, or a
        pruned task) or finished without a DONE pending; normally a waiter goes when its DONE does."""
        store = self._store()
        live = store.live.records
        pending = {rec.id for rec, _ in self._dones}
        for task_id in [t for t in self._done_waiters if t not in live and t not in pending]:
            rec = store.get(task_id)
            if rec is None or rec.terminal:
                del self._done_waiters[task_id]

    def _check_unschedulable(self, now: float) -> None:
        """Find queued tasks that no online node can run: report each once (``task_unschedulable``),
        count them per queue (``QueueStats.unschedulable``), and fail those stuck for
        ``unschedulable_timeout_s`` (when it is above 0).

        Without the failing, a task nobody can run (no nodes, none granted its queue, none offering
        its model or plugin) is skipped by dispatch forever and a waiting ``/inpaint`` ends in a 504
        after ``request_timeout_s``. The clock of a task starts at the later of its submission, the
        scheduler's start (nodes re-register after a restart) and the last moment a node that could
        run it was online. Runs at most once a second and costs one pass over the unfinished tasks.
        """
        timeout = float(self.dcfg.unschedulable_timeout_s)
        if now < self._next_unschedulable_check:
            return
        period = min(UNSCHEDULABLE_CHECK_S, max(0.05, timeout / 4)) if timeout > 0 else UNSCHEDULABLE_CHECK_S
        self._next_unschedulable_check = now + period
        store = self._store()
        waiting: dict[TaskKey, list[TaskRecord]] = {}
        running: set[TaskKey] = set()
        for rec in store.live.records.values():
            key = (rec.queue, rec.kind, rec.name)
            if rec.status == states.QUEUED:
                waiting.setdefault(key, []).append(rec)
            else:
                running.add(key)  # a node runs one right now, so one could run the others
        last = self._last_eligible
        for gone in [k for k in last if k not in waiting and k not in running]:
            del last[gone]
        for key in running:
            last[key] = now
        stuck: dict[str, str] = {}
        if waiting:
            online, draining, offline = self._node_views()
            for key, recs in waiting.items():
                task = WaitingTask("", key[1], key[2], key[0])
                reason = unschedulable_reason(task, online, draining)
                if reason is None:
                    last[key] = now
                    continue
                failed = self._fail_stuck(key, recs, task, reason, offline, timeout, now) if timeout > 0 else set()
                for rec in recs:
                    if rec.id not in failed:
                        stuck[rec.id] = rec.queue
                        self._report_unschedulable(rec, reason)
        self._unschedulable = stuck
        reported = self._reported_unschedulable
        if reported:
            live = store.live.records
            self._reported_unschedulable = {t for t in reported if t in live}

    def _report_unschedulable(self, rec: TaskRecord, reason: str) -> None:
        """``task_unschedulable``, once per task (off this thread)."""
        if rec.id in self._reported_unschedulable:
            return
        self._reported_unschedulable.add(rec.id)
        notify = getattr(self.events, "notify", None)
        if notify is not None:
            notify("task_unschedulable", task_id=rec.id, queue=rec.queue, kind=rec.kind, name=rec.name, reason=reason)

    def _fail_stuck(
        self,
        key: TaskKey,
        recs: list[TaskRecord],
        task: WaitingTask,
        reason: str,
        offline: list[tuple[IdleNode, float]],
        timeout: float,
        now: float,
    ) -> set[str]:
        """Fail the tasks of ``key`` that waited ``timeout`` with no node able to run them; their ids."""
        last = self._last_eligible
        seen = max([last.get(key, 0.0), self._started_at]
                   + [since for view, since in offline if node_can_run(view, task)])  # fmt: skip
        last[key] = seen
        if now - seen < timeout:
            return set()
        message = f"{reason}; gave up after {timeout:g}s"
        failed = set()
        store = self._store()
        for rec in recs:
            if now - rec.created_at < timeout:
                continue
            log.warning("task %s failed: %s", rec.id, message)
            self._count("failed")
            self._event(store.fail(rec.id, error=message, status=503, now=now))
            failed.add(rec.id)
        return failed

    def _node_views(self) -> tuple[list[IdleNode], set[str], list[tuple[IdleNode, float]]]:
        """(online nodes, ids of the draining ones, offline nodes with when they went offline) as
        routing sees them, with ``queues`` = the queues each was granted."""
        online: list[IdleNode] = []
        draining: set[str] = set()
        offline: list[tuple[IdleNode, float]] = []
        for n in self.nodes.values():
            view = IdleNode(n.node_id, frozenset(n.allowed), n.idle_since, models=n.models, plugins=n.plugins)
            if n.offline:
                offline.append((view, n.offline_since))
                continue
            online.append(view)
            if n.draining:
                draining.add(n.node_id)
        return online, draining, offline

    def _dispatch(self, now: float, outbox: list[Out]) -> None:
        """Pair runnable tasks (highest priority first, then oldest) with idle nodes that hold credit;
        one task per node."""
        idle_nodes = {n.node_id: n for n in self.nodes.values() if n.has_credit()}
        if not idle_nodes or self._holding(now):
            return
        queues = sorted({q for n in idle_nodes.values() for q in n.ready})
        store = self._store()
        views = [
            IdleNode(
                node_id=n.node_id,
                queues=frozenset(n.ready),
                idle_since=n.idle_since,
                loaded_model=n.loaded_model,
                models=n.models,
                plugins=n.plugins,
            )
            for n in idle_nodes.values()
        ]
        failed_on = self._failed_on
        # Only a retry that failed somewhere needs the other online nodes (to wait for one of them).
        online = self._dispatch_online_views() if failed_on else []
        tasks = _candidates(store.live.runnable(now, queues), views, failed_on.get if failed_on else None, online)
        if not tasks:
            return
        for task, view in plan_dispatch(tasks, views, online):
            node = idle_nodes[view.node_id]
            ident = node.queue_idents.get(task.queue)
            if ident is None:  # pragma: no cover - credit implies a known identity
                continue
            try:
                files = store.inputs(task.task_id)
            except BlobMissing as exc:  # it can never run; the node keeps its credit for the next task
                log.error("task %s failed: %s", task.task_id, exc)
                self._count("failed")
                self._event(store.fail(task.task_id, error=f"Task input lost: {exc}", status=500, now=now))
                continue
            rec = store.mark_processing(task.task_id, node.node_id, now, peer_key=node.peer_key)
            self._refunded.discard(rec.id)
            header = {
                "task_id": rec.id,
                "attempt": rec.dispatches,
                "kind": rec.kind,
                "name": rec.name,
                "form": rec.form,
                "submitter": rec.submitter,
                "queue": rec.queue,
                "blobs": list(files),
            }
            node.current_task = rec.id
            node.current_attempt = rec.dispatches
            node.dispatched_at = now
            node.ready.clear()
            if rec.kind == "inpaint":
                node.loaded_model = rec.name  # it will load it; affinity follows the model
            self._count("dispatched")
            outbox.append(
                Out(
                    self._queue_socks[task.queue],
                    ident,
                    p.encode(p.TASK, header, list(files.values())),
                    on_fail=self._undelivered(node.node_id, rec.id, task.queue),
                )
            )
            self._event(rec)

    def _holding(self, now: float) -> bool:
        """Whether dispatch still waits for nodes to reclaim tasks interrupted by a restart."""
        if not self._held:
            return False
        live = self._store().live.records
        self._held = {t for t in self._held if (r := live.get(t)) is not None and r.status == states.QUEUED}
        if self._held and now < self._hold_until:
            return True
        self._held.clear()
        return False

    def _dispatch_online_views(self) -> list[IdleNode]:
        """Every online, non-draining node as routing sees it (``queues`` = the queues it was
        granted): a retry waits for one of them rather than return to a node it failed on."""
        return [
            IdleNode(n.node_id, frozenset(n.allowed), n.idle_since, models=n.models, plugins=n.plugins)
            for n in self.nodes.values()
            if not (n.offline or n.draining)
        ]

    def _undelivered(self, node_id: str, task_id: str, queue: str) -> Callable[[], None]:
        def undo() -> None:
            # The node's queue socket vanished before the TASK left (e.g. it reconnected after a
            # network cut and has a new identity): the attempt never started. The node keeps no
            # credit until it sends READY from the new socket; it is asked to at its next idle
            # heartbeat (``_ask_for_credit``), so it cannot stay idle for good.
            node = self.nodes.get(node_id)
            if node is not None and node.current_task == task_id:
                node.current_task = None
                node.current_attempt = None
                node.ready.clear()
                node.queue_idents.pop(queue, None)
            if self._processing_on(task_id, node_id) is not None:
                self._event(self._store().undo_dispatch(task_id))

        return undo


def is_node_message(frames: list[bytes]) -> bool:
    """Whether a message read from the control ROUTER (identity first) is one a node sends.

    Only a routing decision (which messages a round takes first): anything unreadable counts as a
    producer's and is judged by ``protocol.decode`` when its turn comes."""
    return len(frames) >= 3 and frames[2] in _NODE_COMMANDS


def _candidates(
    runnable: Iterator[TaskRecord],
    idle: list[IdleNode],
    failed_on: Callable[[str], frozenset[str]] | None = None,
    online: list[IdleNode] | None = None,
) -> list[WaitingTask]:
    """The first runnable tasks in dispatch order (``runnable`` yields them highest priority first,
    then oldest first) that some idle node can run, bounded by the idle credit.

    Enough for :func:`plan_dispatch` to give every idle node a task (plus a small look-ahead for
    its affinity choice), without building a view of every queued task each round. Tasks no idle
    node can run are skipped (they do not use up the window), up to a scan limit. ``failed_on``
    gives the nodes a retrying task failed on: a task that only such idle nodes could run, while
    another ``online`` node could run it later, is skipped too (``routing.preferred_nodes``), or a
    lone idle node would sit idle behind it.
    """
    # One idle node (the usual case under load: an outcome just freed it) simply gets the first task
    # it can run; the look-ahead only informs the affinity choice between several idle nodes.
    want = 1 if len(idle) == 1 else len(idle) + CANDIDATE_LOOKAHEAD
    chosen: list[WaitingTask] = []
    for scanned, rec in enumerate(runnable):
        if scanned >= CANDIDATE_SCAN_LIMIT:
            break
        avoid = failed_on(rec.id) if failed_on is not None else None
        if avoid:  # rare: a retry that failed somewhere
            task = WaitingTask(rec.id, rec.kind, rec.name, rec.queue, avoid=avoid)
            able = bool(preferred_nodes(task, [n for n in idle if node_can_run(n, task)], online or ()))
        else:
            task = WaitingTask(rec.id, rec.kind, rec.name, rec.queue)
            able = any(node_can_run(n, task) for n in idle)
        if able:
            chosen.append(task)
            if len(chosen) >= want:
                break
    return chosen
