"""Helpers shared by the ``/api/v1`` and ``batch`` integration tests: images and a distributed server."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from tests.support.distributed_config import FAKE_PLUGIN, FAST
from tests.support.server_process import ServerProcess, ServerStartError
from tests.support.waiting import WaitTimeout


def png(width: int = 48, height: int = 32, seed: int = 1, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def mask_png(width: int = 48, height: int = 32) -> bytes:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[height // 4 : height // 2, width // 4 : width // 2] = 255
    buf = io.BytesIO()
    Image.fromarray(mask).save(buf, format="PNG")
    return buf.getvalue()


def distributed_server(
    tmp: Path, *extra: str, env: dict[str, str] | None = None, distributed: dict | None = None
) -> ServerProcess:
    """A (not yet started) server with the distributed plugin, the fake models, one local node and a
    0.2 s heartbeat, its journal in ``tmp``; ``distributed`` adds settings to that config section."""
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "config.json"
    config.write_text(json.dumps({"distributed": {**FAST["distributed"], **(distributed or {})}}))
    args = [
        "--plugins",
        f"distributed,{FAKE_PLUGIN}",
        "--config",
        str(config),
        "--data-dir",
        str(tmp / "journal"),
        "--scheduler-bind",
        "tcp://127.0.0.1:0",  # the scheduler picks free ports and reports them
        *extra,
    ]
    return ServerProcess(args, env=env, ready_timeout=90)


def start_distributed_server(
    tmp: Path, *extra: str, env: dict[str, str] | None = None, distributed: dict | None = None
) -> ServerProcess:
    """Start :func:`distributed_server`; one more try with fresh ports if the first start fails
    (free ports are picked before the server binds them, and parallel test runs can take them)."""
    try:
        return distributed_server(tmp, *extra, env=env, distributed=distributed).start()
    except (ServerStartError, WaitTimeout):
        return distributed_server(tmp, *extra, env=env, distributed=distributed).start()
