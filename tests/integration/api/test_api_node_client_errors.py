"""Bad input that only the node can detect is still the client's fault: a 4xx, never a 500.

The web server checks image headers before queueing (cheap); a PNG whose header is fine but whose
pixel data is cut off passes that check and fails the full decode on the node, which reports
``FAILED retryable=false status=400``. The scheduler keeps that status (``error_status``), and the
executor turns it back into the status the caller sees.
"""

from __future__ import annotations

import requests

from lama_cleaner.client import inpaint_form

from .helpers import mask_png, png

NODE_MESSAGE = "Invalid image: cannot decode 'image'"


def truncated_png() -> bytes:
    """A PNG with a valid signature and IHDR (so its size can be read) and half its data missing."""
    data = png(seed=11)
    return data[: len(data) // 2]


def _files() -> dict[str, tuple[str, bytes]]:
    return {"image": ("image.png", truncated_png()), "mask": ("mask.png", mask_png())}


def test_classic_inpaint_answers_the_nodes_400_as_plain_text(api_server):
    response = requests.post(api_server.url + "/inpaint", data=inpaint_form("cv2"), files=_files(), timeout=60)
    assert response.status_code == 400, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("text/plain")
    assert NODE_MESSAGE in response.text


def test_api_result_of_such_a_task_is_a_4xx_json_error(api, api_server):
    submitted = requests.post(api_server.url + "/api/v1/tasks", data=inpaint_form("cv2"), files=_files(), timeout=30)
    assert submitted.status_code == 202, submitted.text  # headers are fine: accepted, the node finds out
    task = api.wait(submitted.json()["id"], timeout=60)
    assert task["status"] == "failed" and task["attempts"] == 1, task  # a client error is never retried
    assert NODE_MESSAGE in task["error"]
    result = requests.get(api_server.url + f"/api/v1/tasks/{task['id']}/result", timeout=10)
    assert 400 <= result.status_code < 500, (result.status_code, result.text)
    assert result.headers["Content-Type"].startswith("application/json")
    error = result.json()["error"]
    assert error["code"] and NODE_MESSAGE in error["message"]
