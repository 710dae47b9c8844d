"""The standalone scheduler process survives SIGKILL: the journal keeps every accepted task."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.integration.scheduler.peers import Producer, ScriptedNode
from tests.support.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[3]
READY_LINE = re.compile(r"scheduler ready: control (\S+)")


class SchedulerProcess:
    """``python -m ...scheduler_main`` on an ephemeral port; reads the endpoint it prints."""

    def __init__(self, data_dir: Path, config: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "LAMA_CLEANER_DISABLE_PLUGIN_AUTOLOAD": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lama_cleaner.plugins.distributed.scheduler.main",
             "--bind", "tcp://127.0.0.1:0", "--data-dir", str(data_dir), "--config", str(config),
             "--log-level", "WARNING"],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        match = wait_for(self._endpoint, timeout=60, message="scheduler subprocess ready line")
        self.control_endpoint = match

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def _endpoint(self) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"scheduler exited early: {''.join(self.lines)}")
        for line in self.lines:
            m = READY_LINE.search(line)
            if m:
                return m.group(1)
        return None

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(15)


@pytest.mark.slow
def test_sigkill_and_restart_keeps_and_dispatches_tasks(tmp_path, zctx):
    config = tmp_path / "lc.toml"
    config.write_text(
        '[distributed]\nheartbeat_interval_s = 0.2\nheartbeat_liveness = 3\n[distributed.routes]\ncv2 = "cpu"\n'
    )
    data = tmp_path / "data"
    first = SchedulerProcess(data, config)
    try:
        producer = Producer(zctx, first)
        ids = [producer.submit("cv2").header["task"]["id"] for _ in range(3)]
        node = ScriptedNode(zctx, first)
        node.hello()
        node.ready()
        running = node.expect_task()
        assert running.header["task_id"] == ids[0]
        assert producer.get(ids[0])["status"] == "processing"
        first.kill()
        producer.close()
        node.close()
    finally:
        if first.proc.poll() is None:
            first.kill()

    second = SchedulerProcess(data, config)
    try:
        producer = Producer(zctx, second)
        infos = [producer.get(i) for i in ids]
        assert [i["status"] for i in infos] == ["queued", "queued", "queued"]
        assert infos[0]["attempts"] == 0  # the interrupted attempt was the scheduler's fault: refunded
        node = ScriptedNode(zctx, second)
        node.hello()
        done = []
        for _ in ids:
            node.ready()
            task = node.expect_task()
            done.append(task.header["task_id"])
            node.result(task)
        assert done == ids  # FIFO, the interrupted one first
        wait_for(lambda: all(producer.get(i)["status"] == "completed" for i in ids), message="all completed")
        producer.close()
        node.close()
        assert second.terminate() == 0  # SIGTERM: clean stop
    finally:
        if second.proc.poll() is None:
            second.kill()
