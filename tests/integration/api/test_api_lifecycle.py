"""``/api/v1`` against a real server: embedded scheduler, a real node subprocess, real ZeroMQ and SQLite.

Covers submit -> poll -> result, idempotent resubmission, cancelling a queued task (it never reaches
a node), cancelling a running task of a stepping and of an uninterruptible model (the node is idle
again within a bound and runs the next task), and a classic ``/inpaint`` whose task is cancelled.
"""

from __future__ import annotations

import re
import threading
import time
import uuid

import pytest
import requests

from lama_cleaner.client import ApiError, LamaCleanerClient, inpaint_form
from tests.support.waiting import wait_for

from .conftest import counted, idle_node
from .helpers import mask_png, png, start_distributed_server

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
STEPPING_CANCEL_BOUND_S = 3.0
"""A stepping model stops between steps (100 ms here); 3 s leaves room for a loaded CI machine."""
BLOCKING_CANCEL_BOUND_S = 15.0
"""An uninterruptible model is stopped by killing its inference process, which then restarts."""


def _wait_status(api: LamaCleanerClient, task_id: str, status: str, timeout: float = 30) -> dict:
    return wait_for(lambda: (t := api.get(task_id))["status"] == status and t, timeout, f"{task_id} {status}")


def _wait_idle(api: LamaCleanerClient, timeout: float) -> dict:
    return wait_for(lambda: idle_node(api), timeout, "an idle node in /api/v1/nodes")


def test_submit_poll_result_matches_classic_inpaint(api, api_server):
    task = api.submit(png(seed=3), mask_png(), model="cv2")
    assert task["status"] == "queued" and task["name"] == "cv2" and task["kind"] == "inpaint"
    done = api.wait(task["id"], timeout=60)
    assert done["status"] == "completed", done
    assert done["attempts"] == 1 and done["node"] and done["progress"] == 100.0
    for stamp in ("created_at", "started_at", "finished_at"):
        assert ISO.match(done[stamp]), done
    assert done["created_at"] <= done["started_at"] <= done["finished_at"]
    result = api.result(task["id"])
    assert result.mimetype == "image/png" and result.seed is not None

    classic = requests.post(
        api_server.url + "/inpaint",
        data=inpaint_form("cv2"),
        files={"image": ("image.png", png(seed=3)), "mask": ("mask.png", mask_png())},
        timeout=60,
    )
    assert classic.status_code == 200, classic.text
    assert classic.content == result.body, "the API and /inpaint must produce the same bytes"

    page = api.list(status="completed", limit=1)
    assert page["total"] >= 1 and len(page["tasks"]) == 1
    assert any(t["id"] == task["id"] for t in api.iter_tasks(status="completed"))


def test_idempotency_key_runs_the_work_once(api, count_file):
    key, marker = uuid.uuid4().hex, f"idem-{uuid.uuid4().hex[:8]}"
    first = api.submit(png(), mask_png(), model="count", prompt=marker, idempotency_key=key)
    second = api.submit(png(), mask_png(), model="count", prompt=marker, idempotency_key=key)
    assert first["id"] == second["id"]
    api.wait(first["id"], timeout=60)
    third = api.submit(png(), mask_png(), model="count", prompt=marker, idempotency_key=key)
    assert third["id"] == first["id"] and third["status"] == "completed"
    assert counted(count_file).count(marker) == 1


def test_bad_input_is_rejected_before_queueing(api, api_server):
    before = api.list()["total"]
    with pytest.raises(ApiError) as info:
        api.submit(png(48, 32), mask_png(20, 20), model="cv2")
    assert info.value.status == 400 and "not queal to Image shape" in info.value.message
    with pytest.raises(ApiError) as info:
        api.submit(b"garbage", mask_png(), model="cv2")
    assert info.value.status == 400
    with pytest.raises(ApiError) as info:
        api.submit(png(), mask_png(), model="no-such-model")
    assert info.value.status == 400 and info.value.code == "unknown_model"
    with pytest.raises(ApiError) as info:
        api.submit(png(), mask_png(), model="sd1.5")
    assert info.value.status == 400 and info.value.code == "model_not_supported"
    assert "sd1.5 is not supported by this server" in info.value.message
    assert api.list()["total"] == before
    for method, path, status in (
        ("get", "/api/v1/tasks/nope", 404),
        ("get", "/api/v1/unknown", 404),
        ("put", "/api/v1/tasks", 405),
        ("get", "/api/v1/tasks/nope/result", 404),
    ):
        response = requests.request(method, api_server.url + path, timeout=10)
        assert response.status_code == status and response.headers["Content-Type"] == "application/json"
        assert set(response.json()["error"]) == {"code", "message"}


def test_queues_and_nodes_report_the_local_node(api):
    queues = {q["name"]: q for q in api.queues()}
    assert set(queues) >= {"gpu", "cpu"} and queues["cpu"]["endpoint"].startswith("tcp://")
    node = _wait_idle(api, 30)
    assert node["state"] == "idle" and "cpu" in node["queues"] and node["capabilities"]["device"] == "cpu"
    assert ISO.match(node["last_heartbeat"])


def test_cancel_queued_task_never_reaches_a_node(api, count_file):
    _wait_idle(api, 30)
    blocker = api.submit(png(), mask_png(), model="block", prompt="30000")
    try:
        _wait_status(api, blocker["id"], "processing")
        marker = f"never-{uuid.uuid4().hex[:8]}"
        queued = api.submit(png(), mask_png(), model="count", prompt=marker)
        waiting = api.get(queued["id"])
        assert waiting["status"] == "queued" and waiting["position"] == 0
        cancelled = api.cancel(queued["id"])
        assert cancelled["status"] == "cancelled"
    finally:
        api.cancel(blocker["id"])
    _wait_idle(api, BLOCKING_CANCEL_BOUND_S)
    after = f"after-{uuid.uuid4().hex[:8]}"
    follow_up = api.submit(png(), mask_png(), model="count", prompt=after)
    assert api.wait(follow_up["id"], timeout=60)["status"] == "completed"
    record = api.get(queued["id"])
    assert record["status"] == "cancelled" and record["attempts"] == 0 and record["started_at"] is None
    assert after in counted(count_file) and marker not in counted(count_file)
    with pytest.raises(ApiError) as info:
        api.result(queued["id"])
    assert (info.value.status, info.value.code) == (409, "cancelled")


@pytest.mark.parametrize(
    ("model", "prompt", "bound"),
    [("steps", "steps=100 100", STEPPING_CANCEL_BOUND_S), ("block", "30000", BLOCKING_CANCEL_BOUND_S)],
    ids=["stepping", "uninterruptible"],
)
def test_cancel_running_task_frees_the_node(api, model, prompt, bound):
    node_id = _wait_idle(api, 30)["id"]
    task = api.submit(png(), mask_png(), model=model, prompt=prompt)
    if model == "steps":
        wait_for(lambda: (api.get(task["id"]).get("progress") or 0) > 0, 30, "first progress report")
    else:
        _wait_status(api, task["id"], "processing")
    busy = next(n for n in api.nodes() if n["id"] == node_id)
    assert busy["state"] == "busy" and busy["current_task"] == task["id"]
    started = time.monotonic()
    assert api.cancel(task["id"])["status"] == "cancelled"
    idle = _wait_idle(api, bound)
    elapsed = time.monotonic() - started
    assert idle["id"] == node_id and elapsed < bound
    follow_up = api.submit(png(seed=9), mask_png(), model="cv2")
    done = api.wait(follow_up["id"], timeout=60)
    assert done["status"] == "completed" and done["node"] == node_id
    assert api.get(task["id"])["status"] == "cancelled"


def test_classic_inpaint_of_a_cancelled_task_gets_plain_text(api, api_server):
    url = api_server.url
    assert requests.post(url + "/model", data={"name": "block"}, timeout=30).status_code == 200
    try:
        box: dict[str, requests.Response] = {}
        form = inpaint_form("block", prompt="30000")
        files = {"image": ("image.png", png()), "mask": ("mask.png", mask_png())}
        thread = threading.Thread(
            target=lambda: box.setdefault("r", requests.post(url + "/inpaint", data=form, files=files, timeout=60))
        )
        thread.start()
        running = wait_for(lambda: api.list(status="processing")["tasks"], 30, "the /inpaint task to run")
        api.cancel(running[0]["id"])
        thread.join(60)
        response = box["r"]
        assert 400 <= response.status_code < 500, (response.status_code, response.text)
        assert response.headers["Content-Type"].startswith("text/plain")
        assert "cancel" in response.text.lower()
    finally:
        requests.post(url + "/model", data={"name": "cv2"}, timeout=30)
        _wait_idle(api, BLOCKING_CANCEL_BOUND_S)


def test_full_queue_answers_503_with_retry_after(tmp_path):
    server = start_distributed_server(tmp_path, distributed={"max_queued": 1, "retry_after_s": 3})
    try:
        with LamaCleanerClient(server.url) as api:
            _wait_idle(api, 60)
            blocker = api.submit(png(), mask_png(), model="block", prompt="30000")
            _wait_status(api, blocker["id"], "processing")
            api.submit(png(), mask_png(), model="cv2")  # fills the queue
            response = requests.post(
                server.url + "/api/v1/tasks",
                data=inpaint_form("cv2"),
                files={"image": ("i.png", png()), "mask": ("m.png", mask_png())},
                timeout=30,
            )
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "3"
            assert response.json()["error"]["code"] == "overloaded"
            api.cancel(blocker["id"])
    finally:
        server.stop()


def test_minimal_multipart_like_the_curl_example(api, api_server):
    """Only the two files: the current model and the front end's defaults fill in the rest."""
    response = requests.post(
        api_server.url + "/api/v1/tasks",
        files={"image": ("photo.png", png(seed=5)), "mask": ("mask.png", mask_png())},
        data={"cv2Radius": "7"},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/api/v1/tasks/{response.json()['id']}"
    done = api.wait(response.json()["id"], timeout=60)
    assert done["status"] == "completed" and done["name"] == "cv2"
    image = requests.get(api_server.url + done["links"]["result"], timeout=30)
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/png" and image.headers["X-Seed"]
