"""Fixtures for the core unit tests: real registries built from the real plugin manager."""

from __future__ import annotations

import http.server
import threading

import pytest

from lama_cleaner.config import Config
from lama_cleaner.image_plugins.registry import build_image_plugin_registry
from lama_cleaner.models.manager import ModelManager
from lama_cleaner.models.registry import build_model_registry
from lama_cleaner.plugins.manager import create_plugin_manager


@pytest.fixture
def config() -> Config:
    return Config(model="cv2", device="cpu", enable_gif=True)


@pytest.fixture
def pm():
    return create_plugin_manager(autoload=False)


@pytest.fixture
def models(pm, config) -> ModelManager:
    return ModelManager(build_model_registry(pm), config, "cpu")


@pytest.fixture
def image_plugins(pm, config):
    return build_image_plugin_registry(pm, config)


class _FileHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (path -> bytes) and records every requested path in ``server.hits``."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        body = self.server.files.get(self.path)  # type: ignore[attr-defined]
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def http_files():
    """A real HTTP server on 127.0.0.1: yields (base_url, files, hits); fill ``files`` with path -> bytes."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FileHandler)
    httpd.files, httpd.hits = {}, []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.files, httpd.hits  # type: ignore[attr-defined]
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)
