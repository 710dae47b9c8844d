"""``SchedulerClient``: the web server's thread-safe connection to the scheduler.

ZeroMQ sockets must not be shared between threads, and Flask serves each request on its own
thread. So one I/O thread owns the single DEALER socket; callers hand it requests through a
``queue.Queue`` and wake it with a byte on an ``os.pipe`` (which the zmq Poller watches next to the
socket). Replies are matched to requests by ``req_id`` and delivered through a small future.

Keepalive and recovery: the client sends WATCH (subscribe to events) every heartbeat interval and
the scheduler answers PONG. WATCH rather than PING is the keepalive because it is idempotent and
re-subscribes by itself: a scheduler that restarted on the same address (ZeroMQ reconnects the TCP
connection transparently) or dropped us as a watcher starts sending events again within one
interval. When the scheduler has been silent for ``interval * liveness`` the socket is recreated.
Every request still waiting for its reply is re-sent after such a silence window (Lazy Pirate);
all requests are idempotent (SUBMIT carries an idempotency key), and a duplicate reply is ignored.
A request without a reply before its own timeout fails with ``SchedulerUnavailable`` (HTTP 503,
with Retry-After). An ``ERROR`` naming a request's ``req_id`` (the scheduler refused it, e.g. it speaks
another protocol version during a rolling upgrade) fails that request at once with
``SchedulerError``; ERROR is read under any ``LC<n>`` signature for exactly that case.

Closing. :meth:`SchedulerClient.close` may be called from several threads at once (shutdown racing
an embedded scheduler's crash handler): closers are serialised, the wake-up pipe is closed exactly
once and only after the I/O thread has ended (a closed fd number can be reused by another thread's
file at once), and the return value says whether the socket is really closed, which is what an
embedding scheduler must know before it terminates the shared ZeroMQ context.

Events. WATCH says ``batch_events: true``, so the scheduler sends all the events of one of its rounds
as a single EVENTS message (one receive and one JSON decode instead of one per event); a round with
one event still comes as a plain EVENT. Either way ``on_event`` sees one header per event, in order.

Result push. A SUBMIT whose header has ``want_result: true`` makes the scheduler send this
connection a DONE (the result body, or the error) when the task finishes. The I/O thread opens a
:class:`~.result_slots.ResultSlot` for the task when it handles the ACCEPTED, before the caller even
sees the task id, so a DONE that arrives right behind the ACCEPTED is never lost, and it also notes
there the task's terminal EVENT and wakes the slot after a reconnect or at close. The caller waits on
the slot and must :meth:`SchedulerClient.release_result` it. A DONE is best effort (after a reconnect
the new socket gets none for tasks submitted on the old one), so callers fall back to FETCH;
``task_run.run_task`` is that whole wait for one blocking request.

Hot path. Per request the caller thread does one ``queue.put`` and at most one wake-up write; the
I/O thread polls one long-lived Poller and scans pending deadlines at most every
``_SCAN_INTERVAL_S``, not on every message.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq

from ....errors import LamaCleanerError, Overloaded
from ....tasks import TERMINAL_STATES
from ..security.curve import ClientKeys, secure_client
from ..wire import protocol as p
from ..wire.liveness import Liveness
from ..wire.send import send_nowait
from .result_slots import ResultSlot, ResultSlots

log = logging.getLogger(__name__)

DEFAULT_REQUEST_TIMEOUT_S = 15.0
DEFAULT_RESULT_TTL_S = 3600.0
"""A result slot nobody released is dropped this long after it was opened (a caller that crashed)."""
_SCAN_INTERVAL_S = 0.05
"""How often the I/O thread checks pending requests for deadlines and re-sends (both are seconds)."""
DEFAULT_CLOSE_TIMEOUT_S = 5.0
"""How long :meth:`SchedulerClient.close` waits for the I/O thread to end."""


class SchedulerUnavailable(Overloaded):
    """The scheduler did not answer in time (down, restarting, or unreachable)."""

    code = "scheduler_unavailable"


class SchedulerError(LamaCleanerError):
    """The scheduler answered a request with ``ERROR``: it refused it outright (``error_code``
    ``version``: it speaks another protocol version). Not retried: the same request would get the
    same answer."""

    status = 502
    code = "scheduler_error"

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code


@dataclass
class PendingRequest:
    """One request in flight: what :meth:`SchedulerClient.send_request` returns, to be passed to
    :meth:`SchedulerClient.wait_reply`. ``done_event`` is the result slot's event of a SUBMIT with
    ``want_result`` (set when its DONE arrives). The other fields belong to the client's I/O thread."""

    req_id: str
    command: str
    header: dict[str, Any]
    blobs: list[bytes]
    deadline: float
    sent_at: float = 0.0
    unsent: bool = False
    """Waiting in ``SchedulerClient._unsent`` (refused by the socket), not yet on the wire."""
    done: threading.Event = field(default_factory=threading.Event)
    reply: p.Message | None = None
    error: BaseException | None = None
    done_event: threading.Event | None = None
    """For a SUBMIT with ``want_result``: the event of the result slot opened at ACCEPTED."""


class SchedulerClient:
    """Request/reply and event subscription over one DEALER, safe to call from any thread.

    ``on_event(header)`` is called on the I/O thread for every event (each EVENT, and each item of an
    EVENTS, in order); it must not block for long.
    ``on_reconnect()`` is called after a reconnect, so waiters can re-check what they may have missed
    (the client's own result slots are woken for that without it).
    """

    def __init__(
        self,
        endpoint: str,
        config: Any,
        *,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        on_reconnect: Callable[[], None] | None = None,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        result_ttl_s: float = DEFAULT_RESULT_TTL_S,
        context: zmq.Context | None = None,
    ) -> None:
        dist = config.distributed
        self.endpoint = endpoint
        self.producer_id = uuid.uuid4().hex
        self.request_timeout_s = request_timeout_s
        self.retry_after = int(dist.retry_after_s)
        self.on_event = on_event
        self.on_reconnect = on_reconnect
        self._liveness = Liveness(dist.heartbeat_interval_s, dist.heartbeat_liveness)
        self._own_ctx = context is None
        """A context passed in (an embedded scheduler's, for its ``inproc://`` endpoint) belongs to
        its owner, who terminates it; this client only closes its own socket in it."""
        self._ctx = zmq.Context() if context is None else context
        self._dist = dist
        self._curve = None if endpoint.startswith("inproc://") else ClientKeys.from_config(dist)
        """This web server's CURVE keys for a scheduler over TCP (None: inproc, or plaintext)."""
        self._inbox: queue.Queue[PendingRequest | None] = queue.Queue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._fd_lock = threading.Lock()
        """Guards the pipe fds against being closed (and their numbers reused) while a caller writes."""
        self._close_lock = threading.Lock()
        """Serialises :meth:`close`: one closer joins and releases; the others wait and see the outcome."""
        self._pending: dict[str, PendingRequest] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self._connected_once = threading.Event()
        self._sock: zmq.Socket | None = None
        self._poller: zmq.Poller | None = None
        self._poll_flags = 0
        self._unsent: deque[PendingRequest] = deque()
        """Requests the socket refused (its high-water mark of 1000 queued messages reached during a
        burst, or no scheduler connected yet), in order. They are sent as soon as the socket polls
        writable; dropping them instead left them to the liveness-window re-send, seconds later."""
        self._awake = False
        """True while a wake-up byte is in the pipe and not yet handled: later callers skip the write."""
        self._results = ResultSlots(result_ttl_s)
        self.result_ttl_s = self._results.ttl_s
        self._io_ended = False
        """Set by the I/O thread as it ends (normally after :meth:`close`; else it crashed)."""
        self._thread = threading.Thread(target=self._loop, name="lama-scheduler-client", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public
    def request(
        self,
        command: str,
        header: dict[str, Any] | None = None,
        blobs: list[bytes] | None = None,
        *,
        timeout: float | None = None,
        done_event: threading.Event | None = None,
    ) -> p.Message:
        """Send one request and wait for its reply (any of the producer-bound reply commands).

        A SUBMIT with ``want_result: true`` in ``header`` also opens a result slot for the task when
        it is ACCEPTED (see :meth:`result`); ``done_event`` is set when its DONE arrives (a new event
        is made when none is given).
        """
        return self.wait_reply(self.send_request(command, header, blobs, timeout=timeout, done_event=done_event))

    def send_request(
        self,
        command: str,
        header: dict[str, Any] | None = None,
        blobs: list[bytes] | None = None,
        *,
        timeout: float | None = None,
        done_event: threading.Event | None = None,
    ) -> PendingRequest:
        """Queue one request without waiting; :meth:`wait_reply` waits for (or re-raises) its reply.

        For a caller with many requests at once (a batch job): queueing them all before waiting lets
        the I/O thread send them in one burst and the scheduler journal them in a few transactions,
        instead of one thread and one hand-off per request. The deadline (``timeout``) starts now.
        """
        if self._closed:
            raise SchedulerUnavailable("Scheduler client is closed", self.retry_after)
        req_id = f"{self.producer_id[:8]}-{next(self._ids)}"
        head = dict(header or {})
        head["req_id"] = req_id
        wait = self.request_timeout_s if timeout is None else timeout
        pending = PendingRequest(req_id, command, head, list(blobs or []), time.monotonic() + wait)
        if command == p.SUBMIT and head.get("want_result") is True:
            pending.done_event = done_event or threading.Event()
        self._inbox.put(pending)
        if not self._awake:
            self._awake = True
            self._wake()
        return pending

    def wait_reply(self, pending: PendingRequest) -> p.Message:
        """The reply of a request from :meth:`send_request`; raises its error (``SchedulerUnavailable``
        once its deadline passed without a reply)."""
        if not pending.done.wait(max(0.0, pending.deadline - time.monotonic()) + 1.0):
            pending.error = SchedulerUnavailable(
                f"Scheduler at {self.endpoint} did not answer in time", self.retry_after
            )
        if pending.error is not None:
            raise pending.error
        assert pending.reply is not None
        return pending.reply

    def result(self, task_id: str) -> p.Message | None:
        """The DONE of a task submitted with ``want_result`` if it has arrived, else None."""
        slot = self._results.get(task_id)
        return slot.message if slot is not None else None

    def result_slot(self, task_id: str) -> ResultSlot | None:
        """The open slot of a task submitted with ``want_result`` (its DONE, its terminal status)."""
        return self._results.get(task_id)

    def has_result_slot(self, task_id: str) -> bool:
        """True while a DONE for ``task_id`` can still land here (opened at ACCEPTED, not released)."""
        return task_id in self._results

    def release_result(self, task_id: str) -> None:
        """Forget the result slot of ``task_id`` (and the body it may hold). Safe to call twice."""
        self._results.release(task_id)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (or the I/O thread ended): nothing will be answered."""
        return self._closed or self._io_ended

    def close(self, timeout: float = DEFAULT_CLOSE_TIMEOUT_S) -> bool:
        """Stop the I/O thread (failing requests still in flight); True once it has ended, so its
        socket is closed. Idempotent and safe from any thread; concurrent callers are serialised.

        If the thread does not end within ``timeout`` (a listener blocking it) the pipe stays open,
        since the thread still polls it, and False is returned; a later call may still succeed."""
        with self._close_lock:
            if not self._closed:
                self._closed = True
                self._inbox.put(None)
                self._wake()
                self._results.wake_all()  # a caller waiting for a task's end sees the client closed
            if threading.current_thread() is not self._thread:
                self._thread.join(timeout)
            stopped = not self._thread.is_alive()
            if stopped:
                self._close_pipe()
            return stopped

    def _close_pipe(self) -> None:
        """Close both pipe fds exactly once (only after the I/O thread, which polls them, has ended)."""
        with self._fd_lock:
            fds, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), -1, -1
        for fd in fds:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass

    # ------------------------------------------------------------------ I/O thread
    def _wake(self) -> None:
        # Under the fd lock: a closer must not close the fd (and let its number be reused for
        # another file) between reading ``_wake_w`` and writing to it.
        with self._fd_lock:
            if self._wake_w < 0:
                return  # closed
            try:
                os.write(self._wake_w, b"\0")
            except (BlockingIOError, OSError):
                pass  # pipe full (already awake)

    def _connect(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
        sock = self._ctx.socket(zmq.DEALER)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            secure_client(sock, self._curve, self._dist)
            sock.connect(self.endpoint)
        except BaseException:
            sock.close(0)  # not ours yet: left open, the context's term() at close would wait for ever
            raise
        self._sock = sock
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        self._poller = poller
        self._poll_flags = zmq.POLLIN
        self._liveness.reset()
        self._watch()
        for pending in self._unsent:
            pending.unsent = False
        self._unsent.clear()  # every pending request is sent (or queued) again, in order, below
        for pending in self._pending.values():
            self._send_request(pending)

    def _watch(self) -> None:
        """Subscribe (and keep alive); ``batch_events`` because :meth:`_dispatch` handles EVENTS."""
        self._send(p.encode(p.WATCH, {"producer_id": self.producer_id, "batch_events": True}))

    def _send(self, frames: list[bytes]) -> bool:
        """Send without blocking; False if the socket refused (a WATCH is simply sent again later)."""
        assert self._sock is not None
        try:
            send_nowait(self._sock, frames)
        except zmq.Again:
            return False
        return True

    def _send_request(self, pending: PendingRequest) -> None:
        """Send a request now, or queue it behind the ones the socket already refused."""
        if self._unsent or not self._transmit(pending):
            pending.unsent = True
            self._unsent.append(pending)

    def _transmit(self, pending: PendingRequest) -> bool:
        """Encode and send one request; False if the socket refused it."""
        try:
            if pending.blobs:
                frames = p.encode(pending.command, pending.header, pending.blobs)
            else:
                frames = p.encode(pending.command, pending.header)
        except p.ProtocolError as exc:
            self._complete(pending, error=exc)
            return True
        if not self._send(frames):
            return False
        pending.sent_at = time.monotonic()
        return True

    def _flush_unsent(self) -> None:
        """Send queued requests in order until the socket refuses again (it polled writable)."""
        while self._unsent:
            pending = self._unsent[0]
            if pending.req_id in self._pending and not self._transmit(pending):
                return
            pending.unsent = False
            self._unsent.popleft()

    def _complete(
        self, pending: PendingRequest, reply: p.Message | None = None, error: BaseException | None = None
    ) -> None:
        self._pending.pop(pending.req_id, None)
        if reply is not None and pending.done_event is not None and reply.command == p.ACCEPTED:
            self._open_result_slot(reply, pending.done_event)
        pending.reply, pending.error = reply, error
        pending.done.set()

    def _open_result_slot(self, accepted: p.Message, event: threading.Event) -> None:
        """Runs on the I/O thread at ACCEPTED, before any DONE for the task can be read."""
        task = accepted.header.get("task")
        task_id = task.get("id") if isinstance(task, dict) else None
        if isinstance(task_id, str):
            self._results.open(task_id, event, time.monotonic())

    def _on_done(self, msg: p.Message) -> None:
        self._results.deliver(msg)  # dropped when nobody waits for it here, or a repeat

    def _scan(self, now: float) -> None:
        """Deadlines and re-sends of pending requests, and expiry of abandoned result slots."""
        window = self._liveness.interval_s * self._liveness.liveness
        for pending in list(self._pending.values()):
            if pending.deadline < now:
                self._complete(
                    pending,
                    error=SchedulerUnavailable(
                        f"Scheduler at {self.endpoint} did not answer in time", self.retry_after
                    ),
                )
            elif not pending.unsent and now - pending.sent_at > window:
                self._send_request(pending)  # lost to a restart the socket did not notice
        if self._results:
            self._results.expire(now)

    def _loop(self) -> None:
        self._connect()
        reconnected = False
        next_scan = 0.0
        try:
            while not self._closed:
                if self._liveness.due():
                    self._watch()
                if self._liveness.expired:
                    log.warning("scheduler %s silent; reconnecting", self.endpoint)
                    self._connect()
                    reconnected = True
                now = time.monotonic()
                if now >= next_scan:
                    next_scan = now + _SCAN_INTERVAL_S
                    self._scan(now)
                assert self._poller is not None and self._sock is not None
                flags = zmq.POLLIN | zmq.POLLOUT if self._unsent else zmq.POLLIN
                if flags != self._poll_flags:  # writable only matters while requests wait to go out
                    self._poller.register(self._sock, flags)
                    self._poll_flags = flags
                events = dict(self._poller.poll(max(1.0, min(100.0, self._liveness.time_to_next() * 1000))))
                if self._wake_r in events:
                    self._take_requests()
                sock_events = events.get(self._sock, 0)
                if sock_events & zmq.POLLOUT:
                    self._flush_unsent()
                if sock_events & zmq.POLLIN:
                    got_any = self._receive()
                    if got_any and reconnected:
                        reconnected = False
                        self._notify_reconnect()
        except Exception:  # pragma: no cover - a bug here must not hang every request forever
            log.exception("scheduler client I/O thread crashed")
        finally:
            self._io_ended = True
            self._results.wake_all()
            stopped = SchedulerUnavailable("Scheduler client stopped", self.retry_after)
            for pending in list(self._pending.values()):
                self._complete(pending, error=stopped)
            while True:  # requests queued but never taken: fail them now rather than at their deadline
                try:
                    queued = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if queued is not None:
                    self._complete(queued, error=stopped)
            if self._sock is not None:
                self._sock.close(0)
                self._sock = None
            if self._own_ctx:
                self._ctx.term()

    def _take_requests(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        # After emptying the pipe and before draining the inbox: a caller that still saw True put
        # its request before this point (so the drain below takes it); one that sees False writes
        # a byte that stays in the pipe. Resetting before emptying the pipe could eat a byte and
        # leave the flag True with nothing left to wake us.
        self._awake = False
        while True:
            try:
                pending = self._inbox.get_nowait()
            except queue.Empty:
                return
            if pending is None:
                self._closed = True
                return
            self._pending[pending.req_id] = pending
            self._send_request(pending)

    def _receive(self) -> bool:
        got = False
        assert self._sock is not None
        for _ in range(1000):
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            try:
                msg = p.decode(frames, receiver="producer")
            except p.ProtocolError as exc:
                foreign = p.decode_error_any_version(frames) if exc.code == p.ERR_VERSION else None
                if foreign is None:
                    log.warning("dropping malformed message from scheduler: %s", exc)
                    continue
                msg = foreign  # a scheduler of another version telling us why it refuses us
            got = True
            self._liveness.seen()
            self._dispatch(msg)
        return got

    def _dispatch(self, msg: p.Message) -> None:
        if msg.command == p.EVENT:
            self._on_event(msg.header)
            return
        if msg.command == p.EVENTS:
            for event in msg.header["events"]:  # each an EVENT header, checked by p.decode
                self._on_event(event)
            return
        if msg.command == p.PONG:
            return
        if msg.command == p.DONE:
            self._on_done(msg)
            return
        req_id = msg.header.get("req_id")
        pending = self._pending.get(str(req_id)) if req_id is not None else None
        if msg.command == p.ERROR:
            code, message = str(msg.header["code"]), str(msg.header["message"])
            if pending is None:  # about no request of ours (e.g. our WATCH), or one already answered
                log.error("scheduler error %s: %s", code, message)
            else:
                self._complete(pending, error=SchedulerError(code, message))
            return
        if pending is None:
            return  # a reply to a request that already timed out, or a duplicate after a re-send
        self._complete(pending, reply=msg)

    def _on_event(self, event: dict[str, Any]) -> None:
        """One event: to the listener first, then (a terminal one) to the task's result slot, so a
        waiter woken by it finds the event already delivered."""
        self._emit(event)
        if self._results and event["status"] in TERMINAL_STATES:
            self._results.mark_terminal(event["task_id"], event["status"])

    def _emit(self, event: dict[str, Any]) -> None:
        """Hand one event to the listener; its failure is logged, so it neither stops the I/O thread
        nor loses the events after it in the same EVENTS."""
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:  # noqa: BLE001 - a listener bug must not stop the I/O thread
            log.exception("event listener failed")

    def _notify_reconnect(self) -> None:
        self._results.wake_all()  # events of the outage may be lost: waiters look again
        if self.on_reconnect is None:
            return
        try:
            self.on_reconnect()
        except Exception:  # noqa: BLE001
            log.exception("reconnect listener failed")
