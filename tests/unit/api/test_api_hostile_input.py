"""Hostile input on ``/api/v1`` answers JSON with a clear message: an image over the pixel limit (413
``image_too_large``, before anything is queued) and a body over the size limit (413)."""

from __future__ import annotations

import io

from flask import Flask
from PIL import Image

from lama_cleaner.config import Config
from lama_cleaner.server.api_v1 import register_api

from .stub_service import StubTaskService


def _png(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("L", size).save(out, format="PNG")
    return out.getvalue()


def _client(service: StubTaskService):
    config = Config(model="cv2", device="cpu")
    config.server.max_image_pixels = 10_000
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    register_api(app, service, config)
    return app.test_client()


def test_an_image_over_the_pixel_limit_is_a_json_413_and_nothing_is_queued(service):
    client = _client(service)
    data = {"image": (io.BytesIO(_png((101, 100))), "i.png"), "mask": (io.BytesIO(_png((101, 100))), "m.png")}
    response = client.post("/api/v1/tasks", data=data, content_type="multipart/form-data")
    assert response.status_code == 413
    error = response.get_json()["error"]
    assert error["code"] == "image_too_large" and "101x100" in error["message"]
    assert service.tasks == {}


def test_a_body_over_the_size_limit_is_a_json_413(service):
    client = _client(service)
    data = {"image": (io.BytesIO(b"\0" * 70_000), "i.png"), "mask": (io.BytesIO(b"m"), "m.png")}
    response = client.post("/api/v1/tasks", data=data, content_type="multipart/form-data")
    assert response.status_code == 413
    assert "0.0625 MiB" in response.get_json()["error"]["message"]
