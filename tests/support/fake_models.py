"""Test-only models, enabled with ``--plugins tests.support.fake_models`` (a pluggy plugin module).

They return the input image unchanged (so replies are valid images) and differ only in how they
spend their time, which is what the distributed tests need to control. Parameters come from the
``prompt`` form field as whitespace-separated tokens: a bare integer is a duration in milliseconds,
``steps=N`` sets a step count, ``marker=X`` (or any other bare word) is a marker; environment
variables give defaults. Like LaMa, a fake model fails a call that was running when it was closed.

- ``sleep`` (cpu): sleeps ``ms`` (default ``LAMA_TEST_SLEEP_MS`` or 100).
- ``steps`` (cpu, reports steps): ``steps`` steps of ``ms`` each (defaults ``LAMA_TEST_STEPS`` 10,
  ``LAMA_TEST_STEP_MS`` 100), reporting progress and checking for cancellation between steps.
- ``block`` (cpu): one uninterruptible sleep of ``ms`` (default ``LAMA_TEST_BLOCK_MS`` or 60000);
  cancelling it requires killing the inference process.
- ``count`` (cpu): sleeps ``ms`` (default ``LAMA_TEST_COUNT_MS`` or 0), then appends the marker as
  one line to the file named by ``LAMA_TEST_COUNT_FILE`` (exactly-once checks).
- ``gpu_sleep`` (gpu): like ``sleep`` but needs the gpu queue.
- ``probe-pipe`` (cpu): appends ``model-start <marker> <time.monotonic()>`` to ``LAMA_TEST_PIPE_FILE``
  (if set), sleeps ``ms`` (default ``LAMA_TEST_PIPE_MS`` or 400), then appends ``model-end ...``: with
  ``tests.support.pipeline_probe`` it shows whether a pipelined node overlaps decoding and the model.
- ``threads`` (cpu): appends ``<OMP_NUM_THREADS> <cv2.getNumThreads()> <torch.get_num_threads() or ->
  <OMP_WAIT_POLICY>`` to ``LAMA_TEST_THREADS_FILE`` (PyTorch imported on the first task, after the process
  limited its threads): what the math libraries of the process running it were told.
- ``fail`` (cpu): appends ``<time.time()> <marker>`` to ``LAMA_TEST_FAIL_FILE`` (if set) when it
  starts, then raises: a ``RuntimeError`` naming the marker (an inference failure, retried), or with
  ``final=1`` a ``ClientError`` (bad input, never retried). The file gives each attempt's start time.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from lama_cleaner.errors import ClientError, TaskCancelled
from lama_cleaner.models.base import InpaintModel
from lama_cleaner.plugins.hookspecs import hookimpl
from lama_cleaner.tasks import CancelCheck, Progress, ProgressCallback, ignore_progress, never_cancelled


def params(req: Any) -> dict[str, str]:
    """Tokens of ``req.prompt``: ``k=v`` pairs; a bare integer -> ``ms``; another bare word -> ``marker``."""
    out: dict[str, str] = {}
    for token in (getattr(req, "prompt", "") or "").split():
        key, sep, value = token.partition("=")
        if sep:
            out[key] = value
        elif token.lstrip("-").isdigit():
            out["ms"] = token
        else:
            out["marker"] = token
    return out


def _int(values: dict[str, str], key: str, env: str, default: int) -> int:
    raw = values.get(key) or os.environ.get(env)
    return int(raw) if raw else default


def _unchanged(image_rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image_rgb[:, :, ::-1])


class _Fake(InpaintModel):
    resource_class = "cpu"
    memory_mb = 1
    pad_mod = 1
    supports_hd = False

    closed = False

    def __call__(
        self,
        image_rgb: np.ndarray,
        mask: np.ndarray,
        req: Any,
        progress: ProgressCallback = ignore_progress,
        cancelled: CancelCheck = never_cancelled,
    ) -> np.ndarray:
        self.work(params(req), progress, cancelled)
        if self.closed:  # as LaMa, whose close() drops the weights a running call still needs
            raise RuntimeError(f"model {self.name} was closed while a call was running on it")
        progress(Progress(percent=100.0))
        return _unchanged(image_rgb)

    def close(self) -> None:
        self.closed = True

    def work(self, values: dict[str, str], progress: ProgressCallback, cancelled: CancelCheck) -> None:
        raise NotImplementedError


class SleepModel(_Fake):
    name = "sleep"

    def work(self, values: dict[str, str], progress: ProgressCallback, cancelled: CancelCheck) -> None:
        ms = _int(values, "ms", "LAMA_TEST_SLEEP_MS", 100)
        if ms > 0:  # 0 ms is the benchmarks' no-op: no sleep(0) yield either
            time.sleep(ms / 1000.0)


class GpuSleepModel(SleepModel):
    name = "gpu_sleep"
    resource_class = "gpu"


class StepsModel(_Fake):
    name = "steps"
    reports_steps = True

    def work(self, values: dict[str, str], progress: ProgressCallback, cancelled: CancelCheck) -> None:
        steps = _int(values, "steps", "LAMA_TEST_STEPS", 10)
        step_s = _int(values, "ms", "LAMA_TEST_STEP_MS", 100) / 1000.0
        for step in range(steps):
            if cancelled():
                raise TaskCancelled()
            time.sleep(step_s)
            progress(Progress(percent=100.0 * (step + 1) / steps, step=step, total_steps=steps))


class BlockModel(_Fake):
    name = "block"

    def work(self, values: dict[str, str], progress: ProgressCallback, cancelled: CancelCheck) -> None:
        time.sleep(_int(values, "ms", "LAMA_TEST_BLOCK_MS", 60000) / 1000.0)  # never looks at `cancelled`


class CountModel(_Fake):
    name = "count"

    def work(self, values: dict[str, str], progress: ProgressCallback, cancelled: CancelCheck) -> None:
        started = os.environ.get("LAMA_TEST_COUNT_START_FILE")
        if started:  # the model call has begun (the device is this task's): a test can wait for it
            append_line(started, (values.get("marker") or "-") + "\n")
        time.sleep(_int(values, "ms", "LAMA_TEST_COUNT_MS", 0) / 1000.0)
        path = os.environ.get("LAMA_TEST_COUNT_FILE")
        if not path:
            return
        line = (values.get("marker") or "-") + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())  # one write of a short line with O_APPEND: atomic across processes
        finally:
            os.close(fd)


def append_line(path: str, line: str) -> None:
    """One ``O_APPEND`` write of a short line: atomic across the processes that share the file."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


class FailModel(_Fake):
    name = "fail"

    def work(self, values: dict[str, str], progress: ProgressCallback, cancelled: CancelCheck) -> None:
        marker = values.get("marker") or "-"
        path = os.environ.get("LAMA_TEST_FAIL_FILE")
        if path:
            append_line(path, f"{time.time():.6f} {marker}\n")
        if values.get("final") == "1":
            raise ClientError(f"fake client error {marker}")
        raise RuntimeError(f"fake model failure {marker}")


def record_event(event: str, who: str) -> None:
    """One line ``<event> <who> <time.monotonic()>`` in ``LAMA_TEST_PIPE_FILE`` (if set)."""
    path = os.environ.get("LAMA_TEST_PIPE_FILE")
    if path:
        append_line(path, f"{event} {who} {time.monotonic():.6f}\n")


class PipeProbeModel(_Fake):
    name = "probe-pipe"

    def work(self, values: dict[str, str], progress: ProgressCallback, cancelled: CancelCheck) -> None:
        who = values.get("marker") or "-"
        record_event("model-start", who)
        time.sleep(_int(values, "ms", "LAMA_TEST_PIPE_MS", 400) / 1000.0)
        record_event("model-end", who)


class ThreadsModel(_Fake):
    name = "threads"

    def work(self, values: dict[str, str], progress: ProgressCallback, cancelled: CancelCheck) -> None:
        import importlib.util

        import cv2

        torch_threads = "-"
        if importlib.util.find_spec("torch") is not None:
            import torch

            torch_threads = str(torch.get_num_threads())
        env = os.environ
        line = f"{env.get('OMP_NUM_THREADS')} {cv2.getNumThreads()} {torch_threads} {env.get('OMP_WAIT_POLICY')}\n"
        append_line(os.environ["LAMA_TEST_THREADS_FILE"], line)


FAKE_MODELS = (SleepModel, GpuSleepModel, StepsModel, BlockModel, CountModel, FailModel, PipeProbeModel, ThreadsModel)


@hookimpl
def register_models(registry: Any) -> None:
    for cls in FAKE_MODELS:
        registry.register(cls)
