"""Owns the one loaded model: switching without gaps and serialising inference per model.

Fixes two upstream races (docs/compatibility.md#concurrency): a switch used to delete the old model
before building the new one (a failed build left the server without a model, and requests in between
got a 500); and concurrent requests shared one model object without a lock (IOPaint #481/#616). Here a
switch builds first and only then drops the old model, and callers run a model inside ``guard(model)``:
its per-model lock, or nothing for a model that declares itself ``thread_safe`` (cv2). A replaced model
is closed when the last call running on it ends, never under it (closing LaMa drops its weights, so a
request still running on it failed with ``'NoneType' object is not callable``).

An ``exclusive`` manager (a node's inference process running several tasks at once) goes further:
``running(name)`` holds one lock for the device across the model's load or switch and its call, so
two tasks never run models side by side (nor load a second model beside a running one) on one
device; their decoding and encoding, outside ``running``, still overlap. A task waiting for the device
sees its cancel while it waits (``TaskCancelled``), and :meth:`holds_device` tells the node's
inference process whether a task is inside its model call (only then can a cancel need a kill).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING

from ..errors import (
    OOM_MARKER,
    InferenceError,
    LamaCleanerError,
    ModelNotSupported,
    NotFound,
    OutOfMemory,
    TaskCancelled,
)
from ..tasks import CancelCheck, never_cancelled
from .device import torch_gc

if TYPE_CHECKING:
    from ..config import Config
    from .base import InpaintModel
    from .registry import ModelRegistry

log = logging.getLogger(__name__)

_CANCEL_POLL_S = 0.02
"""How often a task waiting for the device lock looks at its cancel flag: a cancelled task leaves the
queue for the device within this, instead of after the running model call (seconds on a GPU)."""


class ModelManager:
    """At most one resident model; ``get`` loads on demand (nodes), ``switch`` is ``POST /model``."""

    def __init__(self, registry: ModelRegistry, config: Config, device: str, *, exclusive: bool = False) -> None:
        self.registry = registry
        self.config = config
        self.device = device
        self._model: InpaintModel | None = None
        self._name: str | None = None
        self._switch_lock = threading.RLock()
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._device_lock = threading.Lock() if exclusive else None
        """Held across a whole model call (and the load before it) when ``exclusive``."""
        self._device_holder: int | None = None
        """The ident of the thread holding ``_device_lock``, None while it is free."""
        self._calls_lock = threading.Lock()
        """Guards the two dicts below. Taken after ``_switch_lock`` when both are needed, and alone when
        a call ends, so a call ending never waits for a switch that is still building its model."""
        self._calls: dict[int, int] = {}
        """Calls inside :meth:`running` on each model, by ``id(model)``."""
        self._replaced: dict[int, InpaintModel] = {}
        """Models no longer current whose calls have not all ended: the last one to end closes it."""

    # ------------------------------------------------------------------ state
    @property
    def name(self) -> str:
        """The current model: the loaded one, else the configured start-up model."""
        return self._name or self.config.model

    def loaded_model(self) -> str | None:
        return self._name

    def lock_for(self, name: str) -> threading.Lock:
        """The lock that serialises inference on model ``name`` (one per name, created on demand)."""
        with self._locks_guard:
            lock = self._locks.get(name)
            if lock is None:
                lock = self._locks[name] = threading.Lock()
            return lock

    def guard(self, model: InpaintModel) -> AbstractContextManager[object]:
        """What to hold while running ``model``: nothing for a ``thread_safe`` model, else its lock."""
        if getattr(model, "thread_safe", False):
            return nullcontext()
        return self.lock_for(model.name)

    @contextmanager
    def running(self, name: str | None = None, cancelled: CancelCheck = never_cancelled) -> Iterator[InpaintModel]:
        """The model ``name`` (default: the current one), held for one call: under the device lock
        when ``exclusive`` (taken before the model is fetched, so a switch waits for the running
        call), else fetched first and then guarded by :meth:`guard`.

        Raises ``TaskCancelled`` when ``cancelled()`` turns true while waiting for the device, or is
        true once it is taken (checked after the holder is recorded, so a canceller that read
        :meth:`holds_device` as False is sure the task stops here, never inside the model)."""
        lock = self._device_lock
        if lock is not None:
            while not lock.acquire(timeout=_CANCEL_POLL_S):
                if cancelled():
                    raise TaskCancelled()
            self._device_holder = threading.get_ident()
            try:
                if cancelled():
                    raise TaskCancelled()
                model = self._enter(name)
                try:
                    yield model
                finally:
                    self._leave(model)
            finally:
                self._device_holder = None
                lock.release()
            return
        model = self._enter(name)
        try:
            with self.guard(model):
                yield model
        finally:
            self._leave(model)

    def _enter(self, name: str | None) -> InpaintModel:
        """The model, counted as in use before a switch can replace it (switches hold ``_switch_lock``)."""
        with self._switch_lock:
            model = self.get(name)
            with self._calls_lock:
                self._calls[id(model)] = self._calls.get(id(model), 0) + 1
            return model

    def _leave(self, model: InpaintModel) -> None:
        """One call on ``model`` ended; the last call on a replaced model closes it."""
        with self._calls_lock:
            left = self._calls[id(model)] - 1
            if left:
                self._calls[id(model)] = left
                return
            del self._calls[id(model)]
            replaced = self._replaced.pop(id(model), None)
        if replaced is not None:
            self._dispose(replaced)

    def _retire(self, model: InpaintModel) -> InpaintModel | None:
        """Called under ``_switch_lock`` for a model that stopped being current: the model to close
        now, or None when calls still run on it (the last of them closes it)."""
        with self._calls_lock:
            if id(model) in self._calls:
                self._replaced[id(model)] = model
                return None
            return model

    @staticmethod
    def _dispose(model: InpaintModel) -> None:
        try:
            model.close()
        except Exception:  # pragma: no cover - best effort
            log.exception("closing model %s failed", model.name)
        torch_gc()

    def release_cache(self) -> None:
        """Free cached CUDA memory after a task, as upstream does after each request, unless a call is
        inside :meth:`running` (a pipelined node's next task, or a classic request waiting for the model):
        emptying the cache waits for the device while it holds the allocator, so that call would stall
        mid-forward, and its next forward would allocate everything afresh. The last call to end frees it."""
        with self._calls_lock:
            if self._calls:
                return
        torch_gc()

    def holds_device(self, thread_ident: int | None) -> bool:
        """Whether the thread ``thread_ident`` is inside a model call (or load) on an ``exclusive``
        manager; always False on a shared one."""
        return thread_ident is not None and self._device_holder == thread_ident

    def model_class(self, name: str) -> type[InpaintModel]:
        """The class for ``name``; unknown names give upstream's 403 ``<name> not implemented``."""
        try:
            return self.registry.get(name)
        except NotFound:
            raise ModelNotSupported(f"{name} not implemented") from None

    # ------------------------------------------------------------------ changes
    def _build(self, name: str) -> InpaintModel:
        cls = self.model_class(name)
        ok, reason = cls.is_available(self.config)
        if not ok:
            raise ModelNotSupported(reason or f"{name} is not available on this server")
        log.info("Loading model %s on %s", name, self.device)
        try:
            model = cls(self.device, self.config)
        except LamaCleanerError:
            raise
        except RuntimeError as exc:
            if OOM_MARKER in str(exc):
                raise OutOfMemory() from exc
            raise InferenceError(f"Failed to load model {name}: {exc}") from exc
        except Exception as exc:
            raise InferenceError(f"Failed to load model {name}: {exc}") from exc
        self._warm_up(name, model)
        return model

    @staticmethod
    def _warm_up(name: str, model: InpaintModel) -> None:
        """``model.warm_up()``, timed. A failure is logged, not raised: the model loaded, and a request
        that meets the same problem reports it with the request's own error handling."""
        started = time.perf_counter()
        try:
            model.warm_up()
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.warning("warming up model %s failed (its first request pays the start-up costs): %s", name, exc)
            return
        log.debug("model %s warmed up in %.2f s", name, time.perf_counter() - started)

    def switch(self, name: str) -> bool:
        """Make ``name`` the loaded model; False if it already is. On failure the old model stays."""
        with self._switch_lock:
            if name == self._name and self._model is not None:
                return False
            new_model = self._build(name)  # raises: nothing changed
            old, self._model, self._name = self._model, new_model, name
            to_close = self._retire(old) if old is not None else None
        del old
        if to_close is not None:
            self._dispose(to_close)
        log.info("Model switched to %s", name)
        return True

    def get(self, name: str | None = None) -> InpaintModel:
        """The model ``name`` (default: the current one), loading it (and dropping another) if needed."""
        with self._switch_lock:
            wanted = name or self.name
            if self._model is None or self._name != wanted:
                self.switch(wanted)
            assert self._model is not None
            return self._model

    def close(self) -> None:
        with self._switch_lock:
            old, self._model, self._name = self._model, None, None
            to_close = self._retire(old) if old is not None else None
        if to_close is not None:
            self._dispose(to_close)
