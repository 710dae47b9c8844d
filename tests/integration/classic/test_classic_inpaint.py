"""POST /inpaint against a real server subprocess (cv2 model): replies, coercion, bad input, concurrency."""

from __future__ import annotations

import io
import socket
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from .media_helpers import (
    assert_plain_text_error,
    decode,
    encode,
    image_array,
    image_bytes,
    mask_array,
    mask_bytes,
    post_inpaint,
)


def test_png_reply_keeps_size_format_and_unmasked_pixels(classic_server):
    source = image_array(64, 48, seed=1)
    response = post_inpaint(classic_server.url, image_bytes(64, 48, seed=1), mask_bytes(64, 48))
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Seed"] == "42"
    result = decode(response.content)
    assert result.shape == source.shape
    masked = mask_array(64, 48)
    assert np.array_equal(result[~masked], source[~masked]), "pixels outside the mask must be untouched"
    assert not np.array_equal(result[masked], source[masked]), "cv2 must change the masked area"


def test_jpeg_in_jpeg_out(classic_server):
    response = post_inpaint(
        classic_server.url, image_bytes(80, 60, fmt="JPEG"), mask_bytes(80, 60), image_name="photo.jpg"
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.content)).format == "JPEG"


def test_random_seed_is_reported_and_fixed_seed_echoed(classic_server):
    random_seed = post_inpaint(classic_server.url, image_bytes(), mask_bytes(), form={"sdSeed": "-1"})
    assert random_seed.status_code == 200
    assert 1 <= int(random_seed.headers["X-Seed"]) <= 999_999_999
    fixed = post_inpaint(classic_server.url, image_bytes(), mask_bytes(), form={"sdSeed": "1234"})
    assert fixed.headers["X-Seed"] == "1234"


def test_same_request_same_bytes(classic_server):
    first = post_inpaint(classic_server.url, image_bytes(seed=3), mask_bytes())
    second = post_inpaint(classic_server.url, image_bytes(seed=3), mask_bytes())
    assert first.status_code == second.status_code == 200
    assert first.content == second.content


@pytest.mark.parametrize(
    "override",
    [
        {"zitsWireframe": "False"},  # Python's str(False), as the maintainer's sample client sends
        {"useCroper": "TRUE", "sdMatchHistograms": "0"},
        {"cv2Radius": "5.0"},  # pydantic v2 accepts integral floats for ints
        {"croperX": "-3", "sdScale": "0.5"},
        {"cv2Flag": "INPAINT_TELEA"},
        {"hdStrategy": "Original"},
        {"hdStrategy": "Crop", "hdStrategyCropTrigerSize": "32"},
    ],
)
def test_lenient_coercion_of_the_34_fields(classic_server, override):
    response = post_inpaint(classic_server.url, image_bytes(), mask_bytes(), form=override)
    assert response.status_code == 200, response.text
    assert decode(response.content).shape == (48, 64, 3)


@pytest.mark.parametrize(
    ("form", "contains"),
    [
        ({"cv2Flag": "INPAINT_FOO"}, "cv2Flag"),
        ({"cv2Radius": "12.5"}, "cv2Radius"),
        ({"zitsWireframe": "maybe"}, "zitsWireframe"),
        ({"hdStrategy": "Sideways"}, "hdStrategy"),
        ({"sdSteps": ""}, "sdSteps"),
    ],
)
def test_bad_field_values_are_400_plain_text(classic_server, form, contains):
    response = post_inpaint(classic_server.url, image_bytes(), mask_bytes(), form=form)
    assert_plain_text_error(response, 400, contains)


def test_missing_field_is_400(classic_server):
    import requests

    from lama_cleaner.inpaint_request import default_form

    fields = default_form()
    del fields["ldmSteps"]
    files = {"image": ("i.png", image_bytes(), "image/png"), "mask": ("m.png", mask_bytes(), "image/png")}
    response = requests.post(classic_server.url + "/inpaint", data=fields, files=files, timeout=30)
    assert_plain_text_error(response, 400, "ldmSteps")


def test_missing_mask_file_is_400(classic_server):
    import requests

    from lama_cleaner.inpaint_request import default_form

    response = requests.post(
        classic_server.url + "/inpaint",
        data=default_form(),
        files={"image": ("i.png", image_bytes(), "image/png")},
        timeout=30,
    )
    assert_plain_text_error(response, 400, "mask")


def test_undecodable_image_is_400(classic_server):
    response = post_inpaint(classic_server.url, b"this is not an image", mask_bytes())
    assert_plain_text_error(response, 400, "image")


def test_mask_size_mismatch_uses_upstream_text(classic_server):
    response = post_inpaint(classic_server.url, image_bytes(64, 48), mask_bytes(32, 32))
    assert_plain_text_error(response, 400, "Mask shape(32, 32) not queal to Image shape(48, 64)")


def test_truncated_multipart_upload_is_400(classic_server):
    """A body cut off in the middle of a file part (client crashed mid-upload)."""
    boundary = "XyZboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="ldmSteps"\r\n\r\n25\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="i.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode() + image_bytes()[:40]
    parsed = urlparse(classic_server.url)
    head = (
        f"POST /inpaint HTTP/1.1\r\nHost: {parsed.netloc}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((parsed.hostname, parsed.port), timeout=30) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    status_line, _, rest = reply.partition(b"\r\n")
    assert b" 400 " in status_line, reply[:300]
    assert b"text/plain" in rest.split(b"\r\n\r\n", 1)[0]
    assert b"<html" not in reply.lower()


def test_concurrent_requests_each_get_their_own_result(classic_server):
    sizes = [(64, 48), (48, 64), (96, 40), (40, 96), (72, 72), (50, 30), (30, 50), (128, 64)]
    jobs = [(image_bytes(w, h, seed=i), mask_bytes(w, h)) for i, (w, h) in enumerate(sizes)]
    expected = [post_inpaint(classic_server.url, img, mask).content for img, mask in jobs]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        replies = list(pool.map(lambda job: post_inpaint(classic_server.url, *job), jobs))
    for (w, h), reply, want in zip(sizes, replies, expected, strict=True):
        assert reply.status_code == 200, reply.text
        assert decode(reply.content).shape == (h, w, 3)
        assert reply.content == want


def test_exif_rotated_jpeg_answers_in_upright_size(classic_server):
    """Orientation 6 (rotate 90): the front end shows it upright, so the mask and reply are upright."""
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = io.BytesIO()
    Image.fromarray(image_array(80, 40, seed=4)).save(stored, format="JPEG", exif=exif.tobytes())
    response = post_inpaint(classic_server.url, stored.getvalue(), mask_bytes(40, 80), image_name="r.jpg")
    assert response.status_code == 200, response.text
    assert decode(response.content).shape == (80, 40, 3)
    mismatch = post_inpaint(classic_server.url, stored.getvalue(), mask_bytes(80, 40), image_name="r.jpg")
    assert_plain_text_error(mismatch, 400, "not queal to Image shape(80, 40)")


def test_rgba_png_keeps_its_alpha(classic_server):
    rgba = np.dstack([image_array(64, 48, seed=6), np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))])
    response = post_inpaint(classic_server.url, encode(rgba), mask_bytes(64, 48))
    assert response.status_code == 200, response.text
    with Image.open(io.BytesIO(response.content)) as img:
        assert img.mode == "RGBA"
        assert np.array_equal(np.asarray(img)[:, :, 3], rgba[:, :, 3])
