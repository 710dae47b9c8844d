"""The web server with the distributed plugin in the test's own process, on a real HTTP port.

In-process so a test can break its embedded scheduler for real (crash the loop, stop an external one);
the ``web`` fixture in ``conftest.py`` starts any number of them and stops them all afterwards."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from werkzeug.serving import make_server

from lama_cleaner.config import Config
from tests.support.distributed_config import FAKE_PLUGIN, FAST

from .conftest import mask_png, png, task_form


@dataclass
class WebServer:
    url: str
    executor: Any
    config: Config


def web_config(data_root: Path, **dist: Any) -> Config:
    """cv2 on cpu, the fake models, an embedded scheduler on a free port, no local nodes, fast
    heartbeats; ``dist`` overrides ``Config.distributed`` fields."""
    config = Config(model="cv2", device="cpu", plugins=["distributed", FAKE_PLUGIN])
    d = config.distributed
    d.scheduler_bind = "tcp://127.0.0.1:0"
    d.data_dir = str(data_root / "journal")
    d.local_nodes = 0
    d.heartbeat_interval_s = FAST["distributed"]["heartbeat_interval_s"]
    for key, value in dist.items():
        setattr(d, key, value)
    return config


def serve_in_process(tmp_path: Path) -> Iterator[Callable[..., WebServer]]:
    """Generator behind the ``web`` fixture: yields ``start(**dist) -> WebServer``."""
    from lama_cleaner.plugins.manager import create_plugin_manager
    from lama_cleaner.server.app import create_app

    started: list[tuple[Any, threading.Thread, Any]] = []

    def start(**dist: Any) -> WebServer:
        config = web_config(tmp_path / f"server-{len(started)}", **dist)
        app, _socketio, executor = create_app(config, create_plugin_manager(config.plugins))
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, name="test-http", daemon=True)
        thread.start()
        started.append((server, thread, executor))
        return WebServer(f"http://127.0.0.1:{server.server_port}", executor, config)

    yield start
    for server, thread, executor in started:
        server.shutdown()
        thread.join(10)
        executor.close()


def inpaint(url: str, timeout: float = 60) -> requests.Response:
    """A small cv2 ``/inpaint`` request."""
    files = {"image": ("i.png", png()), "mask": ("m.png", mask_png())}
    return requests.post(f"{url}/inpaint", data=task_form(), files=files, timeout=timeout)
