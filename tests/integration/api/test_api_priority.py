"""``priority`` on ``/api/v1`` against a real server (embedded scheduler, one real node subprocess):
validated 0..9 with a JSON 400, reported in the task JSON and OpenAPI, classic ``/inpaint`` at the
default 5, and the one node runs queued work highest priority first, FIFO within a priority."""

from __future__ import annotations

import threading
import uuid

import pytest
import requests

from lama_cleaner.client import ApiError, LamaCleanerClient, inpaint_form
from tests.support.waiting import wait_for

from .conftest import counted, idle_node
from .helpers import mask_png, png


def _files() -> dict[str, tuple[str, bytes]]:
    return {"image": ("image.png", png()), "mask": ("mask.png", mask_png())}


@pytest.mark.parametrize("bad", ["10", "-1", "x", "5.5", "", "true"])
def test_a_bad_priority_is_a_json_400_naming_the_field(api_server, bad):
    response = requests.post(
        api_server.url + "/api/v1/tasks", data={"model": "cv2", "priority": bad}, files=_files(), timeout=30
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["message"].startswith("priority: must be an integer from 0 to 9"), error


def test_priority_is_reported_and_defaults_to_5(api):
    default = api.submit(png(), mask_png(), model="cv2")
    chosen = api.submit(png(), mask_png(), model="cv2", priority=0)
    assert (default["priority"], chosen["priority"]) == (5, 0)
    assert api.get(chosen["id"])["priority"] == 0
    for task in (default, chosen):
        assert api.wait(task["id"], timeout=60)["status"] == "completed"
    listed = {t["id"]: t["priority"] for t in api.list(limit=10)["tasks"]}
    assert listed[default["id"]] == 5 and listed[chosen["id"]] == 0
    with pytest.raises(ApiError) as info:
        api.submit(png(), mask_png(), model="cv2", priority=12)
    assert info.value.status == 400 and "priority" in info.value.message


def test_openapi_documents_the_field(api):
    schemas = api.openapi()["components"]["schemas"]
    submit = schemas["TaskSubmit"]["properties"]["priority"]
    assert submit["type"] == "integer" and (submit["minimum"], submit["maximum"]) == (0, 9)
    assert submit["default"] == 5
    assert schemas["Task"]["properties"]["priority"]["type"] == "integer"


def test_the_node_runs_higher_priorities_first_and_classic_inpaint_at_5(api, api_server, count_file):
    wait_for(lambda: idle_node(api), 30, "an idle node")
    tag = uuid.uuid4().hex[:6]
    blocker = api.submit(png(), mask_png(), model="steps", prompt="steps=300 100")  # 30 s, stops between steps
    classic: dict[str, requests.Response] = {}
    thread: threading.Thread | None = None
    try:
        wait_for(lambda: api.get(blocker["id"])["status"] == "processing", 30, "the blocker to run")
        lows = [api.submit(png(), mask_png(), model="count", prompt=f"low{i}-{tag}", priority=1) for i in range(3)]
        assert requests.post(api_server.url + "/model", data={"name": "count"}, timeout=30).status_code == 200
        form = inpaint_form("count", prompt=f"classic-{tag}")
        thread = threading.Thread(
            target=lambda: classic.update(
                r=requests.post(api_server.url + "/inpaint", data=form, files=_files(), timeout=120)
            )
        )
        thread.start()
        queued_classic = wait_for(
            lambda: next((t for t in api.list(status="queued")["tasks"] if t["priority"] == 5), None),
            30,
            "the classic /inpaint task to be queued",
        )
        high = api.submit(png(), mask_png(), model="count", prompt=f"high-{tag}", priority=9)
        expected = [high["id"], queued_classic["id"], *(t["id"] for t in lows)]
        assert [api.get(i)["position"] for i in expected] == [0, 1, 2, 3, 4]
        assert [api.get(i)["priority"] for i in expected] == [9, 5, 1, 1, 1]
    finally:
        api.cancel(blocker["id"])
        if thread is not None:
            thread.join(120)
    assert classic["r"].status_code == 200, classic["r"].text
    for task_id in expected:
        assert api.wait(task_id, timeout=60)["status"] == "completed"
    ran = [m for m in counted(count_file) if m.endswith(tag)]
    assert ran == [f"high-{tag}", f"classic-{tag}", f"low0-{tag}", f"low1-{tag}", f"low2-{tag}"]


def test_the_client_sends_no_priority_unless_asked(api_server):
    """``LamaCleanerClient.submit`` leaves the field out by default, so the server's default applies."""
    sent: list[dict] = []

    class Recording(requests.Session):
        def request(self, method, url, **kwargs):  # type: ignore[override]
            sent.append(dict(kwargs.get("data") or {}))
            return super().request(method, url, **kwargs)

    with LamaCleanerClient(api_server.url, session=Recording()) as client:
        tasks = [
            client.submit(png(), mask_png(), model="cv2"),
            client.submit(png(), mask_png(), model="cv2", priority=3),
        ]
        assert [client.wait(t["id"], timeout=60)["priority"] for t in tasks] == [5, 3]  # and the node is idle again
    assert "priority" not in sent[0] and sent[1]["priority"] == "3"
