"""``LamaCleanerClient`` argument handling: default fields, names, files, errors (no server needed)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import requests

from lama_cleaner.client import (
    FRONTEND_DEFAULTS,
    ApiError,
    LamaCleanerClient,
    TaskResult,
    hd_defaults,
    inpaint_form,
    wire_name,
)
from lama_cleaner.inpaint_request import InpaintRequest


class FakeResponse:
    def __init__(self, status: int = 200, body: object = None, headers: dict | None = None, text: str = "") -> None:
        self.status_code = status
        self._body = body
        self.headers = headers or {"Content-Type": "application/json"}
        self.text = text
        self.reason = "R"
        self.content = text.encode()

    def json(self):
        if self._body is None:
            raise ValueError("no json")
        return self._body


class FakeSession:
    def __init__(self, response: FakeResponse) -> None:
        self.response = response
        self.calls: list[tuple[str, str, dict]] = []

    def request(self, method: str, url: str, **kwargs):
        self.calls.append((method, url, kwargs))
        return self.response

    def close(self) -> None:
        pass


def test_frontend_defaults_are_the_34_fields():
    assert set(FRONTEND_DEFAULTS) == set(InpaintRequest.form_names()) and len(FRONTEND_DEFAULTS) == 34
    InpaintRequest.from_form(FRONTEND_DEFAULTS)  # what the client sends parses on the server


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("lama", ("Crop", "2048", "800", "196")),
        ("cv2", ("Resize", "1080", "512", "128")),
        ("sd1.5", ("Original", "768", "512", "128")),
        (None, ("Crop", "2048", "800", "196")),
    ],
)
def test_hd_defaults_per_model(model, expected):
    hd = hd_defaults(model)
    got = (hd["hdStrategy"], hd["hdStrategyResizeLimit"], hd["hdStrategyCropTrigerSize"], hd["hdStrategyCropMargin"])
    assert got == expected


def test_inpaint_form_accepts_wire_and_snake_names_and_formats_values():
    form = inpaint_form("cv2", cv2_radius=9, hdStrategy="Original", zits_wireframe=False, sd_scale=0.5)
    assert form["cv2Radius"] == "9" and form["hdStrategy"] == "Original"
    assert form["zitsWireframe"] == "false" and form["sdScale"] == "0.5"
    assert form["ldmSteps"] == "25"  # untouched default
    assert wire_name("hd_strategy_crop_triger_size") == "hdStrategyCropTrigerSize"
    assert wire_name("controlnet_method") == "controlnet_method"
    with pytest.raises(TypeError, match="unknown inpaint field 'radius'"):
        inpaint_form("cv2", radius=3)


def test_submit_sends_multipart_with_defaults_headers_and_files(tmp_path: Path):
    image = tmp_path / "photo.jpg"
    image.write_bytes(b"IMG")
    session = FakeSession(FakeResponse(202, {"id": "t1", "status": "queued"}))
    client = LamaCleanerClient("http://h:1/base/", timeout=3, socket_id="sid-1", session=session)  # type: ignore[arg-type]
    task = client.submit(image, io.BytesIO(b"MASK"), "lama", idempotency_key="k", sd_seed=7)
    assert task == {"id": "t1", "status": "queued"}
    method, url, kwargs = session.calls[0]
    assert (method, url) == ("POST", "http://h:1/base/api/v1/tasks")
    assert kwargs["timeout"] == 3
    assert kwargs["headers"] == {"Idempotency-Key": "k", "X-Socket-ID": "sid-1"}
    assert kwargs["data"]["model"] == "lama" and kwargs["data"]["sdSeed"] == "7" and len(kwargs["data"]) == 35
    assert kwargs["files"]["image"] == ("photo.jpg", b"IMG") and kwargs["files"]["mask"][1] == b"MASK"


def test_submit_plugin_sends_only_its_fields():
    session = FakeSession(FakeResponse(202, {"id": "t2"}))
    client = LamaCleanerClient(session=session)  # type: ignore[arg-type]
    client.submit(b"IMG", plugin="RealESRGAN", upscale=4)
    _, _, kwargs = session.calls[0]
    assert kwargs["data"] == {"plugin": "RealESRGAN", "upscale": "4"} and set(kwargs["files"]) == {"image"}
    with pytest.raises(TypeError, match="needs a mask"):
        client.submit(b"IMG")
    with pytest.raises(TypeError, match="expected bytes"):
        client.submit(12, b"M")  # type: ignore[arg-type]


def test_errors_become_api_error():
    body = {"error": {"code": "overloaded", "message": "full"}}
    session = FakeSession(FakeResponse(503, body, {"Retry-After": "4", "Content-Type": "application/json"}))
    client = LamaCleanerClient(session=session)  # type: ignore[arg-type]
    with pytest.raises(ApiError) as info:
        client.get("x")
    err = info.value
    assert (err.status, err.code, err.message, err.retry_after, err.transient) == (503, "overloaded", "full", 4.0, True)
    plain = ApiError.from_response(FakeResponse(502, None, {}, text="Bad Gateway"))  # type: ignore[arg-type]
    assert (plain.code, plain.message, plain.transient) == ("http_502", "Bad Gateway", True)
    assert not ApiError(400, "bad_request", "x").transient and not ApiError(409, "task_failed", "x").transient


def test_list_and_result_parameters():
    session = FakeSession(FakeResponse(200, {"tasks": [], "total": 0, "next": None}))
    client = LamaCleanerClient(session=session)  # type: ignore[arg-type]
    client.list("queued", limit=5, offset=10)
    assert session.calls[0][2]["params"] == {"limit": 5, "offset": 10, "status": "queued"}
    assert TaskResult(b"", "image/png", {"X-Seed": "12"}).seed == 12
    assert TaskResult(b"", "image/png", {}).seed is None


def test_wait_gives_up_after_timeout():
    session = FakeSession(FakeResponse(200, {"id": "t", "status": "queued"}))
    client = LamaCleanerClient(session=session)  # type: ignore[arg-type]
    with pytest.raises(TimeoutError, match="still queued"):
        client.wait("t", timeout=0.05, poll=0.01)


def test_connection_errors_stay_requests_exceptions():
    client = LamaCleanerClient("http://127.0.0.1:9", timeout=2)
    with pytest.raises(requests.ConnectionError):
        client.queues()
