"""The ``/api/v1`` blueprint over an in-memory TaskService: shapes, statuses and error bodies."""

from __future__ import annotations

import io
import re

from lama_cleaner.tasks import TaskOutput

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert body["error"]["message"]
    return body["error"]["message"]


def test_submit_answers_202_with_location_and_fills_frontend_defaults(client, service, image_files):
    response = client.post("/api/v1/tasks", data={**image_files(), "cv2Radius": "9"}, headers={"X-Socket-ID": "abc"})
    assert response.status_code == 202
    task = response.get_json()
    assert task["status"] == "queued" and task["kind"] == "inpaint" and task["name"] == "cv2"
    assert response.headers["Location"] == f"/api/v1/tasks/{task['id']}"
    assert ISO.match(task["created_at"]) and task["started_at"] is None
    assert task["links"] == {"self": f"/api/v1/tasks/{task['id']}", "result": f"/api/v1/tasks/{task['id']}/result"}
    sent = service.requests[task["id"]]
    assert sent.form["cv2Radius"] == "9"  # the client's own string is forwarded
    assert sent.form["hdStrategy"] == "Resize" and sent.form["hdStrategyResizeLimit"] == "1080"  # cv2's HD defaults
    assert len(sent.form) == 34 and set(sent.files) == {"image", "mask"}
    assert sent.submitter == "abc"  # bare app: no notifier, header taken as is


def test_submit_model_field_overrides_current_model_and_its_hd_defaults(client, service, image_files):
    task = client.post("/api/v1/tasks", data={**image_files(), "model": "lama"}).get_json()
    sent = service.requests[task["id"]]
    assert sent.name == "lama" and sent.form["hdStrategy"] == "Crop" and sent.form["hdStrategyCropMargin"] == "196"
    assert "model" not in sent.form


def test_submit_plugin_forwards_plugin_fields(client, service, image_files):
    files = image_files()
    del files["mask"]
    response = client.post("/api/v1/tasks", data={**files, "plugin": "MakeGIF", "filename": "x.gif"})
    assert _error(response, 400, "bad_request") == "Missing form field: clean_img"  # pipeline.validate_task
    assert not service.requests
    files = image_files()
    files["clean_img"] = files.pop("mask")
    response = client.post("/api/v1/tasks", data={**files, "plugin": "MakeGIF", "filename": "x.gif"})
    assert response.status_code == 202
    sent = service.requests[response.get_json()["id"]]
    assert (sent.kind, sent.name) == ("plugin", "MakeGIF")
    assert sent.form == {"filename": "x.gif", "name": "MakeGIF"} and set(sent.files) == {"image", "clean_img"}
    other = image_files()
    other["extra"] = (io.BytesIO(b"EXTRA"), "extra.bin")  # a third-party plugin's own upload
    sent = service.requests[client.post("/api/v1/tasks", data={**other, "plugin": "Mine"}).get_json()["id"]]
    assert sent.files["extra"] == b"EXTRA" and sent.files["mask"].startswith(b"\x89PNG")
    both = client.post("/api/v1/tasks", data={**image_files(), "plugin": "MakeGIF", "model": "cv2"})
    _error(both, 400, "validation_error")


def test_validation_errors_are_400_json(client, service, image_files):
    msg = _error(client.post("/api/v1/tasks", data={**image_files(), "ldmSteps": "many"}), 400, "validation_error")
    assert "ldmSteps" in msg
    msg = _error(client.post("/api/v1/tasks", data={**image_files(), "hdStrategy": "Zoom"}), 400, "validation_error")
    assert "hdStrategy" in msg
    files = image_files()
    del files["mask"]
    assert "mask" in _error(client.post("/api/v1/tasks", data=files), 400, "validation_error")
    assert "image" in _error(client.post("/api/v1/tasks", data={"ldmSteps": "1"}), 400, "validation_error")
    _error(client.post("/api/v1/tasks", json={"image": "x"}), 400, "bad_request")
    assert not service.requests


def test_lenient_values_like_the_classic_route(client, service, image_files):
    response = client.post("/api/v1/tasks", data={**image_files(), "ldmSteps": "5.0", "zitsWireframe": "False"})
    assert response.status_code == 202, response.get_json()


def test_mask_size_mismatch_is_400_with_upstream_text(client, service, image_files):
    msg = _error(client.post("/api/v1/tasks", data=image_files((32, 24), (16, 16))), 400, "bad_request")
    assert msg == "Mask shape(16, 16) not queal to Image shape(24, 32)"


def test_undecodable_image_is_400(client, image_files):
    files = image_files()
    files["image"] = (io.BytesIO(b"not an image"), "x.png")
    _error(client.post("/api/v1/tasks", data=files), 400, "bad_request")


def test_idempotency_key_returns_the_same_task(client, service, image_files):
    first = client.post("/api/v1/tasks", data=image_files(), headers={"Idempotency-Key": "k1"})
    again = client.post("/api/v1/tasks", data=image_files(), headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 202
    assert first.get_json()["id"] == again.get_json()["id"]
    assert len(service.tasks) == 1
    service.complete(first.get_json()["id"], TaskOutput(b"x", "image/png"))
    done = client.post("/api/v1/tasks", data=image_files(), headers={"Idempotency-Key": "k1"})
    assert done.status_code == 200 and done.get_json()["status"] == "completed"
    _error(
        client.post("/api/v1/tasks", data=image_files(), headers={"Idempotency-Key": "x" * 500}),
        400,
        "validation_error",
    )


def test_overloaded_is_503_with_retry_after(client, service, image_files):
    service.overloaded = True
    response = client.post("/api/v1/tasks", data=image_files())
    _error(response, 503, "overloaded")
    assert response.headers["Retry-After"] == "7"


def test_get_task_and_its_lifecycle(client, service, image_files):
    task_id = client.post("/api/v1/tasks", data=image_files()).get_json()["id"]
    assert client.get(f"/api/v1/tasks/{task_id}").get_json()["position"] == 0
    service.start(task_id)
    task = client.get(f"/api/v1/tasks/{task_id}").get_json()
    assert task["status"] == "processing" and task["node"] == "node-1" and task["attempts"] == 1
    assert ISO.match(task["started_at"])
    _error(client.get(f"/api/v1/tasks/{task_id}/result"), 409, "not_finished")
    service.complete(task_id, TaskOutput(b"PNGDATA", "image/png", {"X-Seed": "42"}))
    result = client.get(f"/api/v1/tasks/{task_id}/result")
    assert result.status_code == 200 and result.data == b"PNGDATA"
    assert result.mimetype == "image/png" and result.headers["X-Seed"] == "42"


def test_result_error_statuses(client, service, image_files):
    ids = [client.post("/api/v1/tasks", data=image_files()).get_json()["id"] for _ in range(3)]
    service.fail(ids[0], "boom: model exploded")
    assert _error(client.get(f"/api/v1/tasks/{ids[0]}/result"), 409, "task_failed") == "boom: model exploded"
    assert client.get(f"/api/v1/tasks/{ids[0]}").get_json()["error"] == "boom: model exploded"
    client.delete(f"/api/v1/tasks/{ids[1]}")
    _error(client.get(f"/api/v1/tasks/{ids[1]}/result"), 409, "cancelled")
    service.complete(ids[2], TaskOutput(b"x", "image/png"))
    service.expired.add(ids[2])
    _error(client.get(f"/api/v1/tasks/{ids[2]}/result"), 410, "expired")
    _error(client.get("/api/v1/tasks/nope/result"), 404, "not_found")
    _error(client.get("/api/v1/tasks/nope"), 404, "not_found")
    _error(client.delete("/api/v1/tasks/nope"), 404, "not_found")


def test_makegif_result_keeps_content_disposition(client, service, image_files):
    task_id = client.post("/api/v1/tasks", data=image_files()).get_json()["id"]
    service.complete(task_id, TaskOutput(b"GIF89a", "image/gif", {"Content-Disposition": "attachment; filename=a.gif"}))
    result = client.get(f"/api/v1/tasks/{task_id}/result")
    assert result.headers["Content-Disposition"] == "attachment; filename=a.gif" and result.mimetype == "image/gif"


def test_cancel_returns_the_task(client, service, image_files):
    task_id = client.post("/api/v1/tasks", data=image_files()).get_json()["id"]
    response = client.delete(f"/api/v1/tasks/{task_id}")
    assert response.status_code == 200 and response.get_json()["status"] == "cancelled"
    assert ISO.match(response.get_json()["finished_at"])


def test_listing_pages_with_total_and_next(client, service, image_files):
    ids = [client.post("/api/v1/tasks", data=image_files()).get_json()["id"] for _ in range(5)]
    client.delete(f"/api/v1/tasks/{ids[0]}")
    page = client.get("/api/v1/tasks?limit=2").get_json()
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 0
    assert [t["id"] for t in page["tasks"]] == [ids[4], ids[3]]
    assert page["next"] == "/api/v1/tasks?limit=2&offset=2"
    last = client.get(page["next"].replace("offset=2", "offset=4")).get_json()
    assert [t["id"] for t in last["tasks"]] == [ids[0]] and last["next"] is None
    queued = client.get("/api/v1/tasks?status=queued&limit=3").get_json()
    assert queued["total"] == 4 and queued["next"] == "/api/v1/tasks?status=queued&limit=3&offset=3"
    assert client.get("/api/v1/tasks?status=cancelled").get_json()["tasks"][0]["id"] == ids[0]
    _error(client.get("/api/v1/tasks?status=done"), 400, "validation_error")
    _error(client.get("/api/v1/tasks?limit=0"), 400, "validation_error")
    _error(client.get("/api/v1/tasks?limit=abc"), 400, "validation_error")
    _error(client.get("/api/v1/tasks?offset=-1"), 400, "validation_error")


def test_queues_and_nodes(client):
    queues = client.get("/api/v1/queues").get_json()["queues"]
    assert queues[0]["name"] == "cpu" and queues[0]["nodes"] == {"idle": 1, "busy": 0}
    node = client.get("/api/v1/nodes").get_json()["nodes"][0]
    assert node["state"] == "idle" and node["loaded_model"] == "cv2" and node["current_task"] is None
    assert node["last_heartbeat"] == "2023-11-14T22:13:20.500Z"
    assert node["extra_field"] == 1  # backend extras pass through


def test_unknown_routes_and_methods_are_json(client):
    _error(client.get("/api/v1/nothing"), 404, "not_found")
    _error(client.get("/api/v1"), 404, "not_found")
    response = client.put("/api/v1/tasks/abc")
    _error(response, 405, "method_not_allowed")
    assert "DELETE" in response.headers["Allow"] and "GET" in response.headers["Allow"]
    _error(client.patch("/api/v1/tasks"), 405, "method_not_allowed")


def test_unexpected_exception_is_json_500(client, service, image_files, monkeypatch):
    monkeypatch.setattr(service, "queues", lambda: 1 / 0)
    assert _error(client.get("/api/v1/queues"), 500, "internal_error") == "Internal Server Error"


def test_openapi_document_validates_and_docs_page_is_self_contained(client):
    from openapi_spec_validator import validate

    doc = client.get("/api/v1/openapi.json").get_json()
    validate(doc)
    assert set(doc["paths"]) >= {
        "/api/v1/tasks",
        "/api/v1/tasks/{task_id}",
        "/api/v1/tasks/{task_id}/result",
        "/api/v1/queues",
        "/api/v1/nodes",
    }
    submit = doc["components"]["schemas"]["TaskSubmit"]["properties"]
    assert submit["image"] == {"type": "string", "format": "binary", "description": submit["image"]["description"]}
    assert "hdStrategyCropTrigerSize" in submit and len([k for k in submit if k[0].islower()]) >= 34
    page = client.get("/api/v1/docs")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "/api/v1/tasks/{task_id}/result" in text and "http://" not in text and "https://" not in text


def test_body_too_large_is_json_413(app, client, image_files):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    _error(client.post("/api/v1/tasks", data={**image_files(), "prompt": "x" * 5000}), 413, "payload_too_large")
