"""Hostile HTTP input against one real server: decompression bombs, images over the pixel limit,
truncated and zero-size images, wrong content types, bodies over the size limit and path tricks on
every route that touches files. Each is a 4xx with a plain-text message that says what is wrong, and
the same server then still serves a real /inpaint (it stayed up, other users are unaffected).

The server runs with a small ``[server]`` limit (1 megapixel, 1 MiB bodies) so the limits are hit
with small requests; Pillow's own bomb refusal is hit with a hand-made PNG header.
"""

from __future__ import annotations

import io
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image

from .media_helpers import image_bytes, mask_bytes, post_inpaint

TIMEOUT = 60
MAX_PIXELS = 1_000_000


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` grey pixels and carries almost none: a few hundred bytes
    that would decode to gigabytes (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def solid_png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    inp, out = root / "input", root / "output"
    inp.mkdir()
    (inp / "a.png").write_bytes(image_bytes(64, 48))
    (root / "secret.png").write_bytes(image_bytes(8, 8))
    return root, inp, out


@pytest.fixture(scope="module")
def server(shared_servers, dirs, tmp_path_factory):
    _, inp, out = dirs
    config = tmp_path_factory.mktemp("hostile-config") / "limits.toml"
    config.write_text(f"[server]\nmax_image_pixels = {MAX_PIXELS}\nmax_upload_mb = 1\n")
    return shared_servers.get("--config", str(config), "--input", str(inp), "--output-dir", str(out))


def assert_refused(response: requests.Response, status: int, *words: str) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["Content-Type"].startswith("text/plain"), response.headers["Content-Type"]
    for word in words:
        assert word in response.text, (word, response.text)


def test_an_image_over_the_pixel_limit_is_413_before_decoding(server):
    big = solid_png(1100, 1000)  # 1.1 megapixels in a few kilobytes
    assert_refused(post_inpaint(server.url, big, solid_png(1100, 1000)), 413, "1100x1000", "max_image_pixels")
    plugin = requests.post(server.url + "/run_plugin", data={"name": "MakeGIF"}, files={"image": big}, timeout=TIMEOUT)
    assert plugin.status_code in (404, 413), plugin.text  # MakeGIF may be off; never decoded either way
    save = requests.post(server.url + "/save_image", data={"filename": "x.png"}, files={"image": big}, timeout=TIMEOUT)
    assert_refused(save, 413, "max_image_pixels")


@pytest.mark.parametrize("side", [20_000, 100_000])
def test_a_decompression_bomb_is_413(server, side):
    """20,000 x 20,000 passes Pillow but not the limit; 100,000 x 100,000 is refused by Pillow itself."""
    bomb = png_header_only(side, side)
    assert len(bomb) < 1000
    assert_refused(post_inpaint(server.url, bomb, bomb), 413, "Image too large")


def test_zero_size_truncated_and_wrong_images_are_400(server):
    whole = image_bytes(64, 48)
    assert_refused(post_inpaint(server.url, b"", mask_bytes()), 400, "image")
    assert_refused(post_inpaint(server.url, whole[: len(whole) // 2], mask_bytes()), 400, "image")
    assert_refused(post_inpaint(server.url, b"GIF89a" + b"\x00" * 20, mask_bytes()), 400, "image")
    assert_refused(post_inpaint(server.url, whole, b"%PDF-1.4 not a mask"), 400, "mask")
    assert_refused(post_inpaint(server.url, whole, mask_bytes(32, 32)), 400, "Mask shape")


def test_wrong_content_types_and_fields_are_400(server):
    as_json = requests.post(server.url + "/inpaint", json={"image": "x"}, timeout=TIMEOUT)
    assert_refused(as_json, 400, "Missing form field")
    as_text = requests.post(
        server.url + "/inpaint", data=b"\xff\xfe garbage", headers={"Content-Type": "text/plain"}, timeout=TIMEOUT
    )
    assert_refused(as_text, 400)
    bad_number = post_inpaint(server.url, image_bytes(), mask_bytes(), form={"ldmSteps": "many"})
    assert_refused(bad_number, 400, "ldmSteps")


def test_a_body_over_the_size_limit_is_413(server):
    response = requests.post(
        server.url + "/inpaint", files={"image": b"\x00" * (1024 * 1024 + 1), "mask": b"x"}, timeout=TIMEOUT
    )
    assert_refused(response, 413, "Request body too large", "1 MiB", "max_upload_mb")


@pytest.mark.parametrize(
    "path",
    [
        "/media/image/..%2Fsecret.png",
        "/media/image/%2e%2e%2fsecret.png",
        "/media/image/..%5Csecret.png",
        "/media/image/%2Fetc%2Fpasswd",
        "/media/output/..%2F..%2Fsecret.png",
        "/media_thumbnail/image/..%2Fsecret.png",
        "/media_thumbnail/image/%2Fetc%2Fpasswd",
        "/media_thumbnail/image/a.png%00.txt",
        "/static/..%2F..%2Fsetup.py",
        "/static/%2Fetc%2Fpasswd",
        "/media/..%2F..%2Fetc/passwd",
    ],
)
def test_path_tricks_never_leave_the_served_folders(server, path):
    response = requests.get(server.url + path, timeout=TIMEOUT)
    assert 400 <= response.status_code < 500, (path, response.status_code)
    assert b"PNG" not in response.content[:8] and b"root:" not in response.content


@pytest.mark.parametrize("name", ["../escaped.png", "..", "/tmp/abs.png", "a/../../b.png", "x.png\x00.txt"])
def test_save_image_refuses_names_that_are_not_plain(server, dirs, name):
    root, _, out = dirs
    response = requests.post(
        server.url + "/save_image", data={"filename": name}, files={"image": image_bytes(8, 8)}, timeout=TIMEOUT
    )
    assert_refused(response, 400, "filename")
    assert not (root / "escaped.png").exists() and not (root / "b.png").exists()


def test_the_server_stays_up_and_serves_others_during_hostile_traffic(server):
    """Bombs and garbage from one client while another inpaints: every real request succeeds."""
    bomb = png_header_only(20_000, 20_000)

    def hostile(_: int) -> int:
        return post_inpaint(server.url, bomb, bomb).status_code

    def real(_: int) -> int:
        return post_inpaint(server.url, image_bytes(), mask_bytes()).status_code

    with ThreadPoolExecutor(8) as pool:
        bad = pool.map(hostile, range(24))
        good = pool.map(real, range(6))
        assert set(bad) == {413}
        assert set(good) == {200}
    assert requests.get(server.url + "/model", timeout=TIMEOUT).text == "cv2"
