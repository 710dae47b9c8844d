"""Where model weights live and how they get there (docs/compatibility.md#weights), without importing torch.

Rules kept from upstream so existing caches keep working:

* files live in ``<torch hub dir>/checkpoints/<basename of the URL>``;
* ``<NAME>_URL`` / ``<NAME>_MD5`` environment variables override a file's source and checksum;
* a URL that is an existing local path is used as-is, without an md5 check;
* a download is md5-checked; a mismatching file is deleted.

Unlike upstream, failures raise ``ModelDownloadError`` instead of calling ``exit(-1)`` inside a request
thread, and downloads go to a ``.part`` file renamed into place, so a crash never leaves a half file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import LamaCleanerError

log = logging.getLogger(__name__)
CHUNK = 1 << 20


class ModelDownloadError(LamaCleanerError):
    """Weights could not be fetched or failed their checksum; the message tells the operator what to do."""

    status = 500
    code = "model_download_failed"


@dataclass(frozen=True)
class WeightFile:
    """One downloadable file: default URL/md5 and the env-var prefix that can override them."""

    env_prefix: str
    url: str
    md5: str | None

    def resolved_url(self) -> str:
        return os.environ.get(f"{self.env_prefix}_URL") or self.url

    def resolved_md5(self) -> str | None:
        return os.environ.get(f"{self.env_prefix}_MD5") or self.md5


def hub_dir() -> Path:
    """torch.hub's directory: torch's own answer when torch is loaded, else the same env-var rules."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            return Path(torch.hub.get_dir())
        except Exception:
            pass
    default_cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(default_cache, "torch")
    return Path(os.path.expanduser(torch_home)) / "hub"


def cache_path_for(url: str) -> Path:
    """``<hub>/checkpoints/<basename of the URL path>``."""
    name = os.path.basename(urllib.parse.urlparse(url).path)
    if not name:
        raise ModelDownloadError(f"cannot derive a file name from model URL {url!r}")
    return hub_dir() / "checkpoints" / name


def is_local_path(url: str) -> bool:
    return "://" not in url and os.path.exists(url)


def file_md5(path: str | os.PathLike[str]) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_downloaded(weight: WeightFile) -> bool:
    """True when the weights are usable without a download (an existing local URL also counts)."""
    url = weight.resolved_url()
    return is_local_path(url) or cache_path_for(url).exists()


def download(url: str, dest: Path, md5: str | None, *, timeout: float = 60.0) -> Path:
    """Fetch ``url`` into ``dest`` through a temporary file, checking ``md5`` when given."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("Downloading %s to %s", url, dest)
    digest = hashlib.md5()
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310
            for chunk in iter(lambda: resp.read(CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
    except ModelDownloadError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ModelDownloadError(f"Failed to download model from {url}: {exc}") from exc
    got = digest.hexdigest()
    if md5 and got != md5:
        tmp.unlink(missing_ok=True)
        raise ModelDownloadError(
            f"Model md5 mismatch for {url}: got {got}, expected {md5}; the downloaded file was deleted. "
            f"Try again, or download it manually to {dest}"
        )
    os.replace(tmp, dest)
    return dest


def ensure_weight(weight: WeightFile) -> Path:
    """The local path of ``weight``, downloading (and md5-checking) it first if needed."""
    url = weight.resolved_url()
    if is_local_path(url):
        return Path(url)
    dest = cache_path_for(url)
    if dest.exists():
        return dest
    return download(url, dest, weight.resolved_md5())


def discard_if_corrupt(path: Path, weight: WeightFile) -> bool:
    """After a failed load: delete a cached file whose md5 is wrong (so the next load re-downloads it).

    Returns True when the file was deleted. Local-path URLs are never touched.
    """
    md5 = weight.resolved_md5()
    if not md5 or is_local_path(weight.resolved_url()) or not path.exists():
        return False
    if file_md5(path) == md5:
        return False
    path.unlink(missing_ok=True)
    return True
