"""``/run_plugin`` end to end in distributed mode: web server -> scheduler -> a real local node -> back.

MakeGIF needs no downloads, so it runs anywhere. The distributed server gets ``--enable-gif`` on its
command line only: its local node learns it from the effective configuration the server hands it,
which is part of what is tested (a node without the plugin would never take the task and the request
would end in a 504).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.support.server_process import ServerProcess

from .conftest import FAST, DistServer, png, wait_nodes, write_config

pytestmark = pytest.mark.slow


def _files(*, with_clean: bool = True) -> dict[str, tuple[str, bytes, str]]:
    files = {"image": ("a.png", png(64, 48, seed=1), "image/png")}
    if with_clean:
        files["clean_img"] = ("b.png", png(64, 48, seed=2), "image/png")
    return files


def _run_plugin(url: str, *, with_clean: bool = True) -> requests.Response:
    return requests.post(
        f"{url}/run_plugin",
        data={"name": "MakeGIF", "filename": "before after.gif"},
        files=_files(with_clean=with_clean),
        timeout=60,
    )


def _plugin_tasks(url: str) -> list[dict]:
    page = requests.get(f"{url}/api/v1/tasks", params={"limit": 100}, timeout=10)
    assert page.status_code == 200, page.text
    return [t for t in page.json()["tasks"] if t["kind"] == "plugin"]


def test_run_plugin_through_scheduler_and_node_equals_classic(tmp_path: Path, servers: list[DistServer]):
    dist = DistServer(tmp_path / "data", write_config(tmp_path, FAST), local_nodes=1)
    dist.server.cmd.append("--enable-gif")
    servers.append(dist.start())
    wait_nodes(dist.url, 1)
    assert requests.get(f"{dist.url}/server_config", timeout=10).json()["plugins"] == ["MakeGIF"]

    with ServerProcess(["--enable-gif"]) as classic:
        expected = _run_plugin(classic.url)
    assert expected.status_code == 200, expected.text

    got = _run_plugin(dist.url)
    assert got.status_code == 200, got.text
    assert got.headers["Content-Type"] == expected.headers["Content-Type"] == "image/gif"
    assert got.headers["Content-Disposition"] == expected.headers["Content-Disposition"]
    assert got.content[:6] in (b"GIF87a", b"GIF89a")
    assert got.content == expected.content

    # It really went through the scheduler: one plugin task, run by the local node.
    [task] = _plugin_tasks(dist.url)
    assert task["name"] == "MakeGIF" and task["status"] == "completed", task
    assert task["queue"] == "cpu" and task["attempts"] == 1
    [node] = wait_nodes(dist.url, 1)
    assert task["node"] == node["id"]
    result = requests.get(f"{dist.url}/api/v1/tasks/{task['id']}/result", timeout=10)
    assert result.status_code == 200 and result.content == expected.content

    # Bad input is refused before queueing, with the classic plain-text 400 (no second task).
    missing = _run_plugin(dist.url, with_clean=False)
    assert missing.status_code == 400, missing.text
    assert missing.headers["Content-Type"].startswith("text/plain")
    assert "clean_img" in missing.text
    assert len(_plugin_tasks(dist.url)) == 1
