"""The monitor plugin enabled by name in real processes: the design's usage line serves what it promises, and a
scripted story (submit, fail, cancel, SIGKILL a node, retry) gives exact figures, read back with
prometheus-client's own parser, with the scheduler embedded in the web server and as its own process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.distributed.conftest import mask_png, png, task_form, write_config
from tests.support.server_process import ServerProcess, free_port_block
from tests.support.waiting import wait_for
from tests.unit.monitor.exposition import SampleKey, parse_exposition, value

from .deployment import Deployment, run_scenario

pytestmark = pytest.mark.slow


@pytest.fixture
def deployments() -> Iterator[list[Deployment]]:
    started: list[Deployment] = []
    yield started
    for dep in reversed(started):
        dep.stop()
        print(dep.outputs())  # shown by pytest when the test failed


def test_the_usage_line_serves_inpaint_metrics_and_the_dashboard(tmp_path: Path) -> None:
    """``lama-cleaner --plugins distributed,monitor``: one local node, an embedded scheduler."""
    config = write_config(
        tmp_path,
        {"distributed": {"data_dir": str(tmp_path / "data"), "scheduler_bind": f"tcp://127.0.0.1:{free_port_block()}"}},
    )
    with ServerProcess(["--plugins", "distributed,monitor", "--config", str(config)], ready_timeout=180) as server:
        files = {"image": ("i.png", png(64, 40)), "mask": ("m.png", mask_png(64, 40))}
        reply = requests.post(f"{server.url}/inpaint", data=task_form(), files=files, timeout=60)
        assert reply.status_code == 200, reply.text
        assert reply.headers["Content-Type"].startswith("image/")

        def scraped() -> dict[SampleKey, float] | None:
            samples = parse_exposition(requests.get(f"{server.url}/metrics", timeout=10).text)
            done = samples.get(
                (
                    "lama_cleaner_tasks_finished_total",
                    (("kind", "inpaint"), ("model", "cv2"), ("queue", "cpu"), ("status", "completed")),
                )
            )
            return samples if done == 1 else None

        samples = wait_for(scraped, 30, "the finished cv2 task in /metrics")
        assert value(samples, "lama_cleaner_scheduler_up") == 1
        assert value(samples, "lama_cleaner_queue_depth", queue="cpu") == 0
        assert value(samples, "lama_cleaner_nodes", state="idle") == 1
        assert value(samples, "lama_cleaner_http_requests_total", method="POST", route="/inpaint", status="200") == 1
        assert value(samples, "lama_cleaner_task_run_seconds_count", queue="cpu", model="cv2") == 1

        doc = requests.get(f"{server.url}/api/v1/metrics", timeout=10).json()
        assert doc["scheduler"]["present"] is True and doc["scheduler"]["up"] is True
        assert doc["tasks"]["finished_total"] == {"completed": 1, "failed": 0, "cancelled": 0}
        assert [n["state"] for n in doc["nodes"]] == ["idle"]

        page = requests.get(f"{server.url}/monitor", timeout=10)
        assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
        assert "monitor.js" in page.text


FINISHED = "lama_cleaner_tasks_finished_total"
POST_TASKS = (("method", "POST"), ("route", "/api/v1/tasks"))


def _finished(samples: dict[SampleKey, float], model: str, status: str) -> float:
    return samples.get((FINISHED, (("kind", "inpaint"), ("model", model), ("queue", "cpu"), ("status", status))), 0)


def _settled_scrape(dep: Deployment, url: str | None = None) -> dict[SampleKey, float] | None:
    """A scrape once the story is over as the figures see it: five tasks finished, the killed node offline."""
    samples = dep.scrape(url)
    total = sum(v for (name, _), v in samples.items() if name == FINISHED)
    offline = samples.get(("lama_cleaner_nodes", (("state", "offline"),)), 0)
    return samples if total == 5 and offline == 1 else None


def assert_scheduler_figures(samples: dict[SampleKey, float]) -> None:
    """Exactly what the story made the scheduler do."""
    assert _finished(samples, "sleep", "completed") == 3
    assert _finished(samples, "fail", "failed") == 1
    assert _finished(samples, "steps", "cancelled") == 1
    assert sum(v for (name, _), v in samples.items() if name == FINISHED) == 5
    # Two attempts were retried: the failed one, and the one lost with the killed node (its attempt is charged).
    assert value(samples, "lama_cleaner_task_retries_total") == 2
    assert value(samples, "lama_cleaner_task_cancellations_total") == 1
    assert value(samples, "lama_cleaner_task_requeues_total", reason="node_lost") == 1
    assert value(samples, "lama_cleaner_task_requeues_total", reason="handed_back") == 0
    assert value(samples, "lama_cleaner_task_samples_missed_total") == 0
    assert value(samples, "lama_cleaner_task_run_seconds_count", queue="cpu", model="sleep") == 3
    for state, count in {"joining": 0, "idle": 1, "busy": 0, "draining": 0, "offline": 1}.items():
        assert value(samples, "lama_cleaner_nodes", state=state) == count, state
    assert value(samples, "lama_cleaner_queue_nodes", queue="cpu", state="offline") == 1
    for queue in ("cpu", "gpu"):
        assert value(samples, "lama_cleaner_queue_depth", queue=queue) == 0
        assert value(samples, "lama_cleaner_queue_running_tasks", queue=queue) == 0
    assert value(samples, "lama_cleaner_scheduler_up") == 1


def assert_web_figures(samples: dict[SampleKey, float]) -> None:
    """What the web server itself answered: five submissions, one cancellation."""
    requests_total = "lama_cleaner_http_requests_total"
    posts = [v for (name, labels), v in samples.items() if name == requests_total and labels[:2] == POST_TASKS]
    assert sum(posts) == 5
    assert value(samples, requests_total, method="DELETE", route="/api/v1/tasks/<task_id>", status="200") == 1


@pytest.mark.parametrize("standalone", [False, True], ids=["embedded", "standalone"])
def test_a_scripted_story_gives_exact_figures(tmp_path: Path, deployments: list[Deployment], standalone: bool) -> None:
    dep = Deployment(tmp_path, standalone=standalone)
    deployments.append(dep.start())
    run_scenario(dep)
    samples = wait_for(lambda: _settled_scrape(dep), 30, "the story's figures on /metrics")
    assert_scheduler_figures(samples)
    assert_web_figures(samples)
    if standalone:  # the scheduler's own port: the same scheduler figures, and no web requests of its own
        own = wait_for(
            lambda: _settled_scrape(dep, dep.scheduler_metrics_url), 30, "the story's figures on the scheduler's port"
        )
        assert_scheduler_figures(own)
        assert not [k for k in own if k[0] == "lama_cleaner_http_requests_total"]
