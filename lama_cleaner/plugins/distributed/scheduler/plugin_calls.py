"""``CALL`` requests: a producer asks a plugin in the scheduler's process (the ``scheduler_call`` hook).

Plugin code never runs on the scheduler's loop thread: the loop hands each CALL to a small pool of
worker threads, which run the hook, encode the reply (``ANSWER``, or ``REJECTED`` 404 ``unknown_call``
when no plugin answers the name, 500 ``call_failed`` when the plugin raised or returned something that
is not a JSON object) and give the frames back to the loop to send, since only it may use the socket.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..wire import protocol as p
from .handle import SchedulerCallError, call_plugins

log = logging.getLogger(__name__)

CALL_WORKERS = 2
"""Threads answering CALLs; more calls wait their turn (a slow plugin delays other calls, not dispatch)."""


class PluginCalls:
    """Runs ``scheduler_call`` for CALL requests off the loop; ``deliver(ident, frames)`` hands each
    reply back to the loop (it must be safe from any thread)."""

    def __init__(self, pm: Any, config: Any, deliver: Callable[[bytes, list[bytes]], None]) -> None:
        self._pm = pm
        self._config = config
        self._deliver = deliver
        self._pool: ThreadPoolExecutor | None = None

    def submit(self, ident: bytes, req_id: Any, name: str, payload: dict[str, Any]) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(CALL_WORKERS, thread_name_prefix="scheduler-call")
        self._pool.submit(self._answer, ident, req_id, name, payload)

    def close(self) -> None:
        """Forget calls not started yet; one that runs finishes on its own (its reply goes nowhere)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _answer(self, ident: bytes, req_id: Any, name: str, payload: dict[str, Any]) -> None:
        try:
            self._deliver(ident, answer_frames(self._pm, self._config, req_id, name, payload))
        except Exception:  # noqa: BLE001 - a worker must not die silently
            log.exception("answering scheduler call %r failed", name)


def answer_frames(pm: Any, config: Any, req_id: Any, name: str, payload: dict[str, Any]) -> list[bytes]:
    """The reply to one CALL: ``ANSWER {req_id, result}`` or a ``REJECTED`` saying why not."""
    try:
        result = call_plugins(pm, config, name, payload)
        return p.encode(p.ANSWER, {"req_id": req_id, "result": result})
    except LookupError as exc:
        return _rejected(req_id, 404, "unknown_call", str(exc))
    except SchedulerCallError as exc:
        log.warning("%s", exc)
        return _rejected(req_id, 500, "call_failed", str(exc))
    except p.ProtocolError as exc:
        return _rejected(req_id, 500, "call_failed", f"scheduler call {name!r} answered what JSON cannot carry: {exc}")


def _rejected(req_id: Any, status: int, code: str, message: str) -> list[bytes]:
    header = {"req_id": req_id, "status": status, "code": code, "message": message, "retry_after": None}
    return p.encode(p.REJECTED, header)
