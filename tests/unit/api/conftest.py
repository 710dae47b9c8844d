"""Fixtures for the ``/api/v1`` unit tests: a bare Flask app with the blueprint over the stub service."""

from __future__ import annotations

import io

import pytest
from flask import Flask
from PIL import Image

from lama_cleaner.config import Config
from lama_cleaner.server.api_v1 import register_api

from .stub_service import StubTaskService


def png_bytes(
    size: tuple[int, int] = (32, 24), color: tuple[int, int, int] = (200, 30, 30), mode: str = "RGB"
) -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color if mode == "RGB" else 255).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def service() -> StubTaskService:
    return StubTaskService()


@pytest.fixture
def app(service: StubTaskService) -> Flask:
    app = Flask(__name__)
    register_api(app, service, Config(model="cv2", device="cpu"))
    return app


@pytest.fixture
def client(app: Flask):
    return app.test_client()


@pytest.fixture
def image_files():
    """A fresh (image, mask) pair of matching size for a multipart body."""

    def make(size: tuple[int, int] = (32, 24), mask_size: tuple[int, int] | None = None) -> dict[str, object]:
        return {
            "image": (io.BytesIO(png_bytes(size)), "image.png"),
            "mask": (io.BytesIO(png_bytes(mask_size or size, mode="L")), "mask.png"),
        }

    return make
