"""The real lama-cleaner 1.2.5 front end, in headless Chromium, against our server (cv2, CPU).

The build is obtained through the same code path as ``lama-cleaner install-frontend`` (pip download of
the 1.2.5 wheel, extracted into ~/.cache, so reruns are fast). The test uploads an image, draws a
stroke on the canvas and waits until the inpainted reply is what the canvas shows.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lama_cleaner import frontend
from tests.integration.classic.media_helpers import image_bytes
from tests.support.browser import launched_chromium, loud_skip
from tests.support.server_process import HOST, REPO_ROOT, ServerProcess, free_port_block
from tests.support.waiting import wait_for

pytestmark = pytest.mark.browser

ARTIFACTS = REPO_ROOT / "test-artifacts"
WIDTH, HEIGHT = 400, 300


@pytest.fixture(scope="module")
def build_dir() -> Path:
    try:
        return frontend.install_frontend()
    except frontend.FrontendError as exc:
        loud_skip(f"the lama-cleaner 1.2.5 wheel could not be fetched, so the real front end is missing: {exc}")
        raise AssertionError("unreachable") from exc


@pytest.fixture(scope="module")
def browser():
    yield from launched_chromium()


def _mode_args(mode: str, data_dir) -> list[str]:
    """Classic mode, or the README's embedded distributed system (scheduler + one local node)."""
    if mode == "classic":
        return []
    bind = f"tcp://{HOST}:{free_port_block()}"
    return ["--plugins", "distributed", "--scheduler-bind", bind, "--data-dir", str(data_dir)]


@pytest.fixture(scope="module", params=["classic", "distributed"])
def server(request, build_dir, tmp_path_factory):
    args = _mode_args(request.param, tmp_path_factory.mktemp("journal"))
    with ServerProcess(args, env={"LAMA_CLEANER_BUILD_DIR": str(build_dir)}) as proc:
        proc.mode = request.param
        yield proc


KEEP_INPAINT_REPLIES = """
(() => {
  // Keep a copy of every /inpaint reply the front end receives (Chromium gives Playwright no body
  // for responses the page consumes as blobs). The page still gets the untouched response.
  const realFetch = window.fetch.bind(window);
  window.__inpaintReplies = [];
  window.fetch = async (input, init) => {
    const response = await realFetch(input, init);
    const url = typeof input === "string" ? input : input.url;
    if (url.endsWith("/inpaint")) {
      const bytes = new Uint8Array(await response.clone().arrayBuffer());
      let binary = "";
      for (let i = 0; i < bytes.length; i += 0x8000) {
        binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
      }
      window.__inpaintReplies.push([response.status, response.headers.get("content-type"),
                                    response.headers.get("x-seed") || "", btoa(binary)]);
    }
    return response;
  };
})();
"""


def canvas_pixels(page) -> np.ndarray:
    data_url = page.evaluate("() => document.querySelector('canvas.editor-canvas').toDataURL('image/png')")
    raw = base64.b64decode(data_url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")).astype(np.int16)


def test_upload_draw_and_get_the_inpainted_render(server, browser, tmp_path):
    source_path = tmp_path / "photo.png"
    source_path.write_bytes(image_bytes(WIDTH, HEIGHT, seed=11))
    source = np.asarray(Image.open(source_path).convert("RGB")).astype(np.int16)

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.add_init_script(KEEP_INPAINT_REPLIES)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url + "/")
    page.wait_for_selector("input[type=file]", state="attached", timeout=30_000)
    page.locator("input[type=file]").first.set_input_files(str(source_path))
    canvas = page.wait_for_selector("canvas.editor-canvas", timeout=30_000)
    wait_for(lambda: np.abs(canvas_pixels(page) - source).mean() < 1.0, 20, "the upload to be drawn on the canvas")

    box = canvas.bounding_box()
    assert box is not None
    x0, y = box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5
    with page.expect_response(lambda r: r.url.endswith("/inpaint"), timeout=60_000):
        page.mouse.move(x0, y)
        page.mouse.down()
        for step in range(12):
            page.mouse.move(x0 + step * 10, y + step * 2)
        page.mouse.up()
    kept = wait_for(lambda: page.evaluate("() => window.__inpaintReplies"), 20, "the page to read the reply")
    assert len(kept) == 1, "one stroke, one POST /inpaint"
    status, content_type, seed, encoded = kept[0]
    body = base64.b64decode(encoded)
    assert status == 200, body[:200]
    assert content_type == "image/png" and seed.isdigit()
    result = np.asarray(Image.open(io.BytesIO(body)).convert("RGB")).astype(np.int16)
    assert result.shape == source.shape
    changed = np.abs(result - source).sum(axis=-1) > 0
    assert changed.any(), "the stroke area must have been inpainted"

    wait_for(lambda: np.abs(canvas_pixels(page) - result).mean() < 1.0, 20, "the inpainted render on the canvas")
    shown = canvas_pixels(page)
    assert np.abs(shown[changed] - source[changed]).mean() > 1.0, "the canvas must show the new render"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"frontend-inpaint-{server.mode}.png"))
    assert errors == [], errors
    page.close()
