"""Small, deterministic images and masks for the classic-route tests, and a typed /inpaint call."""

from __future__ import annotations

import io

import numpy as np
import requests
from PIL import Image

from lama_cleaner.inpaint_request import default_form


def image_array(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth gradient with a little seeded noise: inpainting visibly changes masked pixels."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1), (xs + ys) % 256], axis=-1)
    noise = rng.integers(0, 40, size=(height, width, 3))
    return ((base + noise) % 256).astype(np.uint8)


def encode(array: np.ndarray, fmt: str = "PNG", **kwargs: object) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format=fmt, **kwargs)
    return out.getvalue()


def image_bytes(width: int = 64, height: int = 48, seed: int = 0, fmt: str = "PNG") -> bytes:
    return encode(image_array(width, height, seed), fmt)


def mask_bytes(width: int = 64, height: int = 48, box: tuple[int, int, int, int] | None = None) -> bytes:
    """Like the canvas mask: transparent RGBA with an opaque white rectangle (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box or (width // 4, height // 4, width // 2, height // 2)
    rgba = np.zeros((height, width, 4), dtype=np.uint8)
    rgba[y0:y1, x0:x1] = 255
    return encode(rgba)


def mask_array(width: int = 64, height: int = 48, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The boolean mask that :func:`mask_bytes` encodes."""
    x0, y0, x1, y1 = box or (width // 4, height // 4, width // 2, height // 2)
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def post_inpaint(
    base_url: str,
    image: bytes,
    mask: bytes,
    *,
    form: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
    image_name: str = "image.png",
    timeout: float = 60,
) -> requests.Response:
    """POST /inpaint as the front end does: all 34 fields (cv2 defaults unless overridden) + 2 files."""
    fields = default_form(
        hdStrategy="Resize",
        hdStrategyResizeLimit="1080",
        hdStrategyCropTrigerSize="512",
        hdStrategyCropMargin="128",
        sdSeed="42",
    )
    fields.update(form or {})
    files = {"image": (image_name, image, "application/octet-stream"), "mask": ("mask.png", mask, "image/png")}
    return requests.post(
        f"{base_url}/inpaint", data=fields, files=files, headers=headers, cookies=cookies, timeout=timeout
    )


def assert_plain_text_error(response: requests.Response, status: int, contains: str = "") -> None:
    """An error is short plain text with the expected status, never an HTML page."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("text/plain"), response.headers["Content-Type"]
    assert "<html" not in response.text.lower() and "<!doctype" not in response.text.lower()
    assert contains in response.text, response.text
    assert len(response.text) < 500
