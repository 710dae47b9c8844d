"""File manager, /inputimage and /save_image against a real server with temporary input/output dirs."""

from __future__ import annotations

import io

import numpy as np
import pytest
import requests
from PIL import Image

from .media_helpers import assert_plain_text_error, decode, encode, image_array, image_bytes


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    inp, out = root / "input", root / "output"
    inp.mkdir()
    (inp / "b.jpg").write_bytes(image_bytes(40, 30, seed=2, fmt="JPEG"))
    (inp / "a.png").write_bytes(image_bytes(64, 48, seed=1))
    (inp / "notes.txt").write_text("not listed")
    (inp / "fake.png").write_bytes(b"not really a png")
    (inp / "sub").mkdir()
    (root / "secret.png").write_bytes(image_bytes(8, 8))
    return root, inp, out


@pytest.fixture(scope="module")
def fm_server(shared_servers, dirs):
    _, inp, out = dirs
    return shared_servers.get("--input", str(inp), "--output-dir", str(out))


def url(server, path: str) -> str:
    return server.url + path


def test_server_config_enables_file_manager_and_auto_saving(fm_server, dirs):
    body = requests.get(url(fm_server, "/server_config"), timeout=30).json()
    assert body["enableFileManager"] is True and body["isEnableAutoSaving"] is True
    assert dirs[2].is_dir(), "--output-dir is created at start-up"


def test_medias_lists_images_sorted_with_sizes(fm_server):
    entries = requests.get(url(fm_server, "/medias/image"), timeout=30).json()
    assert [e["name"] for e in entries] == ["a.png", "b.jpg"]
    assert (entries[0]["width"], entries[0]["height"]) == (64, 48)
    assert (entries[1]["width"], entries[1]["height"]) == (40, 30)
    assert all(isinstance(e["ctime"], float) and isinstance(e["mtime"], float) for e in entries)


def test_media_serves_raw_files_and_refuses_traversal(fm_server, dirs):
    _, inp, _ = dirs
    response = requests.get(url(fm_server, "/media/image/a.png"), timeout=30)
    assert response.status_code == 200 and response.content == (inp / "a.png").read_bytes()
    assert response.headers["Content-Type"] == "image/png"
    assert requests.get(url(fm_server, "/media/image/missing.png"), timeout=30).status_code == 404
    assert requests.get(url(fm_server, "/media/image/..%2Fsecret.png"), timeout=30).status_code == 404


def test_thumbnail_headers_and_cache(fm_server, dirs):
    _, _, out = dirs
    response = requests.get(url(fm_server, "/media_thumbnail/image/a.png?width=32&height=99.5"), timeout=30)
    assert response.status_code == 200, response.text
    assert (response.headers["X-Width"], response.headers["X-Height"]) == ("32", "24")
    assert Image.open(io.BytesIO(response.content)).size == (32, 24)
    assert (out / "lama_cleaner_thumbnails" / "a_32x24_fit_90.png").is_file()
    default = requests.get(url(fm_server, "/media_thumbnail/image/b.jpg"), timeout=30)
    assert default.headers["X-Width"] == "256"
    assert_plain_text_error(requests.get(url(fm_server, "/media_thumbnail/image/a.png?width=abc"), timeout=30), 400)
    assert_plain_text_error(requests.get(url(fm_server, "/media_thumbnail/image/fake.png"), timeout=30), 400)
    assert requests.get(url(fm_server, "/media_thumbnail/image/nope.png"), timeout=30).status_code == 404


def test_save_image_writes_into_output_dir(fm_server, dirs):
    _, _, out = dirs
    source = image_array(50, 40, seed=5)
    response = requests.post(
        url(fm_server, "/save_image"),
        data={"filename": "result.png"},
        files={"image": ("result.png", encode(source), "image/png")},
        timeout=30,
    )
    assert response.status_code == 200 and response.text == "ok"
    assert np.array_equal(decode((out / "result.png").read_bytes()), source)
    listed = requests.get(url(fm_server, "/medias/output"), timeout=30).json()
    assert [e["name"] for e in listed] == ["result.png"]


@pytest.mark.parametrize("name", ["../escaped.png", "sub/x.png", "..", "", "/tmp/abs.png", "..\\win.png"])
def test_save_image_rejects_path_traversal(fm_server, dirs, name):
    root, _, out = dirs
    response = requests.post(
        url(fm_server, "/save_image"),
        data={"filename": name},
        files={"image": ("x.png", image_bytes(), "image/png")},
        timeout=30,
    )
    assert_plain_text_error(response, 400)
    assert not (root / "escaped.png").exists()
    assert not (out / "sub").exists()


def test_save_image_undecodable_upload_is_400(fm_server):
    response = requests.post(
        url(fm_server, "/save_image"),
        data={"filename": "bad.png"},
        files={"image": ("bad.png", b"garbage", "image/png")},
        timeout=30,
    )
    assert_plain_text_error(response, 400)


def test_input_image_file_is_sent_as_attachment(shared_servers, tmp_path_factory):
    folder = tmp_path_factory.mktemp("single")
    path = folder / "photo é.png"
    path.write_bytes(image_bytes(20, 10))
    server = shared_servers.get("--input", str(path))
    response = requests.get(url(server, "/inputimage"), timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and "filename*=UTF-8''photo%20%C3%A9.png" in disposition
    assert response.content == path.read_bytes()
    assert requests.get(url(server, "/server_config"), timeout=30).json()["enableFileManager"] is False
