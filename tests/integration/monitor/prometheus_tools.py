"""Start Debian's real ``prometheus`` and ``prometheus-alertmanager`` on free loopback ports, and stop them.

Each gets a temporary configuration and storage folder, listens on 127.0.0.1 only (Alertmanager's cluster
listener, which would bind every interface, is turned off), and is killed with its process group when the
test ends. A missing binary skips the test loudly: ``scripts/test.sh`` installs both packages.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.support.server_process import HOST, free_port
from tests.support.waiting import wait_for

PROMETHEUS = "/usr/bin/prometheus"
ALERTMANAGER = "/usr/bin/prometheus-alertmanager"
PROMTOOL = "/usr/bin/promtool"


def binary_or_skip(path: str, package: str) -> str:
    found = path if os.access(path, os.X_OK) else shutil.which(Path(path).name)
    if not found:
        message = f"{path} is missing (apt-get install {package}; scripts/test.sh does this)"
        print(f"\n*** MONITOR TEST SKIPPED: {message} ***", file=sys.stderr, flush=True)
        pytest.skip(f"LOUD: {message}")
    return found


class Service:
    """A started binary: its URL, its log file (shown when it fails to come up) and its process."""

    def __init__(self, name: str, argv: list[str], port: int, log_path: Path) -> None:
        self.name = name
        self.url = f"http://{HOST}:{port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            return requests.get(self.url + "/-/ready", timeout=2).status_code == 200

        try:
            wait_for(ready, timeout=timeout, message=f"{self.name} to be ready", interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- {self.name} log ---\n{self.log()}") from None

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


@contextmanager
def alertmanager(folder: Path, webhook: str) -> Iterator[Service]:
    """Alertmanager routing every alert to ``webhook`` quickly (1 s group wait and interval), resolved ones too."""
    binary = binary_or_skip(ALERTMANAGER, "prometheus-alertmanager")
    config = folder / "alertmanager.yml"
    config.write_text(
        "route:\n"
        "  receiver: test\n"
        "  group_by: [alertname, node]\n"
        "  group_wait: 1s\n"
        "  group_interval: 1s\n"
        "  repeat_interval: 1h\n"
        "receivers:\n"
        "  - name: test\n"
        "    webhook_configs:\n"
        f"      - url: '{webhook}'\n"
        "        send_resolved: true\n"
    )
    (folder / "am-data").mkdir()
    port = free_port()
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.path={folder / 'am-data'}",
        f"--web.listen-address={HOST}:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    service = Service("alertmanager", argv, port, folder / "alertmanager.log")
    try:
        service.wait_ready()
        yield service
    finally:
        service.stop()


@contextmanager
def prometheus(folder: Path, target: str, scrape_interval: str = "1s") -> Iterator[Service]:
    """Prometheus scraping ``target`` (``host:port``, path ``/metrics``) every ``scrape_interval``."""
    binary = binary_or_skip(PROMETHEUS, "prometheus")
    config = folder / "prometheus.yml"
    config.write_text(
        "global:\n"
        f"  scrape_interval: {scrape_interval}\n"
        f"  evaluation_interval: {scrape_interval}\n"
        "scrape_configs:\n"
        "  - job_name: lama-cleaner\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    (folder / "prom-data").mkdir()
    port = free_port()
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={folder / 'prom-data'}",
        f"--web.listen-address={HOST}:{port}",
        "--log.level=warn",
    ]
    service = Service("prometheus", argv, port, folder / "prometheus.log")
    try:
        service.wait_ready()
        yield service
    finally:
        service.stop()
