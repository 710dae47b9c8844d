"""A real deployment with the monitor plugin on: web server, optional standalone scheduler, node processes.

Everything is a subprocess of ``python -m lama_cleaner`` talking over loopback (HTTP, ZeroMQ); the test
models of ``tests.support.fake_models`` make task durations and failures exact. Every process started is
stopped when the test ends (see the ``deployment`` fixture in this package's ``conftest.py``).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import requests

from tests.integration.distributed.conftest import (
    FAKE_PLUGIN,
    FAST,
    Proc,
    api_nodes,
    api_submit,
    free_port_block,
    merged,
    start_node,
    wait_nodes,
    wait_status,
    write_config,
)
from tests.support.server_process import ServerProcess, free_port
from tests.unit.monitor.exposition import SampleKey, parse_exposition

MONITORED = f"distributed,{FAKE_PLUGIN},monitor"

SETTINGS: dict[str, Any] = merged(
    FAST,
    {
        "distributed": {"retry": {"inpaint": {"max_attempts": 2}}},
        "monitor": {"evaluation_interval_s": 0.5},
    },
)
"""0.2 s heartbeats (a killed node is offline within a second), two attempts per inpaint task."""


class Deployment:
    """``start()`` the scheduler (``standalone``) and the web server; ``node()`` adds a node process."""

    def __init__(self, tmp_path: Path, *, standalone: bool, log_json: bool = False, extra: dict | None = None) -> None:
        self.tmp_path = tmp_path
        self.standalone = standalone
        self.log_json = ["--log-json"] if log_json else []
        self.config = write_config(tmp_path, merged(SETTINGS, extra or {}), "monitor-config.json")
        self.endpoint = f"tcp://127.0.0.1:{free_port_block()}"
        self.metrics_port = free_port() if standalone else None
        self.procs: list[Proc] = []
        self.scheduler: Proc | None = None
        self.web: ServerProcess | None = None
        self.nodes: dict[str, Proc] = {}

    @property
    def url(self) -> str:
        assert self.web is not None
        return self.web.url

    def start(self) -> Deployment:
        args = ["--plugins", MONITORED, "--config", str(self.config), "--local-nodes", "0", *self.log_json]
        if self.standalone:
            self.scheduler = Proc(
                [
                    "scheduler",
                    "--bind",
                    self.endpoint,
                    "--data-dir",
                    str(self.tmp_path / "scheduler-data"),
                    "--config",
                    str(self.config),
                    "--plugins",
                    f"{FAKE_PLUGIN},monitor",
                    "--metrics-port",
                    str(self.metrics_port),
                    *self.log_json,
                ]
            )
            self.procs.append(self.scheduler)
            args += ["--scheduler", self.endpoint]
        else:
            args += ["--data-dir", str(self.tmp_path / "data"), "--scheduler-bind", self.endpoint]
        self.web = ServerProcess(args, ready_timeout=180)  # a loaded box may take a minute to start it
        self.web.start()
        return self

    def node(self, name: str) -> Proc:
        plugins = f"{FAKE_PLUGIN},monitor"
        proc = start_node(self.procs, self.endpoint, self.config, "--name", name, "--plugins", plugins, *self.log_json)
        self.nodes[name] = proc
        return proc

    def stop(self) -> None:
        if self.web is not None:
            self.web.stop()
        for proc in reversed(self.procs):
            proc.stop()

    def outputs(self) -> str:
        parts = [f"----- web -----\n{self.web.output()[-6000:]}" if self.web else ""]
        parts += [f"----- {' '.join(p.cmd[2:5])} -----\n{p.output()[-6000:]}" for p in self.procs]
        return "\n".join(parts)

    # ------------------------------------------------------------------ reading
    def scrape(self, url: str | None = None) -> dict[SampleKey, float]:
        reply = requests.get((url or self.url) + "/metrics", timeout=10)
        assert reply.status_code == 200, reply.text
        return parse_exposition(reply.text)

    @property
    def scheduler_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"


def run_scenario(dep: Deployment) -> dict[str, str]:
    """Submit, fail, cancel, SIGKILL a node, retry. Returns the task ids by role in the story.

    - two ``sleep`` tasks complete;
    - one ``fail`` task fails twice (``max_attempts = 2``): one retry, then failed;
    - one ``steps`` task is cancelled while it runs;
    - one ``sleep`` task runs on a node that is then SIGKILLed: re-queued, it completes on the other node.
    """
    dep.node("node-a")
    dep.node("node-b")
    wait_nodes(dep.url, 2, 180)
    ids: dict[str, str] = {}
    for name in ("ok-1", "ok-2"):
        ids[name] = api_submit(dep.url, "sleep", "50")["id"]
    for name in ("ok-1", "ok-2"):
        assert wait_status(dep.url, ids[name], ["completed", "failed"], 30)["status"] == "completed"
    ids["fail"] = api_submit(dep.url, "fail", "boom")["id"]
    assert wait_status(dep.url, ids["fail"], ["completed", "failed"], 30)["status"] == "failed"
    ids["cancel"] = api_submit(dep.url, "steps", "steps=400 ms=50")["id"]
    wait_status(dep.url, ids["cancel"], ["processing"], 30)
    assert requests.delete(f"{dep.url}/api/v1/tasks/{ids['cancel']}", timeout=10).status_code == 200
    assert wait_status(dep.url, ids["cancel"], ["cancelled"], 30)["status"] == "cancelled"
    ids["killed"] = api_submit(dep.url, "sleep", "2500")["id"]
    running = wait_status(dep.url, ids["killed"], ["processing"], 30)
    names = {n["id"]: n["name"] for n in api_nodes(dep.url)}
    dep.nodes[names[running["node"]]].kill(signal.SIGKILL)
    done = wait_status(dep.url, ids["killed"], ["completed", "failed"], 60)
    assert done["status"] == "completed" and done["attempts"] == 2, done
    return ids
