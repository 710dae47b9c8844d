"""Weight download and cache rules (docs/compatibility.md#weights) against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lama_cleaner.models import download
from lama_cleaner.models.download import ModelDownloadError, WeightFile

PAYLOAD = b"weights-" * 5000


@pytest.fixture
def server(http_files):
    base, files, hits = http_files
    files.update({"/rel/model.bin": PAYLOAD, "/rel/other.bin": b"other"})
    return base


@pytest.fixture(autouse=True)
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("TEST_W_URL", raising=False)
    monkeypatch.delenv("TEST_W_MD5", raising=False)
    return tmp_path / "torch"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_cache_path_follows_torch_hub_rules(torch_home):
    assert download.cache_path_for("https://x/y/big-lama.pt?dl=1") == torch_home / "hub" / "checkpoints" / "big-lama.pt"


def test_download_checks_md5_and_caches(server, torch_home, http_files):
    weight = WeightFile("TEST_W", f"{server}/rel/model.bin", md5(PAYLOAD))
    assert not download.is_downloaded(weight)
    path = download.ensure_weight(weight)
    assert path == torch_home / "hub" / "checkpoints" / "model.bin"
    assert path.read_bytes() == PAYLOAD
    assert download.is_downloaded(weight)
    download.ensure_weight(weight)
    assert http_files[2] == ["/rel/model.bin"], "a cached file is not fetched again"


def test_md5_mismatch_deletes_the_file_and_raises(server, torch_home):
    weight = WeightFile("TEST_W", f"{server}/rel/model.bin", "0" * 32)
    with pytest.raises(ModelDownloadError) as err:
        download.ensure_weight(weight)
    assert "md5 mismatch" in str(err.value) and md5(PAYLOAD) in str(err.value)
    checkpoints = torch_home / "hub" / "checkpoints"
    assert list(checkpoints.iterdir()) == [], "neither the file nor a partial download is left behind"
    assert not download.is_downloaded(weight)


def test_env_overrides_url_and_md5(server, monkeypatch):
    monkeypatch.setenv("TEST_W_URL", f"{server}/rel/other.bin")
    monkeypatch.setenv("TEST_W_MD5", md5(b"other"))
    path = download.ensure_weight(WeightFile("TEST_W", "https://unreachable.invalid/a.bin", "f" * 32))
    assert path.name == "other.bin" and path.read_bytes() == b"other"


def test_local_path_url_is_used_without_md5(tmp_path, monkeypatch):
    local = tmp_path / "my-lama.pt"
    local.write_bytes(b"anything")
    monkeypatch.setenv("TEST_W_URL", str(local))
    weight = WeightFile("TEST_W", "https://unreachable.invalid/a.bin", "f" * 32)
    assert download.ensure_weight(weight) == local
    assert download.is_downloaded(weight)


def test_http_error_is_a_clear_error(server, torch_home):
    with pytest.raises(ModelDownloadError, match="^Failed to download model from .*/rel/missing.bin"):
        download.ensure_weight(WeightFile("TEST_W", f"{server}/rel/missing.bin", None))
    assert list((torch_home / "hub" / "checkpoints").iterdir()) == []


def test_discard_if_corrupt(tmp_path):
    weight = WeightFile("TEST_W", "https://example.invalid/m.bin", md5(b"good"))
    path = Path(tmp_path / "m.bin")
    path.write_bytes(b"good")
    assert download.discard_if_corrupt(path, weight) is False and path.exists()
    path.write_bytes(b"bad")
    assert download.discard_if_corrupt(path, weight) is True and not path.exists()
