"""``/monitor`` of a real ``--plugins distributed,monitor`` server in headless Chromium: the queue figures change
while real tasks run on two real nodes, and a node shows as offline once it is SIGKILLed. The screenshot is
saved under the test's temporary directory."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.distributed.conftest import api_nodes, api_submit, wait_nodes, wait_status
from tests.support.waiting import wait_for

from .deployment import Deployment

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TASKS = 20
TASK_MS = 600


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    dep = Deployment(tmp_path, standalone=False)
    try:
        yield dep
    finally:
        dep.stop()
        print(dep.outputs())  # shown by pytest when the test failed


def test_the_dashboard_follows_real_tasks_and_a_killed_node(browser, deployment: Deployment, tmp_path: Path) -> None:
    dep = deployment.start()
    dep.node("node-a")
    dep.node("node-b")
    wait_nodes(dep.url, 2, 180)
    ids = {n["name"]: n["id"] for n in api_nodes(dep.url)}

    page = browser.new_page(viewport={"width": 1366, "height": 768})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(dep.url + "/monitor")
        wait_for(lambda: page.locator("#status").get_attribute("data-state") == "live", 30, "the live feed")
        rows = {name: page.locator(f'#nodes tr[data-node="{node_id}"]') for name, node_id in ids.items()}
        wait_for(lambda: all(r.count() == 1 for r in rows.values()), 30, "both nodes in the table")

        submitted: list[str] = []
        submitter = threading.Thread(
            target=lambda: submitted.extend(api_submit(dep.url, "sleep", str(TASK_MS))["id"] for _ in range(TASKS))
        )
        submitter.start()
        seen: set[str] = set()

        def queued_changed() -> bool:
            seen.add(page.locator("#tile-queued").inner_text())
            return len(seen - {"–", ""}) >= 3

        wait_for(queued_changed, 60, "the queued figure to change while tasks run")
        submitter.join(60)
        assert len(submitted) == TASKS
        for task_id in submitted:
            assert wait_status(dep.url, task_id, ["completed", "failed"], 60)["status"] == "completed"
        wait_for(lambda: page.locator("#tile-queued").inner_text() == "0", 30, "an empty queue on the page")

        dep.nodes["node-b"].kill(signal.SIGKILL)
        wait_for(lambda: rows["node-b"].get_attribute("data-state") == "offline", 30, "node-b shown offline")
        assert "offline" in rows["node-b"].inner_text() and "node-b" in rows["node-b"].inner_text()  # its --name
        assert rows["node-a"].get_attribute("data-state") == "idle"
        wait_for(lambda: page.locator("#tile-nodes").inner_text() == "1 / 2", 30, "one of two nodes online")
        page.screenshot(path=str(tmp_path / "monitor-real-deployment.png"), full_page=True)
    finally:
        page.close()
    assert errors == []
    assert (tmp_path / "monitor-real-deployment.png").stat().st_size > 10_000
