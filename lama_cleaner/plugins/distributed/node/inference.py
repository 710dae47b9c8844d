"""The child process of a node that holds the model and runs ``pipeline.execute_task``.

Why a separate process: the node's main process must keep answering heartbeats and CANCEL while a
model runs, and a model call that cannot be interrupted (a long C/CUDA call) can then still be
stopped by terminating this process, which also frees its memory. The parent talks to it over a
``multiprocessing`` Pipe (spoken through :class:`.child_pipe.ChildPipe`: fields, then byte strings
sent raw) and a shared Event:

parent -> child: ``("task", header_dict, file_names)`` with the files' bytes in that order,
``("cancel", task_id)`` (depth > 1 only), ``("stop",)``
child -> parent: ``("ready", info)``, ``("init_failed", message)``,
``("progress", task_id, percent, step, total_steps)``, ``("result", task_id, mimetype, headers,
loaded_model, shared_length)`` with the reply's bytes (or none, with ``shared_length`` its length in
the task's shared-memory slot), ``("failed", task_id, message, traceback, retryable, status)``,
``("cancelled", task_id)``, ``("cancel_ack", task_id, in_model)`` (depth > 1 only).

Shared memory (:mod:`..wire.shared_memory`): the child maps the node's region at start and says so in
``ready`` (``info["shared"]``). A task whose header has ``shared`` (``{"slot", "blobs"}``) then reads
the files named there from the slot's in area, and writes its result into the slot's out area when it
fits; the node only ever sends such a task to a child that said it mapped the region.

Depth 1 (the node's ``pipeline_depth``): the child runs one task at a time in its main thread, and
the shared cancel Event is set by the parent on CANCEL; models that report steps check it between
steps through the ``cancelled`` callback of ``execute_task``. Depth N > 1 (:func:`_serve_pipelined`):
the main thread only reads the Pipe and runs each task in a thread of its own (at most N), so one
task's decoding and encoding overlap another's model call; the model call is exclusive per device
(``ModelManager(exclusive=True)``), and CANCEL arrives as ``("cancel", task_id)``, setting that
task's own Event. The child answers at once with ``cancel_ack``, saying whether the task is inside its
model call: if not, it stops by itself (waiting for the device, it sees the Event; decoding or
encoding, it ends within moments), so the node has no reason to kill the process (and its loaded
model, and the other tasks in it) for a model that cannot be interrupted.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from ....cpu_threads import limit_threads
from ....process_lifetime import die_with_parent
from ..wire.shared_memory import SharedMemoryRefused, SharedRegion
from .child_pipe import ChildPipe, Message
from .warm import load_in_child

if TYPE_CHECKING:
    from ....tasks import Progress

log = logging.getLogger(__name__)

Send = Callable[[tuple[Any, ...], Sequence[bytes]], None]
"""How a task's messages reach the node: ``ChildPipe.send`` (under a lock when tasks overlap)."""


def child_rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MiB (``VmRSS`` of ``/proc/<pid>/status``); None where
    that cannot be read (not Linux, or the process is gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) / 1024.0  # the kernel reports kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def recycle_reason(tasks_done: int, rss_mb: float | None, max_tasks: int, max_rss_mb: int) -> str | None:
    """Why an inference child that just finished a task should be replaced, or None to keep it.

    Celery's ``max-tasks-per-child`` / ``max-memory-per-child``: model code that leaks (caches,
    fragmentation, a library holding buffers) is contained by starting afresh between tasks.
    A limit of 0 is off; an unreadable RSS never triggers a recycle."""
    if max_tasks > 0 and tasks_done >= max_tasks:
        return f"ran {tasks_done} tasks (limit {max_tasks})"
    if max_rss_mb > 0 and rss_mb is not None and rss_mb > max_rss_mb:
        return f"RSS {rss_mb:.0f} MiB over the {max_rss_mb} MiB limit"
    return None


_DETERMINISTIC = (ValueError, TypeError, ArithmeticError, LookupError, AttributeError)
"""Errors that the same input and code raise again on every attempt (a bad shape, a bad argument to
OpenCV): retrying them only burns the attempts and their backoff. Runtime errors (CUDA faults,
drivers), OSError (disk, downloads) and MemoryError stay retryable: another attempt, possibly on
another node or in a fresh child, may well succeed."""


def _module_error(module: str, name: str) -> type[BaseException] | None:
    """``module.name`` if that module is already imported, else None. An exception of a module the
    process never imported cannot be the one at hand, so this never pays for an import (the node's
    parent process stays free of cv2 and PIL)."""
    cls = getattr(sys.modules.get(module), name, None)
    return cls if isinstance(cls, type) and issubclass(cls, BaseException) else None


def _input_error(exc: BaseException) -> bool:
    """A failure the input is to blame for: an image Pillow cannot identify or refuses to open."""
    blamed = (_module_error("PIL", "UnidentifiedImageError"), _module_error("PIL.Image", "DecompressionBombError"))
    return isinstance(exc, tuple(c for c in blamed if c is not None))


def _deterministic(exc: BaseException) -> bool:
    cv2_error = _module_error("cv2", "error")
    return isinstance(exc, _DETERMINISTIC) or (cv2_error is not None and isinstance(exc, cv2_error))


def classify(exc: BaseException) -> tuple[str, bool, int]:
    """(message, retryable, status) for a failure: only what another attempt could fix is retried.

    ``pipeline.execute_task`` wraps foreign exceptions in an ``InferenceError`` (keeping the original as
    ``__cause__``), so the original decides: bad input (4xx, and undecodable images) and deterministic
    pipeline errors (ValueError, TypeError, cv2.error, ...) are final; out-of-memory and everything else
    (a crashed CUDA kernel, a failed download) is retried.
    """
    from ....errors import ClientError, LamaCleanerError, ModelNotSupported, NotFound, OutOfMemory

    if isinstance(exc, (ClientError, NotFound, ModelNotSupported)):
        return exc.message, False, exc.status
    if isinstance(exc, OutOfMemory):
        return exc.message, True, exc.status
    cause = exc.__cause__ if isinstance(exc, LamaCleanerError) and exc.__cause__ is not None else exc
    message = exc.message if isinstance(exc, LamaCleanerError) else str(exc) or type(exc).__name__
    if isinstance(cause, MemoryError):
        return "Out of memory", True, 500
    if _input_error(cause):
        return message, False, 400
    if _deterministic(cause):
        return message, False, 500
    if isinstance(exc, LamaCleanerError):
        return exc.message, exc.status >= 500, exc.status
    return message, True, 500


class _Runtime:
    """Everything the child builds once from its plugin manager: model manager, image plugins."""

    def __init__(self, pm: Any, config: Any, device: str, depth: int = 1) -> None:
        from .... import pipeline
        from ....errors import TaskCancelled
        from ....image_plugins.registry import build_image_plugin_registry
        from ....models.manager import ModelManager
        from ....models.registry import build_model_registry
        from ....tasks import TaskRequest

        self.config = config
        self.shared: SharedRegion | None = None
        """The node's shared memory, when this process could map it (``_attach_shared``)."""
        self.models = ModelManager(build_model_registry(pm), config, device, exclusive=depth > 1)
        self.image_plugins = build_image_plugin_registry(pm, config)
        # Resolved once here, not by an import statement per task (the parent process never imports
        # the pipeline: it does not need cv2, PIL or numpy).
        self._execute_task = pipeline.execute_task
        self._task_cancelled = TaskCancelled
        self._task_request = TaskRequest

    def run(
        self,
        header: dict[str, Any],
        files: dict[str, bytes],
        send: Send,
        cancelled: Callable[[], bool],
        shared: SharedRegion | None = None,
    ) -> None:
        """Run one task; every message about it goes through ``send``."""
        task_id = header["task_id"]
        ref = header.get("shared") if shared is not None else None
        slot = ref.get("slot") if isinstance(ref, dict) else None
        if slot is not None and "blobs" in ref:
            try:
                files = {**files, **shared.read_inputs(slot, ref["blobs"])}  # type: ignore[union-attr]
            except ValueError as exc:
                send(("failed", task_id, f"bad shared memory reference: {exc}", "", True, 500), ())
                return
        request = self._task_request(
            kind=header["kind"],
            name=header["name"],
            form={str(k): str(v) for k, v in (header.get("form") or {}).items()},
            files=files,
            submitter=header.get("submitter"),
            task_id=task_id,
        )

        def progress(p: Progress) -> None:
            if p.step is None and p.percent >= 100:
                # "Done" without a step: the outcome right behind it says more. Filtered here, at the
                # source, so the node forwards every progress message it gets as a PROGRESS.
                return
            send(("progress", task_id, float(p.percent), p.step, p.total_steps), ())

        try:
            out = self._execute_task(
                request,
                models=self.models,
                image_plugins=self.image_plugins,
                config=self.config,
                progress=progress,
                cancelled=cancelled,
            )
        except self._task_cancelled:
            send(("cancelled", task_id), ())
            return
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none kills the worker
            if cancelled():
                send(("cancelled", task_id), ())
                return
            message, retryable, status = classify(exc)
            send(("failed", task_id, message, traceback.format_exc(), retryable, status), ())
            return
        loaded = self.models.loaded_model()
        length = shared.write_output(slot, out.body) if slot is not None else None  # type: ignore[union-attr]
        if length is None:
            send(("result", task_id, out.mimetype, dict(out.headers), loaded, None), (out.body,))
        else:
            send(("result", task_id, out.mimetype, dict(out.headers), loaded, length), ())


class _Terminated(BaseException):
    """SIGTERM from the node (a cancel that cannot wait, or its exit): unwind so ``shutdown`` runs."""


def _on_sigterm(_signum: int, _frame: Any) -> None:
    raise _Terminated()


def worker_main(
    conn: Connection,
    cancel_event: Any,
    config: Any,
    plugins: list[str],
    device: str,
    preload: str | None = None,
    depth: int = 1,
    shared_offer: dict[str, Any] | None = None,
    threads: int | None = None,
) -> None:
    """Entry point of the spawned child; returns (exits) on ``stop`` or when the parent goes away.

    The child runs the ``inference`` role with the node's plugins: ``startup`` before the models are
    set up, ``shutdown`` when it stops, when the node terminates it (SIGTERM), or when it failed to
    start. A SIGKILL (the node's last resort, or the node's own death) runs nothing, by nature.
    ``preload`` (``node.warm``) is loaded before ``ready``: the node takes no work until then.
    ``threads`` (the node's ``threads_for``; None = the libraries' defaults) is applied before
    any plugin or model can start a thread pool (:mod:`lama_cleaner.cpu_threads`).
    """
    # The node died, however it died (even before this line): nothing is left to report to.
    die_with_parent(signal.SIGKILL, parent_pid=_starter_pid())
    # A session of its own: a signal sent to the node's process group (`kill -TERM -PGID`, a server
    # stopping the group it runs in) reaches the node, which finishes or hands back its tasks and
    # then stops this process. Terminated directly, the task it runs would fail as "inference
    # process exited unexpectedly", and that attempt would be charged.
    with contextlib.suppress(OSError):  # already a session leader: nothing to leave
        os.setsid()
    pipe = ChildPipe(conn)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the node's to handle
    signal.signal(signal.SIGTERM, _on_sigterm)
    logging.basicConfig(level=os.environ.get("LAMA_CLEANER_LOG_LEVEL", "INFO"))
    from ...lifecycle import running
    from ...manager import create_plugin_manager

    runtime: _Runtime | None = None
    try:
        if threads:
            limit_threads(threads)
        pm = create_plugin_manager(plugins)
        with running(pm, config, "inference"):
            runtime = _Runtime(pm, config, device, depth)
            runtime.shared = _attach_shared(shared_offer)
            load_in_child(runtime.models, preload)
            if depth > 1:
                _serve_pipelined(pipe, runtime, depth)
            else:
                _serve(pipe, cancel_event, runtime)
    except _Terminated:
        return
    except BaseException as exc:
        if runtime is not None:
            raise  # a task's crash: the node sees the child die and reports the task
        _report_init_failed(pipe, exc)  # could not start: the node reports it and exits


def _starter_pid() -> int | None:
    """The pid of the node that started this child (multiprocessing knows it, whatever ``getppid`` says now)."""
    parent = multiprocessing.parent_process()
    return parent.pid if parent is not None else None


def _attach_shared(offer: dict[str, Any] | None) -> SharedRegion | None:
    """Map the node's shared memory; None (files and results then go over the Pipe) if it offered
    none or it cannot be mapped from here."""
    if offer is None:
        return None
    try:
        return SharedRegion.attach(offer, _starter_pid())
    except SharedMemoryRefused as exc:
        log.warning("inference process: cannot map the node's shared memory (%s)", exc)
        return None


def _report_init_failed(pipe: ChildPipe, exc: BaseException) -> None:
    try:
        pipe.send(("init_failed", f"{type(exc).__name__}: {exc}"))
    except (OSError, ValueError):
        pass  # the node is gone already


def _ready(runtime: _Runtime) -> tuple[str, dict[str, Any]]:
    info = {"pid": os.getpid(), "loaded_model": runtime.models.loaded_model(), "shared": runtime.shared is not None}
    return ("ready", info)


def _serve(pipe: ChildPipe, cancel_event: Any, runtime: _Runtime) -> None:
    """Say ready, then run tasks until ``stop`` or until the node closes the Pipe."""
    pipe.send(_ready(runtime))
    for fields, blobs in _messages(pipe):
        if fields[0] == "task":
            files = dict(zip(fields[2], blobs, strict=True))
            runtime.run(fields[1], files, pipe.send, cancel_event.is_set, runtime.shared)


def _messages(pipe: ChildPipe) -> Iterator[Message]:
    """The node's messages, until ``stop`` or until the node closes the Pipe (or dies)."""
    while True:
        try:
            fields, blobs = pipe.recv()
        except (EOFError, OSError):
            return
        if not fields or fields[0] == "stop":
            return
        yield fields, blobs


def _serve_pipelined(pipe: ChildPipe, runtime: _Runtime, depth: int) -> None:
    """Say ready, then run up to ``depth`` tasks at once, each in its own thread, until ``stop`` or
    until the node closes the Pipe. The main thread only reads the Pipe (so a ``cancel`` reaches a
    task at once); the threads share the Pipe's sending end under a lock. The node never sends more
    than ``depth`` tasks at once, so none waits for a thread."""
    send_lock = threading.Lock()
    cancels: dict[str, threading.Event] = {}
    threads: dict[str, int] = {}
    """The thread running each task, once it runs (``ModelManager.holds_device`` asks by thread)."""

    def send(fields: tuple[Any, ...], blobs: Sequence[bytes] = ()) -> None:
        with send_lock:
            pipe.send(fields, blobs)

    def run(header: dict[str, Any], files: dict[str, bytes], cancelled: threading.Event) -> None:
        task_id = header["task_id"]
        threads[task_id] = threading.get_ident()
        try:
            runtime.run(header, files, send, cancelled.is_set, runtime.shared)
        except (OSError, ValueError):
            pass  # the Pipe is gone: the node is stopping, or stopped this process already
        finally:
            cancels.pop(task_id, None)
            threads.pop(task_id, None)

    send(_ready(runtime))
    pool = ThreadPoolExecutor(max_workers=depth, thread_name_prefix="inference-task")
    try:
        for fields, blobs in _messages(pipe):
            if fields[0] == "task":
                event = cancels[fields[1]["task_id"]] = threading.Event()
                pool.submit(run, fields[1], dict(zip(fields[2], blobs, strict=True)), event)
            elif fields[0] == "cancel":
                event = cancels.get(fields[1])
                if event is not None:
                    event.set()  # before asking who holds the device: see ModelManager.running
                    in_model = runtime.models.holds_device(threads.get(fields[1]))
                    send(("cancel_ack", fields[1], in_model))
    finally:
        # Without waiting: a SIGTERM (``_Terminated``) unwinds through here to the role's shutdown
        # while a model call may still run; the node kills the process if it lingers.
        pool.shutdown(wait=False, cancel_futures=True)
