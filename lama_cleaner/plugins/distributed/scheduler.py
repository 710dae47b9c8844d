"""The scheduler: one thread, one ZeroMQ poll loop, one SQLite journal.

It binds a control ROUTER (nodes and producers) and one ROUTER per queue (nodes' READY credits and
the TASKs sent back), and runs every decision in a single thread so that no lock guards the node
registry or the journal. Each loop iteration:

1. drains whatever arrived on every socket (up to a bound, so timers still run under load);
2. handles the messages inside one journal transaction (group commit), each in its own savepoint
   so one bad message cannot undo the others; replies are only queued in an outbox;
3. runs the timers (node liveness, heartbeats to nodes, producer expiry, retention pruning) and the
   dispatcher (pairs the oldest runnable tasks with idle nodes, see :mod:`.routing`);
4. commits, then sends the outbox: an ACCEPTED or TASK never announces something the journal
   could still lose.

Cost per task matters (it bounds throughput on small boxes), so the hot paths avoid the journal
where it is not the point: unfinished tasks are read from the store's in-memory live index, a round
or message that writes nothing opens no transaction or savepoint, event and TaskInfo dicts are
built by hand, and the monitoring snapshot is only computed when ``stats()`` asks for it.

Why these rules (details in ``docs/protocol.md``): node-level credit of one (a task never waits
inside a busy node), any message counts as liveness, a lost node's task is re-queued with its
attempt charged and backoff applied, a terminal task never changes (late results are duplicates),
garbage is counted and dropped, never fatal.
"""

from __future__ import annotations

import json
import logging
import os
import queue as queue_mod
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from ...config import Config, DistributedConfig
from ...errors import ClientError
from ...tasks import TASK_STATES, TaskEvent
from . import protocol as p
from . import states
from .retry_policy import next_retry, policy_for
from .routing import (
    IdleNode,
    ResourceClassOf,
    RoutingError,
    WaitingTask,
    allowed_queues,
    node_can_run,
    plan_dispatch,
    route_task,
)
from .task_store import TaskRecord, TaskStore

log = logging.getLogger(__name__)

JOURNAL_FILE = "journal.sqlite3"
LOCK_FILE = "scheduler.lock"
PRUNE_BATCH = 200
"""Tasks (and blobs) removed per retention pass, so pruning never stalls the loop for long."""
MAX_MESSAGES_PER_ROUND = 512
CANDIDATE_LOOKAHEAD = 8
"""Runnable tasks looked at per round beyond one per idle node (for the affinity choice)."""
CANDIDATE_SCAN_LIMIT = 2000
"""Queued tasks scanned per round at most, looking for ones an idle node can run."""
MAX_POLL_S = 0.1
OFFLINE_FORGET_S = 600.0
"""Offline nodes stay listed (state ``offline``) this long, then are forgotten."""
TASK_KINDS = ("inpaint", "plugin")


@dataclass
class NodeEntry:
    """What the scheduler knows about one node (in memory only: nodes re-register after a restart)."""

    node_id: str
    name: str
    ctrl_ident: bytes
    capabilities: dict[str, Any]
    allowed: set[str]
    rejected: dict[str, str]
    version: str | None = None
    pid: int | None = None
    loaded_model: str | None = None
    last_seen: float = 0.0
    registered_at: float = 0.0
    idle_since: float = 0.0
    queue_idents: dict[str, bytes] = field(default_factory=dict)
    ready: set[str] = field(default_factory=set)
    current_task: str | None = None
    current_attempt: int | None = None
    dispatched_at: float = 0.0
    draining: bool = False
    offline: bool = False
    offline_since: float = 0.0
    tasks_done: int = 0

    @property
    def state(self) -> str:
        if self.offline:
            return p.NODE_OFFLINE
        if self.draining:
            return p.NODE_DRAINING
        if self.current_task:
            return p.NODE_BUSY
        return p.NODE_IDLE

    def has_credit(self) -> bool:
        return not (self.offline or self.draining or self.current_task) and bool(self.ready)

    def grant_implied_credit(self, now: float) -> None:
        """A finished task (RESULT/FAILED/CANCELLED) is also the node's next READY on every queue
        it joined, as in the Guide's load-balancing broker; READY on a queue socket may arrive
        before the RESULT on the control socket and is then ignored, so this keeps the node usable."""
        self.current_task = None
        self.current_attempt = None
        if not (self.offline or self.draining):
            if not self.ready:
                self.idle_since = now
            self.ready = {q for q in self.queue_idents if q in self.allowed}

    def public(self) -> dict[str, Any]:
        return {
            "id": self.node_id,
            "name": self.name,
            "state": self.state,
            "capabilities": self.capabilities,
            "queues": sorted(self.allowed),
            "rejected": dict(self.rejected),
            "current_task": self.current_task,
            "credit": sorted(self.ready) if self.has_credit() else [],
            "loaded_model": self.loaded_model,
            "last_heartbeat": self.last_seen,
            "version": self.version,
            "pid": self.pid,
            "tasks_done": self.tasks_done,
        }


@dataclass
class _Out:
    """One message to send after the commit; ``on_fail`` runs if it cannot be delivered."""

    socket: zmq.Socket
    ident: bytes
    frames: list[bytes]
    on_fail: Callable[[], None] | None = None


class Scheduler:
    """The scheduler service. ``start()`` opens the journal (migrations + recovery) and binds the
    sockets in the caller's thread, so errors surface there; then the loop runs in its own thread
    until ``stop()``. Usable embedded in the web server or standalone (``scheduler_main``).
    """

    def __init__(
        self,
        config: Config | DistributedConfig,
        resource_class_of: ResourceClassOf,
        *,
        bind: str | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        on_event: Callable[[TaskEvent], None] | None = None,
    ) -> None:
        self.dcfg: DistributedConfig = config.distributed if isinstance(config, Config) else config
        self.resource_class_of = resource_class_of
        self.bind = bind or self.dcfg.scheduler_bind
        self.data_dir = Path(os.path.expanduser(str(data_dir or self.dcfg.data_dir)))
        self.on_event = on_event
        self.interval = float(self.dcfg.heartbeat_interval_s)
        self.liveness = max(1, int(self.dcfg.heartbeat_liveness))
        self.queues: list[str] = list(self.dcfg.queues)
        self.endpoints: dict[str, Any] = {}
        self.store: TaskStore | None = None
        self.nodes: dict[str, NodeEntry] = {}
        self._ctrl_owner: dict[bytes, str] = {}
        self._watchers: dict[bytes, tuple[str, float]] = {}
        self._ctx: zmq.Context | None = None
        self._control: zmq.Socket | None = None
        self._queue_socks: dict[str, zmq.Socket] = {}
        self._sock_queue: dict[zmq.Socket, str] = {}
        self._poller = zmq.Poller()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._commands: queue_mod.SimpleQueue[Callable[[float, list[_Out]], None]] = queue_mod.SimpleQueue()
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
                "rejected_overloaded",
                "rejected_bad_request",
                "handler_errors",
                "journal_errors",
                "undelivered",
                "pruned_tasks",
                "pruned_blobs",
            ),
            0,
        )
        self._snapshot: dict[str, Any] = {"tasks": dict.fromkeys(states.STATES, 0), "queues": {}, "nodes": {}}
        self._snapshot_at = 0.0
        self._events: list[dict[str, Any]] = []
        self._wake_r = self._wake_w = -1  # a pipe (made by _bind) whose byte wakes the poll for commands
        self._handlers: dict[str, Callable[[bytes, p.Message, float, list[_Out]], None]] = {
            command: getattr(self, f"_on_{command.lower()}")
            for command in p.SCHEMAS["scheduler"]
            if command != p.READY
        }
        self._next_heartbeat = 0.0
        self._next_prune = 0.0
        self._garbage_logged = 0.0
        self.recovery: Any = None
        self._lock_file: Any = None

    # ================================================================== lifecycle
    def start(self) -> Scheduler:
        """Open the journal, recover unfinished tasks, bind the sockets, start the loop thread."""
        if self._thread is not None:
            raise RuntimeError("scheduler already started")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_data_dir()
        try:
            self.store = TaskStore(self.data_dir / JOURNAL_FILE, synchronous=self.dcfg.journal_synchronous)
        except BaseException:
            self._unlock_data_dir()
            raise
        try:
            self.recovery = self.store.recover()
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
        self._refresh_snapshot(time.time())
        self._thread = threading.Thread(target=self._run, name="lama-cleaner-scheduler", daemon=True)
        self._thread.start()
        return self

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
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _bind(self) -> None:
        self._ctx = zmq.Context()
        self._control = self._router()
        self._control.bind(self.bind)
        control_ep = self._control.getsockopt_string(zmq.LAST_ENDPOINT)
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
        self.endpoints = {"control": control_ep, "queues": queue_eps}
        log.info("scheduler listening: control %s, queues %s", control_ep, queue_eps)

    def _router(self) -> zmq.Socket:
        assert self._ctx is not None
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unknown identity -> error, not a silent drop
        sock.setsockopt(zmq.LINGER, 200)
        sock.setsockopt(zmq.RCVHWM, 10000)
        sock.setsockopt(zmq.SNDHWM, 10000)
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

            def refresh(now: float, outbox: list[_Out]) -> None:
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

    def drain_node(self, node_id: str) -> None:
        """Tell a node to stop taking work after its current task (it gets no more credit)."""

        def command(now: float, outbox: list[_Out]) -> None:
            node = self.nodes.get(node_id)
            if node is None or node.offline:
                return
            node.draining = True
            node.ready.clear()
            self._send_ctrl(outbox, node.ctrl_ident, p.DRAIN, {})

        self._commands.put(command)
        self._wake()

    # ================================================================== loop
    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                timeout = self._poll_timeout(time.time())
                ready = dict(self._poller.poll(int(timeout * 1000)))
                inbound: list[tuple[zmq.Socket, list[bytes]]] = []
                for sock in ready:
                    if sock == self._wake_r:
                        self._drain_wake_pipe()
                        continue
                    for _ in range(MAX_MESSAGES_PER_ROUND):
                        try:
                            inbound.append((sock, sock.recv_multipart(zmq.NOBLOCK, copy=True)))
                        except zmq.Again:
                            break
                self._round(inbound, time.time())
        except Exception:  # pragma: no cover - a bug in the loop itself; logged, then the loop ends
            log.exception("scheduler loop crashed")
            raise
        finally:
            self._close_sockets()
            if self.store is not None:
                self.store.close()
            self._unlock_data_dir()
            log.info("scheduler stopped")

    def _drain_wake_pipe(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _poll_timeout(self, now: float) -> float:
        timeout = min(MAX_POLL_S, max(0.0, self._next_heartbeat - now))
        assert self.store is not None
        if any(n.has_credit() for n in self.nodes.values()):
            due = self.store.live.next_wakeup(now)
            if due is not None:
                timeout = min(timeout, max(0.0, due - now))
        return timeout

    def _round(self, inbound: list[tuple[zmq.Socket, list[bytes]]], now: float) -> None:
        """Handle a burst of messages, timers and dispatch in one transaction, then send."""
        assert self.store is not None
        outbox: list[_Out] = []
        try:
            self._round_in_transaction(inbound, now, outbox)
        except Exception:
            # The commit failed (disk full, journal locked by another process...): nothing of this
            # round is durable, so nothing of it may be announced. Producers re-send after their
            # timeout (SUBMIT is idempotent) and node state converges through heartbeats.
            self._events.clear()
            self._count("journal_errors")
            log.exception("journal transaction failed; the replies of this round were dropped")
            return
        self._flush(outbox)
        self._publish_events()

    def _round_in_transaction(
        self, inbound: list[tuple[zmq.Socket, list[bytes]]], now: float, outbox: list[_Out]
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
                try:
                    with self.store.savepoint():
                        self._handle(sock, frames, now, outbox)
                except Exception as exc:
                    del outbox[mark:]
                    del self._events[events_mark:]
                    self._count("handler_errors")
                    log.exception("error while handling a message; it was dropped")
                    self._internal_error(sock, frames, exc, outbox)
            self._timers(now, outbox)
            self._dispatch(now, outbox)

    def _flush(self, outbox: list[_Out]) -> None:
        failures: list[Callable[[], None]] = []
        for out in outbox:
            try:
                out.socket.send_multipart([out.ident, *out.frames], zmq.NOBLOCK)
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
    def _handle(self, sock: zmq.Socket, frames: list[bytes], now: float, outbox: list[_Out]) -> None:
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
        self, sock: zmq.Socket, ident: bytes, body: list[bytes], exc: p.ProtocolError, outbox: list[_Out]
    ) -> None:
        self._garbage(str(exc))
        if exc.code == p.ERR_VERSION:
            outbox.append(_Out(sock, ident, p.error_frames(p.ERR_VERSION, str(exc))))
            return
        # A producer waiting on a req_id gets an answer instead of a timeout, when we can tell it.
        req_id = _peek_req_id(body)
        if req_id is not None and sock is self._control:
            self._send_ctrl(
                outbox,
                ident,
                p.REJECTED,
                {"req_id": req_id, "status": 400, "code": "malformed", "message": str(exc), "retry_after": None},
            )

    def _internal_error(self, sock: zmq.Socket, frames: list[bytes], exc: Exception, outbox: list[_Out]) -> None:
        """A producer whose request hit a scheduler bug gets a 500 now rather than a timeout."""
        if sock is not self._control or len(frames) < 2:
            return
        req_id = _peek_req_id(frames[1:])
        if req_id is not None:
            message = f"Scheduler error: {type(exc).__name__}: {exc}"
            self._reject(outbox, frames[0], req_id, 500, "internal_error", message)

    def _garbage(self, why: str) -> None:
        self._count("garbage_frames")
        now = time.time()
        if now - self._garbage_logged > 1.0:  # rate-limited: a flood of junk must not flood the log
            self._garbage_logged = now
            log.warning("dropped a malformed message: %s", why)

    # ---------------------------------------------------------------- node messages
    def _node_for(self, ident: bytes, msg: p.Message, outbox: list[_Out], now: float) -> NodeEntry | None:
        """The registered, online node that sent ``msg``; otherwise answer UNKNOWN and return None."""
        node = self.nodes.get(msg.header["node_id"])
        if node is None or node.offline:
            self._send_ctrl(outbox, ident, p.UNKNOWN, {"reason": "node is not registered; send HELLO"})
            return None
        if node.ctrl_ident != ident:
            self._ctrl_owner.pop(node.ctrl_ident, None)
            node.ctrl_ident = ident
            self._ctrl_owner[ident] = node.node_id
        node.last_seen = now
        return node

    def _on_hello(self, ident: bytes, msg: p.Message, now: float, outbox: list[_Out]) -> None:
        h = msg.header
        node_id = h["node_id"]
        caps = h["capabilities"]
        old = self.nodes.get(node_id)
        if old is not None and old.current_task:
            # The node restarted (or reconnected from scratch): whatever it was running is lost.
            self._lose_task(old, now, outbox, f"node {old.name} re-registered while running the task")
        if old is not None:
            self._ctrl_owner.pop(old.ctrl_ident, None)
        requested = caps.get("queues_requested") or h.get("queues_requested") or []
        if not isinstance(requested, list):
            requested = []
        allowed, rejected = allowed_queues(caps, requested, self.dcfg)
        node = NodeEntry(
            node_id=node_id,
            name=str(h.get("name") or node_id),
            ctrl_ident=ident,
            capabilities=caps,
            allowed=allowed,
            rejected=rejected,
            version=h.get("version"),
            pid=h.get("pid") if isinstance(h.get("pid"), int) else None,
            loaded_model=h.get("loaded_model"),
            last_seen=now,
            registered_at=now,
            idle_since=now,
        )
        self.nodes[node_id] = node
        self._ctrl_owner[ident] = node_id
        queues = {q: self.endpoints["queues"][q] for q in self.queues if q in allowed}
        self._send_ctrl(
            outbox,
            ident,
            p.WELCOME,
            {
                "node_id": node_id,
                "queues": queues,
                "rejected": rejected,
                "heartbeat_interval_s": self.interval,
                "liveness": self.liveness,
            },
        )
        log.info("node %s (%s) joined: queues %s, rejected %s", node.name, node_id, sorted(allowed), rejected)

    def _on_heartbeat(self, ident: bytes, msg: p.Message, now: float, outbox: list[_Out]) -> None:
        node = self._node_for(ident, msg, outbox, now)
        if node is None:
            return
        h = msg.header
        if "loaded_model" in h and not node.current_task:
            # While it holds a task the node may still be loading the model we predicted at
            # dispatch; a heartbeat sent before the TASK arrived would undo that prediction.
            node.loaded_model = h.get("loaded_model")
        state = h.get("state")
        if state == p.NODE_DRAINING:
            node.draining = True
            node.ready.clear()
        elif state in (p.NODE_IDLE, p.NODE_BUSY) and node.draining and h.get("undrain"):
            node.draining = False
        if (
            state == p.NODE_IDLE
            and node.current_task
            and h.get("task_id") is None
            and now - node.dispatched_at > self.interval * self.liveness
        ):
            # The node says it is idle, long after we handed it a task: the TASK or its outcome
            # was lost (e.g. a connection was re-established). Retry it elsewhere.
            self._lose_task(node, now, outbox, f"node {node.name} reported idle without finishing the task")
            node.grant_implied_credit(now)

    def _on_ready(self, queue_name: str, ident: bytes, msg: p.Message, now: float) -> None:
        node = self.nodes.get(msg.header["node_id"])
        if node is None or node.offline:
            self._count("stale_messages")  # it will HELLO again after its control socket hears UNKNOWN
            return
        if queue_name not in node.allowed:
            self._count("stale_messages")
            return
        node.last_seen = now
        node.queue_idents[queue_name] = ident
        if node.current_task or node.draining:
            return  # credit sent before it got its task (or while draining): not a credit now
        if not node.ready:
            node.idle_since = now
        node.ready.add(queue_name)

    def _on_progress(self, ident: bytes, msg: p.Message, now: float, outbox: list[_Out]) -> None:
        node = self._node_for(ident, msg, outbox, now)
        if node is None:
            return
        h = msg.header
        rec = self._store().get(h["task_id"])
        if rec is None or rec.status != states.PROCESSING or rec.node_id != node.node_id:
            self._count("stale_messages")
            return
        if h["attempt"] != rec.dispatches:
            self._count("stale_messages")
            return
        percent = max(0.0, min(100.0, float(h["percent"])))
        step = h.get("step") if isinstance(h.get("step"), int) else None
        if percent >= 100.0 and step is None:
            return  # "done" without a step says nothing the RESULT right behind it will not say
        total = h.get("total_steps") if isinstance(h.get("total_steps"), int) else None
        self._store().set_progress(rec.id, percent, step, total)
        self._event(rec, progress=percent, step=step)

    def _on_result(self, ident: bytes, msg: p.Message, now: float, outbox: list[_Out]) -> None:
        h = msg.header
        store = self._store()
        node = self.nodes.get(h["node_id"])
        known = node is not None and not node.offline
        if known:
            self._node_for(ident, msg, outbox, now)
        else:
            # Keep the work of a node we lost track of, but make it register again.
            self._send_ctrl(outbox, ident, p.UNKNOWN, {"reason": "node is not registered; send HELLO"})
        blobs = msg.blob_map()
        task_id = h["task_id"]
        if set(blobs) != {"body"}:
            self._garbage(f"RESULT for {task_id} must carry exactly one blob named 'body'")
            return
        rec = store.get(task_id)
        if node is not None and _holds(node, task_id, h["attempt"]):
            node.tasks_done += 1
            node.grant_implied_credit(now)
        if rec is None:
            if store.is_expired(task_id):
                self._count("duplicates")
            else:
                self._garbage(f"RESULT for unknown task {task_id}")
            return
        if h["attempt"] > rec.dispatches:
            self._count("stale_messages")  # an attempt we never handed out
            return
        if rec.terminal:
            store.add_duplicate(task_id)
            self._count("duplicates")
            return
        holder = self.nodes.get(rec.node_id) if rec.node_id else None
        rec = store.complete(
            task_id,
            mimetype=h["mimetype"],
            headers={str(k): str(v) for k, v in h["headers"].items()},
            body=blobs["body"],
            node_id=h["node_id"],
            now=now,
        )
        self._count("completed")
        if holder is not None and holder.current_task == task_id and not _holds(holder, task_id, h["attempt"]):
            # First result wins; the other attempt is now wasted work: stop it.
            self._send_ctrl(outbox, holder.ctrl_ident, p.CANCEL, {"task_id": task_id, "attempt": rec.dispatches})
        self._event(rec)

    def _on_failed(self, ident: bytes, msg: p.Message, now: float, outbox: list[_Out]) -> None:
        h = msg.header
        node = self.nodes.get(h["node_id"])
        if node is None or node.offline:
            self._send_ctrl(outbox, ident, p.UNKNOWN, {"reason": "node is not registered; send HELLO"})
            return  # its task was already re-queued when it went offline
        self._node_for(ident, msg, outbox, now)
        task_id = h["task_id"]
        if _holds(node, task_id, h["attempt"]):
            node.grant_implied_credit(now)
        store = self._store()
        rec = store.get(task_id)
        if rec is None or rec.status != states.PROCESSING or rec.node_id != node.node_id:
            self._count("stale_messages")
            return
        if h["attempt"] != rec.dispatches:
            self._count("stale_messages")
            return
        error = str(h["error"]) or "task failed"
        trace = h.get("traceback") if isinstance(h.get("traceback"), str) else None
        status = h.get("status") if isinstance(h.get("status"), int) else None
        if not h["retryable"]:
            rec = store.fail(task_id, error=error, traceback=trace, status=status or 400, now=now)
            self._count("failed")
            self._event(rec)
            return
        self._retry_or_fail(rec, now, error, trace, status)

    def _on_cancelled(self, ident: bytes, msg: p.Message, now: float, outbox: list[_Out]) -> None:
        node = self._node_for(ident, msg, outbox, now)
        if node is None:
            return
        h = msg.header
        if _holds(node, h["task_id"], h["attempt"]):
            node.grant_implied_credit(now)
        rec = self._store().get(h["task_id"])
        if rec is not None and rec.status == states.PROCESSING and rec.node_id == node.node_id:
            # The node gave up on its own (e.g. draining with a deadline): run it again elsewhere.
            self._retry_or_fail(rec, now, f"node {node.name} cancelled the task", None, None)

    def _on_bye(self, ident: bytes, msg: p.Message, now: float, outbox: list[_Out]) -> None:
        node = self.nodes.get(msg.header["node_id"])
        if node is None:
            return
        reason = str(msg.header.get("reason") or "left")
        self._go_offline(node, now, outbox, f"node {node.name} left ({reason})")

    # ---------------------------------------------------------------- producer messages
    def _reply(self, outbox: list[_Out], ident: bytes, command: str, req_id: Any, header: dict[str, Any]) -> None:
        self._send_ctrl(outbox, ident, command, {"req_id": req_id, **header})

    def _reject(
        self,
        outbox: list[_Out],
        ident: bytes,
        req_id: Any,
        status: int,
        code: str,
        message: str,
        retry_after: int | None = None,
    ) -> None:
        self._reply(
            outbox,
            ident,
            p.REJECTED,
            req_id,
            {"status": status, "code": code, "message": message, "retry_after": retry_after},
        )

    def _on_submit(self, ident: bytes, msg: p.Message, now: float, outbox: list[_Out]) -> None:
        req_id = msg.header["req_id"]
        task = msg.header["task"]
        try:
            kind, name, form, submitter, key = _parse_submit(task)
        except ClientError as exc:
            self._count("rejected_bad_request")
            self._reject(outbox, ident, req_id, 400, exc.code, exc.message)
            return
        store = self._store()
        if key:
            existing = store.find_by_idempotency_key(key)
            if existing is not None:
                self._reply(outbox, ident, p.ACCEPTED, req_id, {"task": self._info(existing), "existing": True})
                return
        try:
            queue = route_task(
                kind, name, resource_class_of=self.resource_class_of, rules=self.dcfg.routes, queues=self.queues
            )
        except RoutingError as exc:
            self._count("rejected_bad_request")
            self._reject(outbox, ident, req_id, exc.status, exc.code, exc.message)
            return
        if store.count_queued() >= self.dcfg.max_queued:
            self._overloaded(outbox, ident, req_id, f"the scheduler holds {self.dcfg.max_queued} queued tasks")
            return
        if store.count_queued(queue) >= self.dcfg.max_queued_per_queue:
            limit = self.dcfg.max_queued_per_queue
            self._overloaded(outbox, ident, req_id, f"queue {queue!r} holds {limit} queued tasks")
            return
        rec, _ = store.create_task(
            kind=kind,
            name=name,
            queue=queue,
            max_attempts=policy_for(kind, self.dcfg.retry).max_attempts,
            form=form,
            files=msg.blob_map(),
            submitter=submitter,
            idempotency_key=key,
            now=now,
        )
        self._count("submitted")
        self._reply(outbox, ident, p.ACCEPTED, req_id, {"task": self._info(rec)})
        self._event(rec)

    def _overloaded(self, outbox: list[_Out], ident: bytes, req_id: Any, why: str) -> None:
        self._count("rejected_overloaded")
        retry_after = int(self.dcfg.retry_after_s)
        self._reject(outbox, ident, req_id, 503, "overloaded", f"Server is busy: {why}; retry later", retry_after)

    def _lookup(self, outbox: list[_Out], ident: bytes, req_id: Any, task_id: str) -> TaskRecord | None:
        rec = self._store().get(task_id)
        if rec is None:
            if self._store().is_expired(task_id):
                self._reject(outbox, ident, req_id, 410, "expired", f"Task {task_id} has expired")
            else:
                self._reject(outbox, ident, req_id, 404, "not_found", f"Task {task_id} not found")
        return rec

    def _on_get(self, ident: bytes, msg: p.Message, now: float, outbox: list[_Out]) -> None:
        rec = self._lookup(outbox, ident, msg.header["req_id"], msg.header["task_id"])
        if rec is not None:
            self._reply(outbox, ident, p.INFO, msg.header["req_id"], {"task": self._info(rec)})

    def _on_fetch(self, ident: bytes, msg: p.Message, now: float, outbox: list[_Out]) -> None:
        req_id = msg.header["req_id"]
        rec = self._lookup(outbox, ident, req_id, msg.header["task_id"])
        if rec is None:
            return
        if rec.status in (states.QUEUED, states.PROCESSING):
            self._reject(outbox, ident, req_id, 409, "not_finished", f"Task {rec.id} is {rec.status}")
        elif rec.status == states.CANCELLED:
            self._reject(outbox, ident, req_id, 409, "cancelled", "Task was cancelled")
        elif rec.status == states.FAILED:
            header = {
                "status": 500,
                "code": "task_failed",
                "message": rec.error or "task failed",
                "retry_after": None,
                "error_status": rec.error_status,
                "traceback": rec.traceback,
            }
            self._reply(outbox, ident, p.REJECTED, req_id, header)
        else:
            output = self._store().output(rec.id)
            if output is None:
                self._reject(outbox, ident, req_id, 410, "expired", f"The result of task {rec.id} has expired")
                return
            mimetype, headers, body = output
            frames = p.encode(
                p.OUTPUT, {"req_id": req_id, "mimetype": mimetype, "headers": headers, "blobs": ["body"]}, [body]
            )
            outbox.append(_Out(self._ctrl(), ident, frames))

    def _on_cancel(self, ident: bytes, msg: p.Message, now: float, outbox: list[_Out]) -> None:
        req_id = msg.header["req_id"]
        rec = self._lookup(outbox, ident, req_id, msg.header["task_id"])
        if rec is None:
            return
        if not rec.terminal:
            holder = self.nodes.get(rec.node_id) if rec.status == states.PROCESSING and rec.node_id else None
            attempt = rec.dispatches
            rec = self._store().cancel(rec.id, now)
            self._count("cancelled")
            if holder is not None and not holder.offline and holder.current_task == rec.id:
                # Cancelled for the client at once; the node stays busy until it confirms
                # (CANCELLED, then READY), and a late RESULT is discarded as a duplicate.
                self._send_ctrl(outbox, holder.ctrl_ident, p.CANCEL, {"task_id": rec.id, "attempt": attempt})
            self._event(rec)
        self._reply(outbox, ident, p.INFO, req_id, {"task": self._info(rec)})

    def _on_list(self, ident: bytes, msg: p.Message, now: float, outbox: list[_Out]) -> None:
        h = msg.header
        req_id = h["req_id"]
        status = h.get("status") or None
        limit, offset = h.get("limit", 50), h.get("offset", 0)
        if status is not None and status not in TASK_STATES:
            self._reject(outbox, ident, req_id, 400, "bad_request", f"Unknown status {status!r}")
            return
        if not _is_int(limit) or not _is_int(offset) or limit < 0 or offset < 0:
            self._reject(outbox, ident, req_id, 400, "bad_request", "limit and offset must be integers >= 0")
            return
        records, total = self._store().list(status, min(int(limit), 1000), int(offset))
        self._reply(outbox, ident, p.TASKS, req_id, {"tasks": [self._info(r) for r in records], "total": total})

    def _on_queues(self, ident: bytes, msg: p.Message, now: float, outbox: list[_Out]) -> None:
        self._reply(outbox, ident, p.STATS, msg.header["req_id"], {"queues": self._queue_stats()})

    def _on_nodes(self, ident: bytes, msg: p.Message, now: float, outbox: list[_Out]) -> None:
        nodes = [n.public() for n in sorted(self.nodes.values(), key=lambda n: n.registered_at)]
        self._reply(outbox, ident, p.STATS, msg.header["req_id"], {"nodes": nodes})

    def _on_watch(self, ident: bytes, msg: p.Message, now: float, outbox: list[_Out]) -> None:
        self._watchers[ident] = (str(msg.header["producer_id"]), now)
        self._on_ping(ident, msg, now, outbox)

    def _on_ping(self, ident: bytes, msg: p.Message, now: float, outbox: list[_Out]) -> None:
        """PONG (echoing ``req_id`` when the PING or WATCH carried one)."""
        req_id = msg.header.get("req_id")
        self._send_ctrl(outbox, ident, p.PONG, {"req_id": req_id} if req_id is not None else {})

    # ================================================================== decisions
    def _retry_or_fail(
        self, rec: TaskRecord, now: float, error: str, trace: str | None, status: int | None
    ) -> TaskRecord:
        """After a failed or lost attempt: back to queued with backoff, or failed for good."""
        store = self._store()
        not_before = next_retry(rec.attempts, policy_for(rec.kind, self.dcfg.retry), now)
        if not_before is None:
            message = error if rec.attempts <= 1 else f"{error} (after {rec.attempts} attempts)"
            rec = store.fail(rec.id, error=message, traceback=trace, status=status, now=now)
            self._count("failed")
        else:
            rec = store.retry(rec.id, not_before=not_before, error=error, traceback=trace)
            self._count("retries")
        self._event(rec)
        return rec

    def _lose_task(self, node: NodeEntry, now: float, outbox: list[_Out], why: str) -> None:
        """``node`` will not finish its task: re-queue it (attempt charged, backoff) or fail it."""
        task_id = node.current_task
        node.current_task = None
        node.current_attempt = None
        if task_id is None:
            return
        rec = self._store().get(task_id)
        if rec is None or rec.status != states.PROCESSING or rec.node_id != node.node_id:
            return  # already finished, cancelled, or re-dispatched elsewhere
        self._count("requeued_on_node_loss")
        log.warning("task %s: %s; retrying", task_id, why)
        self._retry_or_fail(rec, now, why, None, None)

    def _go_offline(self, node: NodeEntry, now: float, outbox: list[_Out], why: str) -> None:
        if node.offline:
            return
        node.offline = True
        node.offline_since = now
        node.ready.clear()
        node.queue_idents.clear()
        self._ctrl_owner.pop(node.ctrl_ident, None)
        log.warning("%s", why)
        self._lose_task(node, now, outbox, why)

    def _timers(self, now: float, outbox: list[_Out]) -> None:
        deadline = self.interval * self.liveness
        for node in list(self.nodes.values()):
            if node.offline:
                if now - node.offline_since > max(OFFLINE_FORGET_S, deadline * 10):
                    del self.nodes[node.node_id]
                continue
            if now - node.last_seen > deadline:
                self._go_offline(node, now, outbox, f"node {node.name} silent for {now - node.last_seen:.1f}s")
        for ident, (producer_id, seen) in list(self._watchers.items()):
            if now - seen > deadline:
                del self._watchers[ident]
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

    def _dispatch(self, now: float, outbox: list[_Out]) -> None:
        """Pair runnable tasks (oldest first) with idle nodes that hold credit; one task per node."""
        idle_nodes = {n.node_id: n for n in self.nodes.values() if n.has_credit()}
        if not idle_nodes:
            return
        queues = sorted({q for n in idle_nodes.values() for q in n.ready})
        store = self._store()
        views = [
            IdleNode(
                node_id=n.node_id,
                queues=frozenset(n.ready),
                idle_since=n.idle_since,
                loaded_model=n.loaded_model,
                models=_name_set(n.capabilities.get("models")),
                plugins=_name_set(n.capabilities.get("plugins")),
            )
            for n in idle_nodes.values()
        ]
        tasks = _candidates(store.live.runnable(now, queues), views)
        if not tasks:
            return
        for task, view in plan_dispatch(tasks, views):
            node = idle_nodes[view.node_id]
            ident = node.queue_idents.get(task.queue)
            if ident is None:  # pragma: no cover - credit implies a known identity
                continue
            rec = store.mark_processing(task.task_id, node.node_id, now)
            files = store.inputs(rec.id)
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
                _Out(
                    self._queue_socks[task.queue],
                    ident,
                    p.encode(p.TASK, header, list(files.values())),
                    on_fail=self._undelivered(node.node_id, rec.id),
                )
            )
            self._event(rec)

    def _undelivered(self, node_id: str, task_id: str) -> Callable[[], None]:
        def undo() -> None:
            # The node's queue socket vanished before the TASK left: the attempt never started.
            store = self._store()
            rec = store.get(task_id)
            node = self.nodes.get(node_id)
            if node is not None and node.current_task == task_id:
                node.current_task = None
                node.current_attempt = None
                node.ready.clear()
                node.queue_idents.clear()
            if rec is not None and rec.status == states.PROCESSING and rec.node_id == node_id:
                rec = store.undo_dispatch(task_id)
                self._event(rec)

        return undo

    # ================================================================== helpers
    def _store(self) -> TaskStore:
        assert self.store is not None
        return self.store

    def _ctrl(self) -> zmq.Socket:
        assert self._control is not None
        return self._control

    def _send_ctrl(self, outbox: list[_Out], ident: bytes, command: str, header: dict[str, Any]) -> None:
        outbox.append(_Out(self._ctrl(), ident, p.encode(command, header)))

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def _info(self, rec: TaskRecord) -> dict[str, Any]:
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
            "position": self._store().live.position(rec) if rec.status == states.QUEUED else None,
            "error": rec.error,
        }

    def _event(self, rec: TaskRecord, *, progress: float | None = None, step: int | None = None) -> None:
        """Queue an EVENT (the fields of :class:`TaskEvent`, in its order) for after the commit."""
        if not self._watchers and self.on_event is None:
            return  # nobody listens: skip building it
        status = rec.status
        self._events.append(
            {
                "task_id": rec.id,
                "status": status,
                "kind": rec.kind,
                "name": rec.name,
                "queue": rec.queue,
                "node": rec.node_id,
                "progress": progress if progress is not None else rec.progress,
                "step": step,
                "error": rec.error if status in _STATES_WITH_ERROR else None,
                "submitter": rec.submitter,
                "attempts": rec.attempts,
                "at": time.time(),
            }
        )

    def _publish_events(self) -> None:
        """Send the round's events (after commit) to watching producers and the in-process observer."""
        events, self._events = self._events, []
        if not events:
            return
        if self._watchers and self._control is not None:
            send = self._control.send_multipart
            for event in events:
                frames = p.encode(p.EVENT, event)
                for ident in list(self._watchers):
                    try:
                        send([ident, *frames], zmq.NOBLOCK)
                    except zmq.ZMQError:
                        self._watchers.pop(ident, None)  # gone or not reading: it must WATCH again
        if self.on_event is not None:
            for event in events:
                try:
                    self.on_event(TaskEvent(**event))
                except Exception:
                    log.exception("on_event observer failed")

    def _queue_stats(self) -> list[dict[str, Any]]:
        live = self._store().live
        result = []
        for name in self.queues:
            per_state = dict.fromkeys(p.NODE_STATES, 0)
            for node in self.nodes.values():
                if name in node.allowed:
                    per_state[node.state] += 1
            result.append(
                {
                    "name": name,
                    "endpoint": self.endpoints.get("queues", {}).get(name),
                    "queued": live.queued_count(name),
                    "processing": live.processing_count(name),
                    "nodes": per_state,
                }
            )
        return result

    def _refresh_snapshot(self, now: float) -> None:
        """Compute what ``stats()`` reports about tasks, queues and nodes (on request only: the
        per-state task counts scan the journal)."""
        self._snapshot_at = now
        store = self._store()
        node_states = dict.fromkeys(p.NODE_STATES, 0)
        for node in self.nodes.values():
            node_states[node.state] += 1
        snap = {
            "tasks": store.status_counts(),
            "queues": {q["name"]: q for q in self._queue_stats()},
            "nodes": node_states,
            "node_list": [n.public() for n in self.nodes.values()],
            "watchers": len(self._watchers),
            "endpoints": self.endpoints,
        }
        with self._lock:
            self._snapshot = snap


_STATES_WITH_ERROR = frozenset({states.FAILED, states.CANCELLED, states.QUEUED})


def _candidates(runnable: Iterator[TaskRecord], idle: list[IdleNode]) -> list[WaitingTask]:
    """The oldest runnable tasks that some idle node can run, bounded by the idle credit.

    Enough for :func:`plan_dispatch` to give every idle node a task (plus a small look-ahead for
    its affinity choice), without building a view of every queued task each round. Tasks no idle
    node can run are skipped (they do not use up the window), up to a scan limit.
    """
    want = len(idle) + CANDIDATE_LOOKAHEAD
    chosen: list[WaitingTask] = []
    for scanned, rec in enumerate(runnable):
        if scanned >= CANDIDATE_SCAN_LIMIT:
            break
        task = WaitingTask(rec.id, rec.kind, rec.name, rec.queue)
        if any(node_can_run(n, task) for n in idle):
            chosen.append(task)
            if len(chosen) >= want:
                break
    return chosen


def _holds(node: NodeEntry, task_id: str, attempt: int) -> bool:
    """Whether ``node`` is running exactly this attempt of the task (so its outcome frees the node)."""
    return node.current_task == task_id and node.current_attempt == attempt


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _name_set(value: Any) -> frozenset[str] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    return None


def _peek_req_id(body: list[bytes]) -> Any:
    """The req_id of a message that failed validation, if its header is readable JSON."""
    if len(body) < 3:
        return None
    try:
        header = json.loads(bytes(body[2]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if isinstance(header, dict) and isinstance(header.get("req_id"), (str, int)):
        return header["req_id"]
    return None


def _parse_submit(task: dict[str, Any]) -> tuple[str, str, dict[str, str], str | None, str | None]:
    """Validate SUBMIT's ``task`` object: (kind, name, form, submitter, idempotency_key)."""
    kind = task.get("kind")
    name = task.get("name")
    if kind not in TASK_KINDS:
        raise ClientError(f"task kind must be one of {', '.join(TASK_KINDS)}, got {kind!r}")
    if not isinstance(name, str) or not name:
        raise ClientError("task name must be a non-empty string")
    form = task.get("form") or {}
    if not isinstance(form, dict):
        raise ClientError("task form must be an object of strings")
    clean: dict[str, str] = {}
    for key, value in form.items():
        if isinstance(value, (dict, list)):
            raise ClientError(f"form field {key!r} must be a string")
        clean[str(key)] = "" if value is None else str(value)
    submitter = task.get("submitter")
    key = task.get("idempotency_key")
    if submitter is not None and not isinstance(submitter, str):
        raise ClientError("submitter must be a string")
    if key is not None and (not isinstance(key, str) or len(key) > 256):
        raise ClientError("idempotency_key must be a string of at most 256 characters")
    return kind, name, clean, submitter, key or None
